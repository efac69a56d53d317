"""`galprop` mode: GALPROP v54's operator-split Crank-Nicolson time marching with its dt ladder.

Each step does the z, p and r sweeps in that order, each a full CN step with source Q/3, negatives
clipped, boundaries reset (z after the z sweep; r and z after the r sweep). The ladder runs
``timestep_repeat`` steps at each dt = start * factor^k while dt >= end (GALPROP: dt > 0.9999 end).
With the paper's defaults (1e9 yr, x0.25, 20 repeats, 1e2 yr) this is 12 levels x 20 = 240 steps,
which GALPROP's reference runs show is NOT fully converged; the residual says by how much.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from crprop.constants import YEAR_S
from crprop.solvers.douglas import has_source
from crprop.solvers.result import initial_field


@dataclass(frozen=True)
class TimeLadder:
    """GALPROP's time-step schedule (years): start_timestep, timestep_factor, timestep_repeat, end."""

    start_yr: float = 1.0e9
    factor: float = 0.25
    repeat: int = 20
    end_yr: float = 1.0e2

    def __post_init__(self) -> None:
        if not (np.isfinite(self.start_yr) and self.start_yr > 0):
            raise ValueError(f"start_yr must be > 0 yr, got {self.start_yr}")
        if not (0.0 < self.factor < 1.0):
            raise ValueError(f"factor must lie in (0, 1), got {self.factor}")
        if self.repeat < 1:
            raise ValueError(f"repeat must be >= 1, got {self.repeat}")
        if not (0 < self.end_yr <= self.start_yr):
            raise ValueError(f"end_yr must lie in (0, start_yr], got {self.end_yr}")

    def levels_yr(self) -> list[float]:
        out = []
        dt = self.start_yr
        while dt > 0.9999 * self.end_yr:
            out.append(dt)
            dt *= self.factor
        return out

    def steps_s(self) -> np.ndarray:
        """Every time step in seconds, in order."""
        return np.repeat(np.asarray(self.levels_yr()) * YEAR_S, self.repeat)


def march(backend, op, q: np.ndarray, ladder: TimeLadder, psi0: np.ndarray | None = None) -> tuple[np.ndarray, int]:
    """Run the ladder; returns (psi, number of steps).

    psi is this function's own array, so the sweeps write into it (``cn_sweep(..., out=psi)``, which the CPU backends
    take; the CuPy backend marches on the device in its own solve_species): a new field per sweep cost ~10 % of the
    numba ladder's time (page faults of fresh memory; 21 x 41 x 32 cells x 16 models, one thread)."""
    q, psi = op.check_source(q), initial_field(op, psi0)
    backend.reset_dirichlet(op, psi, None)  # a warm start's boundary nodes, as the CuPy backend (review, session 13)
    psi *= has_source(q)  # a model without any source: steady state 0 (its residual has no scale), as douglas.iterate
    steps = ladder.steps_s()
    for dt in steps:
        psi = backend.cn_sweep(op, "z", float(dt), psi, q, out=psi)
        backend.reset_dirichlet(op, psi, "z")
        psi = backend.cn_sweep(op, "p", float(dt), psi, q, out=psi)
        psi = backend.cn_sweep(op, "r", float(dt), psi, q, out=psi)
        backend.reset_dirichlet(op, psi, None)
    return psi, int(steps.size)
