"""Evaluation caches: closure tests keyed on model / test store / settings, and the oracle row resumable after a
kill without redoing its floor solves (tiny grid, numba)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

import crnet.closure as closure_mod
import crnet.evaluate.report as report_mod
import crnet.machines.inference as inference
from crnet.evaluate.report import EvalConfig, oracle_chi2
from crnet.feedback import FeedbackConfig, SimConfig, closure_test
from crnet.machines.training import TrainConfig, train
from crnet.pseudodata import PseudoDataConfig, make_pseudodata
from crnet.scan.models import GridConfig
from crnet.scan.runner import ScanConfig, run_scan

torch.set_num_threads(1)
GRID = GridConfig(dr_kpc=4.0, dz_kpc=1.3, ekin_factor=3.0)
SIM = SimConfig(grid=GRID, backend="numba")


class Killed(Exception):
    """Stands for a kill in the middle of a stage."""


def _count_calls(monkeypatch, module, name: str) -> list[int]:
    calls: list[int] = []
    real = getattr(module, name)

    def spy(*args, **kw):
        calls.append(1)
        return real(*args, **kw)

    monkeypatch.setattr(module, name, spy)
    return calls


def test_closure_cache_is_keyed_and_resumes_from_saved_predictions(tmp_path, monkeypatch):
    scan = tmp_path / "scan.h5"
    run_scan(scan, ScanConfig(design="sobol", n_points=8, batch_size=8, backend="numba", grid=GRID), progress=False)
    make_pseudodata(scan, tmp_path / "test.h5", PseudoDataConfig(n_pseudo=3, seed=5))
    tcfg = TrainConfig(machine="A", epochs=1, batch_size=4, progress=False, threads=1)
    train(scan, tmp_path / "a.pt", tcfg)
    cfg = FeedbackConfig(sim=SIM, n_test=2, progress=False)
    work = tmp_path / "closure"

    # a kill after the predictions were saved, before the re-simulation: the re-run predicts nothing again
    def killed(*args, **kw):
        raise Killed

    monkeypatch.setattr(closure_mod, "resimulate", killed)
    with pytest.raises(Killed):
        closure_test(tmp_path / "a.pt", tmp_path / "test.h5", work, cfg)
    assert (work / "prediction.npz").is_file() and not (work / "closure.npz").exists()
    monkeypatch.undo()
    predicted = _count_calls(monkeypatch, inference, "predict_file")  # closure_test imports it when called
    first = closure_test(tmp_path / "a.pt", tmp_path / "test.h5", work, cfg)
    assert predicted == [] and first.theta.shape == (2, 10)
    # same inputs: the cached result, no re-simulation
    resims = _count_calls(monkeypatch, closure_mod, "resimulate")
    again = closure_test(tmp_path / "a.pt", tmp_path / "test.h5", work, cfg)
    assert resims == [] and np.array_equal(again.chi2_resim, first.chi2_resim)
    # another n_test or another model: recomputed, never the old result
    fewer = closure_test(tmp_path / "a.pt", tmp_path / "test.h5", work, FeedbackConfig(sim=SIM, n_test=1,
                                                                                         progress=False))
    assert len(resims) == 1 and fewer.theta.shape == (1, 10)
    train(scan, tmp_path / "b.pt", TrainConfig(machine="A", epochs=2, batch_size=4, progress=False, threads=1,
                                               seed=3))
    other = closure_test(tmp_path / "b.pt", tmp_path / "test.h5", work, cfg)
    assert len(resims) == 2 and not np.array_equal(other.theta, first.theta)


def test_oracle_row_resumes_after_a_kill_without_redoing_the_floors(tmp_path, monkeypatch):
    base = np.array([3.25, 0.478, -1.55, 34.9, 3.9, 0.28, 2.42, 2.12, 880.0, 4.67e5])
    truth = np.repeat(np.stack([base, base * np.r_[1.1, np.ones(9)]]), 2, axis=0)  # 2 centres x 2 predictions
    cfg = EvalConfig(machines={"m": "unused.pt"}, test_store="unused.h5", mock_stores=["unused.h5"],
                     out=str(tmp_path), feedback=FeedbackConfig(sim=SIM, progress=False))
    monkeypatch.setattr(report_mod, "ORACLE_FLOOR_CENTRES", 1)
    floors = _count_calls(monkeypatch, report_mod, "tau_floors")
    real_resim = report_mod.resimulate

    def killed(*args, **kw):
        raise Killed

    monkeypatch.setattr(report_mod, "resimulate", killed)
    with pytest.raises(Killed):
        oracle_chi2(cfg, truth, tmp_path)
    assert len(floors) == 2 and (tmp_path / "oracle_draws.npz").is_file()
    monkeypatch.setattr(report_mod, "resimulate", real_resim)
    chi2 = oracle_chi2(cfg, truth, tmp_path)
    assert len(floors) == 2 and chi2.shape == (4,) and np.isfinite(chi2).any()
    with np.load(tmp_path / "oracle_draws.npz") as z:
        draws = np.array(z["theta"])
    assert np.array_equal(np.load(tmp_path / "oracle.npz")["theta"], draws)
    # cached: no solve at all on a third call; another seed recomputes
    assert np.array_equal(oracle_chi2(cfg, truth, tmp_path), chi2) and len(floors) == 2
    cfg.feedback.seed = 1
    oracle_chi2(cfg, truth, tmp_path)
    assert len(floors) == 4
