"""Would marching in energy beat the cycled Douglas iteration? Block Gauss-Seidel over the energy slices.

Energy losses carry particles only downwards in energy, so without reacceleration A psi = Q is block
lower-triangular in energy (slices ordered from high to low energy): one sweep from the top, solving each
(r, z) slice exactly, would be the steady state. A solver built on that would trade the ~50-80 Douglas steps
for a few sweeps of independent 2D solves per energy slice. On a GPU these are batched banded solves (bandwidth
n_r), which are compute-bound rather than bandwidth-bound. The question is how strongly reacceleration (D_pp,
which couples each slice to the one below as well) and the upwind loss term spoil that.

Probe: 12C for one model at crml_base-like parameters (common.carbon_problem, +-20 %), on the paper grid
(z_h 4 kpc) and on the scan's stretched halo (z_h 18 kpc). Each slice block A_kk is factorised exactly
(SuperLU on crprop.solvers.exact.assemble_matrix). Then block Gauss-Seidel runs downward only, and symmetric
(down, then up). The residual is crprop's worst-slice relative residual after every sweep. The reference is
crprop's `fast` iteration to the same tolerance.

Measured (benchmarks/results/energy_sweep_probe.md): the downward sweep gains only ~0.85x per sweep (2.2e-4 after
40 sweeps on the paper grid, 4.9e-2 on the stretched halo). The symmetric one needs 20 sweeps to 1e-4 on the paper
grid, i.e. 40 exact 2D solves of every slice against 47 Douglas steps, and more than 40 on the stretched halo
(1.3e-3 after 40, against 72 Douglas steps). The coupling through reacceleration is far too
strong for energy marching to pay off, so crprop keeps the Douglas iteration (the same finding as
TAU_MAX_STRETCH: the slowest mode is set by the momentum coupling).

    python benchmarks/energy_sweep_probe.py
Writes benchmarks/results/energy_sweep_probe.{json,md}.
"""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import scipy.sparse.linalg as spla
from common import carbon_problem, save_results

from crprop.backends import get_backend
from crprop.galaxy import GalaxySetup
from crprop.solvers import douglas
from crprop.solvers.exact import assemble_matrix
from crprop.solvers.result import relative_residual

TOL = 1e-4
"""The scan's solver tolerance (configs/pipeline_paper.toml)."""
MAX_SWEEPS = 40
STRETCHED = {"z_uniform_half_kpc": 1.5, "z_stretch_factor": 1.15, "dz_max_kpc": 1.0}
"""The scan's stretched halo (configs/pipeline_paper.toml [scan.grid])."""


def block_gauss_seidel(op, q: np.ndarray, symmetric: bool, model: int = 0) -> list[float]:
    """Worst-slice relative residual after each block Gauss-Seidel sweep over the energy slices (model 0)."""
    n_r, n_z, n_e, _ = op.shape
    m = n_r * n_z
    perm = np.arange(n_r * n_z * n_e).reshape(n_r, n_z, n_e).transpose(2, 0, 1).ravel()  # energy-major
    a = assemble_matrix(op, model).tocsr()[perm][:, perm].tocsr()
    rhs = np.where(op.interior_mask()[..., model], q[..., model], 0.0).transpose(2, 0, 1).reshape(n_e, m)
    blocks = [spla.splu(a[k * m:(k + 1) * m, k * m:(k + 1) * m].tocsc()) for k in range(n_e)]
    below = [a[k * m:(k + 1) * m, (k - 1) * m:k * m] if k > 0 else None for k in range(n_e)]
    above = [a[k * m:(k + 1) * m, (k + 1) * m:(k + 2) * m] if k < n_e - 1 else None for k in range(n_e)]
    q_field = rhs.reshape(n_e, n_r, n_z).transpose(1, 2, 0)[..., None]
    x = np.zeros((n_e, m))
    history = []
    orders = [range(n_e - 1, -1, -1)] + ([range(n_e)] if symmetric else [])
    for _ in range(MAX_SWEEPS):
        for order in orders:
            for k in order:
                f = rhs[k].copy()
                if below[k] is not None:
                    f -= below[k] @ x[k - 1]
                if above[k] is not None:
                    f -= above[k] @ x[k + 1]
                x[k] = blocks[k].solve(f)
        r = (rhs.ravel() - a @ x.ravel()).reshape(n_e, n_r, n_z).transpose(1, 2, 0)[..., None]
        history.append(float(relative_residual(r, q_field)[0]))
        if history[-1] <= TOL:
            break
    return history


def main() -> None:
    be = get_backend("numba")
    rows = []
    for label, zh, changes in (("paper grid", 4.0, {}), ("stretched halo", 18.0, STRETCHED)):
        grid = GalaxySetup.paper().with_changes(**changes).grid(zh)
        op, q = carbon_problem(grid, 1, seed=1)
        _, _, _, model_steps = douglas.iterate(be, op, q, TOL, 600)
        row = {"grid": label, "z_halo_kpc": zh, "shape": list(grid.shape), "douglas_steps": int(model_steps[0])}
        for name, symmetric in (("downward", False), ("symmetric", True)):
            t0 = time.perf_counter()
            hist = block_gauss_seidel(op, q, symmetric)
            row[name] = {"sweeps": len(hist) if hist[-1] <= TOL else None, "residuals": hist,
                         "wall_s": time.perf_counter() - t0}
        rows.append(row)
        print(row["grid"], row["douglas_steps"], [(n, row[n]["sweeps"], f"{row[n]['residuals'][-1]:.1e}")
                                                   for n in ("downward", "symmetric")], flush=True)

    def cell(r: dict) -> str:
        res = r["residuals"]
        got = r["sweeps"] if r["sweeps"] is not None else f"> {MAX_SWEEPS}"
        after = " / ".join(f"{res[min(i, len(res) - 1)]:.1e}" for i in (0, 3, 7))
        return f"{got} (after 1 / 4 / 8: {after})"

    lines = ["# Energy-sweep probe: block Gauss-Seidel over energy slices against the cycled Douglas iteration", "",
             f"Command: `python benchmarks/energy_sweep_probe.py`. 12C, one model at "
             f"crml_base-like parameters (benchmarks/common.carbon_problem, seed 1), exact (SuperLU) solves of "
             f"every (r, z) slice, tolerance {TOL:g} on crprop's worst-slice relative residual, {MAX_SWEEPS} sweeps "
             "at most. A symmetric sweep solves every slice twice.", "",
             "| grid | shape (r, z, E) | Douglas steps | downward sweeps to tol (residual after 1 / 4 / 8) | "
             "symmetric sweeps to tol (residual after 1 / 4 / 8) |",
             "|---|---|---|---|---|"]
    for r in rows:
        lines.append(f"| {r['grid']} (z_h {r['z_halo_kpc']:g} kpc) | {tuple(r['shape'])} | {r['douglas_steps']} | "
                     f"{cell(r['downward'])} | {cell(r['symmetric'])} |")
    save_results("energy_sweep_probe", "\n".join(lines) + "\n", {"tol": TOL, "rows": rows})


if __name__ == "__main__":
    import argparse

    argparse.ArgumentParser(description=__doc__.splitlines()[0] + " (no options; writes benchmarks/results/"
                            f"{Path(__file__).stem}.md/.json)").parse_args()  # --help prints, never runs
    main()
