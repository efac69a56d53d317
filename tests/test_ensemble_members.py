"""Ensemble members are trained through ``crnet.machines.training.train`` as looked up at call time, so one patch of
that entry point (a test double, a profiler, a reloaded module) reaches every member run too."""

from __future__ import annotations

from pathlib import Path

import pytest
from helpers_store import write_synthetic_store

from crnet.machines import ensemble_training, training
from crnet.machines.train_files import member_path
from crnet.machines.training import ENSEMBLE_SEED_STRIDE, TrainConfig


class _Stop(Exception):
    """Raised by the patched member run once it has recorded its call."""


def test_members_are_trained_through_the_module_entry_point(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    store = tmp_path / "mocks.h5"
    write_synthetic_store(store, 8)
    out = tmp_path / "ens.pt"
    assert ensemble_training.__name__  # imported before the patch: a name bound at its import would miss the patch
    entry = training.train  # the unpatched entry point, which hands ensemble > 1 to ensemble_training
    calls: list[tuple[Path, int, int]] = []

    def member_run(data_path, path, cfg, resume=False):
        calls.append((Path(path), cfg.ensemble, cfg.seed))
        raise _Stop

    monkeypatch.setattr(training, "train", member_run)
    with pytest.raises(_Stop):
        entry(store, out, TrainConfig(ensemble=3, seed=11, epochs=1, progress=False))
    # the first member's run reached the patch: single-machine settings, the member's own file and seed
    assert calls == [(member_path(out, 0), 1, 11 + 0 * ENSEMBLE_SEED_STRIDE)]
