"""Crash safety: a scan killed with SIGKILL at random moments resumes without losing more than the batch
in flight, without duplicates, and ends identical to an uninterrupted run; plus the CLI end to end."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np
import pytest

from crnet.scan.analytic import AnalyticSimulator
from crnet.scan.runner import ScanConfig, run_scan
from crnet.store import MockStore, StoreError
from crnet.store_read import read_store

REPO = Path(__file__).resolve().parents[1]

KILLS = 3
"""SIGKILLs per run, each after a random number of committed batches and a random extra delay."""

PARAM_RTOL = 1e-9
"""Resumed chains restart from params stored in MV and converted back to log10: last-bit differences only."""

WORKER = textwrap.dedent("""
    import json, sys
    from crnet.scan.analytic import AnalyticSimulator
    from crnet.scan.runner import ScanConfig, run_scan
    cfg = ScanConfig.from_dict(json.loads(sys.argv[2]))
    model = AnalyticSimulator(delay_s=float(sys.argv[3])).model()
    def report(batch, n):
        print(n, flush=True)
    run_scan(sys.argv[1], cfg, model=model, resume=True, progress=False, on_batch=report)
    print("done", flush=True)
""")


def _run_with_kills(path: Path, cfg: ScanConfig, seed: int, delay_s: float = 0.004) -> list[tuple[int, int]]:
    """Start/kill/resume the scan; returns (last reported n_complete, n_complete on disk) per kill."""
    rng = np.random.default_rng(seed)
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    out = []
    for _ in range(KILLS):
        proc = subprocess.Popen([sys.executable, "-c", WORKER, str(path), json.dumps(cfg.to_dict()), str(delay_s)],
                                stdout=subprocess.PIPE, text=True, env=env)
        wait_batches = int(rng.integers(3, 15))
        reported = -1
        for _ in range(wait_batches):
            line = proc.stdout.readline()
            if not line or line.startswith("done"):
                break
            reported = int(line)
        if reported > 0:  # a reader may follow the running scan: it sees whole batches only
            live = read_store(path, load_flux=False)
            assert len(live) >= reported and np.all(np.isfinite(live.chi2))
        time.sleep(float(rng.uniform(0.0, 0.02)))
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        for line in proc.stdout.read().split():  # what it printed before dying: the last committed count
            if line != "done":
                reported = int(line)
        proc.stdout.close()
        with MockStore.open(path, "r") as st:  # opens cleanly after every kill
            on_disk = st.n_complete
            st.checkpoint()  # the committed checkpoint is intact
        out.append((reported, on_disk))
    proc = subprocess.run([sys.executable, "-c", WORKER, str(path), json.dumps(cfg.to_dict()), "0"],
                          capture_output=True, text=True, env=env, timeout=300)
    assert proc.returncode == 0, proc.stderr
    return out


def _assert_same_records(a, b) -> None:
    assert len(a) == len(b)
    for name in ("chain", "step", "accepted", "converged"):
        np.testing.assert_array_equal(getattr(a, name), getattr(b, name), err_msg=name)
    np.testing.assert_allclose(a.params, b.params, rtol=PARAM_RTOL)
    np.testing.assert_allclose(a.chi2, b.chi2, rtol=PARAM_RTOL, atol=1e-12)
    np.testing.assert_allclose(a.flux, b.flux, rtol=1e-6)


def _check_kills(kills: list[tuple[int, int]], batch_records: int) -> None:
    for reported, on_disk in kills:
        # every commit the scan reported survives; beyond it at most one batch (committed, not yet
        # reported when the kill came); the batch being computed is the only work lost
        assert on_disk >= reported
        assert on_disk - reported <= batch_records


def test_sigkill_during_mcmc_resumes_exactly(tmp_path):
    cfg = ScanConfig(design="mcmc", n_chains=12, n_steps=60, seed=4, temperature=1.0, proposal_scale=0.03)
    ref = tmp_path / "ref.h5"
    run_scan(ref, cfg, model=AnalyticSimulator().model(), progress=False)
    path = tmp_path / "killed.h5"
    kills = _run_with_kills(path, cfg, seed=1)
    _check_kills(kills, cfg.n_chains)
    got, want = read_store(path), read_store(ref)
    pairs = set(zip(got.chain.tolist(), got.step.tolist(), strict=True))
    assert len(pairs) == len(got)  # no (chain, step) duplicated
    _assert_same_records(got, want)  # nothing lost, same chains as without the kills
    assert np.all(got.step[got.chain == 0] <= cfg.n_steps)


def test_sigkill_during_design_resumes_exactly(tmp_path):
    cfg = ScanConfig(design="sobol", n_points=600, batch_size=16, seed=2)
    path = tmp_path / "killed.h5"
    kills = _run_with_kills(path, cfg, seed=2)
    _check_kills(kills, cfg.batch_size)
    got = read_store(path)
    np.testing.assert_array_equal(got.step, np.arange(600))  # every point once, in order
    ref = tmp_path / "ref.h5"
    run_scan(ref, cfg, model=AnalyticSimulator().model(), progress=False)
    _assert_same_records(got, read_store(ref))


def test_resume_in_process_matches_and_extends(tmp_path):
    model = AnalyticSimulator().model()
    full = tmp_path / "full.h5"
    run_scan(full, ScanConfig(n_chains=6, n_steps=30, seed=9), model=model, progress=False)
    part = tmp_path / "part.h5"
    run_scan(part, ScanConfig(n_chains=6, n_steps=12, seed=9), model=model, progress=False)
    summary = run_scan(part, ScanConfig(n_chains=6, n_steps=30, seed=9), model=model, resume=True, progress=False)
    assert summary.resumed_from > 0 and summary.new_records > 0
    _assert_same_records(read_store(part), read_store(full))
    again = run_scan(part, ScanConfig(n_chains=6, n_steps=30, seed=9), model=model, resume=True, progress=False)
    assert again.new_records == 0  # a finished run resumes to a no-op


def test_resume_refuses_other_configs_and_files(tmp_path):
    model = AnalyticSimulator().model()
    path = tmp_path / "s.h5"
    run_scan(path, ScanConfig(n_chains=4, n_steps=3, seed=1), model=model, progress=False)
    with pytest.raises(StoreError, match="seed"):
        run_scan(path, ScanConfig(n_chains=4, n_steps=5, seed=2), model=model, resume=True, progress=False)
    with pytest.raises(StoreError, match="file exists"):
        run_scan(path, ScanConfig(n_chains=4, n_steps=3, seed=1), model=model, progress=False)
    with pytest.raises(StoreError, match="grid"):  # other half-lives are another model
        run_scan(path, ScanConfig(n_chains=4, n_steps=5, seed=1, grid={"half_lives": "measured"}), model=model,
                 resume=True, progress=False)
    foreign = tmp_path / "foreign.h5"
    foreign.write_bytes(b"\x89HDF\r\n\x1a\n" + b"\0" * 100)
    with pytest.raises(StoreError, match="foreign.h5"):
        run_scan(foreign, ScanConfig(n_chains=4, n_steps=3), model=model, resume=True, progress=False)


def test_store_written_before_a_grid_option_existed_resumes(tmp_path):
    """A store whose recorded grid lacks an option added later (half_lives) resumes under a config that leaves
    it unset (None = the default it was run with)."""
    import h5py

    model = AnalyticSimulator().model()
    path = tmp_path / "old.h5"
    run_scan(path, ScanConfig(n_chains=4, n_steps=3, seed=1), model=model, progress=False)
    with h5py.File(path, "r+") as f:
        config = json.loads(f.attrs["config"])
        assert config["grid"].pop("half_lives") is None
        f.attrs["config"] = json.dumps(config)
    summary = run_scan(path, ScanConfig(n_chains=4, n_steps=5, seed=1), model=model, resume=True, progress=False)
    assert summary.resumed_from > 0 and summary.new_records > 0


def test_cli_scan_store_info_and_merge(tmp_path):
    """`crnet scan` (real propagate + likelihood, tiny grid), `--resume`, `crnet store info` / `merge`."""
    from typer.testing import CliRunner

    from crnet.cli import app

    runner = CliRunner()
    out = tmp_path / "cli.h5"
    centre = "4,0.45,-1,20,4.55,1,2.3,2.4,1000,300000"  # small halo (between z nodes): small grid, fast
    args = ["scan", "--out", str(out), "--design", "gaussian", "--start", centre, "--spread", "0.01", "--points", "3",
            "--chains", "3", "--backend", "numpy", "--dr", "4", "--dz", "1.3", "--ekin-factor", "3", "--seed", "3",
            "--no-progress"]
    res = runner.invoke(app, args)
    assert res.exit_code == 0, res.output
    assert "(3 new records) in" in res.output  # a fresh scan did not say 'resumed from 0' (walk-through, session 19)
    data = read_store(out)
    assert len(data) == 3 and data.attrs["solver_mode"] == "fast" and data.attrs["dataset"] == "paper"
    assert np.all(np.isfinite(data.chi2)) and data.attrs["design"] == "gaussian"
    res = runner.invoke(app, args + ["--resume"])
    assert res.exit_code == 0 and "(0 new records, resumed after 3 records)" in res.output, res.output
    res = runner.invoke(app, args)
    assert res.exit_code != 0 and "--resume" in res.output
    res = runner.invoke(app, ["store", "info", str(out)])
    assert res.exit_code == 0 and "n_complete" in res.output and "3" in res.output, res.output
    res = runner.invoke(app, ["store", "info", str(out), "--json"])
    info = json.loads(res.output)
    assert info["n_complete"] == 3
    chi2 = np.sort(data.chi2)
    from crnet.likelihood import delta_chi2_threshold

    assert info["share_within_sigma_of_min"]["4sigma"] == pytest.approx(
        np.mean(chi2 < chi2[0] + delta_chi2_threshold(4)))
    assert info["share_within_sigma_of_min"]["3sigma"] >= 1 / 3  # the minimum itself counts
    res = runner.invoke(app, ["store", "merge", str(tmp_path / "m.h5"), str(out)])
    assert res.exit_code == 0, res.output
    assert len(read_store(tmp_path / "m.h5")) == 3
    bad = tmp_path / "bad.h5"
    bad.write_text("x")
    res = runner.invoke(app, ["store", "info", str(bad)])
    assert res.exit_code == 2 and "bad.h5" in res.output


def test_resume_with_fewer_steps_stops_early(tmp_path):
    """n_steps may be lowered on resume (a GPU session running out of time) but not below what is stored."""
    import dataclasses

    model = AnalyticSimulator().model()
    cfg = ScanConfig(n_chains=4, n_steps=6, seed=1)
    path = tmp_path / "s.h5"

    class Stop(Exception):
        pass

    def stop_after_step_3(batch: int, n: int) -> None:
        if batch == 4:  # batches: the start (step 0), then steps 1, 2, 3
            raise Stop

    with pytest.raises(Stop):
        run_scan(path, cfg, model=model, progress=False, on_batch=stop_after_step_3)
    with pytest.raises(StoreError, match="below the 3 steps already run"):
        run_scan(path, dataclasses.replace(cfg, n_steps=2), model=model, resume=True, progress=False)
    before = read_store(path, load_flux=False)
    s = run_scan(path, dataclasses.replace(cfg, n_steps=4), model=model, resume=True, progress=False)
    after = read_store(path, load_flux=False)
    assert before.step.max() == 3 and after.step.max() == 4  # one more lockstep step, then it stops
    assert s.resumed_from == len(before) and s.records == len(after) > len(before)


def test_weights_and_acceptance_count_out_of_box_proposals(tmp_path):
    """Chains near a box corner propose outside the prior box often; those proposals are rejected without a
    record. Every chain must still carry n_steps + 1 steps of weight (its state holds to the end of the run),
    and `store info`'s acceptance rate must divide by every proposal, as the sampler does."""
    from crnet.evaluate.mocks import load_mocks
    from crnet.store_read import store_info

    sim = AnalyticSimulator(centre=(0.01,) * 10, width=0.05)
    cfg = ScanConfig(n_chains=8, n_steps=40, seed=1, temperature=1.0, proposal_scale=0.05)
    path = tmp_path / "corner.h5"
    summary = run_scan(path, cfg, model=sim.model(), progress=False)
    with MockStore.open(path) as st:
        chain, step = st.read("chain"), st.read("step")
        assert len(chain) < 8 * 41  # out-of-box proposals left no record
        last = np.array([step[chain == c].max() for c in range(8)])
        assert st.checkpoint()["sampler"]["step"] == 40  # the later of two slots at the same n_complete
    assert last.min() < 40  # some chain's final proposals fell outside the box
    mocks = load_mocks([str(path)])
    per_chain = np.bincount(chain[mocks.first_rows], weights=mocks.weights, minlength=8)
    np.testing.assert_array_equal(per_chain, np.full(8, 41.0))
    info = store_info(path)
    assert info["acceptance_rate"] == pytest.approx(summary.acceptance_rate, rel=1e-12)
    assert info["acceptance_rate_in_box"] > info["acceptance_rate"]


def test_galprop_mode_cannot_drive_an_mcmc_scan():
    """GALPROP's fixed ladder never converges (crml_base on the CI grid: residual ~19), so an MCMC that rejects
    non-converged models would never move."""
    import warnings

    from crprop.galaxy import GalaxySetup
    from crprop.params import CRML_BASE
    from crprop.propagate import propagate

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        spectra = propagate(GalaxySetup.paper().with_changes(dr_kpc=4.0, dz_kpc=1.3, ekin_factor=3.0), [CRML_BASE],
                            mode="galprop", backend="numba")
    assert not spectra.converged[0] and spectra.residual[0] > 1.0
    with pytest.raises(ValueError, match="mode 'galprop' cannot be used for an MCMC scan"):
        ScanConfig(mode="galprop")
    assert ScanConfig(mode="galprop", reject_nonconverged=False).mode == "galprop"
    assert ScanConfig(mode="galprop", design="sobol", n_points=8).design == "sobol"
