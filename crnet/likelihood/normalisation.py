"""Exact profiling of the CR-ML normalisations (q_C and the bounded ratios xi_Li, xi_Be, q_O/q_C)."""

from __future__ import annotations

import itertools

import numpy as np

RATIO_PARAMETERS: dict[str, str] = {"Li": "xi_Li", "Be": "xi_Be", "O": "qO_over_qC"}
"""Species with their own bounded scale factor (on top of q_C) and the parameter's name."""

DEFAULT_NORM_BOUNDS: tuple[float, float] = (0.8, 1.2)
"""Bounds of xi_Li, xi_Be and q_O/q_C (paper Sec. 2: up to 20 % from cross sections; CR-ML scan range)."""

FEASIBILITY_RTOL: float = 1e-12
"""Relative slack when testing whether a face minimiser satisfies lo*q <= s <= hi*q (rounding only)."""


def profile_normalisations(
    a_free: np.ndarray,
    b_free: np.ndarray,
    a_ratio: np.ndarray,
    b_ratio: np.ndarray,
    lo: np.ndarray,
    hi: np.ndarray,
) -> tuple[np.ndarray, np.ndarray]:
    """Exact minimiser of the normalisation part of chi^2, batched over models.

    Minimises  a_free q^2 - 2 b_free q + sum_k (a_k (q r_k)^2 - 2 b_k q r_k)  over q >= 0 and
    lo_k <= r_k <= hi_k (constant terms dropped).

    Parameters
    ----------
    a_free, b_free : (n,) sums over the species scaled by q alone
        (a = sum Phi^2 / sigma^2, b = sum Phi F / sigma^2).
    a_ratio, b_ratio : (n, K) the same for the K species with a bounded ratio r_k (every a_k > 0).
    lo, hi : (K,) bounds, 0 < lo <= hi.

    Returns
    -------
    q : (n,) optimal overall scale; r : (n, K) optimal ratios (r = clip(1) where q = 0).
    """
    a_free, b_free = np.asarray(a_free, float), np.asarray(b_free, float)
    a_r, b_r = np.atleast_2d(np.asarray(a_ratio, float)), np.atleast_2d(np.asarray(b_ratio, float))
    lo, hi = np.asarray(lo, float), np.asarray(hi, float)
    n, k = a_r.shape
    if (
        a_free.shape != (n,)
        or b_free.shape != (n,)
        or b_r.shape != (n, k)
        or lo.shape != (k,)
        or hi.shape != (k,)
    ):
        raise ValueError("profile_normalisations: inconsistent shapes")
    if np.any(lo <= 0) or np.any(hi < lo):
        raise ValueError(f"normalisation bounds must satisfy 0 < lo <= hi, got lo={lo}, hi={hi}")
    if np.any(a_r <= 0):
        raise ValueError("profile_normalisations: every bounded species needs data (a_k > 0)")
    # apex q = 0: objective 0, always feasible
    best_f = np.zeros(n)
    best_q = np.zeros(n)
    best_s = np.zeros((n, k))
    s_free = b_r / a_r  # unconstrained optimum of each bounded species' own scale
    for state in itertools.product((0, 1, 2), repeat=k):  # 0 free, 1 at lower bound, 2 at upper bound
        st = np.asarray(state, dtype=int)
        bound = st > 0
        rho = np.where(st == 1, lo, hi)
        big_a = a_free + (a_r[:, bound] * rho[bound] ** 2).sum(axis=1)
        big_b = b_free + (b_r[:, bound] * rho[bound]).sum(axis=1)
        if bound.any():
            q = big_b / big_a
        else:
            # all ratios free: q enters only through the free species; if there are none, any q with
            # lo q <= s_k <= hi q is optimal - take the smallest such q.
            with np.errstate(divide="ignore", invalid="ignore"):
                q_min = np.max(s_free / hi, axis=1) if k else np.zeros(n)
                q = np.where(a_free > 0, big_b / np.where(a_free > 0, a_free, 1.0), q_min)
        s = np.where(bound, rho * q[:, None], s_free)
        ok = q >= 0
        if (~bound).any():
            sf, qf = s[:, ~bound], q[:, None]
            ok &= np.all(
                (sf >= lo[~bound] * qf * (1 - FEASIBILITY_RTOL))
                & (sf <= hi[~bound] * qf * (1 + FEASIBILITY_RTOL)),
                axis=1,
            )
        f = a_free * q * q - 2 * b_free * q
        f = f + (a_r * s * s - 2 * b_r * s).sum(axis=1)
        take = ok & (f < best_f)
        best_f = np.where(take, f, best_f)
        best_q = np.where(take, q, best_q)
        best_s = np.where(take[:, None], s, best_s)
    with np.errstate(divide="ignore", invalid="ignore"):
        r = np.where(best_q[:, None] > 0, best_s / best_q[:, None], 1.0)
    return best_q, np.clip(r, lo, hi)
