"""Force-field potentials of the top-of-atmosphere blocks: fixed, or profiled as nuisance parameters (one per
modulation period; several are profiled jointly, since they couple through the common normalisations).

Every search is vectorised over models: each chi^2 evaluation is one :meth:`Problem.total` call over all the
models still searching, each at its own phi (``crprop.spectra.ForceField`` modulates every model at its own
potential; ``Problem`` caches each period's block predictions per model, so a search over one period's phi does
not re-modulate the others). Until session 16 a scipy search ran per model: one chi^2 call costs ~1 ms of
fixed overhead plus ~0.05 ms per model (20 GALPROP-like models), so that paid the overhead ~10^2 times per model.

* One nuisance period (:func:`profile_phi`): chi^2 on PHI_GRID_POINTS nodes over the bounds, then fminbound
  (scipy's ``minimize_scalar(method='bounded')``, transcribed in :func:`.minimise.bounded_brent` step for step,
  so each model gets the iterates and result scipy gave it) on [node below, node above] the best node, to
  PHI_XATOL_MV. The refined phi is kept only if it is not worse than the best node.
* Several nuisance periods (:func:`profile_phis`): the same grid start per period (others at their reference
  phi), then cyclic coordinate descent (:func:`.minimise.coordinate_descent`): per sweep, one vectorised bounded
  Brent per period on a bracket around the current phi, and a line search along the sweep's displacement when the
  sweeps contract slowly. It replaces scipy's bounded Powell per model. Chosen over a vectorised Powell
  direction set because the periods' potentials couple only through the common normalisations, weakly
  (correlation ~ +0.25 between the AMS-02 and ACE-CRIS phi of crml_base-like models at their minimum): each sweep
  then shrinks the moves ~15-fold (rho^2 ~ 0.06), ~5 sweeps reach PHI_SWEEP_XTOL_MV, and the brackets shrink with
  the moves (a line search costs ~log(width / xatol) evaluations: ~6 once converged). The displacement line search
  covers strongly coupled periods. On correlated quadratics (tests/test_phi_profile.py) it finds the minimum to a
  few PHI_XATOL_MV up to correlation 0.95 in 2-D and 0.5 in 3-D; the bounded Powell it replaced missed by up to 1 MV
  at correlation 0.9 in 2-D (its line searches over the whole range to 1e-6 MV exhausted the budget). On the
  benchmark's models the two agree to 4e-4 MV in phi and 3e-9 in chi^2 (~1.6e4). The correlation and this
  agreement were measured in the session-16 review (helper-44's one-off comparison with scipy's Powell, which is no
  longer in the code); they are not kept in benchmarks/results. The test-suite checks are the quadratics above and
  the fminbound transcription (same iterates as scipy).
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Mapping

import numpy as np

from crnet.data import Modulation
from crnet.likelihood.minimise import bounded_brent, coordinate_descent
from crnet.likelihood.problem import Problem

PHI_GRID_POINTS: int = 25
"""Grid points over the phi bounds (MV) of every nuisance period before the refinement: 25 over a 1000 MV range is
a ~42 MV spacing, finer than the width of the chi^2 valley's basin for the shipped data sets (one bracket of two
spacings holds the minimum)."""

PHI_XATOL_MV: float = 1e-3
"""Absolute tolerance (MV) of every bounded Brent line search over a nuisance phi (one period, or one coordinate of
several). For the shipped data (1 sigma in phi ~ 2.7-6.8 MV: AMS-02 5.7-6.8, ACE-CRIS ~2.7 on crml_base-like
models; estimates of the session-16 review, not kept in benchmarks/results) an error of 1e-3 MV costs < 3e-7 in
chi^2."""

PHI_SWEEP_XTOL_MV: float = PHI_XATOL_MV
"""Several periods: the coordinate descent stops when a sweep moved no phi by more than this (MV), i.e. when the
line searches reproduce the point to their own tolerance."""

PHI_SWEEP_FTOL: float = 1e-10
"""Several periods: ... or when a sweep lowered chi^2 by no more than this, relative (chi^2 ~ 1e2-1e4, so
~1e-8-1e-6 absolute; far below any Delta chi^2 that matters, 1 sigma = 15.9). The value of the scipy Powell
search this replaced."""

PHI_MAX_EVALS_PER_PERIOD: int = 400
"""Several periods: evaluation budget per model of the coordinate descent, per nuisance phi (the value of the
Powell search it replaced; the benchmark's models need 68-99 in all on the shipped two-period data set). A model
that exhausts it is flagged in ``Chi2Result.phi_converged`` and reported by a warning."""

PHI_AT_BOUND_MV: float = 0.01
"""A profiled phi closer than this to a bound of its range is reported as at the bound (Chi2Result.phi_at_bound):
10x PHI_XATOL_MV, so a minimum on the bound is always caught (fminbound stops within ~PHI_XATOL_MV / 3 of it) and
an interior one never is."""


PHI_MAX_MV: float = 2000.0
"""Largest fixed phi_mv (MV) accepted (chi2's phi_mv, `crnet chi2 --phi`). The force-field potentials reconstructed from
neutron monitors reach ~1500-1700 MV at the strongest solar maxima (Usoskin et al.), the shipped data sets profile phi
within at most 200-1200 MV (crnet.data.registry, AMS-02) and a Modulation's default range ends at 1500 MV: 2000 MV
covers every physical potential with room to probe beyond a prior's edge. Far above it the force field is no longer
modulating: where E + Phi lies above the model's energy grid, crprop.spectra.ForceField keeps the unmodulated flux
(GALPROP's behaviour), so `--phi 1e9` gave the chi2 of --phi 0 labelled phi_MV 1e9 (walk-through by helper-87, session
21; checked here, in the library, since session 22)."""


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
        if not (math.isfinite(v) and 0 <= v <= PHI_MAX_MV):
            where = f" for period {key!r}" if key else ""  # '' names the one period of files without a period
            raise ValueError(f"phi_mv must be finite and in [0, {PHI_MAX_MV:g}] MV (PHI_MAX_MV), got {v}{where}")
    return given


def profile_phi(
    prob: Problem, models: np.ndarray, fixed: Mapping[str, float], key: str
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """One nuisance phi (MV, period ``key``; the other periods at ``fixed``, MV): grid over its bounds, then
    bounded Brent in each model's bracket around its best node, all vectorised over models. A model whose chi^2 is
    inf at every node (it cannot be normalised) keeps the best node and is not refined. Returns (normalised
    residuals (n, n_points), q_C (n,), ratios (n, K), phi (n,) MV, converged (n,))."""
    bounds_mv = prob.dataset.periods[key].bounds_mv
    grid = np.linspace(bounds_mv[0], bounds_mv[1], PHI_GRID_POINTS)
    totals = np.stack([prob.total(models, {**fixed, key: float(p)}) for p in grid], axis=1)
    best = np.argmin(totals, axis=1)
    f_best = totals[np.arange(models.size), best]
    phi = grid[best]
    converged = np.ones(models.size, dtype=bool)
    ok = np.flatnonzero(np.isfinite(f_best))
    if ok.size:
        def total(sub: np.ndarray, p: np.ndarray) -> np.ndarray:
            return prob.total(models[ok[sub]], {**fixed, key: p})

        res = bounded_brent(total, grid[np.maximum(best[ok] - 1, 0)], grid[np.minimum(best[ok] + 1, grid.size - 1)],
                            PHI_XATOL_MV)
        converged[ok] = res.converged
        phi[ok] = np.where(res.fun <= f_best[ok], res.x, phi[ok])  # never worse than the best node
    resid, q, r = prob.solve(models, {**fixed, key: phi})
    warn_unconverged(converged, [key])
    return resid, q, r, phi, converged


def profile_phis(
    prob: Problem, models: np.ndarray, fixed: Mapping[str, float], keys: list[str]
) -> tuple[np.ndarray, np.ndarray, np.ndarray, dict[str, np.ndarray], np.ndarray]:
    """Several nuisance phi (MV), one per period in ``keys`` (the other periods at ``fixed``, MV), profiled jointly
    (they couple through the common normalisations). Start: each phi on its own PHI_GRID_POINTS grid with the
    other nuisance phi at their reference values (clipped into their bounds). Then cyclic coordinate descent
    (module docstring) from there; chi^2 never rises above the start's. Its first sweep searches each phi over its
    whole range: the grid start of one period was found with the others at their reference phi, so the joint
    minimum can lie many grid spacings away (~200 MV for AMS-02 with ACE-CRIS), and fminbound over the range
    (~11 evaluations) is cheaper than walking a narrow bracket to it (~24). A model whose chi^2 is inf at the start
    (it cannot be normalised) is not refined. All vectorised over models. Returns (normalised residuals, q_C,
    ratios, {period: phi (n,) MV} for all periods, converged)."""
    mods = prob.dataset.periods
    lo = np.array([mods[k].bounds_mv[0] for k in keys], dtype=np.float64)
    hi = np.array([mods[k].bounds_mv[1] for k in keys], dtype=np.float64)
    ref = {k: float(np.clip(mods[k].phi_mv, *mods[k].bounds_mv)) for k in keys}
    phi = np.empty((models.size, len(keys)))
    for j, k in enumerate(keys):
        grid = np.linspace(lo[j], hi[j], PHI_GRID_POINTS)
        totals = np.stack([prob.total(models, {**fixed, **ref, k: float(p)}) for p in grid], axis=1)
        phi[:, j] = grid[np.argmin(totals, axis=1)]

    def total(rows: np.ndarray, x: np.ndarray) -> np.ndarray:
        return prob.total(rows, {**fixed, **{k: x[:, j] for j, k in enumerate(keys)}})

    f0 = total(models, phi)
    converged = np.ones(models.size, dtype=bool)
    ok = np.flatnonzero(np.isfinite(f0))
    if ok.size:
        res = coordinate_descent(
            lambda sub, x: total(models[ok[sub]], x), phi[ok], f0[ok], lo, hi,
            width0=hi - lo, xatol=PHI_XATOL_MV, xtol=PHI_SWEEP_XTOL_MV,
            ftol=PHI_SWEEP_FTOL, maxfev=PHI_MAX_EVALS_PER_PERIOD * len(keys),
        )
        phi[ok] = res.x
        converged[ok] = res.converged
    each = {k: np.full(models.size, float(v)) for k, v in fixed.items()}
    each |= {k: phi[:, j] for j, k in enumerate(keys)}
    resid, q, r = prob.solve(models, each)
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
