"""Relativistic kinematics of nuclei on a kinetic-energy-per-nucleon grid, as GALPROP v54 does it.

GALPROP (galtoolslib ``kinematic``, species "nucleus") gives every nucleus the rest mass
``m0 = A * 938 MeV`` (:data:`crprop.constants.NUCLEON_MASS_KINEMATICS_MEV`) and evaluates, from the
kinetic energy per nucleon ``Ekin`` (MeV/n)::

    Etot = Ekin * A + m0                          total energy of the nucleus, MeV
    p    = sqrt(Etot**2 - m0**2)                  total momentum, MeV/c
    gamma = Etot / m0
    beta = sqrt((1 - 1/gamma) * (1 + 1/gamma))
    R    = p / |Z|                                rigidity, MV

The same operation order is used here, so the arrays agree with GALPROP's bit for bit.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from crprop.constants import C_CM_S, NUCLEON_MASS_KINEMATICS_MEV
from crprop.physics._checks import as_array

__all__ = ["Kinematics", "nucleus_kinematics"]


@dataclass(frozen=True)
class Kinematics:
    """Kinematic arrays of one nucleus (or a set of nuclei) on a kinetic-energy-per-nucleon grid.

    Shapes: ``S = ()`` for a single nucleus, ``S = (n_s,)`` when ``Z`` and ``A`` were 1-D arrays;
    every energy-dependent array has shape ``S + (n_E,)``.

    Attributes
    ----------
    Z : int array, shape S. Nuclear charge (>= 1).
    A : int array, shape S. Mass number (>= 1).
    ekin_mev_per_n : (n_E,) kinetic energy per nucleon, MeV/nucleon.
    mass_mev : shape S. Rest mass used for the kinematics, ``A * 938`` MeV.
    etot_mev : S + (n_E,). Total energy of the nucleus, MeV.
    p_mev : S + (n_E,). Total momentum of the nucleus, MeV/c.
    gamma : S + (n_E,). Lorentz factor, dimensionless.
    beta : S + (n_E,). Velocity / c, dimensionless.
    rigidity_mv : S + (n_E,). Rigidity p c / (|Z| e), MV.
    """

    Z: np.ndarray
    A: np.ndarray
    ekin_mev_per_n: np.ndarray
    mass_mev: np.ndarray
    etot_mev: np.ndarray
    p_mev: np.ndarray
    gamma: np.ndarray
    beta: np.ndarray
    rigidity_mv: np.ndarray

    def __post_init__(self) -> None:
        for name in self.__dataclass_fields__:
            arr = getattr(self, name)
            if isinstance(arr, np.ndarray):
                arr.setflags(write=False)

    @property
    def velocity_cm_s(self) -> np.ndarray:
        """Particle speed beta * c, cm/s, shape S + (n_E,)."""
        return self.beta * C_CM_S


def _integer_array(name: str, value: object) -> np.ndarray:
    arr = np.asarray(value)
    if arr.ndim > 1:
        raise ValueError(f"{name} must be a scalar or a 1-D array, got shape {arr.shape}")
    as_float = as_array(name, arr, 1.0)
    if np.any(as_float != np.round(as_float)):
        raise ValueError(f"{name} must hold integers >= 1, got {arr!r}")
    return as_float.astype(np.int64)


def nucleus_kinematics(Z: int | np.ndarray, A: int | np.ndarray, ekin_mev_per_n: np.ndarray) -> Kinematics:
    """Kinematics of nuclei (Z, A) at kinetic energies per nucleon ``ekin_mev_per_n``.

    Parameters
    ----------
    Z : int or (n_s,) int array. Nuclear charge, >= 1.
    A : int or (n_s,) int array (same shape as Z). Mass number, >= 1.
    ekin_mev_per_n : (n_E,) kinetic energy per nucleon, MeV/n, finite and > 0.

    Returns
    -------
    Kinematics with arrays of shape ``(n_E,)`` (scalar Z, A) or ``(n_s, n_E)`` (1-D Z, A).
    Momentum in MeV/c, energies in MeV, rigidity in MV; mass = A * 938 MeV (GALPROP).
    """
    z_arr = _integer_array("Z", Z)
    a_arr = _integer_array("A", A)
    if z_arr.shape != a_arr.shape:
        raise ValueError(f"Z and A must have the same shape, got {z_arr.shape} and {a_arr.shape}")
    ekin = as_array("ekin_mev_per_n", ekin_mev_per_n, 0.0, lo_open=True, ndim=1)

    a_f = a_arr.astype(np.float64)[..., None]
    m0 = NUCLEON_MASS_KINEMATICS_MEV * a_f
    etot = ekin * a_f + m0
    p = np.sqrt(etot * etot - m0 * m0)
    gamma = etot / m0
    beta = np.sqrt((1.0 - 1.0 / gamma) * (1.0 + 1.0 / gamma))
    rigidity = p / np.abs(z_arr.astype(np.float64))[..., None]
    return Kinematics(
        Z=z_arr,
        A=a_arr,
        ekin_mev_per_n=ekin.copy(),
        mass_mev=m0[..., 0],
        etot_mev=etot,
        p_mev=p,
        gamma=gamma,
        beta=beta,
        rigidity_mv=rigidity,
    )
