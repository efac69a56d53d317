"""A capacity growth killed midway (MockStore.reserve resizes the nine record datasets in many writes) leaves them
at different lengths. The store stays readable, its committed records intact, and the next growth completes it
(review by helper-85, session 21: every open refused such a file, 'dataset chain has shape (16,), expected (52,)',
so a kill in the first writes of a resume with more MCMC steps lost the whole scan)."""

from __future__ import annotations

import h5py
import numpy as np
import pytest
from helpers_store import record_batch, store_meta

from crnet.store import RECORD_DTYPES, MockStore, StoreError
from crnet.store_read import read_store

HALF_GROWN = ("params", "chi2", "flux")
"""The datasets a killed growth had already resized (the others kept the old length)."""


def _half_grown(path, old: int = 6, new: int = 40) -> None:
    with MockStore.create(path, store_meta(), capacity=old) as st:
        st.append_batch(record_batch(0, 3, 0), {"batch": 0})
    with h5py.File(path, "r+") as f:
        for name in HALF_GROWN:
            f[name].resize((new,) + f[name].shape[1:])


def test_a_half_grown_store_opens_with_its_records_intact(tmp_path) -> None:
    path = tmp_path / "s.h5"
    _half_grown(path)
    with MockStore.open(path, "r") as st:
        assert (st.n_complete, st.capacity) == (3, 6)  # the shortest dataset
        np.testing.assert_array_equal(st.read("params"), record_batch(0, 3, 0).params)
    assert read_store(path).chi2.shape == (3,)


def test_the_next_growth_completes_a_half_grown_store(tmp_path) -> None:
    path = tmp_path / "s.h5"
    _half_grown(path)
    with MockStore.open(path, "r+") as st:
        st.reserve(30)  # below the grown datasets' 40: those are kept, the others grow to 30
        assert st.capacity == 30
        for b in range(1, 8):
            st.append_batch(record_batch(3 * b, 3, 0), {"batch": b})  # 24 records: within the capacity
    with h5py.File(path, "r") as f:
        lengths = {name: f[name].shape[0] for name in RECORD_DTYPES}
    assert lengths == {name: 40 if name in HALF_GROWN else 30 for name in RECORD_DTYPES}
    with MockStore.open(path, "r") as st:
        assert (st.n_complete, st.capacity) == (24, 30)
        np.testing.assert_array_equal(st.read("step"), np.arange(24))


def test_a_dataset_of_another_record_shape_is_still_refused(tmp_path) -> None:
    path = tmp_path / "s.h5"
    _half_grown(path)
    with h5py.File(path, "r+") as f:
        del f["norms"]
        f.create_dataset("norms", shape=(6, 3), maxshape=(None, 3), dtype=RECORD_DTYPES["norms"])
    with pytest.raises(StoreError, match=r"dataset 'norms' has shape \(6, 3\), expected \(records,\) \+ \(4,\)"):
        MockStore.open(path, "r")
