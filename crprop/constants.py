"""Physical constants and unit conversions: the single source of truth for crprop and crnet.

Values follow GALPROP v54 where GALPROP's choice affects reproduced numbers (its kpc, its year,
its nucleon masses); every other module imports from here instead of typing numbers.
"""

from __future__ import annotations

# --- speed of light and units ----------------------------------------------------------------
C_CM_S: float = 2.99792458e10
"""Speed of light, cm/s."""

KPC_CM: float = 3.08568e21
"""One kiloparsec in cm (GALPROP's value)."""

YEAR_S: float = 365.25 * 86400.0
"""One Julian year in s (GALPROP's year: 3.15576e7 s)."""

MB_CM2: float = 1.0e-27
"""One millibarn in cm^2."""

KM_CM: float = 1.0e5
"""One km in cm (Alfven speeds are given in km/s)."""

# --- masses -----------------------------------------------------------------------------------
NUCLEON_MASS_KINEMATICS_MEV: float = 938.0
"""Mass per nucleon in MeV that GALPROP uses for the kinematics of every nucleus (m = A * 938 MeV)."""

AMU_MEV: float = 931.494
"""Atomic mass unit in MeV (GALPROP's energy-loss routine uses M = A * 931.494 MeV)."""

PROTON_MASS_MODULATION_MEV: float = 939.0
"""Nucleon mass used by GALPROP's force-field modulation formula (modulate.cc)."""

ELECTRON_MASS_MEV: float = 0.5109989
"""Electron rest energy, MeV."""

# --- solar position (GALPROP v54 hard-codes these) -------------------------------------------
R_SUN_KPC: float = 8.5
"""Galactocentric radius of the Sun, kpc."""

Z_SUN_KPC: float = 0.0
"""Height of the Sun above the plane, kpc."""

# --- unit conversions for fluxes --------------------------------------------------------------
FLUX_CGS_MEV_TO_SI_GEV: float = 1.0e4 * 1.0e3
"""cm^-2 s^-1 sr^-1 (MeV/n)^-1  ->  m^-2 s^-1 sr^-1 (GeV/n)^-1 (x1e4 for cm^-2->m^-2, x1e3 per GeV)."""
