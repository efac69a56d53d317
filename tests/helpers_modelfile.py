"""A model file for tests that need one: random weights and scaler on the CR-ML energy grid."""

from __future__ import annotations

import numpy as np
import torch

from crnet.features import FeatureScaler, TargetTransform, paper_energy_grid
from crnet.machines import build_network, default_architecture
from crnet.machines.modelfile import ModelFile


def make_model(network: str, seed: int = 0) -> ModelFile:
    torch.manual_seed(seed)
    e = paper_energy_grid()
    arch = default_architecture(network, 0 if network == "check" else e.size)
    net = build_network(network, arch)
    rng = np.random.default_rng(seed)
    scaler = None
    if network != "check":
        scaler = FeatureScaler(rng.normal(0, 1, (8, e.size)), rng.uniform(0.5, 2, (8, e.size)))
    return ModelFile(network, arch, "check" if network == "check" else "A", net.state_dict(), TargetTransform(),
                     scaler, None if network == "check" else e,
                     {"training_store": {"sha256": "ab" * 32}, "code_version": {"crnet": "0.1.0"}})
