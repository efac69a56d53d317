"""Exact profiling of the CR-ML normalisations (q_C and the bounded ratios xi_Li, xi_Be, q_O/q_C)."""

from __future__ import annotations

import itertools
from functools import cache

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
    # Every face of the box at once: state 0 = free, 1 = at the lower bound, 2 = at the upper bound, per ratio
    # (3^K states, all-free first). Vectorised over states as well as models: the joint phi profiling calls this
    # for one model at a time, where a Python loop over the 27 states cost ~1.6 ms per call.
    states = _faces(k)  # (S, K)
    bound = states > 0
    rho = np.where(states == 1, lo, hi)  # (S, K)
    rho_b = np.where(bound, rho, 0.0)
    big_a = a_free[:, None] + a_r @ (rho_b**2).T  # (n, S)
    big_b = b_free[:, None] + b_r @ rho_b.T
    s_free = b_r / a_r  # unconstrained optimum of each bounded species' own scale
    with np.errstate(divide="ignore", invalid="ignore"):
        q = big_b / big_a  # a face with a bound ratio has big_a > 0 (every a_k > 0)
        # all ratios free (state 0): q enters only through the free species; if there are none, any q with
        # lo q <= s_k <= hi q is optimal - take the smallest such q
        q_min = np.max(s_free / hi, axis=1) if k else np.zeros(n)
    q[:, 0] = np.where(a_free > 0, b_free / np.where(a_free > 0, a_free, 1.0), q_min)
    s = np.where(bound[None], rho[None] * q[:, :, None], s_free[:, None, :])  # (n, S, K)
    qf = q[:, :, None]
    feasible = bound[None] | ((s >= lo * qf * (1 - FEASIBILITY_RTOL)) & (s <= hi * qf * (1 + FEASIBILITY_RTOL)))
    ok = (q >= 0) & np.all(feasible, axis=2)
    f = a_free[:, None] * q * q - 2 * b_free[:, None] * q
    f = f + (a_r[:, None, :] * s * s - 2 * b_r[:, None, :] * s).sum(axis=2)
    f = np.where(ok, f, np.inf)
    pick = np.argmin(f, axis=1)  # the first of equal minima, as a loop over the states in this order would
    rows = np.arange(n)
    # the apex q = 0 (objective 0, always feasible) wins unless a face is strictly lower
    take = f[rows, pick] < 0
    best_q = np.where(take, q[rows, pick], 0.0)
    best_s = np.where(take[:, None], s[rows, pick], 0.0)
    with np.errstate(divide="ignore", invalid="ignore"):
        r = np.where(best_q[:, None] > 0, best_s / best_q[:, None], 1.0)
    return best_q, np.clip(r, lo, hi)


@cache
def _faces(k: int) -> np.ndarray:
    """(3^k, k) face states (0 free, 1 lower bound, 2 upper bound), all-free first; read-only, built once per k."""
    states = np.array(list(itertools.product((0, 1, 2), repeat=k)), dtype=int).reshape(3**k, k)
    states.setflags(write=False)
    return states
