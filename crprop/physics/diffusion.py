"""Spatial and momentum diffusion coefficients (GALPROP v54 ``D_xx.cc``, ``D_pp``; diff_reacc = 1).

* Spatial diffusion (uniform in r, z; D_zz = D_xx)::

      D_xx = D0 * beta**eta * (R / R_br)**delta        delta = D_g_1 for R < R_br, D_g_2 for R >= R_br

  in cm^2/s (Tsai et al. 2022, Eq. 2.2 with R0 = R_br; GALPROP evaluates ``beta**eta * D0`` first).
* Momentum diffusion for reacceleration (Seo & Ptuskin 1994; Tsai et al. 2022, Eq. 2.3)::

      D_pp = 4 p^2 v_A^2 / (3 delta (4 - delta^2) (4 - delta) D_xx)      delta = D_g_1

  in (MeV/c)^2/s, with p the total momentum (MeV/c) and v_A the Alfven speed (given in km/s, used in
  cm/s). GALPROP writes the constant as ``2*2/(3*(2-a)*(4-a)*(2+a)*a)``; that order is kept here.

Layout: energy-grid arrays of any shape ``S`` (e.g. ``(n_E,)`` or ``(n_species, n_E)``) and model
parameters of shape ``(B,)`` (or scalars) give results of shape ``S + (B,)``, i.e. ``(n_E, B)`` for a
1-D grid: the model index is last (the solver's layout).
"""

from __future__ import annotations

import numpy as np

from crprop.constants import KM_CM
from crprop.physics._checks import as_array, as_params

__all__ = [
    "D_RIGID_BR_DEFAULT_MV",
    "dpp_constant",
    "diffusion_coefficient_pp",
    "diffusion_coefficient_xx",
]

D_RIGID_BR_DEFAULT_MV: float = 4.0e3
"""Reference (break) rigidity R_br of D_xx used by the crml_base / p2 runs (galdef D_rigid_br), MV."""


def dpp_constant(delta: float | np.ndarray) -> np.ndarray:
    """Dimensionless factor ``4 / (3 delta (4 - delta^2) (4 - delta))`` of D_pp * D_xx / (p^2 v_A^2).

    Parameters
    ----------
    delta : scalar or (B,). Diffusion index, 0 < delta < 2.

    Returns
    -------
    (B,) array (a scalar input gives shape (1,)).
    """
    a = np.atleast_1d(as_array("delta", delta, 0.0, 2.0, lo_open=True, hi_open=True))
    if a.ndim != 1:
        raise ValueError(f"delta must be a scalar or a 1-D array of shape (B,), got shape {a.shape}")
    return 2.0 * 2.0 / (3.0 * (2.0 - a) * (4.0 - a) * (2.0 + a) * a)


def diffusion_coefficient_xx(
    rigidity_mv: np.ndarray,
    beta: np.ndarray,
    D0_cm2_s: float | np.ndarray,
    delta: float | np.ndarray,
    eta: float | np.ndarray = 1.0,
    *,
    delta_high: float | np.ndarray | None = None,
    rigidity_break_mv: float | np.ndarray = D_RIGID_BR_DEFAULT_MV,
) -> np.ndarray:
    """Spatial diffusion coefficient D_xx = D0 * beta^eta * (R/R_br)^delta, cm^2/s.

    Parameters
    ----------
    rigidity_mv : array of shape S. Rigidity, MV, finite and > 0.
    beta : array of shape S. Velocity / c, in (0, 1].
    D0_cm2_s : scalar or (B,). Normalisation D0 at R = R_br (for beta = 1), cm^2/s, > 0.
    delta : scalar or (B,). Rigidity index below R_br (galdef D_g_1), finite, |delta| < 10.
    eta : scalar or (B,). Velocity index (galdef eta_beta; stock GALPROP has 1), finite, |eta| < 10.
    delta_high : scalar or (B,), optional. Index at R >= R_br (galdef D_g_2); defaults to ``delta``.
    rigidity_break_mv : scalar or (B,). Reference/break rigidity R_br, MV, > 0 (default 4000 MV).

    Returns
    -------
    Array of shape ``S + (B,)``, cm^2/s (``(n_E, B)`` for a 1-D grid; B = 1 for all-scalar parameters).
    """
    rig = as_array("rigidity_mv", rigidity_mv, 0.0, lo_open=True)
    bet = as_array("beta", beta, 0.0, 1.0, lo_open=True)
    if rig.shape != bet.shape:
        raise ValueError(f"rigidity_mv and beta must have the same shape, got {rig.shape} and {bet.shape}")
    d0 = as_array("D0_cm2_s", D0_cm2_s, 0.0, lo_open=True)
    d_lo = as_array("delta", delta, -10.0, 10.0, lo_open=True, hi_open=True)
    d_hi = d_lo if delta_high is None else as_array(
        "delta_high", delta_high, -10.0, 10.0, lo_open=True, hi_open=True
    )
    et = as_array("eta", eta, -10.0, 10.0, lo_open=True, hi_open=True)
    r_br = as_array("rigidity_break_mv", rigidity_break_mv, 0.0, lo_open=True)
    d0, d_lo, d_hi, et, r_br = as_params(D0_cm2_s=d0, delta=d_lo, delta_high=d_hi, eta=et,
                                         rigidity_break_mv=r_br)

    r = rig[..., None]
    b = bet[..., None]
    index = np.where(r < r_br, d_lo, d_hi)
    return (np.power(b, et) * d0) * np.power(r / r_br, index)


def diffusion_coefficient_pp(
    p_mev: np.ndarray,
    D_xx_cm2_s: np.ndarray,
    v_alfven_km_s: float | np.ndarray,
    delta: float | np.ndarray,
) -> np.ndarray:
    """Momentum diffusion coefficient D_pp = 4 p^2 v_A^2 / (3 delta (4-delta^2)(4-delta) D_xx).

    Parameters
    ----------
    p_mev : array of shape S. Total momentum of the nucleus, MeV/c, > 0.
    D_xx_cm2_s : array of shape ``S + (B,)`` (as returned by :func:`diffusion_coefficient_xx`), cm^2/s, > 0.
    v_alfven_km_s : scalar or (B,). Alfven speed v_A, km/s, >= 0.
    delta : scalar or (B,). Diffusion index used in the constant (galdef D_g_1), 0 < delta < 2 where v_A > 0
        (finite otherwise: D_pp is 0 without reacceleration).

    Returns
    -------
    Array of shape ``S + (B,)``, (MeV/c)^2 / s.
    """
    p = as_array("p_mev", p_mev, 0.0, lo_open=True)
    dxx = as_array("D_xx_cm2_s", D_xx_cm2_s, 0.0, lo_open=True)
    if dxx.shape[:-1] != p.shape:
        raise ValueError(
            f"D_xx_cm2_s must have shape p_mev.shape + (B,) = {p.shape} + (B,), got {dxx.shape}"
        )
    va = as_array("v_alfven_km_s", v_alfven_km_s, 0.0)
    va, dl = as_params(v_alfven_km_s=va, delta=as_array("delta", delta))
    # without reacceleration D_pp = 0 whatever delta: GALPROP runs diff_reacc = 0 with any D_g_1, and crprop's
    # validate() accepts it, but delta <= 0 made every such propagate raise here (review by helper-116, session 23)
    const = np.zeros(dl.shape)
    if np.any(va > 0):
        const[va > 0] = dpp_constant(dl[va > 0])
    n_models = dxx.shape[-1]
    if va.size not in (1, n_models):
        raise ValueError(
            f"v_alfven_km_s and delta must have length B = {n_models} (last axis of D_xx_cm2_s), "
            f"got {va.size}"
        )
    pp = p[..., None]
    return const * np.power(pp, 2.0) * np.power(va * KM_CM, 2) / dxx
