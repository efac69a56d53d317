"""Model spectra at the data energies, and the checks that the spectra can be compared with a data set."""

from __future__ import annotations

import numpy as np
from scipy import interpolate

from crnet.data import Dataset
from crprop.spectra import SYMBOL_TO_Z, Spectra

LOG_FLUX_FLOOR: float = 1e-300
"""Fluxes are floored here before taking logs for the log-log interpolation (zero flux stays ~0)."""

GRID_EDGE_RTOL: float = 1e-12
"""Relative slack at the ends of the model grid for data energies (rounding of converted energies only)."""

INTERPOLATIONS: tuple[str, ...] = ("loglog", "cubic")
"""'loglog': linear in (log E, log flux), the crnet default; 'cubic': CR-ML's interp1d(kind='cubic')
in linear (E, flux)."""


def interpolate_spectra(
    e_model: np.ndarray,
    flux: np.ndarray,
    e_data: np.ndarray,
    method: str = "loglog",
) -> np.ndarray:
    """(n_models, n_E) fluxes on ``e_model`` (GeV/n) -> (n_models, n_data) at ``e_data`` (GeV/n); an energy
    outside the model grid is an error (never extrapolated)."""
    return Interpolator(e_model, e_data, method)(flux)


class Interpolator:
    """Model fluxes on ``e_model`` (GeV/n) at the data energies ``e_data`` (GeV/n) by ``method``
    (:data:`INTERPOLATIONS`); the bracketing nodes and weights are found once, for repeated calls (the phi
    profiling interpolates the same block ~10^2 times per model)."""

    def __init__(self, e_model: np.ndarray, e_data: np.ndarray, method: str = "loglog") -> None:
        if method not in INTERPOLATIONS:
            raise ValueError(f"interpolation must be one of {INTERPOLATIONS}, got {method!r}")
        self.e_model, self.e_data, self.method = np.asarray(e_model), np.asarray(e_data), method
        lo, hi = self.e_model[0] * (1 - GRID_EDGE_RTOL), self.e_model[-1] * (1 + GRID_EDGE_RTOL)
        out = (self.e_data < lo) | (self.e_data > hi) | ~np.isfinite(self.e_data)
        if np.any(out):
            raise ValueError(f"energy {float(self.e_data[out][0]):.6g} GeV/n lies outside the model grid "
                             f"[{self.e_model[0]:.6g}, {self.e_model[-1]:.6g}] GeV/n (no extrapolation)")
        if method == "loglog":
            x, xd = np.log(self.e_model), np.log(self.e_data)
            self.idx = np.clip(np.searchsorted(x, xd, side="right") - 1, 0, x.size - 2)
            self.w = (xd - x[self.idx]) / (x[self.idx + 1] - x[self.idx])

    @property
    def nodes(self) -> np.ndarray:
        """Indices of the model energies that the result depends on ('cubic': all of them)."""
        if self.method == "cubic":
            return np.arange(self.e_model.size)
        return np.union1d(self.idx, self.idx + 1)

    def __call__(self, flux: np.ndarray) -> np.ndarray:
        """(n_models, n_E) fluxes -> (n_models, n_data), same units."""
        if self.method == "cubic":
            return interpolate.interp1d(self.e_model, flux, kind="cubic", axis=-1, assume_sorted=True)(self.e_data)
        lo = np.log(np.maximum(flux[:, self.idx], LOG_FLUX_FLOOR))
        hi = np.log(np.maximum(flux[:, self.idx + 1], LOG_FLUX_FLOOR))
        return np.exp(lo * (1 - self.w) + hi * self.w)


def subset_species(spectra: Spectra, species: list[str]) -> Spectra:
    """Spectra restricted to the isotopes that make up ``species`` (cheaper to modulate)."""
    keep = np.zeros(spectra.iso_z.size, dtype=bool)
    labels = spectra.isotopes
    for sp in species:
        keep |= (
            (spectra.iso_z == SYMBOL_TO_Z[sp])
            if sp in SYMBOL_TO_Z
            else np.array([lab == sp for lab in labels])
        )
    return Spectra(
        spectra.ekin_gev_per_n,
        spectra.iso_z[keep],
        spectra.iso_a[keep],
        spectra.iso_flux[:, keep],
        spectra.converged,
        spectra.residual,
        phi_mv=spectra.phi_mv,
        meta=dict(spectra.meta),
    )


def check_spectra(spectra: Spectra, dataset: Dataset) -> None:
    """Refuse spectra that lack a measured species or are already modulated."""
    if spectra.phi_mv != 0.0:
        raise ValueError(
            f"spectra are already modulated (phi = {spectra.phi_mv} MV); the chi^2 needs the LIS"
        )
    available = set(spectra.elements) | set(spectra.isotopes)
    missing = [sp for sp in dataset.species if sp not in available]
    if missing:
        raise ValueError(
            f"spectra lack species {missing} measured by data set {dataset.name!r} "
            f"(spectra have elements {spectra.elements})"
        )
    # energies outside the spectra grid: refused by each block's prediction (crnet.likelihood.prediction)
