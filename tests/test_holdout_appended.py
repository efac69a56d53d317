"""The test hold-out covers the scan's records only (review by helper-86, session 21): the feedback loop's
re-simulations appended to the store are never test centres, but the hash dropped ~holdout_fraction of them from
every retraining (and from Machine B's centres); and 'envelope' noise of test pseudo-data was computed on the test
centres alone, a narrower envelope than the training pseudo-data's."""

from __future__ import annotations

import numpy as np
from helpers_store import write_synthetic_store

import crnet.pseudodata as pseudodata_module
from crnet.features import TargetTransform
from crnet.machines.data import StoreReader, record_filter
from crnet.pseudodata import PseudoDataConfig, holdout_mask, make_pseudodata
from crnet.store_read import merge_stores

FRACTION = 0.2


def test_holdout_mask_leaves_the_appended_records_alone() -> None:
    idx = np.arange(10_000)
    full = holdout_mask(idx, FRACTION)
    limited = holdout_mask(idx, FRACTION, holdout_records=6000)
    assert 0.19 < full[6000:].mean() < 0.21  # what the hash alone took from the appended block
    np.testing.assert_array_equal(limited[:6000], full[:6000])
    assert not limited[6000:].any()


def test_a_merged_training_store_holds_out_only_the_scan_records(tmp_path) -> None:
    scan, resim, merged = tmp_path / "scan.h5", tmp_path / "resim.h5", tmp_path / "merged.h5"
    write_synthetic_store(scan, 300, seed=1)
    write_synthetic_store(resim, 200, seed=2)
    merge_stores([scan, resim], merged, holdout_records=300)
    with StoreReader(merged) as reader:
        mask, dropped = record_filter(reader, TargetTransform(), None, FRACTION)
    held = holdout_mask(np.arange(300), FRACTION)
    assert dropped["held_out_for_tests"] == int(held.sum()) > 0
    assert mask[300:].all()  # every appended record trains
    np.testing.assert_array_equal(mask[:300], ~held)
    # a merged store without the attribute (generic shards of one scan): the hash covers every record
    merge_stores([scan, resim], tmp_path / "shards.h5")
    with StoreReader(tmp_path / "shards.h5") as reader:
        assert not record_filter(reader, TargetTransform(), None, FRACTION)[0][300:].all()


def test_envelope_noise_uses_the_whole_selection_for_train_and_test_centres(tmp_path, monkeypatch) -> None:
    store = tmp_path / "scan.h5"
    write_synthetic_store(store, 400, seed=3)
    seen: list[int] = []
    real = pseudodata_module._selection_envelope

    def spy(reader, selected, *args):
        seen.append(int(np.asarray(selected).size))
        return real(reader, selected, *args)

    monkeypatch.setattr(pseudodata_module, "_selection_envelope", spy)
    sizes = {}
    for centres in ("all", "train", "test"):
        cfg = PseudoDataConfig(n_pseudo=20, noise="envelope", centres=centres, holdout_fraction=FRACTION, seed=1)
        make_pseudodata(store, tmp_path / f"{centres}.h5", cfg)
        with StoreReader(tmp_path / f"{centres}.h5") as reader:
            sizes[centres] = reader.info.attrs["n_selected"]
    assert seen == [sizes["all"]] * 3  # the same envelope, of every selected record
    assert sizes["train"] + sizes["test"] == sizes["all"] and sizes["test"] > 0
