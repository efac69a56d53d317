"""The result of a chi^2 evaluation: one entry per model."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from crnet.likelihood.thresholds import chi2_scan


@dataclass
class Chi2Result:
    """chi^2 of every model against one data set (all arrays have one entry per model).

    chi2_tot : Eq. 4.3 at the profiled normalisations (and phi).
    q_c : overall scale applied to every species (dimensionless).
    ratios : {'xi_Li', 'xi_Be', 'qO_over_qC'} -> (n_models,) ratio (NaN where the species is not measured).
    phi_mv : force-field potential used for top-of-atmosphere blocks, MV, when the data set has exactly one
        modulation period (None for LIS-only data sets and for several periods: see ``phi_by_period``).
    phi_by_period : {period: (n_models,) phi in MV} for every modulation period of the data set (``Dataset.periods``;
        the single-Modulation period is ''); {} for LIS-only data sets.
    phi_converged : (n_models,) whether the profiling of the nuisance phi(s) met its tolerance (True where no phi
        is profiled); a model with False has the chi^2 at the best phi found, not a verified minimum.
    phi_at_bound : {period: (n_models,) bool} for each profiled phi: True where it ended on a bound of its prior
        range (within PHI_AT_BOUND_MV). chi^2 is then the minimum inside the range, not a free minimum: the fit
        wants a potential outside it (often a model that does not describe the data).
    chi2_by_block : (n_models, n_blocks), columns in the order of ``block_labels``.
    residuals : (n_models, n_points) normalised residuals (s_k M_k(E_j) - F_j) / sigma_j at the profiled
        normalisations, blocks in data-set order (sum of squares = chi2_tot); only with
        ``chi2(..., residuals=True)``, else None.
    """

    dataset: str
    n_points: int
    chi2_tot: np.ndarray
    q_c: np.ndarray
    ratios: dict[str, np.ndarray]
    chi2_by_block: np.ndarray
    block_labels: list[str]
    phi_mv: np.ndarray | None = None
    bounds: dict[str, tuple[float, float]] = field(default_factory=dict)
    residuals: np.ndarray | None = None
    phi_by_period: dict[str, np.ndarray] = field(default_factory=dict)
    phi_converged: np.ndarray | None = None
    phi_at_bound: dict[str, np.ndarray] = field(default_factory=dict)

    @property
    def chi2_scan(self) -> np.ndarray:
        return chi2_scan(self.chi2_tot)

    def to_records(self) -> list[dict]:
        """One JSON-ready dict per model."""
        out = []
        for i in range(self.chi2_tot.size):
            rec = {
                "model": i,
                "chi2_tot": float(self.chi2_tot[i]),
                "chi2_scan": float(self.chi2_scan[i]),
                "n_points": self.n_points,
                "q_C": float(self.q_c[i]),
            }
            rec.update({name: float(v[i]) for name, v in self.ratios.items()})
            if self.phi_mv is not None:
                rec["phi_MV"] = float(self.phi_mv[i])
            else:
                rec.update({f"phi_MV[{key}]": float(v[i]) for key, v in self.phi_by_period.items()})
            if self.phi_converged is not None and not self.phi_converged[i]:
                rec["phi_converged"] = False
            at_bound = [key for key, v in self.phi_at_bound.items() if v[i]]
            if at_bound:
                rec["phi_at_bound"] = at_bound
            ratios_at_bound = [name for name, v in self.ratios.items() if _on_bound(v[i], self.bounds.get(name))]
            if ratios_at_bound:
                rec["ratios_at_bound"] = ratios_at_bound
            out.append(rec)
        return out


RATIO_AT_BOUND_RTOL: float = 1e-9
"""A profiled ratio within this relative distance of a bound of its range counts as on it: the bounded minimiser
returns the bound itself (to rounding), while a free minimum inside lies ~1e-3 or more away."""


def _on_bound(value: float, bounds: tuple[float, float] | None) -> bool:
    """Whether a profiled ratio ``value`` sits on a bound of its range (:data:`RATIO_AT_BOUND_RTOL`); never for a
    range of one value (--norm-lo = --norm-hi fixes the ratio: nothing is profiled against the bounds)."""
    if bounds is None or not np.isfinite(value) or bounds[0] == bounds[1]:
        return False
    return any(abs(value - b) <= RATIO_AT_BOUND_RTOL * abs(b) for b in bounds)
