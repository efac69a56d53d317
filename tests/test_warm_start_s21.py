"""Warm starts (``init_from``) reviewed by helper-88 in session 21: a warm-started Check Machine died with an
AttributeError (its model file has no feature scaler), and a model trained on another energy grid of the same
size was accepted, its per-bin first layer and scaler applied to the other grid's features."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from helpers_store import write_synthetic_store
from test_checkpoint_identity_s21 import TINY_CRNET

from crnet.features import paper_energy_grid
from crnet.machines.modelfile import load_model
from crnet.machines.training import TrainConfig, train

torch.set_num_threads(1)


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    path = tmp_path_factory.mktemp("warm") / "mocks.h5"
    write_synthetic_store(path, 300, seed=4)
    return path


def test_a_check_machine_warm_starts(store, tmp_path) -> None:
    first = train(store, tmp_path / "c.pt", TrainConfig(machine="check", epochs=1, progress=False))
    again = train(store, tmp_path / "c2.pt", TrainConfig(machine="check", epochs=1, progress=False,
                                                          init_from=str(first.model_path)))
    assert load_model(again.model_path).metadata["train_config"]["init_from"] == str(first.model_path)


def test_a_warm_start_on_another_energy_grid_of_the_same_size_is_refused(store, tmp_path) -> None:
    cfg = TrainConfig(machine="A", arch="crnet", epochs=1, batch_size=32, progress=False, architecture=TINY_CRNET)
    first = train(store, tmp_path / "a.pt", cfg)
    shifted = tmp_path / "grid2.h5"
    write_synthetic_store(shifted, 300, seed=5, energies=2.0 * paper_energy_grid())  # 84 bins as well
    with pytest.raises(ValueError, match=r"init_from .*a\.pt: training store .*grid2\.h5 energy grid \(84 bins, "
                                         r"0\.002 .* differs from the model's grid \(84 bins, 0\.001"):
        train(shifted, tmp_path / "b.pt", TrainConfig(**{**cfg.__dict__, "init_from": str(first.model_path)}))
    assert np.array_equal(load_model(first.model_path).energies, paper_energy_grid())
