"""Spatial distribution of primary cosmic-ray sources, GALPROP ``source_model = 1`` (source_distribution.cc).

With ``x = r + r_off`` and ``x_sun = 8.5 kpc + r_off``::

    S(r, z) = (x / x_sun)^alpha * exp(-beta (x - x_sun) / x_sun) * exp(-|z| / z_s)
    S(r, z) = S(r_const, z)   for r >= r_const
    S(r, z) = 0               for r >= r_max

It is dimensionless and not normalised: S = 1 at r = 8.5 kpc, z = 0. GALPROP evaluates it at the grid
nodes (r_i, z_j) with no cell averaging; the primary source is Q(r, z, p) = S(r, z) * q_primary(p).
``source_parameters`` of the galdef are ``[z_s, alpha, beta, r_max, r_const, r_off, ...]``
(source_parameters_0 ... _5).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from crprop.constants import R_SUN_KPC
from crprop.physics._checks import as_array

__all__ = ["source_distribution", "source_distribution_from_parameters"]


def source_distribution(
    r_kpc: np.ndarray,
    z_kpc: np.ndarray,
    *,
    z_scale_kpc: float = 0.2,
    alpha: float = 1.25,
    beta: float = 3.56,
    r_max_kpc: float = 15.0,
    r_const_kpc: float = 100.0,
    r_off_kpc: float = 0.0,
) -> np.ndarray:
    """GALPROP source_model 1 on the (r, z) nodes, dimensionless.

    Parameters
    ----------
    r_kpc : (n_r,) radial nodes, kpc, >= 0.
    z_kpc : (n_z,) vertical nodes, kpc.
    z_scale_kpc : exponential scale height z_s, kpc, > 0 (source_parameters_0).
    alpha : radial power-law index, finite (source_parameters_1).
    beta : radial exponential index, finite (source_parameters_2).
    r_max_kpc : S = 0 for r >= r_max, kpc, > 0 (source_parameters_3).
    r_const_kpc : S(r) = S(r_const) for r >= r_const, kpc, > 0 (source_parameters_4; 100 = inactive).
    r_off_kpc : radial offset r_off, kpc, >= 0 (source_parameters_5).

    Returns
    -------
    (n_r, n_z) array, dimensionless (1 at r = 8.5 kpc, z = 0).
    """
    r = as_array("r_kpc", r_kpc, 0.0, ndim=1)[:, None]
    z = as_array("z_kpc", z_kpc, ndim=1)[None, :]
    zs = float(as_array("z_scale_kpc", z_scale_kpc, 0.0, lo_open=True, ndim=0))
    al = float(as_array("alpha", alpha, ndim=0))
    be = float(as_array("beta", beta, ndim=0))
    r_max = float(as_array("r_max_kpc", r_max_kpc, 0.0, lo_open=True, ndim=0))
    r_const = float(as_array("r_const_kpc", r_const_kpc, 0.0, lo_open=True, ndim=0))
    r_off = float(as_array("r_off_kpc", r_off_kpc, 0.0, ndim=0))

    x = r + r_off
    x_sun = R_SUN_KPC + r_off
    x_const = r_const + r_off
    z_part = np.exp(-np.abs(z) / zs)
    with np.errstate(divide="ignore"):
        radial = np.power(x / x_sun, al) * np.exp(-be * (x - x_sun) / x_sun)
    radial_const = np.power(x_const / x_sun, al) * np.exp(-be * (x_const - x_sun) / x_sun)
    result = np.where(r >= r_const, radial_const * z_part, radial * z_part)
    result = np.where(r >= r_max, 0.0, result)
    if not np.all(np.isfinite(result)):
        raise ValueError("alpha must be >= 0 when r_kpc contains r + r_off = 0 (S would be infinite)")
    return result


def source_distribution_from_parameters(
    r_kpc: np.ndarray, z_kpc: np.ndarray, source_parameters: Sequence[float] | np.ndarray
) -> np.ndarray:
    """:func:`source_distribution` with the galdef vector ``source_parameters`` = [z_s, alpha, beta,
    r_max, r_const, r_off, ...] (at least 6 entries; later ones are unused by model 1).

    Returns
    -------
    (n_r, n_z) array, dimensionless.
    """
    pars = as_array("source_parameters", source_parameters, ndim=1)
    if pars.size < 6:
        raise ValueError(f"source_parameters must have at least 6 entries (model 1), got {pars.size}")
    return source_distribution(
        r_kpc,
        z_kpc,
        z_scale_kpc=pars[0],
        alpha=pars[1],
        beta=pars[2],
        r_max_kpc=pars[3],
        r_const_kpc=pars[4],
        r_off_kpc=pars[5],
    )
