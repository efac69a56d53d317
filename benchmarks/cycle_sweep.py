"""Pseudo-time cycle settings for warm-started solves: Douglas steps per model against cycle length and stretch.

douglas.DEFAULT_CYCLE (8) and TAU_MAX_STRETCH (3) were tuned on crml_base 12C from a cold start at tol 1e-6. A scan
solves warm-started batches at tol 1e-4, with each model stopping at its own step, so the cost is the models' mean
own steps. This script captures every species' operator, source and warm start of a posterior-like batch moved by
a log-normal jitter from solved points (convergence_spread.py's setting) and iterates them again with each setting.

    python benchmarks/cycle_sweep.py --models 16 --ekin-factor 2
Writes benchmarks/results/cycle_sweep_<models>.{json,md}.
"""

from __future__ import annotations

import argparse
import json
import warnings

import numpy as np
from common import RESULTS, machine
from convergence_spread import scan_like_batch

import crprop.propagate as propagate_module
from crprop.backends import get_backend
from crprop.solvers import douglas

SETTINGS = [(8, 3.0), (6, 3.0), (10, 3.0), (12, 3.0), (8, 1.0), (8, 10.0), (8, 30.0)]
"""(steps per cycle, TAU_MAX_STRETCH); the first is the default."""


def own_steps(be, op, q, psi0, cycle: int, stretch: float, tol: float, cap: int) -> np.ndarray:
    """(B,) Douglas steps each model needs (douglas.iterate's model_steps, counted from 1) with this cycle."""
    before = douglas.TAU_MAX_STRETCH
    douglas.TAU_MAX_STRETCH = stretch
    try:
        return douglas.iterate(be, op, q, tol, cap, psi0, cycle=cycle)[3] + 1
    finally:
        douglas.TAU_MAX_STRETCH = before


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--models", type=int, default=16)
    ap.add_argument("--tol", type=float, default=1e-4)
    ap.add_argument("--jitter", type=float, default=0.02)
    ap.add_argument("--ekin-factor", type=float, default=None)
    ap.add_argument("--cap", type=int, default=300)
    args = ap.parse_args()
    warnings.simplefilter("ignore")
    setup, plist, moved, z_extent = scan_like_batch(args.models, args.jitter, args.ekin_factor)
    kw = dict(backend="numba", tol=args.tol, group_halos=False, z_extent_kpc=z_extent)
    _, psi = propagate_module.propagate(setup, plist, return_psi=True, **kw)
    captured = []
    original = propagate_module.solve_species

    def capture(op, q, psi0=None, **solver_kw):
        captured.append((op, np.array(q), None if psi0 is None else np.array(psi0)))
        return original(op, q, psi0=psi0, **solver_kw)

    propagate_module.solve_species = capture
    try:
        propagate_module.propagate(setup, moved, psi0=psi, **kw)
    finally:
        propagate_module.solve_species = original
    be = get_backend("numba")
    rows = []
    for cycle, stretch in SETTINGS:
        steps = np.array([own_steps(be, op, q, p0, cycle, stretch, args.tol, args.cap) for op, q, p0 in captured])
        rows.append({"cycle": cycle, "stretch": stretch, "mean_own_steps": float(steps.mean()),
                     "mean_batch_steps": float(steps.max(axis=1).mean())})
        print(json.dumps(rows[-1]), flush=True)
    out = {"machine": machine(), "args": vars(args), "species": len(captured), "rows": rows}
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / f"cycle_sweep_{args.models}.json").write_text(json.dumps(out, indent=1))
    ekin = f" --ekin-factor {args.ekin_factor}" if args.ekin_factor else ""
    lines = [f"# Pseudo-time cycle settings, warm-started posterior-like batch ({args.models} models, "
             f"{len(captured)} species, numba)", "",
             f"Machine: {machine()}. Command: `python benchmarks/cycle_sweep.py --models {args.models} --tol "
             f"{args.tol:g} --jitter {args.jitter:g}{ekin}`.",
             "", "| steps per cycle | TAU_MAX_STRETCH | models' own steps (mean) | batch steps (mean over species) |",
             "|---|---|---|---|"]
    lines += [f"| {r['cycle']} | {r['stretch']:g} | {r['mean_own_steps']:.1f} | {r['mean_batch_steps']:.1f} |"
              for r in rows]
    best = min(rows, key=lambda r: r["mean_own_steps"])
    lines += ["", f"Fewest own steps: cycle {best['cycle']}, stretch {best['stretch']:g}. The defaults "
              f"({douglas.DEFAULT_CYCLE}, {douglas.TAU_MAX_STRETCH:g}) stay."]
    (RESULTS / f"cycle_sweep_{args.models}.md").write_text("\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
