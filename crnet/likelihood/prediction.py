"""What the model predicts for each data point of a block, in the block's units (m^-2 s^-1 sr^-1 (GeV/n)^-1).

A block measured in kinetic energy per nucleon (``x_native_kind`` 'Ekn', or an isotope block) is compared with
the model's element (or isotope) flux interpolated at the block energies.

A block of an element measured in rigidity R (GV; AMS-02) or in kinetic energy per particle E_k (GeV;
CALET, DAMPE p and He) was converted to E_kn by the data reader with one mean mass number A_eff
(:mod:`crnet.data.kinematics`): its points sit at E_eff(x) = E_kn of a nucleus (Z, A_eff), and its fluxes
were multiplied by f(x) = 1 / (dE_eff/dx). But an element at fixed rigidity is a sum of isotopes at *different*
energies per nucleon, so the model is predicted isotope by isotope in the published variable and then put
through the same change of variable as the data:

    M(x) = f(x) * sum_i J_i(E_i(x)) dE_i/dx,   E_i(x) = E_kn of (Z, A_i) at x,

with J_i the isotope's flux per GeV/n (force-field modulated per isotope for top-of-atmosphere blocks). For
R: E_i = (sqrt((Z R)^2 + (A_i m)^2) - A_i m) / A_i and dE_i/dR = (Z / A_i) beta_i; for E_k: E_i = E_k / A_i
and dE_i/dE_k = 1 / A_i. The A_eff assumption then cancels exactly between data and model: chi^2 is that of
the published fluxes in the published variable. Treating the element as one nucleus (Z, A_eff) instead is off by
up to 5 % in Be and 3 % in Li and C across the AMS-02 range for GALPROP's crml_base (Delta chi^2 ~ 10^2 - 10^3
on ``ams02-2021``; review of session 12), because the isotopes' Z/A differ.
"""

from __future__ import annotations

import numpy as np

from crnet.data import DataBlock
from crnet.data.kinematics import convert_x_to_ekn
from crnet.likelihood.interpolation import Interpolator
from crprop.spectra import SYMBOL_TO_Z, Spectra, flux_rows

RESOLVED_KINDS: tuple[str, ...] = ("R", "Ek")
"""Published variables of element blocks whose prediction is summed isotope by isotope (module docstring)."""


class BlockPrediction:
    """Model fluxes at one block's points for Spectra whose isotopes are ``iso_z``, ``iso_a`` (in that order) on
    energies ``e_model`` (GeV/n). Interpolation nodes and weights are found once (the phi profiling calls this
    ~10^2 times per model)."""

    def __init__(self, block: DataBlock, e_model: np.ndarray, iso_z: np.ndarray, iso_a: np.ndarray,
                 method: str) -> None:
        self.block = block
        self.resolved = (block.x_native_kind in RESOLVED_KINDS and block.a_eff is not None
                         and block.species in SYMBOL_TO_Z and block.x_native is not None)
        if not self.resolved:  # the element's (or isotope's) flux at the block energies
            try:
                self.rows = flux_rows(block.species, iso_z, iso_a)  # found once, not at every call
            except KeyError as exc:
                raise ValueError(f"data block {block.label!r}: {exc.args[0]}") from None
            self.interp = _interpolator(block, e_model, block.ekin_gev_per_n, method, block.species)
            return
        # per isotope: its E_kn at the published x, and f / f_i (f = 1/(dE_kn/dx), the data's factor at A_eff)
        x, kind = block.x_native, block.x_native_kind
        _, f_data = convert_x_to_ekn(x, kind, block.species, float(block.a_eff))
        self.terms = []
        for row in np.flatnonzero(iso_z == SYMBOL_TO_Z[block.species]):
            e_i, f_i = convert_x_to_ekn(x, kind, block.species, float(iso_a[row]))
            label = f"{int(iso_a[row])}{block.species}"
            self.terms.append((int(row), _interpolator(block, e_model, e_i, method, label), f_data / f_i))
        if not self.terms:
            raise ValueError(f"data block {block.label!r}: the spectra have no isotope of {block.species}")

    @property
    def nodes(self) -> np.ndarray:
        """Indices of the model energies (``e_model``) that the prediction depends on."""
        if not self.resolved:
            return self.interp.nodes
        return np.unique(np.concatenate([interp.nodes for _, interp, _ in self.terms]))

    def __call__(self, spectra: Spectra) -> np.ndarray:
        """(n_models, n_points) model flux, m^-2 s^-1 sr^-1 (GeV/n)^-1 (``spectra`` in the layout given at
        construction)."""
        return self.predict(spectra.iso_flux)

    def predict(self, iso_flux: np.ndarray) -> np.ndarray:
        """The same from an (n_models, n_iso, n_E) flux array in that layout (e.g. ``crprop.spectra.ForceField``'s,
        modulated at one phi per model)."""
        if not self.resolved:
            return self.interp(iso_flux[:, self.rows, :].sum(axis=1))
        return sum(interp(iso_flux[:, row, :]) * weight for row, interp, weight in self.terms)


def block_predictions(spectra: Spectra, blocks: list[DataBlock], phi_by_block: list[float | None],
                      method: str = "loglog") -> list[np.ndarray]:
    """(n_models, n_points) model flux at every block's points, m^-2 s^-1 sr^-1 (GeV/n)^-1, before the
    normalisations: ``spectra`` (LIS) modulated at ``phi_by_block[i]`` (MV; None for an interstellar block)."""
    modulated: dict[float, Spectra] = {}
    out = []
    for block, phi in zip(blocks, phi_by_block, strict=True):
        if phi is None:
            sp = spectra
        else:
            if float(phi) not in modulated:
                modulated[float(phi)] = spectra.modulate(float(phi))
            sp = modulated[float(phi)]
        out.append(BlockPrediction(block, sp.ekin_gev_per_n, sp.iso_z, sp.iso_a, method)(sp))
    return out


def _interpolator(block: DataBlock, e_model: np.ndarray, e_points: np.ndarray, method: str,
                  what: str) -> Interpolator:
    try:
        return Interpolator(e_model, e_points, method)
    except ValueError as exc:
        raise ValueError(f"data block {block.label!r} ({what}): {exc}") from None
