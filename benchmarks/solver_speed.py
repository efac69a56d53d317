"""Solver speed per mode and backend at the paper grid (21 x 40 x 84), next to GALPROP's timing.

Prints, for B in {1, 16, 128} models per batch: steps to converge, ms per model*species, models/s for
a 25-isotope network, and GALPROP's per-model time; also the accuracy of `fast` and `galprop` against
the exact sparse solve on a small grid. Writes benchmarks/results/solver_speed_cpu.{json,md}
(``--stem`` for another name, ``--out-dir`` for another folder).

    python benchmarks/solver_speed.py [--batches 1 16 128] [--backends numba numpy]
"""

from __future__ import annotations

import argparse
import json
import warnings
from pathlib import Path

import numpy as np
from common import (
    N_ISOTOPES,
    PeakRSS,
    carbon_problem,
    converged_cell,
    galprop_seconds_per_model,
    nonconverged_warning,
    peak_rss_scope,
    repeat_timings,
    save_results,
    wall_stats,
)

from crprop.grid import Grid
from crprop.solvers import NonConvergenceWarning, TimeLadder, solve_species


def time_mode(op, q, mode: str, backend: str, repeats: int) -> dict:
    """Median wall time of ``repeats`` solves, its range, steps, residual, convergence (of the last solve: every
    repeat solves the same batch) and the peak memory of the solves."""
    with PeakRSS() as mem:
        res, walls = repeat_timings(
            lambda: solve_species(op, q, mode=mode, backend=backend, on_nonconverged="ignore"), repeats)
    n_bad = int((~np.asarray(res.converged, dtype=bool)).sum())
    return {**wall_stats(walls), "steps": res.steps, "residual": float(res.residual.max()),
            "all_converged": n_bad == 0, "n_nonconverged": n_bad,
            "converged": converged_cell(mode, n_bad, res.converged.size),
            "peak_rss_mib": mem.peak_mib, "peak_rss_exact": mem.exact, "rss_increase_mib": mem.increase_mib}


def accuracy_small_grid() -> dict:
    grid = Grid.regular(20.0, 2.0, 3.9, 0.6, 1.0, 1e6, 2.0)
    op, q = carbon_problem(grid, 2, seed=3)
    exact = solve_species(op, q, mode="exact").psi
    m = exact > 1e-6 * exact.max()
    out = {"grid": list(grid.shape)}
    for mode, kw in (("fast", {"tol": 1e-6}), ("fast_1e-10", {"tol": 1e-10, "max_steps": 3000}),
                     ("galprop", {}), ("galprop_x10_repeats", {"ladder": TimeLadder(repeat=200)})):
        res = solve_species(op, q, mode=mode.split("_")[0], backend="numba", on_nonconverged="ignore", **kw)
        out[mode] = {"max_rel_error_vs_exact": float(np.abs(res.psi[m] / exact[m] - 1).max()),
                     "steps": res.steps, "residual": float(res.residual.max()),
                     "converged": converged_cell(mode.split("_")[0], int((~res.converged).sum()), res.converged.size)}
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--batches", type=int, nargs="+", default=[1, 16, 128])
    ap.add_argument("--backends", nargs="+", default=["numba", "numpy"])
    ap.add_argument("--numpy-max-batch", type=int, default=16, help="skip numpy above this batch (slow)")
    ap.add_argument("--repeats", type=int, default=3, help="timed solves per row (median and range reported)")
    ap.add_argument("--stem", default="solver_speed_cpu", help="results file name (benchmarks/results/<stem>.md)")
    ap.add_argument("--out-dir", type=Path, default=None, help="where the results go (default benchmarks/results)")
    args = ap.parse_args()
    warnings.simplefilter("ignore", NonConvergenceWarning)
    grid = Grid.regular()  # paper grid
    galprop_s, galprop_src = galprop_seconds_per_model()
    warm_op, warm_q = carbon_problem(Grid.regular(4.0, 1.0, 0.9, 0.2, 1, 1e3, 2.0), 2)
    for be in args.backends:  # JIT compilation outside the timings
        solve_species(warm_op, warm_q, mode="fast", backend=be, on_nonconverged="ignore")
        solve_species(warm_op, warm_q, mode="galprop", backend=be, on_nonconverged="ignore",
                      ladder=TimeLadder(repeat=1))
    rows = []
    for b in args.batches:
        op, q = carbon_problem(grid, b)
        for be in args.backends:
            if be == "numpy" and b > args.numpy_max_batch:
                continue
            for mode in ("fast", "galprop"):
                row = {"mode": mode, "backend": be, "B": b, **time_mode(op, q, mode, be, args.repeats)}
                ms = row["wall_s"] / b * 1e3
                row.update(ms_per_model_species=ms, models_per_s_25_isotopes=1e3 / (ms * N_ISOTOPES),
                           speedup_vs_galprop=galprop_s / (ms * N_ISOTOPES / 1e3))
                rows.append(row)
                print(f"{mode:8s} {be:6s} B={b:4d} steps={row['steps']:4d} residual={row['residual']:9.2e} "
                      f"{ms:9.2f} ms/model*species {row['models_per_s_25_isotopes']:8.3f} models/s "
                      f"(x{row['speedup_vs_galprop']:.1f} vs GALPROP {galprop_s:.1f} s/model) "
                      f"peak RSS {row['peak_rss_mib']:.0f} MiB converged: {row['converged']}", flush=True)
    acc = accuracy_small_grid()
    print("accuracy vs exact sparse solve (small grid, 12C):", json.dumps(acc, indent=1))
    out = {"grid": list(grid.shape), "galprop_s_per_model": galprop_s, "galprop_source": galprop_src,
           "rows": rows, "accuracy_small_grid": acc}
    lines = [f"# Solver speed, paper grid {grid.shape} (one species, 12C; models/s scaled to 25 isotopes)", "",
             f"Median of {args.repeats} solves per row (range in brackets); peak RSS: the process's resident-memory "
             f"high-water mark during the row's solves ({peak_rss_scope(rows)}), increase: above the resident size "
             "before. converged: every model of the batch reached the tolerance (`fast`); `galprop` mode runs "
             "GALPROP's fixed time ladder, which stops short of the steady state by design.", "",
             "| mode | backend | B | steps | converged | ms per model·species | models/s (25 isotopes) | × GALPROP "
             "| peak RSS MiB | increase MiB |",
             "|---|---|---|---|---|---|---|---|---|---|"]
    lines += [f"| {r['mode']} | {r['backend']} | {r['B']} | {r['steps']} | {r['converged']} | "
              f"{r['ms_per_model_species']:.2f} "
              f"({r['wall_min_s'] / r['B'] * 1e3:.2f}–{r['wall_max_s'] / r['B'] * 1e3:.2f}) | "
              f"{r['models_per_s_25_isotopes']:.3f} | {r['speedup_vs_galprop']:.1f} | {r['peak_rss_mib']:.0f} | "
              f"{r['rss_increase_mib']:.0f} |" for r in rows]
    lines += nonconverged_warning((f"{r['mode']} {r['backend']} B={r['B']}", r["n_nonconverged"], r["B"])
                                  for r in rows if r["mode"] != "galprop")
    lines.append(f"\nGALPROP: {galprop_s:.1f} s per model (25 isotopes, one core; {galprop_src}).")
    lines.append("\nAccuracy against the exact sparse solve (small grid, 12C): "
                 + ", ".join(f"{k} {v['max_rel_error_vs_exact']:.2e} (converged: {v['converged']})"
                             for k, v in acc.items() if k != "grid"))
    save_results(args.stem, "\n".join(lines), out, out_dir=args.out_dir)

if __name__ == "__main__":
    main()
