"""Conversions of measured nuclear spectra to kinetic energy per nucleon (GeV/n).

Rigidity tables (AMS-02, x = R in GV, flux in m^-2 s^-1 sr^-1 GV^-1) and per-particle kinetic
energy tables (CALET/DAMPE p and He, x = E_k in GeV, flux per GeV) are mapped to kinetic energy per
nucleon E_kn (GeV/n, flux in m^-2 s^-1 sr^-1 (GeV/n)^-1) with an assumed isotope mix of the element.

A measured element at fixed rigidity is a mixture of isotopes that sit at different E_kn. The mix is
represented by its mean mass number A_eff = sum_i f_i A_i (f_i = number fractions): the element is
treated as a single nucleus (Z, A_eff) for the change of variable,

    p = Z R,   E_kn = (sqrt(p^2 + (A_eff m)^2) - A_eff m) / A_eff,   dE_kn/dR = (Z / A_eff) beta,
    flux_Ekn = flux_R / (dE_kn/dR);     E_kn = E_k / A_eff,  flux_Ekn = A_eff flux_Ek,

with m = 0.938 GeV, the nucleon mass GALPROP (and crprop) use for nuclear kinematics, so that converted
energies sit on the same footing as the model's energy grid. This is the convention of the AMS-02
and DAMPE E_kn tables (e.g. DAMPE boron: "A = 10.7 assumed"). For Li and Be, whose isotopes differ
most in A/Z, the conversion at 2 GV moves E_kn by a few per cent per unit of A_eff. The chi^2 does not
depend on A_eff: :mod:`crnet.likelihood.prediction` predicts such blocks isotope by isotope in the published
variable and applies the same change of variable to the model, so A_eff only decides where the points are
drawn on an E_kn axis.
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np

from crprop.constants import NUCLEON_MASS_KINEMATICS_MEV
from crprop.spectra import SYMBOL_TO_Z

NUCLEON_MASS_GEV: float = NUCLEON_MASS_KINEMATICS_MEV * 1e-3
"""Nucleon mass used for the R <-> E_kn change of variable, GeV (GALPROP's 938 MeV)."""

MIX_FRACTION_TOL: float = 1e-9
"""How far the isotope fractions of a mix may sum from 1 (they are number fractions)."""

DEFAULT_ISOTOPE_MIX: dict[str, dict[int, float]] = {
    "H": {1: 1.0},
    "He": {3: 0.15, 4: 0.85},
    "Li": {6: 0.5, 7: 0.5},
    "Be": {7: 0.55, 9: 0.35, 10: 0.10},
    "B": {10: 0.3, 11: 0.7},
    "C": {12: 1.0},
    "N": {14: 0.5, 15: 0.5},
    "O": {16: 1.0},
    "Ne": {20: 1.0},
    "Mg": {24: 1.0},
    "Si": {28: 1.0},
}
"""Number fractions of the isotopes of each element at a few GV, used when converting element data.

Round values of the measured/propagated composition near 1-10 GV/n: 3He/He ~ 0.15 (AMS-02, PAMELA),
6Li/7Li ~ 1 (AMS-02 2025), 7Be:9Be:10Be ~ 0.55:0.35:0.10 (ACE/ISOMAX/AMS-02 Be isotopes),
10B/B ~ 0.3 (A_eff = 10.7, the value AMS-02 and DAMPE use), 15N/N ~ 0.5 (secondary-rich N); C and O
are taken as pure 12C and 16O (A_eff = 12 and 16, the values of the AMS-02 E_kn tables), although 13C is 10-12 % of
propagated carbon at 0.6-4 GeV/n (GALPROP crml_base). The mix only places converted points on the E_kn axis; the
chi^2 sums the model's own isotopes (:mod:`crnet.likelihood.prediction`).
"""


def effective_mass_number(element: str, mix: Mapping[int, float] | None = None) -> float:
    """Mean mass number A_eff = sum f_i A_i of an element's isotope mix (default: DEFAULT_ISOTOPE_MIX)."""
    if element not in SYMBOL_TO_Z:
        raise ValueError(f"unknown element {element!r}; known: {sorted(SYMBOL_TO_Z, key=SYMBOL_TO_Z.get)}")
    if mix is None:
        if element not in DEFAULT_ISOTOPE_MIX:
            raise ValueError(f"no default isotope mix for {element!r}; pass one, e.g. {{A: fraction}}")
        mix = DEFAULT_ISOTOPE_MIX[element]
    fractions = np.array(list(mix.values()), dtype=float)
    masses = np.array(list(mix.keys()), dtype=float)
    if np.any(fractions < 0) or abs(fractions.sum() - 1.0) > MIX_FRACTION_TOL:
        raise ValueError(f"isotope mix of {element} must have fractions >= 0 summing to 1, got {dict(mix)}")
    if np.any(masses < SYMBOL_TO_Z[element]):
        raise ValueError(f"isotope mix of {element} has a mass number below Z: {dict(mix)}")
    return float(np.dot(fractions, masses))


def rigidity_to_ekn(rigidity_gv: np.ndarray, z: int, a_eff: float) -> np.ndarray:
    """Kinetic energy per nucleon (GeV/n) of a nucleus (Z, A_eff) with rigidity R (GV)."""
    m = a_eff * NUCLEON_MASS_GEV
    p = z * np.asarray(rigidity_gv, dtype=float)
    return (np.sqrt(p * p + m * m) - m) / a_eff


def ekn_to_rigidity(ekn_gev: np.ndarray, z: int, a_eff: float) -> np.ndarray:
    """Rigidity (GV) of a nucleus (Z, A_eff) with kinetic energy per nucleon E_kn (GeV/n)."""
    m = a_eff * NUCLEON_MASS_GEV
    etot = a_eff * np.asarray(ekn_gev, dtype=float) + m
    return np.sqrt(etot * etot - m * m) / z


def d_ekn_d_rigidity(rigidity_gv: np.ndarray, z: int, a_eff: float) -> np.ndarray:
    """Jacobian dE_kn/dR = (Z/A_eff) beta, in (GeV/n) per GV."""
    m = a_eff * NUCLEON_MASS_GEV
    p = z * np.asarray(rigidity_gv, dtype=float)
    return (z / a_eff) * p / np.sqrt(p * p + m * m)


def convert_x_to_ekn(x: np.ndarray, x_kind: str, element: str, a_eff: float) -> tuple[np.ndarray, np.ndarray]:
    """Map x values of kind 'R' (GV), 'Ek' (GeV) or 'Ekn' (GeV/n) to E_kn (GeV/n).

    Returns (E_kn, factor) with factor the multiplier turning a flux per unit x into a flux per
    GeV/n at that point: 1/(dE_kn/dR) for rigidity, A_eff for E_k, 1 for E_kn.
    """
    x = np.asarray(x, dtype=float)
    z = SYMBOL_TO_Z[element]
    if x_kind == "Ekn":
        return x.copy(), np.ones_like(x)
    if x_kind == "Ek":
        return x / a_eff, np.full_like(x, a_eff)
    if x_kind == "R":
        return rigidity_to_ekn(x, z, a_eff), 1.0 / d_ekn_d_rigidity(x, z, a_eff)
    raise ValueError(f"cannot convert x of kind {x_kind!r} (total energy of leptons) to GeV/n for {element}")
