"""Feedback-loop defects found by helper-118's review (session 23); each test fails on the code before the fix.
The closure tests and retrainings are stand-ins where a test only needs the loop's bookkeeping."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from helpers_loop import GRID, TOL, build_loop_world
from typer.testing import CliRunner

import crnet.evaluate as evaluate_module
import crnet.feedback as feedback_module
from crnet.cli import app
from crnet.closure import ClosureResult
from crnet.feedback import FeedbackConfig, SimConfig, closure_key, run_feedback
from crnet.feedback_state import _resolved_saved
from crnet.machines.training import TrainConfig
from crnet.paths import make_output_dir
from crprop.params import CRML_BASE
from crprop.solvers import DEFAULT_MAX_STEPS, DEFAULT_TOL

torch.set_num_threads(1)
N_TEST = 3
LARGE_TAU = 1.0
"""A closure shift of 100 % in every parameter: no prediction passes (mean |tau| < 0.1)."""


@pytest.fixture(scope="module")
def world(tmp_path_factory) -> dict[str, Path]:
    return build_loop_world(tmp_path_factory.mktemp("fb_review"))


def _sim(**kw) -> SimConfig:
    return SimConfig(**{"grid": GRID, "tol": TOL, "backend": "numba", **kw})


def _fb(max_rounds: int) -> FeedbackConfig:
    return FeedbackConfig(sim=_sim(), max_rounds=max_rounds, n_test=N_TEST, progress=False)


def test_the_solver_defaults_given_explicitly_are_the_defaults(world) -> None:
    explicit = SimConfig(tol=DEFAULT_TOL, max_steps=DEFAULT_MAX_STEPS)
    assert (explicit.tol, explicit.max_steps) == (None, None)  # as the store records them
    keys = [closure_key(world["a"], world["test"], FeedbackConfig(sim=sim)) for sim in (explicit, SimConfig())]
    assert keys[0] == keys[1]  # the cached closure tests are reused
    old_log = {"feedback": {"sim": {"tol": DEFAULT_TOL, "max_steps": DEFAULT_MAX_STEPS, "grid": {}}}}
    assert _resolved_saved(old_log)["feedback"]["sim"] == {"tol": None, "max_steps": None, "grid": {}}


def _scripted_closures(monkeypatch, taus: list[float]) -> None:
    """Round k's closure test gives every prediction tau = taus[k]; a retraining copies the model and store."""
    calls = {"round": 0}

    def closure(*args, **kw) -> ClosureResult:
        tau = taus[calls["round"]]
        calls["round"] += 1
        theta = np.tile(CRML_BASE.as_vector(), (N_TEST, 1))  # PARAM_NAMES units; tau takes log10 of the breaks
        return ClosureResult(theta, theta * (1.0 + tau), np.zeros(N_TEST), np.ones(N_TEST, dtype=bool))

    def retrain(rdir: Path, store: Path, current: Path, tcfg) -> tuple[Path, Path]:
        rdir.mkdir(parents=True, exist_ok=True)
        shutil.copy(store, rdir / "train_store.h5")
        shutil.copy(current, rdir / "model.pt")
        return rdir / "train_store.h5", rdir / "model.pt"

    monkeypatch.setattr(feedback_module, "closure_test", closure)
    monkeypatch.setattr(feedback_module, "_retrain", retrain)


def test_a_lowered_cap_applies_to_a_loop_that_stopped_later(world, tmp_path, monkeypatch) -> None:
    _scripted_closures(monkeypatch, [LARGE_TAU, LARGE_TAU, 0.0])
    tcfg = TrainConfig(machine="A", epochs=1, progress=False, threads=1)
    full = run_feedback(world["a"], world["scan"], world["test"], tmp_path / "fb", _fb(3), tcfg)
    assert full.converged and len(full.rounds) == 3 and full.model_path == tmp_path / "fb" / "round_1" / "model.pt"
    capped = run_feedback(world["a"], world["scan"], world["test"], tmp_path / "fb", _fb(2), tcfg)
    assert not capped.converged and len(capped.rounds) == 2  # the old code returned round 2's stop and model
    assert capped.model_path == tmp_path / "fb" / "round_0" / "model.pt"  # the model round 1 tested


def test_a_test_store_the_machine_cannot_read_is_refused(world, tmp_path, monkeypatch) -> None:
    def nothing(*args, **kw) -> ClosureResult:
        empty = np.zeros((0, 10))
        return ClosureResult(empty, empty, np.zeros(0), np.zeros(0, dtype=bool), n_skipped_inputs=N_TEST)

    monkeypatch.setattr(feedback_module, "closure_test", nothing)
    with pytest.raises(ValueError, match=rf"test\.h5: the machine could read none of its test inputs \({N_TEST} "):
        run_feedback(world["a"], world["scan"], world["test"], tmp_path / "fb", _fb(2),
                     TrainConfig(machine="A", epochs=1, progress=False, threads=1))


def test_an_output_directory_that_cannot_be_made_is_named(tmp_path) -> None:
    (tmp_path / "file").write_text("x")
    with pytest.raises(ValueError, match=r"^--out .*file/fb: cannot create this directory"):
        make_output_dir(tmp_path / "file" / "fb")


def test_evaluate_takes_the_closure_seed(world, tmp_path, monkeypatch) -> None:
    seen = {}

    def capture(cfg):
        seen["seed"] = cfg.feedback.seed
        raise ValueError("stop here")

    monkeypatch.setattr(evaluate_module, "evaluate", capture)
    res = CliRunner().invoke(app, ["evaluate", "--machine", f"A={world['a']}", "--test", str(world["test"]),
                                   "--mocks", str(world["scan"]), "--out", str(tmp_path / "ev"), "--seed", "17"])
    assert res.exit_code == 2 and seen == {"seed": 17}, res.output
