"""Confidence thresholds and the scan statistic of the paper (Eq. 4.1; 14 free parameters)."""

from __future__ import annotations

import math

import numpy as np
from scipy import special, stats

CHI2_SCAN_FACTOR: float = 10.0
"""chi2_scan = chi2_tot / 10 (paper Eq. 4.1: errors inflated by sqrt(10) in the MCMC scan)."""

N_FREE_PARAMETERS: int = 14
"""Free parameters of the paper's scan (5 propagation + 5 source shape + 4 normalisations)."""


def delta_chi2_threshold(n_sigma: float, dof: int = N_FREE_PARAMETERS) -> float:
    """Delta chi^2 enclosing the two-sided Gaussian n-sigma probability for ``dof`` parameters."""
    return float(stats.chi2.isf(special.erfc(n_sigma / math.sqrt(2.0)), dof))


CONFIDENCE_THRESHOLDS: dict[int, float] = {n: delta_chi2_threshold(n) for n in range(1, 7)}
"""Delta chi^2 for 1..6 sigma with 14 dof (3: 33.20, 4: 43.82, 6: 69.95; the paper prints 69.91)."""


def chi2_scan(chi2_tot: np.ndarray | float) -> np.ndarray | float:
    """The MCMC-driving statistic of the paper, chi2_tot / 10 (Eq. 4.1)."""
    return chi2_tot / CHI2_SCAN_FACTOR
