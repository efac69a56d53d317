"""Network layers: the paper's Machine A / B, the crnet variant, the Check Machine, the loss."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from torch import nn

from crnet.machines import build_network, default_architecture, network_name
from crnet.machines.check import (
    CheckArchitecture,
    CheckMachine,
    balanced_sample,
    confusion_matrix,
    inside_region,
)
from crnet.machines.crnet_variant import CrnetArchitecture, CrnetMachine
from crnet.machines.paper import PaperMachine, count_parameters, machine_a, machine_b
from crnet.machines.training import log_cosh_loss

torch.set_num_threads(1)

MACHINE_A_PARAMETERS = 633_194
"""Trainable parameters of CR-ML's Keras Machine A on 84 energy bins (model summary, design notes Sec. 1.4)."""


def test_machine_a_layers_match_keras() -> None:
    net = PaperMachine(machine_a())
    assert count_parameters(net) == MACHINE_A_PARAMETERS
    convs = [m for m in net.modules() if isinstance(m, nn.Conv1d)]
    dense = [m for m in net.modules() if isinstance(m, nn.Linear)]
    assert [c.out_channels for c in convs] == [512, 512, 256, 256, 128]
    assert all(c.kernel_size == (1,) and c.stride == (1,) for c in convs)
    assert convs[0].in_channels == 84  # energy bins are the channels (Keras layout)
    assert [d.out_features for d in dense] == [128, 128, 64, 64, 32, 10]
    assert sum(isinstance(m, nn.ELU) for m in net.modules()) == 10
    assert all(torch.all(m.bias == 0) for m in convs + dense)  # Keras zero-bias initialisation
    out = net(torch.randn(7, 8, 84))
    assert out.shape == (7, 10)


def test_machine_b_layers() -> None:
    net = PaperMachine(machine_b())
    convs = [m.out_channels for m in net.modules() if isinstance(m, nn.Conv1d)]
    dense = [m.out_features for m in net.modules() if isinstance(m, nn.Linear)]
    assert convs == [512, 512, 256, 256, 128, 128] and dense == [128, 128, 10]


def test_paper_machine_sees_ratio_pairs_symmetrically() -> None:
    """kernel 1 over the 8 spectra + max-pool of pairs: swapping Li/C and Be/C cannot change the output."""
    torch.manual_seed(0)
    net = PaperMachine(machine_a(n_bins=20))
    x = torch.randn(5, 8, 20)
    swapped = x[:, [1, 0, 2, 3, 4, 5, 6, 7]]
    assert torch.allclose(net(x), net(swapped))
    variant = CrnetMachine(CrnetArchitecture(n_bins=20))
    assert not torch.allclose(variant(x), variant(swapped))


def test_crnet_variant_outputs_stay_in_the_unit_box() -> None:
    torch.manual_seed(1)
    net = CrnetMachine(CrnetArchitecture(n_bins=84))
    out = net(1e4 * torch.randn(64, 8, 84))
    assert out.shape == (64, 10) and torch.all((out >= 0) & (out <= 1))
    convs = [m for m in net.modules() if isinstance(m, nn.Conv1d)]
    assert convs[0].in_channels == 8 and convs[0].kernel_size == (5,)  # convolution along energy
    assert any(isinstance(m, nn.Dropout) for m in net.modules())
    with pytest.raises(ValueError, match="expected input"):
        net(torch.randn(2, 84, 8))
    with pytest.raises(ValueError, match="odd"):
        CrnetArchitecture(kernel_size=4)


def test_check_machine_and_balanced_sample() -> None:
    net = CheckMachine(CheckArchitecture())
    assert sum(isinstance(m, nn.Linear) for m in net.modules()) == 7  # six dense layers + the logit
    assert sum(isinstance(m, nn.ReLU) for m in net.modules()) == 6
    assert net(torch.rand(3, 10)).shape == (3,)
    chi2 = np.array([100.0, 120.0, 143.8, 143.9, 200.0, np.nan, 300.0, 400.0])
    inside = inside_region(chi2, 4.0)
    assert inside.tolist() == [True, True, True, False, False, False, False, False]
    idx, labels = balanced_sample(inside, np.random.default_rng(0))
    assert labels.sum() == 3 and (labels == 0).sum() == 3 and np.all(np.diff(idx) > 0)
    assert set(idx[labels == 1]) == {0, 1, 2}
    with pytest.raises(ValueError, match="both sides"):
        balanced_sample(np.ones(4, dtype=bool), np.random.default_rng(0))
    cm = confusion_matrix(np.array([1, 1, 0, 0]), np.array([0.9, 0.2, 0.1, 0.7]))
    assert cm["true_positive_rate"] == 0.5 and cm["true_negative_rate"] == 0.5


def test_log_cosh_loss() -> None:
    d = torch.tensor([-50.0, -1.0, 0.0, 1e-3, 2.0, 80.0], dtype=torch.float64)
    want = torch.tensor([math.log(math.cosh(v)) if abs(v) < 20 else abs(v) - math.log(2) for v in d.tolist()],
                        dtype=torch.float64)
    got = torch.stack([log_cosh_loss(v.reshape(1), torch.zeros(1, dtype=torch.float64)) for v in d])
    assert torch.allclose(got, want, rtol=1e-12, atol=1e-15)


def test_registry_round_trip() -> None:
    assert network_name("A", "paper") == "paper-A" and network_name("B", "crnet") == "crnet"
    assert network_name("check", "crnet") == "check"
    with pytest.raises(ValueError, match="machine"):
        network_name("C", "paper")
    for name in ("paper-A", "paper-B", "crnet", "check"):
        arch = default_architecture(name, 30)
        net = build_network(name, arch)
        assert isinstance(net, nn.Module)
    with pytest.raises(ValueError, match="unknown network"):
        build_network("resnet", {})
