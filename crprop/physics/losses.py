"""Ionisation and Coulomb momentum losses of nuclei (GALPROP galtoolslib ``nucleon_loss``).

GALPROP's routine (Strong & Moskalenko 1998, ApJ 509, 212) returns the energy-loss rate in eV/s of a
nucleus (Z, A) with total energy E_tot in neutral gas of H density n_H (He at ``he_h_ratio * n_H``)
and in ionised hydrogen of density n_HII. It uses its own mass ``M = A * 931.494 MeV``, so that
``gamma_l = E_tot / M`` (0.7 % above the kinematic gamma) and ``beta_l = sqrt(1 - 1/gamma_l^2)``:

* ionisation: ``2 pi r_e^2 m_e c^2 c Z^2 / beta_l * [n_H B(19 eV) + 0.11 n_H B(44 eV)]`` with
  ``B(I) = ln(2 m_e c^2 (gamma_l^2 - 1) q_max / I^2) - 2 beta_l^2`` and
  ``q_max = 2 m_e c^2 (gamma_l^2 - 1) / (1 + 2 gamma_l m_e / M)``;
* Coulomb (cold-plasma limit, T_e = 1e4 K): ``4 pi r_e^2 m_e c^2 c Z^2 n_HII / beta_l * Lambda * w`` with
  ``Lambda = -1/2 ln[4 pi r_e (hbar c)^2 n_HII (M + 2 gamma_l m_e) / (4 gamma_l^2 beta_l^4 m_e^2 M)]``,
  ``w = beta_l^3 / (x_m^3 + beta_l^3)``, ``x_m = (3 sqrt(pi)/4)^(1/3) sqrt(2 k T_e / m_e c^2)``.

``create_transport_arrays`` then divides by the **kinematic** beta (m = A * 938 MeV) and by 1e6:
``|dp/dt| [MeV/c / s] = (ion + coul) [eV/s] / beta * 1e-6``. Because Lambda contains ln n_HII the
rate is written here in the factored form of the reference README::

    |dp/dt|(r, z, p) = n_neutral(r, z) * ion(p) + n_HII(r, z) * (c1(p) - c2(p) * ln n_HII(r, z))

with n_neutral = n_HI + 2 n_H2; c1 is the Coulomb coefficient at n_HII = 1 cm^-3 and
``c2 = 1/2 * 4 pi r_e^2 m_e c^2 c Z^2 w / beta_l / beta * 1e-6``. Cells with n_HII = 0 get no Coulomb
loss (the limit n ln n -> 0).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from crprop.constants import (
    AMU_MEV,
    BOLTZMANN_MEV_PER_K,
    C_CM_S,
    CLASSICAL_ELECTRON_RADIUS_CM,
    ELECTRON_MASS_LOSS_MEV,
    HBAR_C_MEV_CM,
    HE_H_RATIO_DEFAULT,
    IONISATION_POTENTIAL_H_MEV,
    IONISATION_POTENTIAL_HE_MEV,
    PI_GALPROP,
    WIM_ELECTRON_TEMPERATURE_K,
)
from crprop.physics._checks import as_array
from crprop.physics.kinematics import Kinematics

__all__ = [
    "LossCoefficients",
    "loss_coefficients",
    "momentum_loss_rate",
    "nucleon_energy_loss_ev_s",
]

_EV_PER_MEV_INV: float = 1.0e-6
"""eV -> MeV conversion applied by GALPROP to the loss rate (eV/s -> MeV/s, then /beta -> MeV/c per s)."""


@dataclass(frozen=True)
class LossCoefficients:
    """Density-independent pieces of the momentum-loss rate (MeV/c s^-1 per cm^-3).

    Shapes: ``S + (n_E,)`` where S is the species shape of the :class:`Kinematics` used
    (``()`` for one nucleus, ``(n_s,)`` for several).

    Attributes
    ----------
    ion_per_n_neutral : ionisation loss per unit neutral-H density (He at he_h_ratio included),
        MeV/c s^-1 cm^3.
    coul_c1 : Coulomb loss per unit n_HII at n_HII = 1 cm^-3, MeV/c s^-1 cm^3.
    coul_c2 : coefficient of ``-n_HII ln n_HII`` in the Coulomb loss, MeV/c s^-1 cm^3.
    """

    ion_per_n_neutral: np.ndarray
    coul_c1: np.ndarray
    coul_c2: np.ndarray

    def __post_init__(self) -> None:
        for name in ("ion_per_n_neutral", "coul_c1", "coul_c2"):
            getattr(self, name).setflags(write=False)


def _loss_kinematics(z: np.ndarray, a: np.ndarray, etot_mev: np.ndarray) -> tuple[np.ndarray, ...]:
    """GALPROP's loss-routine M, gamma_l, beta_l and the prefactor pi r_e^2 c m_e c^2 (eV cm^3/s)."""
    mass = 1.0e3 * a * (AMU_MEV * 1.0e-3)  # GALPROP: MA = 1.e3*a*amu with amu = 0.931494 GeV
    gam = etot_mev / mass
    bet = np.sqrt(1.0 - 1.0 / (gam * gam))
    pir02mc2c = (
        PI_GALPROP * CLASSICAL_ELECTRON_RADIUS_CM * CLASSICAL_ELECTRON_RADIUS_CM * C_CM_S
        * (ELECTRON_MASS_LOSS_MEV * 1.0e6)
    )
    return mass, gam, bet, pir02mc2c


def _coulomb_weight(bet: np.ndarray, electron_temperature_k: float) -> np.ndarray:
    """w = beta^3 / (x_m^3 + beta^3) with x_m = (3 sqrt(pi)/4)^(1/3) sqrt(2 k T_e / m_e c^2)."""
    bet_e = np.sqrt(2.0 * BOLTZMANN_MEV_PER_K * electron_temperature_k / ELECTRON_MASS_LOSS_MEV)
    xm = np.power(3.0 * np.sqrt(PI_GALPROP) / 4.0, 1.0 / 3.0) * bet_e
    return bet * bet * bet / (xm * xm * xm + bet * bet * bet)


def _coulomb_log_argument(mass: np.ndarray, gam: np.ndarray, bet: np.ndarray) -> np.ndarray:
    """Argument of the Coulomb logarithm divided by n_HII (cm^3): Lambda = -ln(arg * n_HII) / 2."""
    me = ELECTRON_MASS_LOSS_MEV
    pir0h2c2 = PI_GALPROP * CLASSICAL_ELECTRON_RADIUS_CM * HBAR_C_MEV_CM * HBAR_C_MEV_CM
    denominator = 4.0 * gam * gam * bet * bet * bet * bet * me * me * mass
    return 4.0 * pir0h2c2 * (mass + 2.0 * gam * me) / denominator


def _ionisation_bracket(
    mass: np.ndarray, gam: np.ndarray, bet: np.ndarray, he_h_ratio: float
) -> np.ndarray:
    """B(I_H) + he_h_ratio * B(I_He), dimensionless."""
    me = ELECTRON_MASS_LOSS_MEV
    qmax = 2.0 * me * (gam * gam - 1.0) / (1.0 + 2.0 * gam * me / mass)
    e_h = IONISATION_POTENTIAL_H_MEV
    e_he = IONISATION_POTENTIAL_HE_MEV
    bh = np.log(2.0 * me * (gam * gam - 1.0) * qmax / (e_h * e_h)) - 2.0 * bet * bet
    bhe = np.log(2.0 * me * (gam * gam - 1.0) * qmax / (e_he * e_he)) - 2.0 * bet * bet
    return bh + he_h_ratio * bhe


def loss_coefficients(
    kin: Kinematics,
    *,
    he_h_ratio: float = HE_H_RATIO_DEFAULT,
    electron_temperature_k: float = WIM_ELECTRON_TEMPERATURE_K,
) -> LossCoefficients:
    """Factored ionisation + Coulomb momentum-loss coefficients of the nuclei in ``kin``.

    Parameters
    ----------
    kin : Kinematics (from :func:`crprop.physics.kinematics.nucleus_kinematics`); uses Z, A,
        total energy (MeV) and the kinematic beta.
    he_h_ratio : He/H number ratio of the neutral gas, in [0, 1] (default 0.11).
    electron_temperature_k : electron temperature of the ionised gas, K, > 0 (default 1e4 K).

    Returns
    -------
    LossCoefficients with arrays of shape ``kin.p_mev.shape``, MeV/c s^-1 per cm^-3.
    """
    if not isinstance(kin, Kinematics):
        raise ValueError(f"kin must be a crprop.physics.kinematics.Kinematics, got {type(kin).__name__}")
    he = float(as_array("he_h_ratio", he_h_ratio, 0.0, 1.0, ndim=0))
    te = float(as_array("electron_temperature_k", electron_temperature_k, 0.0, lo_open=True, ndim=0))

    z = kin.Z.astype(np.float64)[..., None]
    a = kin.A.astype(np.float64)[..., None]
    mass, gam, bet, pir02mc2c = _loss_kinematics(z, a, kin.etot_mev)

    # GALPROP: aion = 2*PIR02MC2C*z*z/bet*(nh*bh + nhe*bhe); dp/dt = aion / beta_kin * 1e-6.
    ion = 2.0 * pir02mc2c * z * z / bet * _ionisation_bracket(mass, gam, bet, he) / kin.beta * _EV_PER_MEV_INV
    # GALPROP: coul = 4*PIR02MC2C*z*z*n_HII/bet * coullog * we, coullog = -log(arg * n_HII)/2.
    weight = _coulomb_weight(bet, te)
    log_arg = _coulomb_log_argument(mass, gam, bet)
    c1 = 4.0 * pir02mc2c * z * z / bet * (-np.log(log_arg) / 2.0) * weight / kin.beta * _EV_PER_MEV_INV
    c2 = 4.0 * pir02mc2c * z * z / bet * 0.5 * weight / kin.beta * _EV_PER_MEV_INV
    return LossCoefficients(ion_per_n_neutral=ion, coul_c1=c1, coul_c2=c2)


def momentum_loss_rate(
    coefficients: LossCoefficients,
    n_h_neutral_cm3: np.ndarray,
    n_hii_cm3: np.ndarray,
) -> np.ndarray:
    """Full momentum-loss rate |dp/dt| = n_neutral * ion + n_HII * (c1 - c2 ln n_HII), MeV/c per s.

    Parameters
    ----------
    coefficients : LossCoefficients with arrays of shape ``S + (n_E,)``.
    n_h_neutral_cm3 : (n_r, n_z) neutral H density n_HI + 2 n_H2, cm^-3, >= 0.
    n_hii_cm3 : (n_r, n_z) ionised H density, cm^-3, >= 0 (cells with 0 get no Coulomb loss).

    Returns
    -------
    Array of shape ``S + (n_r, n_z, n_E)`` (``(n_r, n_z, n_E)`` for one nucleus), MeV/c s^-1,
    positive = loss.
    """
    if not isinstance(coefficients, LossCoefficients):
        raise ValueError(f"coefficients must be a LossCoefficients, got {type(coefficients).__name__}")
    n_neu = as_array("n_h_neutral_cm3", n_h_neutral_cm3, 0.0, ndim=2)
    n_ion = as_array("n_hii_cm3", n_hii_cm3, 0.0, ndim=2)
    if n_neu.shape != n_ion.shape:
        raise ValueError(
            "n_h_neutral_cm3 and n_hii_cm3 must have the same (n_r, n_z) shape, "
            f"got {n_neu.shape} and {n_ion.shape}"
        )
    positive = n_ion > 0.0
    log_n = np.log(np.where(positive, n_ion, 1.0))

    lead = coefficients.ion_per_n_neutral.ndim - 1
    idx = (Ellipsis,) + (None,) * 2 + (slice(None),)
    ion = coefficients.ion_per_n_neutral[idx]
    c1 = coefficients.coul_c1[idx]
    c2 = coefficients.coul_c2[idx]
    grid = (None,) * lead + (slice(None), slice(None), None)
    coul = n_ion[grid] * (c1 - c2 * log_n[grid])
    coul = np.where(positive[grid], coul, 0.0)
    return n_neu[grid] * ion + coul


def nucleon_energy_loss_ev_s(
    Z: int | np.ndarray,
    A: int | np.ndarray,
    etot_mev: np.ndarray,
    n_h_neutral_cm3: float | np.ndarray,
    n_hii_cm3: float | np.ndarray,
    *,
    he_h_ratio: float = HE_H_RATIO_DEFAULT,
    electron_temperature_k: float = WIM_ELECTRON_TEMPERATURE_K,
) -> tuple[np.ndarray, np.ndarray]:
    """Direct transcription of GALPROP's ``nucleon_loss``: ionisation and Coulomb energy losses, eV/s.

    All array arguments broadcast against each other (numpy rules).

    Parameters
    ----------
    Z, A : charge (>= 1) and mass number (>= 1) of the nucleus.
    etot_mev : total energy of the nucleus, MeV, > A * 931.494 MeV (GALPROP passes A(Ekin + 938)).
    n_h_neutral_cm3 : neutral H density (n_HI + 2 n_H2), cm^-3, >= 0.
    n_hii_cm3 : ionised H density, cm^-3, > 0 (the Coulomb logarithm needs ln n_HII).
    he_h_ratio : He/H ratio of the neutral gas, in [0, 1].
    electron_temperature_k : electron temperature, K, > 0.

    Returns
    -------
    (aion, coul): ionisation and Coulomb energy-loss rates, eV/s (positive = loss).
    Dividing by the kinematic beta and multiplying by 1e-6 gives |dp/dt| in MeV/c per s.
    """
    z = as_array("Z", Z, 1.0)
    a = as_array("A", A, 1.0)
    mass_min = AMU_MEV * a
    etot = as_array("etot_mev", etot_mev, 0.0, lo_open=True)
    if np.any(etot <= mass_min):
        raise ValueError("etot_mev must exceed A * 931.494 MeV (the loss routine's nucleus mass)")
    nh = as_array("n_h_neutral_cm3", n_h_neutral_cm3, 0.0)
    ni = as_array("n_hii_cm3", n_hii_cm3, 0.0, lo_open=True)
    he = float(as_array("he_h_ratio", he_h_ratio, 0.0, 1.0, ndim=0))
    te = float(as_array("electron_temperature_k", electron_temperature_k, 0.0, lo_open=True, ndim=0))

    mass, gam, bet, pir02mc2c = _loss_kinematics(z, a, etot)
    me = ELECTRON_MASS_LOSS_MEV
    qmax = 2.0 * me * (gam * gam - 1.0) / (1.0 + 2.0 * gam * me / mass)
    bh = np.log(2.0 * me * (gam * gam - 1.0) * qmax / (IONISATION_POTENTIAL_H_MEV**2)) - 2.0 * bet * bet
    bhe = np.log(2.0 * me * (gam * gam - 1.0) * qmax / (IONISATION_POTENTIAL_HE_MEV**2)) - 2.0 * bet * bet
    aion = 2.0 * pir02mc2c * z * z / bet * (nh * bh + he * nh * bhe)
    coullog = -np.log(ni * _coulomb_log_argument(mass, gam, bet)) / 2.0
    coul = 4.0 * pir02mc2c * z * z * ni / bet * coullog * _coulomb_weight(bet, te)
    return aion, coul
