"""Scan driver and store fixes after the review by helper-115 (session 23), on the analytic stand-in.

One writer per store (a second --overwrite or resume refused while a scan runs, also with HDF5's lock off),
--resume --workers on an unsharded store refused, stale shards of another count, merge_stores keeping the inputs'
holdout limit and copying only the records it counted, store_info's acceptance of merged MCMC stores, the resume
check against the steps run, bounded reads of scattered rows, and the adaptive proposal after its switch to the
pooled covariance.
"""

from __future__ import annotations

import dataclasses
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest

from crnet.scan.analytic import AnalyticSimulator
from crnet.scan.runner import ScanConfig, run_scan
from crnet.scan.sampler import AdaptiveMetropolis, SamplerConfig
from crnet.store import MockStore, StoreError, store_holdout_records
from crnet.store_read import Selection, merge_stores, read_store, recompute_chi2, store_info

SIM = AnalyticSimulator()
BUSY = "another scan is writing this store"


def _model(cfg: ScanConfig | None = None):
    return SIM.model()


def _design(path: Path, n: int, seed: int, design: str = "sobol", batch: int = 8) -> Path:
    run_scan(path, ScanConfig(design=design, n_points=n, batch_size=batch, seed=seed, backend="numpy"),
             model=_model(), progress=False)
    return path


# ---------------------------------------------------------------------------------------------- 1: one writer
def test_second_scan_refused_while_a_scan_writes_the_store(tmp_path):
    out = tmp_path / "s.h5"
    cfg = ScanConfig(design="sobol", n_points=12, batch_size=2, seed=1, backend="numpy")
    other = dataclasses.replace(cfg, seed=2)
    errors: list[str] = []

    def second_writers(batch: int, n: int) -> None:
        if batch == 2:  # the first scan is running and holds the store
            for kwargs in ({"overwrite": True}, {"resume": True}):
                with pytest.raises(StoreError) as err:
                    run_scan(out, other if "overwrite" in kwargs else cfg, model=_model(), progress=False, **kwargs)
                errors.append(str(err.value))

    s = run_scan(out, cfg, model=_model(), progress=False, on_batch=second_writers)
    assert len(errors) == 2 and all(e.startswith(f"{out}: {BUSY}") and f"pid {os.getpid()}" in e for e in errors)
    data = read_store(out, load_flux=False)  # the first scan's store, whole
    assert s.records == len(data) == 12 and data.attrs["config"]["seed"] == 1
    again = run_scan(out, cfg, model=_model(), progress=False, resume=True)  # the lock went with the run
    assert again.new_records == 0


CHILD = textwrap.dedent("""
    import sys
    from crnet.scan.analytic import AnalyticSimulator
    from crnet.scan.runner import ScanConfig, run_scan
    cfg = ScanConfig(design="mcmc", n_chains=4, n_steps=8, seed=1, backend="numpy")
    try:
        s = run_scan(sys.argv[1], cfg, model=AnalyticSimulator().model(), progress=False, resume=True)
        print("RAN", s.new_records)
    except ValueError as exc:
        print("REFUSED", exc)
""")


def test_resume_refused_while_running_even_without_hdf5_file_locking(tmp_path):
    """HDF5_USE_FILE_LOCKING=FALSE (usual on cluster file systems) let a second resume write the same store."""
    out = tmp_path / "m.h5"
    cfg = ScanConfig(design="mcmc", n_chains=4, n_steps=8, seed=1, backend="numpy")
    replies: list[str] = []
    env = {**os.environ, "HDF5_USE_FILE_LOCKING": "FALSE"}

    def resume_beside(batch: int, n: int) -> None:
        if batch == 2:
            res = subprocess.run([sys.executable, "-c", CHILD, str(out)], capture_output=True, text=True, env=env,
                                 timeout=60)
            replies.append(res.stdout.strip() or res.stderr[-500:])

    run_scan(out, cfg, model=_model(), progress=False, on_batch=resume_beside)
    assert replies[0].startswith(f"REFUSED {out}: {BUSY}"), replies
    with MockStore.open(out) as st:
        pairs = list(zip(st.read("chain").tolist(), st.read("step").tolist(), strict=True))
    assert len(pairs) == len(set(pairs))  # no (chain, step) written twice


def test_distributed_run_holds_the_lock_of_out(tmp_path):
    pytest.importorskip("dask.distributed")
    from crnet.run_lock import file_lock
    from crnet.scan.distributed import run_distributed

    out = tmp_path / "d.h5"
    cfg = ScanConfig(design="sobol", n_points=8, batch_size=4, seed=1, backend="numpy")
    with file_lock(out, "crnet scan"), pytest.raises(StoreError, match=f"^{out}: {BUSY}"):
        run_distributed(out, cfg, n_workers=1, progress=False, model_factory=_model, processes=False)
    assert not out.exists()


# ------------------------------------------------------------------------- 2, 4: distributed resume and shards
def test_resume_with_workers_refuses_a_store_written_without_workers(tmp_path):
    pytest.importorskip("dask.distributed")
    from crnet.scan.distributed import run_distributed

    out = tmp_path / "mocks.h5"
    cfg = ScanConfig(design="mcmc", n_chains=4, n_steps=6, seed=1, backend="numpy")

    class Kill(Exception):
        pass

    def kill(batch: int, n: int) -> None:
        if batch == 4:
            raise Kill

    with pytest.raises(Kill):
        run_scan(out, cfg, model=_model(), progress=False, on_batch=kill)
    before = read_store(out, load_flux=False)
    with pytest.raises(StoreError, match="written without --workers .*: resume it without --workers"):
        run_distributed(out, cfg, n_workers=2, progress=False, model_factory=_model, processes=False, resume=True)
    after = read_store(out, load_flux=False)
    assert len(after) == len(before) and np.array_equal(after.chi2, before.chi2) and "merged_from" not in after.attrs
    s = run_scan(out, cfg, model=_model(), progress=False, resume=True)  # the advice works
    assert s.resumed_from == len(before)


def test_overwrite_removes_stale_shards_of_another_count(tmp_path):
    pytest.importorskip("dask.distributed")
    from crnet.scan.distributed import existing_shard_counts, run_distributed, shard_paths

    out = tmp_path / "st.h5"
    cfg = ScanConfig(design="sobol", n_points=12, batch_size=3, seed=7, backend="numpy")
    kw = {"n_workers": 2, "progress": False, "model_factory": _model, "processes": False}
    run_distributed(out, cfg, n_shards=3, **kw)
    out.unlink()  # no out: the earlier run's shards alone must still be refused without overwrite
    with pytest.raises(StoreError, match=r"shard000-of-003\.h5: a shard of an earlier run .* with 3 shards; resume "
                                         r"that run \(n_shards=3, CLI --resume --shards 3\) or replace it"):
        run_distributed(out, cfg, n_shards=2, **kw)
    run_distributed(out, cfg, n_shards=2, overwrite=True, **kw)
    assert existing_shard_counts(out) == {2} and not any(p.exists() for p in shard_paths(out, 3))
    again = run_distributed(out, cfg, n_shards=2, resume=True, **kw)  # was refused: 'has shards of [2, 3]'
    assert again.records == 12 and [x["new_records"] for x in again.shard_summaries] == [0, 0]
    # a merged run whose shard went missing: resuming would restart it and the merge would lose its records
    shard_paths(out, 2)[1].unlink()
    with pytest.raises(StoreError, match=r"shard files .* are missing"):
        run_distributed(out, cfg, n_shards=2, resume=True, **kw)
    assert read_store(out, load_flux=False).index.size == 12


# ------------------------------------------------------------------------------------- 3, 7: merge_stores
def test_merge_keeps_the_inputs_holdout_limit(tmp_path):
    scan = _design(tmp_path / "scan.h5", 40, 1)
    resim = _design(tmp_path / "resim.h5", 40, 2, "uniform")
    more = _design(tmp_path / "more.h5", 10, 3, "lhs", 5)
    train = merge_stores([scan, resim], tmp_path / "train.h5", holdout_records=40)  # the feedback loop's store
    for inputs, limit in (([train], 40), ([train, more], 40), ([more, train], 50), ([scan, more], None)):
        out = merge_stores(inputs, tmp_path / "m.h5", overwrite=True)
        with MockStore.open(out) as st:
            assert store_holdout_records(st.attrs()) == limit, [p.name for p in inputs]
    out = merge_stores([more, train], tmp_path / "m.h5", overwrite=True, holdout_records=7)  # the caller's wins
    with MockStore.open(out) as st:
        assert store_holdout_records(st.attrs()) == 7


def test_merge_copies_only_the_records_it_counted(tmp_path, monkeypatch):
    """A scan appending to an input between the count and the copy put records in that merged_from did not list."""
    import crnet.store_read as sr

    a, b = _design(tmp_path / "a.h5", 16, 1), _design(tmp_path / "b.h5", 8, 2)
    original = sr.merge_differences
    grown: list[int] = []

    def grow_a_then_compare(ours, theirs):
        if not grown:  # after the inputs were counted, before they are copied: a running scan commits a batch
            with MockStore.open(a, "r+") as st:
                batch = next(sr.iter_batches(st, block=4))
                st.reserve(st.n_complete + 4)
                st.append_batch(batch, {"kind": "design", "cursor": st.n_complete + 4})
                grown.append(st.n_complete)
        return original(ours, theirs)

    monkeypatch.setattr(sr, "merge_differences", grow_a_then_compare)
    out = merge_stores([a, b], tmp_path / "m.h5")
    assert grown == [20]
    with MockStore.open(out) as st:
        merged = st.attrs()["merged_from"]
        assert [m["records"] for m in merged] == [16, 8] and st.n_complete == 24
        assert np.array_equal(st.read("params")[16:], read_store(b, load_flux=False).params)


# ------------------------------------------------------------------------------ 5: acceptance of a merge
def test_store_info_acceptance_of_a_merge_of_runs_of_different_lengths(tmp_path):
    sa = run_scan(tmp_path / "a.h5", ScanConfig(n_chains=8, n_steps=30, seed=1, backend="numpy"), model=_model(),
                  progress=False)
    sb = run_scan(tmp_path / "b.h5", ScanConfig(n_chains=4, n_steps=4, seed=2, backend="numpy"), model=_model(),
                  progress=False)
    merge_stores([tmp_path / "a.h5", tmp_path / "b.h5"], tmp_path / "m.h5")
    info = store_info(tmp_path / "m.h5")
    pooled = (sa.acceptance_rate * 8 * 30 + sb.acceptance_rate * 4 * 4) / (8 * 30 + 4 * 4)
    assert info["acceptance_rate"] == pytest.approx(pooled, rel=1e-12)


# --------------------------------------------------------------------- 6: resume below the steps already run
def test_resume_with_n_steps_below_the_steps_run_is_refused(tmp_path):
    """Proposals outside the box leave no record: the largest stored step (0 here) is not the steps run (10)."""
    cfg = ScanConfig(n_chains=2, n_steps=10, seed=1, backend="numpy", proposal_scale=3.0,
                     sampler=SamplerConfig(adapt_scale=False, adapt_covariance=False))
    path = tmp_path / "s.h5"
    run_scan(path, cfg, model=_model(), progress=False)
    assert read_store(path, load_flux=False).step.max() < 10
    with pytest.raises(StoreError, match=r"n_steps 5 is below the 10 steps already run; resume with n_steps "
                                         r"\(crnet scan --steps\) >= 10"):
        run_scan(path, dataclasses.replace(cfg, n_steps=5), model=_model(), progress=False, resume=True)
    assert run_scan(path, dataclasses.replace(cfg, n_steps=12), model=_model(), progress=False,
                    resume=True).resumed_from >= 2


# --------------------------------------------------------------------------- 8: bounded reads of rows
def test_scattered_rows_are_read_without_their_whole_span(tmp_path, monkeypatch):
    import crnet.store as store_module
    import crnet.store_read as store_read_module

    path = _design(tmp_path / "u.h5", 600, 1, "uniform", 200)
    chi2 = read_store(path, load_flux=False).chi2
    sel = Selection(delta_chi2=float(np.quantile(chi2, 0.02) - chi2.min()))
    original = store_module.MockStore.read
    largest = [0]

    def spy(self, name, rows=None):
        got = original(self, name, rows)
        if name == "flux":
            largest[0] = max(largest[0], got.shape[0])
        return got

    monkeypatch.setattr(store_module.MockStore, "read", spy)
    monkeypatch.setattr(store_read_module, "READ_GAP_BYTES", 0)  # gaps in records only: this store's are 384 B
    data = read_store(path, sel)
    assert 5 <= len(data) <= 30 and data.index[-1] - data.index[0] > 300
    # a read covers neighbours at most READ_GAP_RECORDS (16) apart, never the whole span between scattered rows
    assert largest[0] <= min(len(data) * 17, 100)
    with MockStore.open(path) as st:
        assert np.array_equal(data.flux, original(st, "flux", data.index))


def test_recompute_chi2_takes_rows_in_any_order(tmp_path, monkeypatch):
    import crnet.likelihood
    import crnet.store_read as sr

    class Result:
        def __init__(self, flux):
            self.chi2_tot = flux[:, 0, :].sum(axis=1).astype(np.float64)
            self.q_c = self.chi2_tot + 1
            self.ratios = {k: self.chi2_tot + i for i, k in enumerate(("xi_Li", "xi_Be", "qO_over_qC"), 2)}

    monkeypatch.setattr(sr, "spectra_from_flux", lambda flux, species, energy: flux)
    monkeypatch.setattr(crnet.likelihood, "chi2", lambda flux, dataset: Result(flux))
    path = _design(tmp_path / "u.h5", 40, 1, "uniform")
    rows = np.array([30, 2, 17, 2, 39, 0])
    with MockStore.open(path) as st:
        c, n = recompute_chi2(st, "paper", rows)
        expect = st.read("flux", rows)[:, 0, :].astype(np.float64).sum(axis=1)
    assert np.allclose(c, expect) and np.allclose(n[:, 0], expect + 1) and np.allclose(n[:, 3], expect + 4)


# ---------------------------------------------------------------- 9: the proposal after the covariance switch
def _gaussian_box_run(n_steps: int, seed: int = 1):
    """8 chains, uniform starts in [0, 1]^10, Gaussian target N(0.4, 0.05^2 I) * T=10 as in the analytic scan,
    initial proposal 0.02 of the box (the scan's default)."""
    d, k, width = 10, 8, 0.05 * np.sqrt(10.0)
    rng = np.random.default_rng(seed)
    x0 = rng.random((k, d))

    def log_p(x):
        return -0.5 * (((x - 0.4) / width) ** 2).sum(axis=1)

    sampler = AdaptiveMetropolis(x0, log_p(x0), np.full(d, 0.02), SamplerConfig(), rng, np.zeros(d), np.ones(d))
    inside: list[float] = []
    switch = None
    for t in range(n_steps):
        x, ok = sampler.propose()
        lp = np.full(k, -np.inf)
        lp[ok] = log_p(x[ok])
        sampler.update(x, lp)
        inside.append(float(ok.mean()))
        if switch is None and sampler.empirical_cov() is not None:
            switch = t + 1
    return sampler, np.array(inside), switch


def test_proposal_stays_in_the_box_after_the_switch_to_the_pooled_covariance():
    """The scale tuned for the small initial proposal (log lambda ~ 1.7) was applied to the pooled covariance: every
    proposal of every chain fell outside the box from then on and the chains stalled."""
    sampler, inside, switch = _gaussian_box_run(80)
    assert switch is not None and switch < 60
    after = inside[switch:]
    assert after.mean() > 0.5 and np.all(after > 0), after
    assert abs(sampler.log_scale) < 1.0
    std = np.sqrt(np.diag(sampler.proposal_cov()))
    assert np.all(std < 0.5)  # box widths: 2.38 / sqrt(10) x the target's 0.16 is ~ 0.12


def test_out_of_box_proposals_count_as_rejections_in_the_scale_update():
    d = 10
    cfg = SamplerConfig(adapt_covariance=False)
    s = AdaptiveMetropolis(np.full((4, d), 0.5), np.zeros(4), np.full(d, 50.0), cfg, 0, np.zeros(d), np.ones(d))
    x, ok = s.propose()
    assert not ok.any()
    s.update(x, np.full(4, -np.inf))
    assert s.log_scale == pytest.approx(-cfg.scale_gain * cfg.target_acceptance)


def test_a_lock_file_this_user_cannot_write_still_locks(tmp_path, monkeypatch):
    """Another user's <out>.lock in a shared directory (open for writing refused): the run used to warn and go on
    unlocked; flock needs no write access, so a held lock is still seen (re-read by helper-121, session 23)."""
    import errno

    import crnet.run_lock as run_lock_module

    target = tmp_path / "mocks.h5"
    holder = subprocess.Popen([sys.executable, "-c", textwrap.dedent(f"""
        import sys, time
        from crnet.run_lock import file_lock
        with file_lock({str(target)!r}, "holder"):
            print("held", flush=True)
            time.sleep(60)
        """)], stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "held"
        real_open = os.open

        def no_write(path, flags, *args):
            if flags & os.O_RDWR:
                raise PermissionError(errno.EACCES, "Permission denied")
            return real_open(path, flags, *args)

        monkeypatch.setattr(run_lock_module.os, "open", no_write)
        with pytest.raises(ValueError, match=r"mocks\.h5: in use by another run.*\(pid \d+, started"):
            with run_lock_module.file_lock(target, "second"):
                pass
    finally:
        holder.kill()
        holder.wait()


def test_scattered_rows_of_small_records_are_read_in_few_reads(tmp_path, monkeypatch):
    """The read gap is in bytes (READ_GAP_BYTES): every 20th record of a 384-byte store was read one by one, 40-70x
    slower (re-read by helper-121 / helper-123, session 23)."""
    import crnet.store as store_module
    from crnet.store_read import read_flux_rows

    path = _design(tmp_path / "u.h5", 600, 1, "uniform", 200)
    reads = [0]
    original = store_module.MockStore.read

    def count(self, name, rows=None):
        reads[0] += name == "flux"
        return original(self, name, rows)

    with MockStore.open(path) as st:
        index = np.arange(0, st.n_complete, 20)
        monkeypatch.setattr(store_module.MockStore, "read", count)
        got = read_flux_rows(st, index)
        monkeypatch.undo()
        assert np.array_equal(got, original(st, "flux", index))
    assert reads[0] == 1  # 30 rows 20 records apart: one read of the span
