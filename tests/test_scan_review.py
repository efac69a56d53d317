"""Scan and store fixes of the session-14 review: row order of reads, merged-run chain weights, starting points,
distributed resume with another shard count."""

from __future__ import annotations

import numpy as np
import pytest
from helpers_store import write_synthetic_store

from crnet.evaluate.mocks import chain_weights, load_mocks
from crnet.scan.analytic import AnalyticSimulator
from crnet.scan.designs import prior_box, to_log
from crnet.scan.runner import ScanConfig, _initial_points, run_scan
from crnet.store import MockStore, StoreError
from crnet.store_read import merge_stores, record_steps_done

START = [5.0, 0.45, -1.0, 25.0, 8.0, 0.8, 2.4, 2.2, 1.4e3, 2.5e5]


def test_store_read_returns_rows_in_the_requested_order(tmp_path):
    path = tmp_path / "s.h5"
    write_synthetic_store(path, 6, seed=1)
    with MockStore.open(path) as st:
        every = st.read("chi2")
        np.testing.assert_array_equal(st.read("chi2", np.array([3, 0, 1])), every[[3, 0, 1]])
        np.testing.assert_array_equal(st.read("chi2", np.array([2, 2, 5])), every[[2, 2, 5]])
        assert st.read("params", np.array([4, 1])).shape == (2, 10)


def _mcmc(path, n_steps: int, seed: int, temperature: float = 1.0):
    cfg = ScanConfig(design="mcmc", n_chains=3, n_steps=n_steps, seed=seed, temperature=temperature)
    run_scan(path, cfg, model=AnalyticSimulator().model(), progress=False)


def test_merged_runs_of_different_lengths_weigh_each_chain_to_its_own_run(tmp_path):
    short, long_, hot = tmp_path / "short.h5", tmp_path / "long.h5", tmp_path / "hot.h5"
    _mcmc(short, 4, seed=1)
    _mcmc(long_, 12, seed=2)
    merged = merge_stores([short, long_], tmp_path / "m.h5")
    with MockStore.open(merged) as st:
        chain, ok = st.read("chain"), st.read("converged")
        done = record_steps_done(st)
    assert done is not None and set(done[chain < 3].tolist()) == {4} and set(done[chain >= 3].tolist()) == {12}
    with MockStore.open(merged) as st:
        w = chain_weights(chain, st.read("step"), st.read("accepted"), done)
    # every chain holds one state per step 0 .. n_steps of its own run (before: 13 for the short run's chains too)
    assert [w[chain == c].sum() for c in range(6)] == [5.0] * 3 + [13.0] * 3
    assert load_mocks([str(merged)]).weights.sum() == pytest.approx(w[ok].sum())
    _mcmc(hot, 4, seed=3, temperature=10.0)
    with pytest.raises(StoreError, match="different temperatures"):
        merge_stores([short, hot], tmp_path / "m2.h5")


def test_starting_points_one_chain_at_the_fit_per_run_and_none_on_the_box_faces():
    lo, hi = prior_box()
    centre = to_log(np.asarray(START)[None])[0]
    cov = np.diag((0.05 * (hi - lo)) ** 2)
    rng = np.random.default_rng(0)
    first = _initial_points(ScanConfig(n_chains=4, start=START, start_cov=cov.tolist()), rng)
    other = _initial_points(ScanConfig(n_chains=4, start=START, start_cov=cov.tolist(), chain_offset=4), rng)
    assert np.array_equal(first[0], centre) and not np.any(np.all(other == centre, axis=1))
    wide = _initial_points(ScanConfig(n_chains=200, start=START, start_spread=0.3), rng)
    assert np.all((wide > lo) & (wide < hi))  # truncated, not clipped onto the faces


def test_resuming_a_distributed_run_with_another_shard_count_is_refused(tmp_path):
    pytest.importorskip("dask.distributed")
    from crnet.scan.distributed import existing_shard_counts, run_distributed

    out = tmp_path / "mocks.h5"
    cfg = ScanConfig(design="uniform", n_points=16, batch_size=8, seed=1)
    run_distributed(out, cfg, n_workers=1, progress=False, processes=False,
                    model_factory=lambda c: AnalyticSimulator().model())
    assert existing_shard_counts(out) == {1}
    with pytest.raises(ValueError, match=r"shards of \[1\] .* makes 2; pass n_shards=1"):
        run_distributed(out, cfg, n_workers=1, n_shards=2, resume=True, progress=False, processes=False,
                        model_factory=lambda c: AnalyticSimulator().model())
