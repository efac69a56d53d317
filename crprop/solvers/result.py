"""Solver result and the convergence measure shared by all modes and backends."""

from __future__ import annotations

import warnings
from dataclasses import dataclass

import numpy as np


class NonConvergenceWarning(RuntimeWarning):
    """Some models did not reach the requested residual; see SolveResult.converged / .residual."""


@dataclass
class SolveResult:
    """Steady-state solution of one species for a batch of models.

    psi : (n_r, n_z, n_E, B) density per unit total momentum, in units of [Q] * s.
    converged : (B,) True where ``residual <= tol``.
    residual : (B,) relative residual, max over energies of ||Q_k - (A psi)_k||_2 / ||Q_k||_2.
    steps : number of time or pseudo-time steps taken (the batch's: its slowest model's).
    mode, backend : how it was obtained.
    model_steps : (B,) `fast` mode: the step at which each model stopped (max_steps if it never converged);
    None for the other modes. Their sum over models is the work a per-model stop does.
    """

    psi: np.ndarray
    converged: np.ndarray
    residual: np.ndarray
    steps: int
    mode: str
    backend: str
    tol: float
    model_steps: np.ndarray | None = None

    def flag_nonfinite(self) -> None:
        """Mark models whose field holds a NaN or inf as not converged, residual inf, whatever the residual read
        (walk-through by helper-87, session 21). ``psi`` may be a device (CuPy) array; only a (B,) mask comes back."""
        if type(self.psi).__module__.split(".")[0] == "cupy":
            import cupy

            finite = cupy.isfinite(self.psi).all(axis=(0, 1, 2)).get()
        else:
            finite = np.isfinite(self.psi).all(axis=(0, 1, 2))
        if not finite.all():
            self.converged = np.asarray(self.converged) & finite
            self.residual = np.where(finite, self.residual, np.inf)

    def warn_if_not_converged(self, species: str = "") -> None:
        """Emit a NonConvergenceWarning naming the models that missed the tolerance."""
        bad = np.nonzero(~self.converged)[0]
        if bad.size:
            what = f" for {species}" if species else ""
            warnings.warn(
                f"{self.mode}/{self.backend}{what}: {bad.size} of {self.converged.size} models not converged "
                f"(max residual {self.residual.max():.3g} > tol {self.tol:.1g}; models {bad[:8].tolist()}...)",
                NonConvergenceWarning,
                stacklevel=3,
            )


def slice_norms(x: np.ndarray) -> np.ndarray:
    """(n_E, B) ||x_k||_2 over the (r, z) cells of each energy slice of a (n_r, n_z, n_E, B) field."""
    return np.sqrt(np.einsum("rzkb,rzkb->kb", x, x))


def residual_scale(q_norms):
    """(n_E, B) denominators of :func:`relative_residual` from :func:`slice_norms` of Q (numpy or CuPy): ||Q_k||,
    and for a slice without source (Q_k = 0) the model's largest ||Q_k'||. Such a slice is then still checked:
    psi there is fed by losses / reacceleration from other energies, and skipping it let a wrong warm start pass
    as converged (review of session 12). A model whose source is zero
    everywhere keeps 0 (skipped: psi = 0 is its answer)."""
    top = q_norms.max(axis=0)
    return q_norms + (q_norms <= 0) * top[None, :]


def relative_residual(res: np.ndarray, q: np.ndarray, scales: np.ndarray | None = None) -> np.ndarray:
    """(B,) max over energy slices k of ||res_k||_2 / s_k with s_k = ||Q_k||_2, or the largest ||Q_k'||_2 of the
    model where Q_k = 0 (:func:`residual_scale`).

    Taking the worst energy slice (rather than one norm over all cells) controls the relative
    accuracy at every energy, although psi spans ~20 decades between 1 MeV/n and 100 TeV/n.
    ``scales``: ``residual_scale(slice_norms(q))`` when the caller already has it (an iteration's source is fixed).
    """
    num = slice_norms(res)
    den = residual_scale(slice_norms(q)) if scales is None else scales
    ratio = np.where(den > 0, num / np.where(den > 0, den, 1.0), 0.0)
    return ratio.max(axis=0)


def initial_field(op, psi0: np.ndarray | None) -> np.ndarray:
    """The CPU loops' own starting field: zeros of the operator's shape, or a checked C float64 copy of the warm
    start ``psi0`` (finite, never the caller's array: the loops write into it)."""
    return np.zeros(op.shape) if psi0 is None else op.check_source(psi0, "psi0").copy()
