"""Networks of crnet: the paper's Machine A / Machine B, the crnet variant, and the Check Machine.

A trained network is identified by a name ("paper-A", "paper-B", "crnet", "check") and a plain dict of
its architecture, from which :func:`build_network` rebuilds it (this is what model files store).
Machine A / B differ in their training data (mock spectra vs pseudo-data with artificial fluctuations,
paper Sec. 4.4); ``arch='crnet'`` trains crnet's network on the same data instead of the paper's.

Submodules: :mod:`~crnet.machines.paper`, :mod:`~crnet.machines.crnet_variant`, :mod:`~crnet.machines.check`
(networks), :mod:`~crnet.machines.data` (store reading), :mod:`~crnet.machines.training`,
:mod:`~crnet.machines.modelfile`, :mod:`~crnet.machines.inference`. This package module itself does not
import torch, so that the command line starts quickly.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from torch import nn

MACHINES: tuple[str, ...] = ("A", "B", "check")
"""What is trained: A (mock spectra), B (pseudo-data), check (Appendix B classifier)."""

ARCHITECTURES: tuple[str, ...] = ("paper", "crnet")
"""Network of the regression machines: the paper's exact layers or crnet's variant."""

NETWORKS: tuple[str, ...] = ("paper-A", "paper-B", "crnet", "check")

LR_SCHEDULES: tuple[str, ...] = ("plateau", "cosine", "constant")
"""'plateau': ReduceLROnPlateau on the validation loss; 'cosine': cosine decay to min_lr over the epochs;
'constant': the initial rate throughout (the paper's machines: CR-ML's ML_Training has its LR schedule commented
out)."""

CHECK_SIGMA = 4.0
"""Confidence level of the Check Machine's positive class (Appendix B: the 4 sigma region)."""


def network_name(machine: str, arch: str) -> str:
    """Name of the network trained for ``machine`` with ``arch``."""
    if machine not in MACHINES:
        raise ValueError(f"machine must be one of {MACHINES}, got {machine!r}")
    if arch not in ARCHITECTURES:
        raise ValueError(f"arch must be one of {ARCHITECTURES}, got {arch!r}")
    if machine == "check":
        return "check"
    return f"paper-{machine}" if arch == "paper" else "crnet"


def default_architecture(name: str, n_bins: int, n_outputs: int = 10) -> dict:
    """Architecture dict of network ``name`` for an input grid of ``n_bins`` energies."""
    from crnet.machines.check import CheckArchitecture
    from crnet.machines.crnet_variant import CrnetArchitecture
    from crnet.machines.paper import machine_a, machine_b

    if name == "paper-A":
        return machine_a(n_bins, n_outputs).to_dict()
    if name == "paper-B":
        return machine_b(n_bins, n_outputs).to_dict()
    if name == "crnet":
        return CrnetArchitecture(n_bins=n_bins, n_outputs=n_outputs).to_dict()
    if name == "check":
        return CheckArchitecture(n_inputs=n_outputs).to_dict()
    raise ValueError(f"unknown network {name!r}; expected one of {NETWORKS}")


def build_network(name: str, arch: dict) -> nn.Module:
    """The (freshly initialised) network ``name`` with architecture dict ``arch``."""
    from crnet.machines.check import CheckArchitecture, CheckMachine
    from crnet.machines.crnet_variant import CrnetArchitecture, CrnetMachine
    from crnet.machines.paper import PaperArchitecture, PaperMachine

    if name in ("paper-A", "paper-B"):
        return PaperMachine(PaperArchitecture.from_dict(arch))
    if name == "crnet":
        return CrnetMachine(CrnetArchitecture.from_dict(arch))
    if name == "check":
        return CheckMachine(CheckArchitecture.from_dict(arch))
    raise ValueError(f"unknown network {name!r}; expected one of {NETWORKS}")


__all__ = ["ARCHITECTURES", "CHECK_SIGMA", "LR_SCHEDULES", "MACHINES", "NETWORKS", "build_network",
           "default_architecture", "network_name"]
