"""chi^2 of propagated spectra against a measured data set, normalisations profiled exactly.

Definitions (Tsai, Chung, Yuan & Cheung, JCAP 2022 = "the paper"; CR-ML = its code, read at
alan200276/CR-ML: ``Calculate_Chi_Square``, ``ReCalculateAp``, ``ReCalculateN``)
------------------------------------------------------------------------------------------------
Input spectra Phi_k(E) (``Spectra``, m^-2 s^-1 sr^-1 (GeV/n)^-1 on E in GeV/n) are the unmodulated
(LIS) fluxes of one propagation model. For a data block of species k the model prediction is

    M_k(E_j) = s_k * Phi_k(E_j),      Phi_k interpolated linearly in (log E, log Phi),

where Phi_k is force-field modulated (``Spectra.modulate``, phi in MV) first for top-of-atmosphere
blocks. The species scales are built from the paper's four normalisation parameters (Sec. 2, 4.3):

    s_C = s_B = q_C                   (q_C: overall normalisation, free, q_C >= 0)
    s_Li = q_C * xi_Li,  s_Be = q_C * xi_Be,  s_O = q_C * (q_O/q_C)

q_C multiplies every species: GALPROP/crprop normalise the proton flux, so the absolute nuclear
normalisation (the carbon source abundance; CR-ML's re-fitted "A_p") is free. xi_Li and xi_Be are the
fragmentation cross-section factors and q_O/q_C the O-to-C source ratio relative to the input
spectra; each multiplies its species on top of q_C. This is Table 2 read with Phi = data-matched flux
and N = normalisation-free input: N_Li = Phi_Li / xi_Li, N_Be = Phi_Be / xi_Be, N_O = Phi_O q_C / q_O,
and it is what CR-ML does (``Li * N_Li * ap``, ``O * N_O * ap``, ``B * ap``, ``C * ap``). The three
ratios are bounded to [0.8, 1.2] by default — the paper's "normalisations may differ by up to 20 % due
to fragmentation cross sections" and CR-ML's scan range ``np.linspace(0.8, 1.2, ...)``; bounds are
configurable. Any other species (N, Ne, ...) scales with q_C alone.

    chi2_tot  = sum over blocks and points of ((M_k(E_j) - F_j) / sigma_j)^2         (Eq. 4.3)
    sigma_j   = sqrt(stat^2 + sys^2)   (CR-ML convention, see ``crnet.data.dataset``)
    chi2_scan = chi2_tot / 10                                                       (Eq. 4.1)

Profiling is exact, not a grid scan: with a_k = sum Phi^2/sigma^2, b_k = sum Phi F/sigma^2 per
species, chi^2 is a convex quadratic in (q_C, s_Li, s_Be, s_O) over the polyhedral cone
{q_C >= 0, lo q_C <= s_k <= hi q_C}. Its minimum is the best feasible one among the minimisers of
every face (each ratio free / at its lower / at its upper bound: 3^3 closed-form candidates, plus the
apex q_C = 0), evaluated vectorised over models. A nuisance phi (top-of-atmosphere data sets) is
profiled numerically, vectorised over models: one modulation period by a grid over its bounds, then bounded
Brent; several periods jointly, by a grid per phi, then cyclic coordinate descent by bounded Brent
(``Chi2Result.phi_converged``).

Differences from CR-ML, by design: q_C is free (CR-ML scans A_p on a grid in [0.383, 1.402]); the
minimum is exact instead of a grid scan (200-1000 points per ratio, depending on the CR-ML version);
the model is interpolated log-log instead of with a linear-space cubic spline
(``interpolation="cubic"`` reproduces CR-ML's choice; it changes chi^2 by ~1 %); and CR-ML fits A_p
first and the ratios afterwards, whereas all four are profiled jointly here (never worse).

Delta chi^2 thresholds of the paper (14 free parameters): ``delta_chi2_threshold(n_sigma)`` is the
chi^2_14 quantile at the two-sided Gaussian n-sigma tail erfc(n/sqrt 2): 1 sigma 15.94, 3 sigma
33.20, 4 sigma 43.82, 6 sigma 69.95. The paper prints 69.91 for 6 sigma, which is the quantile at the
tail rounded to 2e-9 (the exact tail is 1.973e-9); CR-ML's code types 70.

Modules: :mod:`.thresholds` (Delta chi^2 levels, chi2_scan), :mod:`.normalisation` (the exact profile),
:mod:`.interpolation` (model at the data energies), :mod:`.prediction` (the model at each
data point in the block's units: isotope by isotope for rigidity data), :mod:`.problem` (one data set's residuals),
:mod:`.modulation` (fixed or profiled phi per period), :mod:`.minimise` (its bounded minimisers, vectorised over
models), :mod:`.result` and :mod:`.core` (``chi2``).
"""

from __future__ import annotations

from crnet.likelihood.core import chi2
from crnet.likelihood.interpolation import INTERPOLATIONS, LOG_FLUX_FLOOR, check_spectra, interpolate_spectra
from crnet.likelihood.modulation import (
    PHI_AT_BOUND_MV,
    PHI_GRID_POINTS,
    PHI_MAX_EVALS_PER_PERIOD,
    PHI_SWEEP_FTOL,
    PHI_SWEEP_XTOL_MV,
    PHI_XATOL_MV,
)
from crnet.likelihood.normalisation import (
    DEFAULT_NORM_BOUNDS,
    FEASIBILITY_RTOL,
    RATIO_PARAMETERS,
    profile_normalisations,
)
from crnet.likelihood.prediction import BlockPrediction, block_predictions
from crnet.likelihood.result import Chi2Result
from crnet.likelihood.thresholds import (
    CHI2_SCAN_FACTOR,
    CONFIDENCE_THRESHOLDS,
    N_FREE_PARAMETERS,
    chi2_scan,
    delta_chi2_threshold,
)

__all__ = [
    "CHI2_SCAN_FACTOR",
    "CONFIDENCE_THRESHOLDS",
    "DEFAULT_NORM_BOUNDS",
    "FEASIBILITY_RTOL",
    "INTERPOLATIONS",
    "LOG_FLUX_FLOOR",
    "N_FREE_PARAMETERS",
    "PHI_AT_BOUND_MV",
    "PHI_GRID_POINTS",
    "PHI_MAX_EVALS_PER_PERIOD",
    "PHI_SWEEP_FTOL",
    "PHI_SWEEP_XTOL_MV",
    "PHI_XATOL_MV",
    "RATIO_PARAMETERS",
    "BlockPrediction",
    "Chi2Result",
    "check_spectra",
    "chi2",
    "block_predictions",
    "chi2_scan",
    "delta_chi2_threshold",
    "interpolate_spectra",
    "profile_normalisations",
]
