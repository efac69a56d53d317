"""Mock store: schema, commits and checkpoints, selections, merging, refusal of foreign/corrupt files."""

from __future__ import annotations

import json

import h5py
import numpy as np
import pytest

from crnet.store import (
    FORMAT,
    NORM_NAMES,
    STATE_SLOTS,
    MockStore,
    RecordBatch,
    StoreError,
    StoreMeta,
    encode_state,
)
from crnet.store_read import Selection, merge_stores, read_store, recompute_chi2, store_info
from crprop.params import PARAM_NAMES, PARAM_UNITS

ELEMENTS = ["H", "Li", "Be", "B", "C", "N", "O", "Ne", "Mg", "Si"]
ISOTOPES = ["1H", "2H", "6Li", "7Li", "7Be", "9Be", "10Be", "10B", "11B", "12C", "13C", "14N", "15N", "16O", "17O",
            "18O", "20Ne", "21Ne", "22Ne", "24Mg", "25Mg", "26Mg", "28Si", "29Si", "30Si"]
ENERGIES = 1e-3 * 2.0 ** np.arange(28)  # 1 MeV/n .. 134 TeV/n, GeV/n


def _meta(**changes) -> StoreMeta:
    base = dict(species=ELEMENTS + ISOTOPES, ekin_gev_per_n=ENERGIES, grid={"dr_kpc": 1.0}, cross_sections="cs",
                solver_mode="fast", backend="numpy", design="mcmc", dataset="paper", temperature=10.0, seed=5,
                config={"n_chains": 2})
    return StoreMeta(**{**base, **changes})


def _fluxes(params: np.ndarray) -> np.ndarray:
    """Smooth positive fluxes (power laws whose index follows delta) for the test species."""
    n = params.shape[0]
    iso = np.empty((n, len(ISOTOPES), ENERGIES.size))
    for j, lab in enumerate(ISOTOPES):
        a = int("".join(c for c in lab if c.isdigit()))
        iso[:, j] = 1e3 / a**2 * (1.0 + ENERGIES[None] / 5.0) ** (-(2.3 + params[:, 1:2]))
    elem = np.stack([iso[:, [i for i, lab in enumerate(ISOTOPES) if lab.lstrip("0123456789") == el]].sum(axis=1)
                     for el in ELEMENTS], axis=1)
    return np.concatenate([elem, iso], axis=1)


def _batch(start: int, n: int, chain: int = 0, seed: int = 0) -> RecordBatch:
    rng = np.random.default_rng(seed + start)
    params = np.tile([4.0, 0.45, -1.0, 20.0, 4.0, 1.0, 2.3, 2.4, 1e3, 3e5], (n, 1))
    params[:, 1] = rng.uniform(0.2, 1.0, n)
    return RecordBatch(params=params, norms=np.ones((n, 4)), flux=_fluxes(params), chi2=100.0 + np.arange(n) + start,
                       chain=np.full(n, chain), step=np.arange(start, start + n), accepted=np.arange(n) % 2 == 0,
                       converged=np.arange(n) != 1, residual=np.full(n, 1e-7))


def _make(path, n_batches: int = 3, size: int = 5, chain: int = 0, capacity: int = 0, **meta) -> None:
    with MockStore.create(path, _meta(**meta), capacity=capacity) as st:
        for b in range(n_batches):
            st.append_batch(_batch(b * size, size, chain), {"batch": b})


def test_schema_names_units_and_attributes(tmp_path):
    path = tmp_path / "s.h5"
    _make(path, capacity=100)
    with h5py.File(path, "r") as f:
        assert f.attrs["format"] == FORMAT and f.attrs["format_version"] == 1
        assert f.attrs["n_complete"] == 15 and f["chi2"].shape == (100,)  # capacity beyond n_complete
        assert list(f["params"].attrs["names"]) == list(PARAM_NAMES)
        assert list(f["params"].attrs["units"]) == [PARAM_UNITS[n] for n in PARAM_NAMES]
        assert list(f["norms"].attrs["names"]) == list(NORM_NAMES)
        assert f["flux"].dtype == np.float32 and f["flux"].shape[1:] == (35, ENERGIES.size)
        assert f["chain"].dtype == np.int32 and f["step"].dtype == np.int64 and f["accepted"].dtype == bool
        assert [s.decode() for s in f["species"][()]] == ELEMENTS + ISOTOPES
        assert f["flux"].chunks[1:] == (35, ENERGIES.size) and f["flux"].maxshape[0] is None
        for key in ("grid", "cross_sections", "solver_mode", "backend", "crnet_version", "seed", "design",
                    "dataset", "temperature", "config", *STATE_SLOTS):
            assert key in f.attrs, key
        assert json.loads(f.attrs["grid"]) == {"dr_kpc": 1.0}


def test_species_order_matches_the_real_model():
    from crnet.scan.models import GridConfig, PropagateModel

    model = PropagateModel(GridConfig(dr_kpc=4.0, dz_kpc=1.3, ekin_factor=3.0), backend="numpy")
    assert model.species == ELEMENTS + ISOTOPES


def test_round_trip_checkpoints_and_growth(tmp_path):
    path = tmp_path / "s.h5"
    _make(path, n_batches=2, size=4, capacity=3)  # grows past the initial capacity
    with MockStore.open(path, "r+") as st:
        assert st.n_complete == 8 and st.capacity >= 8
        assert st.checkpoint() == {"batch": 1}
        st.append_batch(_batch(8, 4), {"batch": 2})
    data = read_store(path)
    assert len(data) == 12
    np.testing.assert_array_equal(data.step, np.arange(12))
    np.testing.assert_allclose(data.flux, _batch(0, 4).flux.astype(np.float32).tolist() + _batch(4, 4).flux.astype(
        np.float32).tolist() + _batch(8, 4).flux.astype(np.float32).tolist())
    with MockStore.open(path, "r") as st:
        assert st.checkpoint() == {"batch": 2}
        with pytest.raises(StoreError, match="read-only"):
            st.append_batch(_batch(0, 1))


def test_torn_checkpoint_slots(tmp_path):
    path = tmp_path / "s.h5"
    _make(path)
    with MockStore.open(path, "r+") as st:
        other = 1 - st._slot
        current = st._slot
    with h5py.File(path, "r+") as f:  # a torn write of the *next* slot: the committed one still wins
        raw = bytearray(f.attrs[STATE_SLOTS[other]])
        raw[10:20] = b"#" * 10
        f.attrs.modify(STATE_SLOTS[other], np.bytes_(bytes(raw)))
    with MockStore.open(path, "r") as st:
        assert st.checkpoint() == {"batch": 2}
    with h5py.File(path, "r+") as f:  # the committed slot damaged: resume must refuse, readers still work
        f.attrs.modify(STATE_SLOTS[current], np.bytes_(encode_state(999, {"x": 1})))
    with MockStore.open(path, "r") as st, pytest.raises(StoreError, match="no checkpoint matches"):
        st.checkpoint()
    assert len(read_store(path, load_flux=False)) == 15
    assert store_info(path)["checkpoint"].startswith("damaged")


def test_refuses_foreign_corrupt_and_missing_files(tmp_path):
    with pytest.raises(StoreError, match="no such store"):
        read_store(tmp_path / "missing.h5")
    text = tmp_path / "text.h5"
    text.write_text("not hdf5")
    with pytest.raises(StoreError, match="not a readable HDF5"):
        read_store(text)
    foreign = tmp_path / "foreign.h5"
    with h5py.File(foreign, "w") as f:
        f["x"] = 1
    with pytest.raises(StoreError, match="not a crnet mock store"):
        read_store(foreign)
    good = tmp_path / "good.h5"
    _make(good)
    truncated = tmp_path / "truncated.h5"
    truncated.write_bytes(good.read_bytes()[:2000])
    with pytest.raises(StoreError, match=str(truncated.name)):
        read_store(truncated)
    with h5py.File(good, "r+") as f:
        f.attrs["format_version"] = 99
    with pytest.raises(StoreError, match="format_version 99"):
        read_store(good)
    _make(tmp_path / "nodata.h5")
    with h5py.File(tmp_path / "nodata.h5", "r+") as f:
        del f["residual"]
    with pytest.raises(StoreError, match="'residual' is missing"):
        MockStore.open(tmp_path / "nodata.h5")
    with pytest.raises(StoreError, match="file exists"):
        MockStore.create(good, _meta())


def test_batch_validation(tmp_path):
    with pytest.raises(ValueError, match="params"):
        RecordBatch(np.zeros((2, 9)), np.zeros((2, 4)), np.zeros((2, 1, 1)), np.zeros(2), np.zeros(2), np.zeros(2),
                    np.zeros(2, bool), np.zeros(2, bool), np.zeros(2))
    with MockStore.create(tmp_path / "s.h5", _meta()) as st, pytest.raises(ValueError, match="species"):
        b = _batch(0, 2)
        b.flux = b.flux[:, :3]
        st.append_batch(b)


def test_selections(tmp_path):
    path = tmp_path / "s.h5"
    _make(path, n_batches=4, size=10)  # chi2 = 100 .. 139
    assert len(read_store(path, Selection(delta_chi2=5.0), load_flux=False)) == 6
    from crnet.likelihood import delta_chi2_threshold

    d = read_store(path, Selection(n_sigma=1.0))  # 14-dof 1-sigma threshold
    n_in = int(np.floor(delta_chi2_threshold(1.0))) + 1
    assert np.all(d.delta_chi2 <= delta_chi2_threshold(1.0)) and len(d) == n_in and d.flux.shape[0] == n_in
    d = read_store(path, Selection(rows=(5, 25), converged_only=True, accepted_only=True), load_flux=False)
    assert np.all((d.index >= 5) & (d.index < 25)) and np.all(d.accepted) and np.all(d.converged)
    d = read_store(path, Selection(param_ranges={"delta": (0.2, 0.5)}))
    assert np.all(d.params[:, 1] <= 0.5) and len(d) > 0
    assert len(read_store(path, Selection(chains=[3]), load_flux=False)) == 0
    with pytest.raises(ValueError, match="unknown parameters"):
        read_store(path, Selection(param_ranges={"D0": (1, 2)}))
    with pytest.raises(ValueError, match="not both"):
        read_store(path, Selection(delta_chi2=1.0, n_sigma=2.0))


def test_recomputed_chi2_for_another_dataset(tmp_path):
    """chi2 recomputed from the stored fluxes: consistent with the likelihood, used by the selection."""
    from crnet.likelihood import chi2
    from crnet.store_read import spectra_from_flux

    path = tmp_path / "s.h5"
    params = np.tile([4.0, 0.45, -1.0, 20.0, 4.0, 1.0, 2.3, 2.4, 1e3, 3e5], (6, 1))
    params[:, 1] = np.linspace(0.2, 0.9, 6)
    flux = _fluxes(params)
    res = chi2(spectra_from_flux(flux.astype(np.float32), ELEMENTS + ISOTOPES, ENERGIES), "paper")
    norms = np.column_stack([res.q_c, res.ratios["xi_Li"], res.ratios["xi_Be"], res.ratios["qO_over_qC"]])
    with MockStore.create(path, _meta(design="uniform")) as st:
        st.append_batch(RecordBatch(params, norms, flux, res.chi2_tot, np.full(6, -1), np.arange(6), np.ones(6, bool),
                                    np.ones(6, bool), np.zeros(6)))
    with MockStore.open(path) as st:
        again, norms_again = recompute_chi2(st, "paper")
    np.testing.assert_allclose(again, res.chi2_tot, rtol=1e-9)
    np.testing.assert_allclose(norms_again, norms, rtol=1e-9)
    other = read_store(path, Selection(dataset="ams02-2021", delta_chi2=1e300), load_flux=False)
    assert other.dataset == "ams02-2021" and len(other) == 6
    assert not np.allclose(other.chi2, res.chi2_tot) and other.delta_chi2.min() == 0.0
    best_only = read_store(path, Selection(dataset="ams02-2021", delta_chi2=0.0), load_flux=False)
    assert len(best_only) == 1 and best_only.index[0] == int(np.argmin(other.chi2))


def test_merge_keeps_or_shifts_chains_and_refuses_mismatch(tmp_path):
    a, b, c, bad = (tmp_path / n for n in ("a.h5", "b.h5", "c.h5", "bad.h5"))
    _make(a, chain=0)
    _make(b, chain=1)
    _make(c, chain=0)
    merged = merge_stores([a, b], tmp_path / "m.h5")
    d = read_store(merged)
    assert len(d) == 30 and sorted(set(d.chain.tolist())) == [0, 1]
    assert d.attrs["merged_from"][1]["records"] == 15
    with MockStore.open(merged) as st:
        assert st.checkpoint() is None and st.capacity == 30
    d2 = read_store(merge_stores([a, c], tmp_path / "m2.h5"))
    assert sorted(set(d2.chain.tolist())) == [0, 1]  # overlapping ids shifted
    _make(bad, grid={"dr_kpc": 2.0})
    with pytest.raises(StoreError, match=r"bad.h5: attribute 'grid.dr_kpc' = 2.0 differs from .*a.h5 \(1.0\)"):
        merge_stores([a, bad], tmp_path / "m3.h5")
    with pytest.raises(StoreError, match="exists"):
        merge_stores([a, b], merged)
    info = store_info(merged)
    assert info["n_complete"] == 30 and info["n_chains"] == 2 and info["chi2_min"] == 100.0
