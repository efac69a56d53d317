"""`Spectra`: propagated fluxes at the Sun for a batch of models — the currency handed to crnet.

Fluxes are in m^-2 s^-1 sr^-1 (GeV/n)^-1 against kinetic energy per nucleon in GeV/n.
Isotopes are stored; element sums are derived on request, so that force-field modulation
(which depends on Z/A) is applied per isotope before summing, as GALPROP does.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from crprop.constants import PROTON_MASS_MODULATION_MEV
from crprop.nuclear.species import ELEMENT_SYMBOLS as _NUCLEAR_SYMBOLS

ELEMENT_SYMBOLS: dict[int, str] = dict(enumerate(_NUCLEAR_SYMBOLS, start=1))
"""Z -> element symbol (one table: crprop.nuclear.species.ELEMENT_SYMBOLS)."""
SYMBOL_TO_Z: dict[str, int] = {v: k for k, v in ELEMENT_SYMBOLS.items()}


def isotope_label(z: int, a: int) -> str:
    """'10Be'-style label of an isotope."""
    return f"{a}{ELEMENT_SYMBOLS[z]}"


def flux_rows(name: str, iso_z: np.ndarray, iso_a: np.ndarray) -> np.ndarray:
    """Isotope rows whose fluxes sum to the flux of ``name``, an element ('B') or an isotope ('10Be'), for isotopes
    ``iso_z``, ``iso_a``; KeyError naming what there is when there is none."""
    z, a = np.asarray(iso_z), np.asarray(iso_a)
    elements = [ELEMENT_SYMBOLS[int(v)] for v in sorted(set(z.tolist()))]
    if name in SYMBOL_TO_Z:
        rows = np.flatnonzero(z == SYMBOL_TO_Z[name])
        if not rows.size:
            raise KeyError(f"element {name!r} not in these spectra (elements: {elements})")
        return rows
    labels = [isotope_label(int(zz), int(aa)) for zz, aa in zip(z, a, strict=True)]
    if name not in labels:
        raise KeyError(f"species {name!r} not in these spectra (elements {elements}, isotopes {labels})")
    return np.array([labels.index(name)])


@dataclass
class Spectra:
    """Fluxes at the Sun of a batch of models.

    Attributes
    ----------
    ekin_gev_per_n : (n_E,) kinetic energy per nucleon, GeV/n.
    iso_z, iso_a : (n_iso,) charge and mass number of each isotope.
    iso_flux : (n_models, n_iso, n_E) flux, m^-2 s^-1 sr^-1 (GeV/n)^-1.
    converged : (n_models,) bool, every species of the model met the solver tolerance.
    residual : (n_models,) largest relative residual ||Q - A psi|| / ||Q|| over the species; where the network has
        a block whose species feed each other (26Al / 26Al*, crprop.propagate), also its last sweep's relative
        change of psi, the measure of that iteration's convergence (both are judged against the solver tol).
    phi_mv : force-field potential already applied (0 for the local interstellar spectrum), MV.
    meta : free-form provenance (mode, backend, grid, version ...).
    """

    ekin_gev_per_n: np.ndarray
    iso_z: np.ndarray
    iso_a: np.ndarray
    iso_flux: np.ndarray
    converged: np.ndarray
    residual: np.ndarray
    phi_mv: float = 0.0
    meta: dict = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.ekin_gev_per_n = np.asarray(self.ekin_gev_per_n, dtype=np.float64)
        self.iso_z = np.asarray(self.iso_z, dtype=np.int64)
        self.iso_a = np.asarray(self.iso_a, dtype=np.int64)
        self.iso_flux = np.asarray(self.iso_flux, dtype=np.float64)
        if self.iso_flux.ndim == 2:
            self.iso_flux = self.iso_flux[None]
        self.converged = np.atleast_1d(np.asarray(self.converged, dtype=bool))
        self.residual = np.atleast_1d(np.asarray(self.residual, dtype=np.float64))
        n_m, n_i, n_e = self.iso_flux.shape
        if self.ekin_gev_per_n.shape != (n_e,):
            raise ValueError(f"Spectra.ekin_gev_per_n has shape {self.ekin_gev_per_n.shape}, flux needs ({n_e},)")
        if self.iso_z.shape != (n_i,) or self.iso_a.shape != (n_i,):
            raise ValueError("Spectra.iso_z / iso_a must have one entry per isotope of iso_flux")
        if self.converged.shape != (n_m,) or self.residual.shape != (n_m,):
            raise ValueError("Spectra.converged / residual must have one entry per model")
        if not np.all(np.diff(self.ekin_gev_per_n) > 0):
            raise ValueError("Spectra.ekin_gev_per_n must be strictly increasing")
        pairs = list(zip(self.iso_z.tolist(), self.iso_a.tolist(), strict=True))
        if len(set(pairs)) != len(pairs):  # an element sum would count the isotope twice (helper-105, session 22)
            twice = sorted({p for p in pairs if pairs.count(p) > 1})
            raise ValueError(f"Spectra.iso_z / iso_a name an isotope more than once: (Z, A) {twice}")

    # ------------------------------------------------------------------ naming
    @property
    def n_models(self) -> int:
        return self.iso_flux.shape[0]

    @property
    def isotopes(self) -> list[str]:
        return [isotope_label(int(z), int(a)) for z, a in zip(self.iso_z, self.iso_a, strict=True)]

    @property
    def elements(self) -> list[str]:
        return [ELEMENT_SYMBOLS[int(z)] for z in sorted(set(self.iso_z.tolist()))]

    def flux(self, name: str) -> np.ndarray:
        """(n_models, n_E) flux of an element ('B') or isotope ('10Be'), m^-2 s^-1 sr^-1 (GeV/n)^-1."""
        return self.iso_flux[:, flux_rows(name, self.iso_z, self.iso_a), :].sum(axis=1)

    def species_table(self, names: list[str] | None = None) -> tuple[list[str], np.ndarray]:
        """Element sums then isotopes: (names, (n_models, n_species, n_E) fluxes)."""
        names = names or (self.elements + self.isotopes)
        return names, np.stack([self.flux(n) for n in names], axis=1)

    # ------------------------------------------------------------------ physics
    def modulate(self, phi_mv: float) -> Spectra:
        """Force-field modulation (GALPROP modulate.cc, formula in :class:`ForceField`) of every model at one
        potential ``phi_mv`` (MV, finite and >= 0): returns new top-of-atmosphere Spectra whose ``phi_mv`` is that
        potential. A different potential per model: ``ForceField(...)(phi_array)``, which returns the fluxes."""
        if not np.isfinite(phi_mv) or phi_mv < 0:
            raise ValueError(f"phi_mv must be finite and >= 0, got {phi_mv!r}")
        if self.phi_mv != 0.0:
            raise ValueError("these Spectra are already modulated; modulate the LIS instead")
        out = ForceField(self.ekin_gev_per_n, self.iso_z, self.iso_a, self.iso_flux)(float(phi_mv))
        return Spectra(
            self.ekin_gev_per_n, self.iso_z, self.iso_a, out, self.converged, self.residual,
            phi_mv=float(phi_mv), meta=dict(self.meta),
        )

    def select(self, models: np.ndarray | slice | list[int]) -> Spectra:
        """Subset of models; the per-model meta entries (:data:`PER_MODEL_META`) follow them."""
        idx = np.arange(self.n_models)[models]
        idx = np.atleast_1d(idx)
        meta = dict(self.meta)
        for key in PER_MODEL_META:
            if key in meta and np.ndim(meta[key]) == 1 and len(meta[key]) == self.n_models:
                meta[key] = np.asarray(meta[key])[idx]
        return Spectra(
            self.ekin_gev_per_n, self.iso_z, self.iso_a, self.iso_flux[idx], self.converged[idx],
            self.residual[idx], phi_mv=self.phi_mv, meta=meta,
        )


class ForceField:
    """Force-field modulation (GALPROP modulate.cc) of fixed LIS fluxes, at one potential for all models or at one
    potential per model; the only copy of the formula (``Spectra.modulate`` calls it).

    Phi = |Z| phi / A per nucleon (MeV/n for phi in MV); J(E) = J_LIS(E + Phi) (E^2 + 2 E M) / ((E+Phi)^2 +
    2 (E+Phi) M) with M = 939 MeV (PROTON_MASS_MODULATION_MEV), E^2 J interpolated as a power law between grid
    points; where E + Phi lies above the grid the unmodulated value is kept.

    The log of E^2 J_LIS does not depend on phi and is taken once here: the nuisance-phi profiling of crnet.likelihood
    modulates the same LIS ~10^2 times per model. This returns flux arrays, not ``Spectra``: a Spectra carries one
    scalar ``phi_mv``, which its users compare with 0 (check_spectra, spectra_io, concatenate_spectra).

    ekin_gev_per_n : (n_E,) GeV/n, increasing; iso_z, iso_a : (n_iso,); iso_flux : (n_models, n_iso, n_E) LIS,
    m^-2 s^-1 sr^-1 (GeV/n)^-1.
    """

    def __init__(self, ekin_gev_per_n: np.ndarray, iso_z: np.ndarray, iso_a: np.ndarray,
                 iso_flux: np.ndarray) -> None:
        self.e_mev = np.asarray(ekin_gev_per_n, dtype=np.float64) * 1e3
        self.log_e = np.log(self.e_mev)
        self.dlog_e = self.log_e[1:] - self.log_e[:-1]  # spacing of the interpolation nodes
        self.iso_flux = np.asarray(iso_flux, dtype=np.float64)
        # Phi per unit phi, MeV/n per MV: (|Z| phi) / A is formed at call time in this order (as GALPROP does)
        self.abs_z = np.abs(np.asarray(iso_z, dtype=np.int64))
        self.iso_a = np.asarray(iso_a, dtype=np.int64)
        with np.errstate(divide="ignore"):
            self.log_e2j = np.log(np.maximum(self.iso_flux * self.e_mev**2, 1e-300))  # (n_models, n_iso, n_E)

    def __call__(self, phi_mv: float | np.ndarray, models: np.ndarray | None = None,
                 energies: slice | None = None) -> np.ndarray:
        """(n, n_iso, n_E') modulated flux, m^-2 s^-1 sr^-1 (GeV/n)^-1, of ``models`` (indices into the LIS given at
        construction; default all, n = n_models) at ``phi_mv`` (MV, finite and >= 0): a scalar for all of them, or
        (n,) one per model. ``energies``: only these grid energies (default all, n_E' = n_E); the LIS is still read
        on the whole grid, so they are the same numbers as the full result's columns. A scalar phi gives bit for
        bit what an (n,) array of that value gives."""
        phi = np.asarray(phi_mv, dtype=np.float64)
        # the models' indices, converted once: they pick the rows of the unmodulated fallback and the LIS nodes
        model_idx = None if models is None else np.asarray(models)
        n = self.iso_flux.shape[0] if model_idx is None else len(model_idx)
        if phi.ndim > 1 or (phi.ndim == 1 and phi.shape != (n,)):
            raise ValueError(f"phi_mv must be a scalar or have one entry per model ({n}), got shape {phi.shape}")
        if not np.all(np.isfinite(phi) & (phi >= 0)):
            raise ValueError(f"phi_mv must be finite and >= 0, got {phi_mv!r}")
        rows = slice(None) if model_idx is None else model_idx  # a slice: all models without a fancy-index copy
        cols = slice(None) if energies is None else energies
        log_e = self.log_e
        e_mev = self.e_mev[cols]  # the energies modulated; the LIS is interpolated on all of self.e_mev
        m = PROTON_MASS_MODULATION_MEV
        # one interpolation index per (phi, isotope, energy): (1, n_iso, n_E') for a scalar phi, else (n, n_iso, n_E')
        big_phi = self.abs_z * np.atleast_1d(phi)[:, None] / self.iso_a  # (1 or n, n_iso) MeV/n
        e_lis = e_mev + big_phi[:, :, None]  # (1 or n, n_iso, n_E')
        inside = e_lis <= self.e_mev[-1]
        x = np.minimum(np.log(e_lis), log_e[-1])  # beyond the grid: kept unmodulated below, never extrapolated
        j = np.clip(np.searchsorted(log_e, x, side="right") - 1, 0, log_e.size - 2)
        # log(E^2 J_LIS) at nodes j and j + 1 of each model, isotope and energy (flat indices into log_e2j)
        model = np.arange(n) if model_idx is None else model_idx
        node = (model[:, None, None] * self.abs_z.size + np.arange(self.abs_z.size)[None, :, None]) * log_e.size + j
        lo, hi = np.take(self.log_e2j, node), np.take(self.log_e2j, node + 1)  # (n, n_iso, n_E')
        # np.interp's form (slope times offset plus the left node): x on a node gives that node's value exactly
        interp = (hi - lo) / self.dlog_e[j] * (x - log_e[j]) + lo
        e_lis2 = e_lis**2
        j_lis = np.exp(interp) / e_lis2
        factor = (e_mev**2 + 2 * e_mev * m) / (e_lis2 + 2 * e_lis * m)
        return np.where(inside, j_lis * factor, self.iso_flux[:, :, cols][rows])


PER_MODEL_META: tuple[str, ...] = ("normalisation_factor",)
"""Spectra.meta entries with one value per model (crprop.propagate: the proton normalisation factor of each model):
select indexes them and concatenate_spectra joins them (the first part's alone were written for a whole batch of halo
groups, in the first group's order: helper-105, session 22)."""


def concatenate_spectra(parts: list[Spectra]) -> Spectra:
    """One Spectra of the models of ``parts`` in order (same energies, isotopes and modulation).

    meta: the first part's, with ``steps_per_species`` the largest over the parts, ``chunks`` their sizes, the
    :data:`PER_MODEL_META` entries joined (left out when a part lacks them) and ``grid_shape`` left out when the
    parts were solved on different grids (halo groups: crprop.propagate records the batch's grid).
    """
    if not parts:
        raise ValueError("concatenate_spectra: no parts")
    first = parts[0]
    for k, p in enumerate(parts[1:], 1):
        same_e = p.ekin_gev_per_n.shape == first.ekin_gev_per_n.shape and np.allclose(p.ekin_gev_per_n,
                                                                                      first.ekin_gev_per_n)
        same_iso = np.array_equal(p.iso_z, first.iso_z) and np.array_equal(p.iso_a, first.iso_a)
        if not (same_e and same_iso and p.phi_mv == first.phi_mv):
            raise ValueError(f"concatenate_spectra: part {k} has other energies, isotopes or phi than part 0")
    meta = dict(first.meta)
    steps = [p.meta.get("steps_per_species") for p in parts]
    if all(isinstance(x, dict) for x in steps):
        meta["steps_per_species"] = {k: max(x[k] for x in steps) for k in steps[0]}
    meta["chunks"] = [p.n_models for p in parts]
    for key in PER_MODEL_META:
        values = [p.meta.get(key) for p in parts]
        if all(v is not None and np.ndim(v) == 1 and len(v) == p.n_models for v, p in zip(values, parts, strict=True)):
            meta[key] = np.concatenate([np.asarray(v) for v in values])
        else:
            meta.pop(key, None)
    if len({tuple(p.meta.get("grid_shape", ())) for p in parts}) > 1:
        meta.pop("grid_shape", None)
    return Spectra(first.ekin_gev_per_n, first.iso_z, first.iso_a, np.concatenate([p.iso_flux for p in parts]),
                   np.concatenate([p.converged for p in parts]), np.concatenate([p.residual for p in parts]),
                   first.phi_mv, meta)
