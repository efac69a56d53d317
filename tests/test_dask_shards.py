"""Dask LocalCluster with 2 workers: shards written in parallel merge into one valid store."""

from __future__ import annotations

import numpy as np
import pytest

pytest.importorskip("dask.distributed")

from crnet.scan.analytic import AnalyticSimulator  # noqa: E402
from crnet.scan.distributed import run_distributed, shard_configs, shard_paths  # noqa: E402
from crnet.scan.runner import ScanConfig, run_scan  # noqa: E402
from crnet.store import MockStore  # noqa: E402
from crnet.store_read import read_store, store_info  # noqa: E402


def _analytic_model(cfg: ScanConfig):
    return AnalyticSimulator().model()


def test_shard_configs_split_chains_and_points():
    cfgs = shard_configs(ScanConfig(n_chains=5, n_steps=2), 2)
    assert [c.n_chains for c in cfgs] == [3, 2] and [c.chain_offset for c in cfgs] == [0, 3]
    assert len({c.rng_seed for c in cfgs}) == 2
    designs = shard_configs(ScanConfig(design="lhs", n_points=7), 3)
    assert [c.planned_records() for c in designs] == [3, 2, 2]
    with pytest.raises(ValueError, match="every shard"):
        shard_configs(ScanConfig(n_chains=1), 2)


def test_two_workers_mcmc_and_design_shards_merge(tmp_path):
    out = tmp_path / "mocks.h5"
    cfg = ScanConfig(design="mcmc", n_chains=6, n_steps=15, seed=3, temperature=1.0)
    summary = run_distributed(out, cfg, n_workers=2, progress=False, model_factory=_analytic_model,
                              processes=False)
    assert len(summary.shards) == 2
    for p in shard_paths(out, 2):
        with MockStore.open(p) as st:
            assert st.n_complete > 0 and st.checkpoint() is not None  # each shard is a resumable store
    data = read_store(out)
    assert len(data) == summary.records == sum(s["records"] for s in summary.shard_summaries)
    assert sorted(set(data.chain.tolist())) == list(range(6))  # global chain ids, no clash
    pairs = set(zip(data.chain.tolist(), data.step.tolist(), strict=True))
    assert len(pairs) == len(data)
    assert np.all(data.step[data.accepted & (data.step == 0)] == 0)
    info = store_info(out)
    assert info["n_chains"] == 6 and len(info["merged_from"]) == 2
    # resuming the finished distributed run is a no-op that re-merges the same records
    again = run_distributed(out, cfg, n_workers=2, progress=False, model_factory=_analytic_model, resume=True,
                            processes=False)
    assert again.records == summary.records

    # a design split over two shards merges into exactly the single-process design
    dout = tmp_path / "design.h5"
    dcfg = ScanConfig(design="sobol", n_points=100, batch_size=16, seed=8)
    run_distributed(dout, dcfg, n_workers=2, progress=False, model_factory=_analytic_model, processes=False)
    single = tmp_path / "single.h5"
    run_scan(single, dcfg, model=_analytic_model(dcfg), progress=False)
    merged, ref = read_store(dout), read_store(single)
    np.testing.assert_array_equal(merged.step, np.arange(100))
    np.testing.assert_array_equal(merged.params, ref.params)
    np.testing.assert_array_equal(merged.flux, ref.flux)


def test_existing_scheduler_address(tmp_path):
    """--scheduler ADDRESS: shards run on a cluster this client did not start."""
    from dask.distributed import LocalCluster

    with LocalCluster(n_workers=2, threads_per_worker=1, processes=False, dashboard_address=None) as cluster:
        out = tmp_path / "remote.h5"
        cfg = ScanConfig(design="uniform", n_points=40, batch_size=8, seed=1)
        summary = run_distributed(out, cfg, scheduler=cluster.scheduler_address, progress=False,
                                  model_factory=_analytic_model)
    assert len(summary.shards) == 2 and summary.records == 40
    np.testing.assert_array_equal(read_store(out).step, np.arange(40))
