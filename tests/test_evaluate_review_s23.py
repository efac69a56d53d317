"""Inputs of the evaluation and the pseudo-data that were accepted and failed late or silently (review by helper-112,
session 23); every test fails on the code before the fix (tiny grid, numba, a few seconds)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from helpers_cli import assert_usage_error
from helpers_loop import GRID, TOL, build_loop_world
from helpers_modelfile import make_model
from typer.testing import CliRunner

import crnet.closure as closure_mod
import crnet.evaluate.report as report_mod
import crnet.machines.inference as inference
from crnet.cli import app
from crnet.feedback import FeedbackConfig, SimConfig, run_feedback
from crnet.feedback_inputs import FeedbackInputError
from crnet.machines.modelfile import save_model
from crnet.machines.training import TrainConfig
from crnet.pseudodata import PseudoDataConfig, make_pseudodata
from crnet.store import MockStore

torch.set_num_threads(1)
runner = CliRunner()

WIDE_SELECTION_SIGMA = 40.0
"""Pseudo-data centres within 40 sigma: every record of the 8-model scan, whose chi2 lie far apart on the tiny grid."""


@pytest.fixture(scope="module")
def world(tmp_path_factory) -> dict[str, Path]:
    directory = tmp_path_factory.mktemp("eval_review")
    paths = build_loop_world(directory)
    save_model(directory / "check.pt", make_model("check"))
    return {**paths, "check": directory / "check.pt"}


@pytest.fixture
def no_work(monkeypatch) -> None:
    """Predicting and re-simulating raise: a refusal must come before both."""
    def refuse(*args, **kw):
        raise AssertionError("work started before the inputs were checked")

    for module, name in ((inference, "predict_file"), (closure_mod, "resimulate"), (report_mod, "closure_test"),
                         (report_mod, "resimulate")):
        monkeypatch.setattr(module, name, refuse)


def _evaluate(world: dict[str, Path], out: Path, machine: Path, *extra: str, test: Path | None = None):
    return runner.invoke(app, ["evaluate", "--machine", f"Machine A={machine}", "--test", str(test or world["test"]),
                               "--mocks", str(world["scan"]), "--out", str(out), "--backend", "numba",
                               "--no-progress", *extra])


def test_a_check_machine_given_as_a_machine_is_refused_before_any_work(world, tmp_path, no_work) -> None:
    res = _evaluate(world, tmp_path / "ev", world["check"])
    assert_usage_error(res, f"error: --machine {world['check']}: is a Check Machine (machine 'Machine A')")
    assert not (tmp_path / "ev").exists()


def test_a_regressor_given_as_the_check_machine_is_refused_before_any_work(world, tmp_path, no_work) -> None:
    res = _evaluate(world, tmp_path / "ev", world["a"], "--check", str(world["a"]))
    assert_usage_error(res, f"error: --check {world['a']}: is a Machine A model, not a Check Machine")
    assert not (tmp_path / "ev").exists()


def test_a_noise_free_store_is_no_test_set(world, tmp_path, no_work) -> None:
    res = _evaluate(world, tmp_path / "ev", world["a"], test=world["scan"])
    assert_usage_error(res, f"error: --test {world['scan']}: is no pseudo-data store", "crnet pseudodata")
    assert not (tmp_path / "ev").exists()
    fb = FeedbackConfig(sim=SimConfig(grid=GRID, tol=TOL, backend="numba"), max_rounds=1, progress=False)
    with pytest.raises(FeedbackInputError, match=r"^test_store .*scan\.h5: is no pseudo-data store"):
        run_feedback(world["a"], world["scan"], world["scan"], tmp_path / "fb", fb,
                     TrainConfig(machine="A", epochs=1, progress=False, threads=1))


def test_pseudo_data_are_not_made_from_pseudo_data(world, tmp_path) -> None:
    with pytest.raises(ValueError, match=r"test\.h5: is a pseudo-data store already \(made from .*scan\.h5\)"):
        make_pseudodata(world["test"], tmp_path / "pp.h5", PseudoDataConfig(n_pseudo=2, seed=1))
    assert not (tmp_path / "pp.h5").exists()


@pytest.mark.parametrize("noise", ["paper", "envelope"])
def test_pseudo_data_do_not_depend_on_the_chunk_size(world, tmp_path, noise: str) -> None:
    def fluxes(chunk: int, name: str, seed: int = 5) -> np.ndarray:
        make_pseudodata(world["scan"], tmp_path / name, PseudoDataConfig(n_pseudo=12, seed=seed, noise=noise,
                                                                         chunk_size=chunk,
                                                                         n_sigma=WIDE_SELECTION_SIGMA))
        with MockStore.open(tmp_path / name, "r") as store:
            return store.read("flux")

    whole, chunked = fluxes(256, "whole.h5"), fluxes(5, "chunked.h5")
    assert whole.shape[0] == 12
    np.testing.assert_array_equal(whole, chunked)  # the envelope noise's differed before the fix
    assert not np.array_equal(whole, fluxes(256, "other.h5", seed=6))  # the seed matters: a real draw
