"""Force-field potentials of the top-of-atmosphere blocks: fixed, or profiled as nuisance parameters (one per
modulation period; several are profiled jointly, since they couple through the common normalisations)."""

from __future__ import annotations

import math
import warnings
from collections.abc import Mapping

import numpy as np
from scipy import optimize

from crnet.data import Modulation
from crnet.likelihood.problem import Problem

PHI_GRID_POINTS: int = 25
"""Grid points over the phi bounds before Brent refinement of a nuisance phi."""

PHI_XATOL_MV: float = 1e-3
"""Absolute tolerance (MV) of the bounded Brent refinement of a nuisance phi."""

PHI_POWELL_XTOL: float = 1e-6
"""Relative tolerance on the phi vector of the joint (Powell) refinement when a data set has several nuisance
periods: 1e-6 of ~500 MV is ~5e-4 MV, the same scale as PHI_XATOL_MV for one period."""

PHI_POWELL_FTOL: float = 1e-10
"""Relative tolerance on chi^2 of that refinement (chi^2 ~ 1e2-1e3, so ~1e-8-1e-7 absolute; far below any
Delta chi^2 that matters, 1 sigma = 15.9)."""

PHI_AT_BOUND_MV: float = 0.01
"""A profiled phi closer than this to a bound of its range is reported as at the bound (Chi2Result.phi_at_bound):
10x the refinement tolerances above, so a minimum on the bound is always caught and an interior one never is."""

PHI_POWELL_MAXFEV_PER_PERIOD: int = 400
"""Evaluation budget of the Powell refinement per nuisance phi; a model that exhausts it is flagged in
``Chi2Result.phi_converged`` and reported by a warning."""


def phi_override(phi_mv: float | Mapping[str, float] | None, periods: Mapping[str, Modulation]) -> dict[str, float]:
    """``chi2``'s ``phi_mv`` argument as {period: MV} (empty when nothing is fixed)."""
    if phi_mv is None:
        return {}
    if not periods:
        raise ValueError(f"phi_mv = {phi_mv!r} given, but the data set has no top-of-atmosphere block to modulate "
                         "(all blocks are interstellar spectra)")
    if isinstance(phi_mv, Mapping):
        unknown = sorted(set(phi_mv) - set(periods))
        if unknown:
            raise ValueError(f"phi_mv: unknown modulation period(s) {unknown}; the data set's periods: {list(periods)}")
        given = {key: float(v) for key, v in phi_mv.items()}
    elif len(periods) == 1:
        given = {next(iter(periods)): float(phi_mv)}
    else:
        raise ValueError(f"phi_mv: the data set has {len(periods)} modulation periods {list(periods)}; "
                         "fix them with {period: MV}, not one number")
    for key, v in given.items():
        if not math.isfinite(v) or v < 0:
            raise ValueError(f"phi_mv must be finite and >= 0 MV, got {v} for period {key!r}")
    return given


def solve_each(
    prob: Problem, models: np.ndarray, phis: Mapping[str, np.ndarray]
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Residuals, q_C and ratios of every model at its own phi per period ({period: (n,) MV})."""
    resid = np.empty((models.size, prob.dataset.n_points))
    q = np.empty(models.size)
    r = np.empty((models.size, len(prob.ratio_species)))
    for i, m in enumerate(models):
        res_i, qi, ri = prob.solve(np.array([m]), {key: float(v[i]) for key, v in phis.items()})
        resid[i], q[i], r[i] = res_i[0], qi[0], ri[0]
    return resid, q, r


def profile_phi(
    prob: Problem, models: np.ndarray, fixed: Mapping[str, float], key: str
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """One nuisance phi (MV, period ``key``; the other periods at ``fixed``): grid over its bounds for all models,
    then bounded Brent per model near the best node. Returns (normalised residuals, q_C, ratios, phi, converged)."""
    bounds_mv = prob.dataset.periods[key].bounds_mv
    grid = np.linspace(bounds_mv[0], bounds_mv[1], PHI_GRID_POINTS)
    totals = np.stack([prob.total(models, {**fixed, key: float(p)}) for p in grid], axis=1)
    best = np.argmin(totals, axis=1)
    phi = np.empty(models.size)
    converged = np.ones(models.size, dtype=bool)
    for i, m in enumerate(models):
        if not np.isfinite(totals[i, best[i]]):  # a model that cannot be normalised: chi^2 = inf at every phi
            phi[i] = grid[best[i]]
            continue
        lo_i, hi_i = grid[max(best[i] - 1, 0)], grid[min(best[i] + 1, grid.size - 1)]
        res = optimize.minimize_scalar(
            lambda p, m=m: prob.total(np.array([m]), {**fixed, key: float(p)})[0],
            bounds=(lo_i, hi_i),
            method="bounded",
            options={"xatol": PHI_XATOL_MV},
        )
        converged[i] = bool(res.success)
        phi[i] = res.x if res.fun <= totals[i, best[i]] else grid[best[i]]
    each = {k: np.full(models.size, float(v)) for k, v in fixed.items()} | {key: phi}
    resid, q, r = solve_each(prob, models, each)
    warn_unconverged(converged, [key])
    return resid, q, r, phi, converged


def profile_phis(
    prob: Problem, models: np.ndarray, fixed: Mapping[str, float], keys: list[str]
) -> tuple[np.ndarray, np.ndarray, np.ndarray, dict[str, np.ndarray], np.ndarray]:
    """Several nuisance phi (MV), one per period in ``keys``, profiled jointly (they couple through the common
    normalisations). Start: each phi on its own PHI_GRID_POINTS grid with the other nuisance phi at their
    reference values (clipped into their bounds), vectorised over models. Then per model a bounded Powell
    search (derivative-free, coordinate line searches by Brent) from that start; its result is kept only if it
    is not worse. Returns (normalised residuals, q_C, ratios, {period: phi}, converged)."""
    mods = prob.dataset.periods
    box = [mods[k].bounds_mv for k in keys]
    ref = {k: float(np.clip(mods[k].phi_mv, *mods[k].bounds_mv)) for k in keys}
    start = np.empty((models.size, len(keys)))
    for j, k in enumerate(keys):
        grid = np.linspace(box[j][0], box[j][1], PHI_GRID_POINTS)
        totals = np.stack([prob.total(models, {**fixed, **ref, k: float(p)}) for p in grid], axis=1)
        start[:, j] = grid[np.argmin(totals, axis=1)]
    phi = start.copy()
    converged = np.ones(models.size, dtype=bool)
    for i, m in enumerate(models):
        def total(x: np.ndarray, m: int = m) -> float:
            return float(prob.total(np.array([m]), {**fixed, **dict(zip(keys, map(float, x), strict=True))})[0])

        f0 = total(start[i])
        if not np.isfinite(f0):  # cannot be normalised at any phi (chi^2 = inf): nothing to refine
            continue
        res = optimize.minimize(
            total, start[i], method="Powell", bounds=box,
            options={"xtol": PHI_POWELL_XTOL, "ftol": PHI_POWELL_FTOL,
                     "maxfev": PHI_POWELL_MAXFEV_PER_PERIOD * len(keys)},
        )
        converged[i] = bool(res.success)
        if res.fun <= f0:
            phi[i] = np.clip(res.x, [b[0] for b in box], [b[1] for b in box])
    each = {k: np.full(models.size, float(v)) for k, v in fixed.items()}
    each |= {k: phi[:, j] for j, k in enumerate(keys)}
    resid, q, r = solve_each(prob, models, each)
    warn_unconverged(converged, keys)
    return resid, q, r, each, converged


def at_bound(phi_mv: np.ndarray, bounds_mv: tuple[float, float]) -> np.ndarray:
    """(n,) whether each phi (MV) lies within PHI_AT_BOUND_MV of a bound of its range."""
    return (np.abs(phi_mv - bounds_mv[0]) < PHI_AT_BOUND_MV) | (np.abs(phi_mv - bounds_mv[1]) < PHI_AT_BOUND_MV)


def warn_unconverged(converged: np.ndarray, keys: list[str]) -> None:
    if not converged.all():
        warnings.warn(
            f"chi2: the profiling of the nuisance phi of period(s) {keys} did not meet its tolerance for "
            f"{int((~converged).sum())} of {converged.size} models (Chi2Result.phi_converged); their chi^2 is the "
            "value at the best phi found",
            RuntimeWarning,
            stacklevel=3,
        )
