"""Machine-side defects found by helper-110's review (session 23), each shown to fail on the code before the fix."""

from __future__ import annotations

import numpy as np
import pytest
from helpers_store import BOWL_CENTRE, sample_params, write_synthetic_store
from helpers_training import TINY_CRNET

from crnet.features import TargetTransform
from crnet.likelihood import delta_chi2_threshold
from crnet.machines.data import StoreReader, record_filter
from crnet.machines.training import TrainConfig, train

N_RECORDS = 400
N_FAILED_AT_MINIMUM = 3
"""Records at the synthetic chi2's minimum whose solve is marked unconverged (a failed solve with a low chi2)."""


def test_max_sigma_takes_chi2_min_over_converged_records(tmp_path) -> None:
    params = sample_params(np.random.default_rng(0), N_RECORDS)
    params[-N_FAILED_AT_MINIMUM:] = TargetTransform().inverse(np.tile(BOWL_CENTRE, (N_FAILED_AT_MINIMUM, 1)))
    write_synthetic_store(tmp_path / "s.h5", N_RECORDS, seed=0, params=params, n_unconverged=N_FAILED_AT_MINIMUM)
    with StoreReader(tmp_path / "s.h5") as reader:
        chi2, conv = reader.chi2(), reader.converged()
        mask, dropped = record_filter(reader, TargetTransform(), max_sigma=3.0)
    assert chi2[~conv].min() < chi2[conv].min()  # the failed solves hold the smallest chi2: the case under test
    expected = conv & (chi2 < chi2[conv].min() + delta_chi2_threshold(3.0))
    assert expected.sum() > N_FAILED_AT_MINIMUM  # 64 here; the old code kept 18
    np.testing.assert_array_equal(mask, expected)
    assert dropped["outside_max_sigma"] == int((conv & ~expected).sum())


@pytest.mark.parametrize(("field", "value"), [("min_delta", 1.0), ("min_delta", -0.1), ("lr_factor", 1.0),
                                              ("lr_factor", 0.0), ("min_lr", -1e-6), ("min_lr", float("nan"))])
def test_schedule_settings_are_checked(field: str, value: float) -> None:
    with pytest.raises(ValueError, match=rf"^{field} must "):
        TrainConfig(machine="A", arch="crnet", **{field: value}).resolved()


def test_resume_applies_a_new_patience(tmp_path) -> None:
    write_synthetic_store(tmp_path / "s.h5", 300, seed=4)
    # min_delta 0.9: an epoch counts as better only when it cuts the loss tenfold, so a run stops early at once
    base = dict(machine="A", arch="crnet", seed=1, threads=1, progress=False, epochs=8, min_delta=0.9,
                architecture=TINY_CRNET)
    first = train(tmp_path / "s.h5", tmp_path / "m.pt", TrainConfig(patience=2, **base))
    assert first.stopped_early and first.epochs_run < base["epochs"]
    resumed = train(tmp_path / "s.h5", tmp_path / "m.pt", TrainConfig(patience=100, **base), resume=True)
    assert resumed.epochs_run == base["epochs"] and not resumed.stopped_early  # the old code stayed at first's
    same = train(tmp_path / "s.h5", tmp_path / "m2.pt", TrainConfig(patience=2, **base))
    again = train(tmp_path / "s.h5", tmp_path / "m2.pt", TrainConfig(patience=2, **base), resume=True)
    assert again.epochs_run == same.epochs_run and again.stopped_early  # an unchanged patience stays stopped


def test_an_ensemble_resume_applies_a_new_patience(tmp_path) -> None:
    """Its members were skipped as finished by their checkpoints' early-stop flag (re-read by helper-122)."""
    write_synthetic_store(tmp_path / "s.h5", 300, seed=4)
    base = dict(machine="A", arch="crnet", seed=1, threads=1, progress=False, epochs=8, min_delta=0.9,
                architecture=TINY_CRNET, ensemble=2)
    every_epoch = base["ensemble"] * base["epochs"]  # epochs_run counts every member's
    first = train(tmp_path / "s.h5", tmp_path / "e.pt", TrainConfig(patience=2, **base))
    assert first.stopped_early and first.epochs_run < every_epoch
    resumed = train(tmp_path / "s.h5", tmp_path / "e.pt", TrainConfig(patience=100, **base), resume=True)
    assert resumed.epochs_run == every_epoch and not resumed.stopped_early
