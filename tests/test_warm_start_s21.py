"""Warm starts (``init_from``) reviewed by helper-88 in session 21: a warm-started Check Machine died with an
AttributeError (its model file has no feature scaler), and a model trained on another energy grid of the same
size was accepted, its per-bin first layer and scaler applied to the other grid's features."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from helpers_store import write_synthetic_store
from helpers_training import TINY_CRNET

from crnet.features import paper_energy_grid
from crnet.machines.modelfile import load_model
from crnet.machines.training import TrainConfig, train

torch.set_num_threads(1)

# Adam moves a weight by ~learning_rate per step: at 1e-30 nothing a real update would change exceeds this
# (measured: the weights are bit-identical on CPU)
FROZEN_WEIGHT_ATOL = 1e-12
# the same weights on the same validation split (a warm start inherits the split seed) give the same loss; measured
# equal to the last bit on CPU, this leaves room for float32 reduction order only
SAME_WEIGHTS_LOSS_REL = 1e-6


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    path = tmp_path_factory.mktemp("warm") / "mocks.h5"
    write_synthetic_store(path, 300, seed=4)
    return path


def test_a_check_machine_warm_starts(store, tmp_path) -> None:
    """It starts at the given weights: with a learning rate of ~0 (as test_training's
    test_init_from_starts_at_the_given_weights) the warm-started machine ends where the first one did, and its first
    validation loss is the first run's best; another seed makes a skipped load start from other weights."""
    first = train(store, tmp_path / "c.pt", TrainConfig(machine="check", epochs=1, seed=2, progress=False))
    again = train(store, tmp_path / "c2.pt", TrainConfig(machine="check", epochs=1, seed=7, progress=False,
                                                          learning_rate=1e-30, init_from=str(first.model_path)))
    a, b = load_model(first.model_path), load_model(again.model_path)
    assert b.metadata["train_config"]["init_from"] == str(first.model_path)
    assert b.network == a.network == "check" and b.state_dict.keys() == a.state_dict.keys()
    for name, weights in a.state_dict.items():
        assert torch.allclose(b.state_dict[name], weights, rtol=0.0, atol=FROZEN_WEIGHT_ATOL), name
    assert again.history[0]["val_loss"] == pytest.approx(first.best_val_loss, rel=SAME_WEIGHTS_LOSS_REL)


def test_a_warm_start_on_another_energy_grid_of_the_same_size_is_refused(store, tmp_path) -> None:
    cfg = TrainConfig(machine="A", arch="crnet", epochs=1, batch_size=32, progress=False, architecture=TINY_CRNET)
    first = train(store, tmp_path / "a.pt", cfg)
    shifted = tmp_path / "grid2.h5"
    write_synthetic_store(shifted, 300, seed=5, energies=2.0 * paper_energy_grid())  # 84 bins as well
    with pytest.raises(ValueError, match=r"init_from .*a\.pt: training store .*grid2\.h5 energy grid \(84 bins, "
                                         r"0\.002 .* differs from the model's grid \(84 bins, 0\.001"):
        train(shifted, tmp_path / "b.pt", TrainConfig(**{**cfg.__dict__, "init_from": str(first.model_path)}))
    assert np.array_equal(load_model(first.model_path).energies, paper_energy_grid())
