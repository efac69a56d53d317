"""Input-noise augmentation: the paper's pseudo-experiment fluctuations drawn afresh for every training batch.

Machine A learns from noise-free mock spectra but is tested and used on pseudo-data. Those carry up to 5 %
fluctuations per element and energy bin (paper Sec. 4.2, :func:`crnet.pseudodata.paper_noise`), and the
measured spectra carry real noise. Session 4's GPU runs (benchmarks/results/pipeline_gpu_scale_h100.md) show
what that mismatch costs. Machine A (crnet) had tau intervals of +-24 % on D0, and only 0.4-2.2 % of its
predictions fell within 4 sigma. On the measured spectra its predictions sat on the prior-box edges. The CR-ML
design note (../shared/design/cr-ml-and-ml-practice.md, Sec. 3.1) says to train on simulations passed
through the measurement model. With ``TrainConfig.input_noise = m`` each training batch gets new factors
1 + eps, eps ~ U(-m, m) per element (Li, Be, B, C, O) and bin. The validation split gets one fixed, seeded
draw, so early stopping compares epochs on the same noisy inputs. Measured on an H100 at 8.4e3 mocks
(benchmarks/results/pipeline_gpu_scale_h100.md, run 3): with input_noise = 0.05, Machine A (crnet) put 77.6 % of
its re-simulated predictions within 4 sigma and 96.0 % within 6 sigma. Trained noise-free, it put 2.2 % and
5.8 %.

The fluctuation is applied to the standardised log10 features directly. This is exact, because each channel
is a ratio of element fluxes (:func:`crnet.features.channel_log_shift`). The one thing the augmentation does
not repeat is the pseudo-data's re-profiling of q_C. That re-profiling shifts channels 0-2 by a common
log10(q_C'/q_C); its size was not measured separately.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from crnet.features import (
    CHANNEL_FROM_C110,
    CHANNEL_FROM_ELEMENTS,
    FEATURE_SPECIES,
    FeatureScaler,
    c_norm_index,
    channel_log_shift,
)

VALIDATION_NOISE_SEED_OFFSET = 7919
"""Added to the training seed for the validation split's single noise draw (a different stream from the batches')."""


@dataclass(frozen=True)
class InputNoise:
    """Pseudo-experiment fluctuations on standardised features (n, 8, n_E).

    max_relative : largest relative fluctuation per element and bin, in [0, 1) (paper: 0.05).
    scaler : the feature standardisation of the training data. energies_gev_per_n : its energy grid, GeV/n.
    """

    max_relative: float
    scaler: FeatureScaler
    energies_gev_per_n: np.ndarray

    def __post_init__(self) -> None:
        if not (np.isfinite(self.max_relative) and 0.0 < self.max_relative < 1.0):
            raise ValueError(f"input_noise (max relative fluctuation) must lie in (0, 1), got {self.max_relative}")

    def shift(self, n: int, rng: np.random.Generator) -> np.ndarray:
        """(n, 8, n_E) float64 change of the standardised features for ``n`` fresh fluctuations."""
        eps = rng.uniform(-self.max_relative, self.max_relative,
                          size=(n, len(FEATURE_SPECIES), self.energies_gev_per_n.size))
        return channel_log_shift(np.log10(1.0 + eps), self.energies_gev_per_n) / self.scaler.std[None]

    def shift_torch(self, eps, std):
        """Torch version of :meth:`shift` for given fluctuations ``eps`` (n, 5, n_E) (a tensor on the training
        device) and ``std`` (8, n_E) the scaler's standard deviations as a tensor there; float32 result."""
        import torch

        d = torch.log10(1.0 + eps)
        m = torch.as_tensor(CHANNEL_FROM_ELEMENTS, dtype=d.dtype, device=d.device)
        b = torch.as_tensor(CHANNEL_FROM_C110, dtype=d.dtype, device=d.device)
        c110 = d[:, 3, c_norm_index(self.energies_gev_per_n)]
        out = torch.einsum("ce,nek->nck", m, d) + b[None, :, None] * c110[:, None, None]
        return (out / std[None]).to(torch.float32)

    def draw_torch(self, n: int, generator, std):
        """:meth:`shift_torch` of ``n`` fresh fluctuations drawn on ``generator``'s device (float64 draws)."""
        import torch

        eps = torch.rand((n, len(FEATURE_SPECIES), self.energies_gev_per_n.size), generator=generator,
                         dtype=torch.float64, device=generator.device)
        return self.shift_torch((2.0 * eps - 1.0) * self.max_relative, std)

    def apply(self, x: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        """``x`` (n, 8, n_E) standardised features plus one fresh fluctuation per row (float32)."""
        x = np.asarray(x)
        if x.shape[2] != self.energies_gev_per_n.size:
            raise ValueError(f"features have {x.shape[2]} energy bins, the noise model {self.energies_gev_per_n.size}")
        return (x + self.shift(x.shape[0], rng)).astype(np.float32)
