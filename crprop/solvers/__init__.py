"""Steady-state solvers of A psi = Q for one species and a batch of models.

Modes: ``exact`` (sparse direct, ground truth), ``galprop`` (GALPROP's split Crank-Nicolson ladder),
``fast`` (Douglas ADI to a residual tolerance). Every result carries per-model ``converged`` and
``residual``; a non-converged result triggers a NonConvergenceWarning (or an error on request).
"""

from __future__ import annotations

import numpy as np

from crprop.backends import get_backend
from crprop.operator import TransportOperator
from crprop.solvers import douglas, exact, galprop_cn
from crprop.solvers.galprop_cn import TimeLadder
from crprop.solvers.result import NonConvergenceWarning, SolveResult, relative_residual

MODES = ("fast", "galprop", "exact")

DEFAULT_TOL = 1.0e-6
"""Default relative residual for `fast` (worst energy slice). Measured on crml_base C12: residual
1e-6 <-> flux error ~4e-6 at the Sun, far below any measurement error (>= 1 %)."""

DEFAULT_MAX_STEPS = 600
"""Iteration cap of `fast` (it needs ~80 steps at the default tolerance on the paper grid)."""

__all__ = ["MODES", "TOL_MAX", "NonConvergenceWarning", "SolveResult", "TimeLadder", "check_solver_settings",
           "solve_species"]


TOL_MAX = 1e-2
"""Largest solver tolerance (relative residual) accepted: looser fluxes are off by more than the measured spectra's
errors, and a tolerance >= 1 is met by the zero field before the first step (psi = 0 has residual 1): `crnet simulate
--tol 2` wrote all-zero / NaN spectra flagged converged (walk-through by helper-87, session 21). The scans use 1e-4."""


def check_solver_settings(mode: str | None = None, tol: float | None = None, max_steps: int | None = None,
                          backend: str | None = None) -> None:
    """ValueError naming the setting for a mode not in :data:`MODES`, a tolerance (relative residual) that is not
    finite and > 0, a step cap below 1, or a backend name crprop does not know; None skips a setting. The one check
    of these settings: the solver runs it, and configs run it before any work (crnet's scan, fit, feedback)."""
    from crprop.backends import BACKENDS

    if mode is not None and mode not in MODES:
        raise ValueError(f"mode must be one of {MODES}, got {mode!r}")
    if tol is not None and not (np.isfinite(tol) and 0 < tol <= TOL_MAX):
        raise ValueError(f"tol must be in (0, {TOL_MAX:g}] (solver relative residual), got {tol!r}")
    if max_steps is not None and (isinstance(max_steps, bool) or not isinstance(max_steps, int | np.integer)
                                  or max_steps < 1):
        raise ValueError(f"max_steps must be an integer >= 1 (solver iterations per species), got {max_steps!r}")
    if backend is not None and backend not in ("auto", *BACKENDS):
        raise ValueError(f"backend must be one of {('auto', *BACKENDS)}, got {backend!r}")


def solve_species(
    op: TransportOperator,
    source: np.ndarray,
    mode: str = "fast",
    backend: str = "auto",
    tol: float = DEFAULT_TOL,
    max_steps: int = DEFAULT_MAX_STEPS,
    ladder: TimeLadder | None = None,
    psi0: np.ndarray | None = None,
    on_nonconverged: str = "warn",
    backend_options: dict | None = None,
) -> SolveResult:
    """Steady state of one species for B models.

    op : the discrete operator (s^-1); source : Q, (n_r, n_z, n_E, B) per unit momentum per s.
    mode : 'fast' | 'galprop' | 'exact'. backend : 'auto' | 'numpy' | 'numba' | 'cupy'
    ('exact' always runs scipy on the CPU). tol : relative residual for the converged flag.
    ladder : time steps of 'galprop' (GALPROP defaults). psi0 : warm start ('fast' and 'galprop').
    on_nonconverged : 'warn' (NonConvergenceWarning), 'raise' (RuntimeError) or 'ignore' — the
    flag and residual are always in the result.
    backend_options : keyword options of a device backend's own solve_species (cupy: precision,
    keep_on_device, check_every, ...); source/psi0 may then be device arrays.
    """
    check_solver_settings(mode, tol, max_steps, backend)  # backend too: mode 'exact' never looks it up
    if on_nonconverged not in ("warn", "raise", "ignore"):
        raise ValueError(f"on_nonconverged must be 'warn', 'raise' or 'ignore', got {on_nonconverged!r}")
    if mode == "galprop":
        op.require_first_order_losses("mode 'galprop'")
    be = get_backend("numpy" if mode == "exact" else backend)
    if hasattr(be, "solve_species"):  # device backends keep the whole loop (and validation) on the device
        if mode == "exact":
            raise ValueError("mode 'exact' runs on the CPU; use backend 'numpy' or 'numba'")
        return be.solve_species(op, source, mode, tol, max_steps, ladder or TimeLadder(), psi0, on_nonconverged,
                                **(backend_options or {}))
    if backend_options:
        raise ValueError(f"backend_options {sorted(backend_options)} are only understood by device backends")
    q = op.check_source(source, "source")
    if psi0 is not None:
        psi0 = op.check_source(psi0, "psi0")
    if mode == "exact":
        psi = exact.solve_exact(op, q)
        res = relative_residual(be.residual(op, psi, q), q)
        # judged against the tolerance asked, like the other modes: max(tol, 1e-9) called a 1.8e-12 residual
        # converged under tol 1e-13 (review by helper-95, session 22); the direct solve's round-off is ~1e-13
        result = SolveResult(psi, res <= tol, res, 1, mode, "scipy", tol)
    else:
        model_steps = None
        if mode == "galprop":
            psi, steps = galprop_cn.march(be, op, q, ladder or TimeLadder(), psi0)
            res = relative_residual(be.residual(op, psi, q), q)
        else:
            psi, res, steps, model_steps = douglas.iterate(be, op, q, tol, max_steps, psi0)
        result = SolveResult(psi, res <= tol, res, steps, mode, be.name, tol, model_steps)
    result.flag_nonfinite()  # a non-finite field never counts as converged, whatever its residual reads
    if on_nonconverged == "raise" and not result.converged.all():
        raise RuntimeError(f"{mode}/{result.backend}: models {np.nonzero(~result.converged)[0].tolist()} "
                           f"not converged (residuals {result.residual[~result.converged]})")
    if on_nonconverged == "warn":
        result.warn_if_not_converged()
    return result
