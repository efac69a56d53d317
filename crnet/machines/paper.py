"""Machine A and Machine B of the paper (Tsai et al. 2022, Sec. 4.4, Fig. 3), layer for layer.

As in the CR-ML Keras code, the input (8 ratio spectra x n_E energy bins) is read with the 8 spectra as
the *length* axis and the energy bins as *channels*: every Conv1D has kernel size 1, i.e. it is one
dense layer applied to each ratio spectrum separately with weights shared across the 8 spectra. Max
pooling (pool 2, stride 2, Keras' MaxPooling1D(pool_size=2) of CR-ML; the paper's "strides=1" is read as the
convolutions') then merges the spectra pairwise (Li/C with Be/C, ...), the result is
flattened and passed through the dense head; the 10 outputs are linear (scaled targets, nothing
keeps them inside [0, 1]). ELU everywhere, Glorot-uniform weights and zero biases (Keras defaults).

Machine A: Conv 512, 512, 256, 256, 128; Dense 128, 128, 64, 64, 32  -> 633,194 parameters on 84 bins.
Machine B: Conv 512, 512, 256, 256, 128, 128; Dense 128, 128 (the paper's Fig. 3 / text; the CR-ML
code used Machine A's layers for both).
Training settings of the paper: log-cosh loss, Adam, lr 8e-5, batch 32, 100 epochs.

Known defects kept on purpose here (fixed in :mod:`crnet.machines.crnet_variant`): no convolution
along energy, pooling of unrelated ratio pairs, unbounded outputs, no regularisation.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import torch
from torch import nn

from crnet.features import N_CHANNELS

PAPER_LEARNING_RATE = 8e-5
"""Adam learning rate of the CR-ML training script (ML_Training)."""

PAPER_BATCH_SIZE = 32
"""Mini-batch size of the CR-ML training script (first training run)."""

PAPER_EPOCHS = 100
"""Epochs of the paper (Sec. 4.4: the loss is flat after ~80 epochs, 100 are used)."""


@dataclass(frozen=True)
class PaperArchitecture:
    """Layer widths of a paper machine; ``n_bins`` is the number of energies of the input grid."""

    conv_filters: tuple[int, ...]
    dense_units: tuple[int, ...]
    n_bins: int = 84
    n_channels: int = N_CHANNELS
    n_outputs: int = 10
    pool_size: int = 2

    def __post_init__(self) -> None:
        if not self.conv_filters or self.n_channels < self.pool_size:
            raise ValueError("PaperArchitecture needs >= 1 conv layer and n_channels >= pool_size")
        if min(self.conv_filters + self.dense_units + (self.n_bins, self.n_outputs)) < 1:
            raise ValueError("PaperArchitecture: all widths must be >= 1")

    def to_dict(self) -> dict:
        d = asdict(self)
        d["conv_filters"], d["dense_units"] = list(self.conv_filters), list(self.dense_units)
        return d

    @classmethod
    def from_dict(cls, d: dict) -> PaperArchitecture:
        return cls(tuple(d["conv_filters"]), tuple(d["dense_units"]), int(d["n_bins"]), int(d["n_channels"]),
                   int(d["n_outputs"]), int(d["pool_size"]))


def machine_a(n_bins: int = 84, n_outputs: int = 10) -> PaperArchitecture:
    """Machine A (Fig. 3 top): five Conv1D (512, 512, 256, 256, 128), five Dense (128, 128, 64, 64, 32)."""
    return PaperArchitecture((512, 512, 256, 256, 128), (128, 128, 64, 64, 32), n_bins, N_CHANNELS, n_outputs)


def machine_b(n_bins: int = 84, n_outputs: int = 10) -> PaperArchitecture:
    """Machine B (Fig. 3 bottom): six Conv1D (the extra one with 128 filters), two Dense (128, 128)."""
    return PaperArchitecture((512, 512, 256, 256, 128, 128), (128, 128), n_bins, N_CHANNELS, n_outputs)


class PaperMachine(nn.Module):
    """Keras-equivalent network. Input (batch, 8, n_bins) standardised log10 features; output
    (batch, n_outputs) scaled targets (linear, unbounded)."""

    bounded_outputs = False

    def __init__(self, arch: PaperArchitecture) -> None:
        super().__init__()
        self.arch = arch
        convs: list[nn.Module] = []
        width = arch.n_bins
        for filters in arch.conv_filters:
            convs += [nn.Conv1d(width, filters, kernel_size=1), nn.ELU()]
            width = filters
        self.convs = nn.Sequential(*convs)
        self.pool = nn.MaxPool1d(arch.pool_size)
        dense: list[nn.Module] = []
        width = width * (arch.n_channels // arch.pool_size)
        for units in arch.dense_units:
            dense += [nn.Linear(width, units), nn.ELU()]
            width = units
        dense.append(nn.Linear(width, arch.n_outputs))
        self.head = nn.Sequential(*dense)
        self.reset_parameters()

    def reset_parameters(self) -> None:
        """Glorot-uniform weights, zero biases (Keras' defaults for Conv1D and Dense)."""
        for module in self.modules():
            if isinstance(module, (nn.Conv1d, nn.Linear)):
                nn.init.xavier_uniform_(module.weight)
                nn.init.zeros_(module.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.ndim != 3 or x.shape[1:] != (self.arch.n_channels, self.arch.n_bins):
            raise ValueError(f"expected input (batch, {self.arch.n_channels}, {self.arch.n_bins}), "
                             f"got {tuple(x.shape)}")
        h = self.convs(x.transpose(1, 2))  # energies as channels, the 8 spectra as length (Keras layout)
        h = self.pool(h)
        return self.head(torch.flatten(h, 1))


def count_parameters(module: nn.Module) -> int:
    """Number of trainable parameters."""
    return sum(p.numel() for p in module.parameters() if p.requires_grad)
