"""The paper's Check Machine (Appendix B): is a parameter point inside the 4 sigma region?

Input: the 10 propagation/source parameters (scaled to the prior box by the target transform, breaks as
log10); output: one logit, probability = sigmoid(logit). Six fully connected ReLU layers (the widths are
not given in the paper; :data:`CHECK_HIDDEN_UNITS` is crnet's choice), binary cross entropy. Training
sample: every record inside the 4 sigma region (chi2 < chi2_min + Delta chi2_14(4 sigma) = 43.82) and
an equal number drawn at random from outside it; 90 % / 10 % train / validation split.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np
import torch
from torch import nn

from crnet.likelihood import delta_chi2_threshold
from crnet.machines import CHECK_SIGMA

CHECK_HIDDEN_UNITS: tuple[int, ...] = (256, 256, 128, 128, 64, 32)
"""Widths of the six dense layers (crnet's choice; Appendix B gives only their number and ReLU)."""

CHECK_LEARNING_RATE = 1e-3
"""Adam learning rate of the Check Machine (not stated in the paper)."""

CHECK_BATCH_SIZE = 256
"""Mini-batch size of the Check Machine (not stated in the paper)."""


@dataclass(frozen=True)
class CheckArchitecture:
    """Widths of the Check Machine."""

    n_inputs: int = 10
    hidden_units: tuple[int, ...] = CHECK_HIDDEN_UNITS

    def __post_init__(self) -> None:
        if self.n_inputs < 1 or not self.hidden_units or min(self.hidden_units) < 1:
            raise ValueError("CheckArchitecture needs n_inputs >= 1 and positive hidden widths")

    def to_dict(self) -> dict:
        d = asdict(self)
        d["hidden_units"] = list(self.hidden_units)
        return d

    @classmethod
    def from_dict(cls, d: dict) -> CheckArchitecture:
        return cls(int(d["n_inputs"]), tuple(d["hidden_units"]))


class CheckMachine(nn.Module):
    """Input (batch, 10) scaled parameters; output (batch,) logits of 'inside the region'."""

    bounded_outputs = False

    def __init__(self, arch: CheckArchitecture) -> None:
        super().__init__()
        self.arch = arch
        layers: list[nn.Module] = []
        width = arch.n_inputs
        for units in arch.hidden_units:
            layers += [nn.Linear(width, units), nn.ReLU()]
            width = units
        layers.append(nn.Linear(width, 1))
        self.net = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.ndim != 2 or x.shape[1] != self.arch.n_inputs:
            raise ValueError(f"expected input (batch, {self.arch.n_inputs}), got {tuple(x.shape)}")
        return self.net(x).squeeze(-1)


def inside_region(chi2: np.ndarray, n_sigma: float = CHECK_SIGMA) -> np.ndarray:
    """(n,) bool: chi2 < min(chi2) + Delta chi2_14(n_sigma); NaN/inf chi2 count as outside."""
    c = np.asarray(chi2, dtype=np.float64)
    finite = np.isfinite(c)
    if not finite.any():
        raise ValueError("no finite chi2 values")
    return finite & (c < c[finite].min() + delta_chi2_threshold(n_sigma))


def balanced_sample(inside: np.ndarray, rng: np.random.Generator,
                    candidates: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """All inside records plus as many random outside ones (fewer if fewer exist).

    ``candidates``: record indices eligible at all (default every record). Returns (indices sorted
    ascending, labels 1.0 inside / 0.0 outside).
    """
    inside = np.asarray(inside, dtype=bool)
    cand = np.arange(inside.size) if candidates is None else np.asarray(candidates, dtype=np.int64)
    pos = cand[inside[cand]]
    neg = cand[~inside[cand]]
    if pos.size == 0 or neg.size == 0:
        raise ValueError(f"the Check Machine needs records on both sides of the region: {pos.size} inside, "
                         f"{neg.size} outside")
    neg = rng.choice(neg, size=min(pos.size, neg.size), replace=False)
    idx = np.concatenate([pos, neg])
    order = np.argsort(idx)
    labels = np.concatenate([np.ones(pos.size), np.zeros(neg.size)])
    return idx[order], labels[order]


def confusion_matrix(labels: np.ndarray, prob: np.ndarray, threshold: float = 0.5) -> dict[str, float]:
    """Fig. 11 quantities: true-positive rate (inside called inside), true-negative rate, accuracy."""
    y = np.asarray(labels) > 0.5
    p = np.asarray(prob) >= threshold
    tpr = float((p & y).sum() / max(y.sum(), 1))
    tnr = float((~p & ~y).sum() / max((~y).sum(), 1))
    return {"true_positive_rate": tpr, "true_negative_rate": tnr, "accuracy": float((p == y).mean()),
            "n_inside": int(y.sum()), "n_outside": int((~y).sum())}
