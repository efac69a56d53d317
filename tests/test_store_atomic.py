"""MockStore.create and merge_stores write through crnet.paths.atomic_write: one rename, nothing half-written left."""

from __future__ import annotations

import os

import h5py
import numpy as np
import pytest
from helpers_store import ENERGIES, record_batch, store_meta

import crnet.store as store_module
from crnet.store import MockStore
from crnet.store_read import merge_stores, read_store


def _make(path, chain: int, n_batches: int = 2, size: int = 3) -> None:
    with MockStore.create(path, store_meta()) as st:
        for b in range(n_batches):
            st.append_batch(record_batch(b * size, size, chain), {"batch": b})


def _names(directory) -> list[str]:
    return sorted(p.name for p in directory.iterdir())


@pytest.fixture
def failing_layout(monkeypatch):
    """_write_layout that writes part of the file and then fails (a full disk half-way through)."""
    real = store_module._write_layout

    def fail(f, *args):
        real(f, *args)
        f.flush()
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(store_module, "_write_layout", fail)


def test_create_writes_under_the_atomic_write_name(tmp_path, monkeypatch):
    seen = []
    real = store_module._write_new_file
    monkeypatch.setattr(store_module, "_write_new_file", lambda path, *a: (seen.append(path), real(path, *a)))
    with MockStore.create(tmp_path / "s.h5", store_meta(), capacity=4) as st:
        assert st.capacity == 4 and st.n_complete == 0
    assert seen == [tmp_path / f"s.h5.{os.getpid()}.tmp"]
    assert _names(tmp_path) == ["s.h5"]


def test_create_failing_mid_way_leaves_no_file_and_no_temporary(tmp_path, failing_layout):
    with pytest.raises(OSError, match="No space left"):
        MockStore.create(tmp_path / "s.h5", store_meta())
    assert _names(tmp_path) == []


def test_overwrite_failing_mid_way_keeps_the_old_store(tmp_path, monkeypatch):
    path = tmp_path / "s.h5"
    _make(path, chain=0)
    before = path.read_bytes()
    real = store_module._write_layout

    def fail(f, *args):
        real(f, *args)
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(store_module, "_write_layout", fail)
    with pytest.raises(OSError, match="No space left"):
        MockStore.create(path, store_meta(), overwrite=True)
    assert _names(tmp_path) == ["s.h5"] and path.read_bytes() == before
    assert len(read_store(path)) == 6


def test_create_refusals_write_nothing(tmp_path):
    with pytest.raises(ValueError, match="strictly increasing"):
        MockStore.create(tmp_path / "s.h5", store_meta(ekin_gev_per_n=ENERGIES[::-1]))
    with pytest.raises(ValueError, match="unique non-empty"):
        MockStore.create(tmp_path / "s.h5", store_meta(species=["C", "C"]))
    assert _names(tmp_path) == []
    _make(tmp_path / "s.h5", chain=0)
    with pytest.raises(store_module.StoreError, match="file exists"):
        MockStore.create(tmp_path / "s.h5", store_meta())


def test_merge_is_the_inputs_concatenated_and_leaves_no_temporaries(tmp_path, monkeypatch):
    a, b = tmp_path / "a.h5", tmp_path / "b.h5"
    _make(a, chain=0)
    _make(b, chain=1, n_batches=3)
    renames = []
    real_replace = os.replace
    monkeypatch.setattr(os, "replace", lambda src, dst: (renames.append((src, dst)), real_replace(src, dst)))
    out = merge_stores([a, b], tmp_path / "m.h5")
    assert renames == [(tmp_path / f"m.h5.{os.getpid()}.tmp", out)]  # written once, renamed once
    assert _names(tmp_path) == ["a.h5", "b.h5", "m.h5"]
    da, db, dm = read_store(a), read_store(b), read_store(out)
    assert len(dm) == len(da) + len(db) == 15
    for name in ("params", "norms", "flux", "chi2", "chain", "step", "accepted", "converged", "residual"):
        np.testing.assert_array_equal(getattr(dm, name), np.concatenate([getattr(da, name), getattr(db, name)]),
                                      err_msg=name)


def test_merge_failing_mid_way_leaves_no_temporary_and_keeps_the_old_output(tmp_path, monkeypatch):
    a, b, out = tmp_path / "a.h5", tmp_path / "b.h5", tmp_path / "m.h5"
    _make(a, chain=0)
    _make(b, chain=1)
    merge_stores([a], out)
    before = out.read_bytes()
    calls = []
    real = MockStore.append_batch

    def fail_second(self, batch, state):
        calls.append(1)
        if len(calls) == 2:
            raise OSError(28, "No space left on device")
        return real(self, batch, state)

    monkeypatch.setattr(MockStore, "append_batch", fail_second)
    with pytest.raises(OSError, match="No space left"):
        merge_stores([a, b], out, overwrite=True)
    assert _names(tmp_path) == ["a.h5", "b.h5", "m.h5"] and out.read_bytes() == before
    # and no HDF5 file is left open (on Linux the temporary could be removed while still open)
    assert not h5py.h5f.get_obj_ids(types=h5py.h5f.OBJ_FILE)
