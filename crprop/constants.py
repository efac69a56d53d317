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
DEUTERON_MASS_FUSION_MEV: float = 1875.6
PION_PLUS_MASS_FUSION_MEV: float = 139.6
"""Deuteron and pi+ masses of GALPROP's p + p -> d + pi+ kinematics (crprop.nuclear.pp_fusion), with the proton at
NUCLEON_MASS_KINEMATICS_MEV: GALPROP's rounded values. They reproduce its crml_base_net2 2H flux to 4e-8; the PDG
masses (938.272, 1875.613, 139.570) would move it by up to 0.67 % near 70 MeV/n, at the kinematic edge."""

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

# --- GALPROP's atomic constants for the nucleon energy-loss routine (galtoolslib constants.h) -----
# nucleon_loss() uses these exact values; they differ from CODATA in the last digits, and keeping
# them reproduces GALPROP's dp/dt arrays to rounding.
PI_GALPROP: float = 3.141592653589793
"""Pi as GALPROP types it (constants.h ``Pi``); equal to math.pi to double precision."""

CLASSICAL_ELECTRON_RADIUS_CM: float = 2.8179409238e-13
"""Classical electron radius r_e = e^2/(m_e c^2), cm (GALPROP ``Rele``)."""

ELECTRON_MASS_LOSS_MEV: float = 0.5109990615
"""Electron rest energy m_e c^2 in MeV used by GALPROP's energy-loss routines (``Mele``, PDG 1990)."""

HBAR_C_MEV_CM: float = 0.19732705359e-10
"""Reduced Planck constant times c, hbar*c, in MeV cm (GALPROP ``H2PiC``)."""

BOLTZMANN_MEV_PER_K: float = 1.38066e-23 / 1.60218e-13
"""Boltzmann constant k_B in MeV/K, computed as GALPROP does (1.38066e-23 J/K / 1.60218e-13 J/MeV)."""

IONISATION_POTENTIAL_H_MEV: float = 19.0e-6
"""Effective ionisation potential of atomic H for nucleus ionisation losses, MeV (GALPROP ``EH``)."""

IONISATION_POTENTIAL_HE_MEV: float = 44.0e-6
"""Effective ionisation potential of He for nucleus ionisation losses, MeV (GALPROP ``EHe``)."""

WIM_ELECTRON_TEMPERATURE_K: float = 1.0e4
"""Electron temperature of the warm ionised medium in GALPROP's Coulomb-loss term, K (``Te``)."""

HE_H_RATIO_DEFAULT: float = 0.11
"""Default interstellar He/H number ratio (galdef ``He_H_ratio``), dimensionless."""

X_CO_DEFAULT: float = 1.9e20
"""Default CO-to-H2 conversion factor X_CO, H2 molecules cm^-2 (K km/s)^-1 (galdef ``X_CO``)."""
