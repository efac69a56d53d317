"""Bounded minimisers vectorised over independent problems (one per model): every evaluation of the objective is
one call over all the problems still searching, each at its own point.

The nuisance-phi profiling (:mod:`.modulation`) minimises chi^2 over phi for every model of a batch. One
chi^2 evaluation costs ~1 ms of fixed overhead plus ~0.05 ms per model (20 GALPROP-like models, ``ams02-2021``), so
a per-model scipy search paid the overhead ~10^2 times per model; here it is paid once per iteration for the whole
batch.

* :func:`bounded_brent`: scipy's ``minimize_scalar(method='bounded')`` (Brent's fminbound: golden section with
  parabolic steps), step for step, on an (n,) bracket per problem. Same tolerance rule, same iterates and
  same result per problem as scipy's (up to the rounding of the objective itself), so that one-period profiling
  keeps the behaviour it had with scipy.
* :func:`coordinate_descent`: cyclic coordinate descent over P variables in a box, one vectorised
  :func:`bounded_brent` per variable and sweep on a bracket around the current point, plus a Powell-like line
  search along the sweep's displacement when the sweeps contract slowly (strongly coupled variables).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

GOLDEN_MEAN: float = 0.5 * (3.0 - math.sqrt(5.0))
"""Golden-section fraction of fminbound (scipy and Brent 1973)."""

BRENT_SQRT_EPS: float = math.sqrt(2.2e-16)
"""Relative part of fminbound's tolerance, tol = BRENT_SQRT_EPS |x| + xatol / 3 (scipy's value)."""

BRENT_MAXFEV: int = 500
"""Evaluation budget of one :func:`bounded_brent` search: scipy's default ``maxiter`` of method='bounded'."""

EDGE_FACTOR: float = 2.0
"""A line minimum closer than EDGE_FACTOR * xatol to an edge of its bracket counts as on that edge. fminbound
never evaluates closer than tol = xatol / 3 (+ rounding) to an edge, so a minimum on or beyond the edge ends
within ~tol of it; 2 xatol (6 tol) catches that always, and costs only one wider search when an interior minimum
happens to lie that close."""

SWEEP_BRACKET_FACTOR: float = 4.0
"""Half-width of a coordinate's bracket after the first sweep, in units of the largest move of any variable in the
previous sweep. Coordinate descent on a quadratic shrinks the moves by rho^2 < 1 per sweep (rho: the correlation of
the variables), and one variable's next move is at most ~|rho| times another's last, so 4x leaves a wide margin."""

BRACKET_GROWTH: float = 4.0
"""Growth of a coordinate's bracket half-width when its line minimum lay on an interior edge (the minimum moved
further than the bracket allowed); the sweep then does not count as converged."""

PATTERN_RATIO: float = 0.25
"""A sweep that moved the point by more than this fraction of the previous sweep's move (slow contraction, i.e.
correlation |rho| > 0.5 between the variables) is followed by a line search along its displacement (Powell's
extrapolated direction). In 2-D that line holds the minimum of a quadratic exactly; weakly coupled variables
(ratio ~ rho^2 < 0.25) never pay for it."""

PATTERN_MAX_STEP: float = 100.0
"""Largest multiple of the sweep's displacement that the pattern line search may step: the geometric series of
the remaining sweeps sums to ratio / (1 - ratio) displacements, < 100 for any ratio below 0.99."""

PATTERN_MIN_STEP: float = -1.0
"""Smallest multiple (back to the point before the sweep): the search may also undo an overshoot."""

Objective1D = Callable[[np.ndarray, np.ndarray], np.ndarray]
"""f(idx, x): (k,) values of problems ``idx`` (indices into the batch) at their points x, (k,)."""

ObjectiveND = Callable[[np.ndarray, np.ndarray], np.ndarray]
"""f(idx, x): (k,) values of problems ``idx`` at their points x, (k, P)."""


@dataclass
class Minimum:
    """Result per problem: x (n,) or (n, P); fun (n,) the objective there; nfev (n,) evaluations; converged (n,)
    whether the tolerance was met within the evaluation budget (and no NaN met)."""

    x: np.ndarray
    fun: np.ndarray
    nfev: np.ndarray
    converged: np.ndarray


def bounded_brent(
    f: Objective1D,
    lo: np.ndarray,
    hi: np.ndarray,
    xatol: float | np.ndarray,
    maxfev: int | np.ndarray = BRENT_MAXFEV,
) -> Minimum:
    """Minimise each problem i on [lo_i, hi_i] by fminbound (scipy's ``minimize_scalar(method='bounded')``,
    transcribed with masks): every iteration evaluates ``f`` once for all problems not yet converged.

    lo, hi : (n,) finite brackets, lo <= hi. xatol : absolute tolerance in x, scalar or (n,). maxfev : evaluation
    budget per problem, >= 1 (scalar or (n,)); a problem that reaches it stops with ``converged`` False, as
    scipy's ``success`` (with maxfev 1 scipy would still take one step). The result is the best point evaluated
    (fminbound never evaluates the bracket edges)."""
    a = np.array(lo, dtype=np.float64, copy=True)
    b = np.array(hi, dtype=np.float64, copy=True)
    n = a.size
    if b.shape != (n,) or not np.all(np.isfinite(a) & np.isfinite(b)) or np.any(a > b):
        raise ValueError("bounded_brent: lo and hi must be finite (n,) arrays with lo <= hi")
    xatol = np.broadcast_to(np.asarray(xatol, dtype=np.float64), (n,))
    maxfev = np.broadcast_to(np.asarray(maxfev), (n,))
    if np.any(maxfev < 1):
        raise ValueError("bounded_brent: maxfev must be >= 1 (the first point is always evaluated)")
    all_idx = np.arange(n)
    fulc = a + GOLDEN_MEAN * (b - a)
    nfc, xf = fulc.copy(), fulc.copy()
    rat = np.zeros(n)
    e = np.zeros(n)
    fx = np.asarray(f(all_idx, xf), dtype=np.float64).copy() if n else np.zeros(0)
    num = np.ones(n, dtype=np.int64)
    fu = np.full(n, np.inf)
    ffulc, fnfc = fx.copy(), fx.copy()
    xm = 0.5 * (a + b)
    tol1 = BRENT_SQRT_EPS * np.abs(xf) + xatol / 3.0
    tol2 = 2.0 * tol1
    exhausted = np.zeros(n, dtype=bool)
    active = np.abs(xf - xm) > (tol2 - 0.5 * (b - a))
    exhausted |= active & (num >= maxfev)
    active &= ~exhausted
    while active.any():
        # parabolic fit through (xf, nfc, fulc) where the last two steps were large enough (|e| > tol1)
        with np.errstate(invalid="ignore", divide="ignore", over="ignore"):
            tried = np.abs(e) > tol1
            r = (xf - nfc) * (fx - ffulc)
            q = (xf - fulc) * (fx - fnfc)
            p = (xf - fulc) * q - (xf - nfc) * r
            q = 2.0 * (q - r)
            p = np.where(q > 0.0, -p, p)
            q = np.abs(q)
            r = e
            accept = tried & (np.abs(p) < np.abs(0.5 * q * r)) & (p > q * (a - xf)) & (p < q * (b - xf))
            rat_par = np.where(accept, p / np.where(accept, q, 1.0), 0.0)
        x_par = xf + rat_par
        near_edge = ((x_par - a) < tol2) | ((b - x_par) < tol2)
        si = np.sign(xm - xf) + ((xm - xf) == 0)
        rat_par = np.where(near_edge, tol1 * si, rat_par)
        # golden-section step into the larger part where no parabola was tried or it was not acceptable
        e_gold = np.where(xf >= xm, a - xf, b - xf)
        e_new = np.where(accept, rat, e_gold)  # a tried parabola sets e to the previous step first (scipy)
        rat_new = np.where(accept, rat_par, GOLDEN_MEAN * e_gold)
        e = np.where(active, e_new, e)
        rat = np.where(active, rat_new, rat)
        si = np.sign(rat) + (rat == 0)
        x = xf + si * np.maximum(np.abs(rat), tol1)
        idx = np.flatnonzero(active)
        fu[idx] = f(idx, x[idx])
        num[idx] += 1
        with np.errstate(invalid="ignore"):
            better = fu <= fx
            c1 = (fu <= fnfc) | (nfc == xf)
            c2 = ~c1 & ((fu <= ffulc) | (fulc == xf) | (fulc == nfc))
        upd_b, upd_w = active & better, active & ~better
        # better: the bracket shrinks to the side of x, and x becomes the best point
        a_new = np.where(upd_b & (x >= xf), xf, np.where(upd_w & (x < xf), x, a))
        b_new = np.where(upd_b & (x < xf), xf, np.where(upd_w & (x >= xf), x, b))
        fulc_new = np.where(upd_b | (upd_w & c1), nfc, np.where(upd_w & c2, x, fulc))
        ffulc_new = np.where(upd_b | (upd_w & c1), fnfc, np.where(upd_w & c2, fu, ffulc))
        nfc_new = np.where(upd_b, xf, np.where(upd_w & c1, x, nfc))
        fnfc_new = np.where(upd_b, fx, np.where(upd_w & c1, fu, fnfc))
        xf = np.where(upd_b, x, xf)
        fx = np.where(upd_b, fu, fx)
        a, b, fulc, ffulc, nfc, fnfc = a_new, b_new, fulc_new, ffulc_new, nfc_new, fnfc_new
        xm = 0.5 * (a + b)
        tol1 = BRENT_SQRT_EPS * np.abs(xf) + xatol / 3.0
        tol2 = 2.0 * tol1
        exhausted |= active & (num >= maxfev)
        active &= ~exhausted & (np.abs(xf - xm) > (tol2 - 0.5 * (b - a)))
    nan = np.isnan(xf) | np.isnan(fx) | np.isnan(fu)
    return Minimum(x=xf, fun=fx, nfev=num, converged=~exhausted & ~nan)


def coordinate_descent(
    f: ObjectiveND,
    x0: np.ndarray,
    f0: np.ndarray,
    lo: np.ndarray,
    hi: np.ndarray,
    width0: np.ndarray,
    xatol: float,
    xtol: float,
    ftol: float,
    maxfev: int,
) -> Minimum:
    """Minimise each problem i over the box lo <= x <= hi ((P,) each) from x0[i] ((n, P), inside the box, with
    f0[i] = f(x0[i]) finite) by cyclic coordinate descent.

    A sweep runs one vectorised :func:`bounded_brent` (tolerance ``xatol``) per variable k, on the bracket
    x_k +- w_k clipped to the box: w_k = width0[k] in the first sweep, then SWEEP_BRACKET_FACTOR times the largest
    move of the previous sweep (at least 10 xatol), times BRACKET_GROWTH while the line minimum sits on an interior
    edge of the bracket. A line search's point is taken only if it is not worse than the current one, so f never
    increases. A problem stops when a sweep had no minimum on an interior bracket edge and moved no variable by
    more than ``xtol`` or lowered f by no more than ``ftol`` relative (Powell's rule 2 (f_old - f) <= ftol
    (|f_old| + |f|)). When a sweep moved the point by more than PATTERN_RATIO times the previous one, a line search
    along the sweep's displacement follows. ``maxfev`` evaluations per problem at most: a problem that runs out
    is returned at its best point with ``converged`` False. Problems are independent: each one's iterates do not
    depend on the others in the batch.
    """
    x = np.array(x0, dtype=np.float64, copy=True)
    fx = np.array(f0, dtype=np.float64, copy=True)
    n, n_var = x.shape
    lo, hi = np.asarray(lo, dtype=np.float64), np.asarray(hi, dtype=np.float64)
    width = np.tile(np.asarray(width0, dtype=np.float64), (n, 1))
    min_width = 10.0 * xatol
    nfev = np.zeros(n, dtype=np.int64)
    active = np.ones(n, dtype=bool)
    converged = np.zeros(n, dtype=bool)
    last_move = np.full(n, np.nan)  # |displacement| of the previous sweep (NaN before the first)
    while active.any():
        idx = np.flatnonzero(active)
        x_start, f_start = x[idx].copy(), fx[idx].copy()
        on_edge = np.zeros((idx.size, n_var), dtype=bool)
        line_ok = np.ones(idx.size, dtype=bool)
        for k in range(n_var):
            live = nfev[idx] < maxfev  # a problem out of budget searches no further (it stops after this sweep)
            line_ok &= live
            rows = idx[live]
            centre = x[rows, k]
            a = np.maximum(lo[k], centre - width[rows, k])
            b = np.minimum(hi[k], centre + width[rows, k])

            def along_k(sub: np.ndarray, t: np.ndarray, k: int = k, rows: np.ndarray = rows) -> np.ndarray:
                pts = x[rows[sub]].copy()
                pts[:, k] = t
                return f(rows[sub], pts)

            res = bounded_brent(along_k, a, b, xatol, maxfev - nfev[rows])
            nfev[rows] += res.nfev
            line_ok[live] &= res.converged
            take = res.fun <= fx[rows]
            x[rows[take], k] = res.x[take]
            fx[rows[take]] = res.fun[take]
            _snap_to_bound(along_k, x, fx, rows, k, res.x, a, b, lo[k], hi[k], xatol, maxfev, nfev)
            on_edge[live, k] = ((((res.x - a) < EDGE_FACTOR * xatol) & (a > lo[k]))
                                | (((b - res.x) < EDGE_FACTOR * xatol) & (b < hi[k])))
        step = x[idx] - x_start
        move = np.abs(step).max(axis=1)
        small_f = 2.0 * (f_start - fx[idx]) <= ftol * (np.abs(f_start) + np.abs(fx[idx])) + 1e-300
        done = ~on_edge.any(axis=1) & line_ok & ((move < xtol) | small_f)
        # next brackets: a margin over this sweep's largest move, or wider where the minimum sat on an edge
        fresh = np.maximum(SWEEP_BRACKET_FACTOR * move, min_width)[:, None]
        width[idx] = np.where(on_edge, np.maximum(BRACKET_GROWTH * width[idx], fresh), fresh)
        norm = np.sqrt((step**2).sum(axis=1))
        with np.errstate(invalid="ignore", divide="ignore"):
            slow = ~done & (norm > PATTERN_RATIO * last_move[idx]) & (norm > 0)
        last_move[idx] = norm
        slow &= nfev[idx] < maxfev
        if slow.any():
            _pattern_search(f, x, fx, idx[slow], step[slow], lo, hi, xatol, maxfev, nfev)
        converged[idx[done]] = True
        out = nfev[idx] >= maxfev
        active[idx[done | out]] = False
    return Minimum(x=x, fun=fx, nfev=nfev, converged=converged)


def _snap_to_bound(
    along_k: Objective1D, x: np.ndarray, fx: np.ndarray, rows: np.ndarray, k: int, x_line: np.ndarray,
    a: np.ndarray, b: np.ndarray, lo_k: float, hi_k: float, xatol: float, maxfev: int, nfev: np.ndarray,
) -> None:
    """Evaluate variable k exactly on the box bound for the problems ``rows`` whose line minimum ``x_line`` ended
    within EDGE_FACTOR * xatol of a bracket edge that is that bound, and keep it where not worse (updates x, fx,
    nfev in place; one evaluation each, within the budget). fminbound never evaluates a bracket's edges, so a
    minimum on the bound would otherwise stop ~xatol / 3 inside it: for the nuisance phi of a two-period data set
    that cost up to 4e-3 in chi^2 (review of session 16) where the Powell search it replaced reached the bound."""
    near_lo = (x_line - lo_k < EDGE_FACTOR * xatol) & (a <= lo_k)
    near_hi = (hi_k - x_line < EDGE_FACTOR * xatol) & (b >= hi_k)
    sub = np.flatnonzero((near_lo | near_hi) & (nfev[rows] < maxfev) & np.isfinite(fx[rows]))
    if sub.size == 0:
        return
    bound = np.where(near_lo[sub], lo_k, hi_k)
    f_bound = along_k(sub, bound)
    nfev[rows[sub]] += 1
    take = f_bound <= fx[rows[sub]]
    x[rows[sub[take]], k] = bound[take]
    fx[rows[sub[take]]] = f_bound[take]


def _pattern_search(
    f: ObjectiveND, x: np.ndarray, fx: np.ndarray, idx: np.ndarray, step: np.ndarray, lo: np.ndarray,
    hi: np.ndarray, xatol: float, maxfev: int, nfev: np.ndarray,
) -> None:
    """Line search of problems ``idx`` along their last sweep's displacement ``step`` (k, P): x + t step with t in
    [PATTERN_MIN_STEP, PATTERN_MAX_STEP] and inside the box, to xatol in every variable; updates x, fx, nfev in
    place where not worse."""
    base = x[idx].copy()
    with np.errstate(divide="ignore", invalid="ignore"):
        t_lo_box = np.where(step > 0, (lo - base) / step, np.where(step < 0, (hi - base) / step, -np.inf))
        t_hi_box = np.where(step > 0, (hi - base) / step, np.where(step < 0, (lo - base) / step, np.inf))
    t_lo = np.maximum(t_lo_box.max(axis=1), PATTERN_MIN_STEP)
    t_hi = np.minimum(t_hi_box.min(axis=1), PATTERN_MAX_STEP)
    t_lo = np.minimum(t_lo, 0.0)  # rounding: the current point (t = 0) is inside the box
    t_hi = np.maximum(t_hi, 0.0)
    tol_t = xatol / np.abs(step).max(axis=1)

    def along(sub: np.ndarray, t: np.ndarray) -> np.ndarray:
        pts = np.clip(base[sub] + t[:, None] * step[sub], lo, hi)
        return f(idx[sub], pts)

    res = bounded_brent(along, t_lo, t_hi, tol_t, maxfev - nfev[idx])
    nfev[idx] += res.nfev
    take = res.fun <= fx[idx]
    x[idx[take]] = np.clip(base[take] + res.x[take, None] * step[take], lo, hi)
    fx[idx[take]] = res.fun[take]
