"""Full 25-isotope network throughput at the paper grid: models/s per backend, mode and precision.

Models are scattered +-20 % around crml_base (inside the Table 1 prior). Each mode and precision is
warmed up on a 2-model batch first (JIT / kernel compilation excluded from the timing). Each row is the median of
``--repeats`` propagate calls (range reported; ``--repeats 1`` for a single call, e.g. at the largest GPU batches).
Prints models/s, ms/model, steps per species, memory (the process's peak resident set during the row's calls,
benchmarks/common.py:PeakRSS, and for cupy the bytes CuPy's default memory pool holds after them, emptied before
the row, i.e. its high-water mark) and GALPROP's time per model in the same table.

    python benchmarks/network_speed.py --backend numba --batches 1 8
    python benchmarks/network_speed.py --backend cupy --modes fast galprop --precisions float32 float64 \
        --batches 1 64 512 2048 --only fast:float32:8192 --tag cupy_h100
Writes <out-dir>/network_speed_<tag>.{json,md} (default benchmarks/results; tag defaults to the backend). The
table says per row whether every model converged (`galprop` mode: GALPROP's fixed time ladder, which stops short of
the steady state by design); NonConvergenceWarning is silenced (the table carries it), other warnings are not.
"""

from __future__ import annotations

import argparse
import warnings
from dataclasses import asdict
from pathlib import Path

import numpy as np
from common import (
    PeakRSS,
    converged_cell,
    copy_bandwidth_gb_s,
    device_pool_mib,
    galprop_seconds_per_model,
    nominal_bytes,
    nonconverged_warning,
    peak_rss_scope,
    repeat_timings,
    save_results,
    wall_stats,
)

from crprop.backends import release_cached_device_memory
from crprop.galaxy import GalaxySetup
from crprop.params import CRML_BASE as CRML_BASE_PARAMS
from crprop.params import PropagationParams
from crprop.propagate import propagate
from crprop.solvers import NonConvergenceWarning

CRML_BASE = asdict(CRML_BASE_PARAMS)


def models(n: int, seed: int) -> list[PropagationParams]:
    rng = np.random.default_rng(seed)
    out = []
    for _ in range(n):
        vals = {k: v * rng.uniform(0.8, 1.2) for k, v in CRML_BASE.items()}
        vals["z_halo_kpc"] = CRML_BASE["z_halo_kpc"]  # one halo: the paper grid (z nodes +-0.1 .. +-3.9)
        out.append(PropagationParams(**vals))
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--backend", default="numba")
    ap.add_argument("--precisions", nargs="+", default=[None], help="cupy only: float64 float32 (default: the "
                    "backend's per-mode default)")
    ap.add_argument("--batches", type=int, nargs="+", default=[1, 8])
    ap.add_argument("--modes", nargs="+", default=["fast"])
    ap.add_argument("--only", nargs="*", default=[], help="extra mode:precision:B rows, e.g. fast:float32:8192")
    ap.add_argument("--tag", default=None, help="results file suffix (default: the backend)")
    ap.add_argument("--repeats", type=int, default=3, help="timed propagate calls per row (median and range)")
    ap.add_argument("--out-dir", type=Path, default=None, help="where the results go (default benchmarks/results)")
    args = ap.parse_args()
    warnings.simplefilter("ignore", NonConvergenceWarning)  # each row's converged column says it
    setup = GalaxySetup.paper()
    galprop_s, galprop_src = galprop_seconds_per_model()
    copy_bw = copy_bandwidth_gb_s() if args.backend == "cupy" else None  # GB/s, read + write
    configs = [(m, p, b) for m in args.modes for p in args.precisions for b in args.batches]
    for extra in args.only:
        m, p, b = extra.split(":")
        configs.append((m, p if p != "default" else None, int(b)))
    rows = []
    warmed = set()
    for mode, precision, b in configs:
        opts = {"precision": precision} if precision else None
        if (mode, precision) not in warmed:  # kernel compilation / JIT outside the timing
            propagate(setup, models(2, 0), mode=mode, backend=args.backend, backend_options=opts)
            warmed.add((mode, precision))
        plist = models(b, b)
        release_cached_device_memory()  # empty CuPy's pool (no-op without CuPy): after the row it holds the row's peak
        try:
            with PeakRSS() as mem:
                sp, walls = repeat_timings(
                    lambda plist=plist, mode=mode, opts=opts: propagate(setup, plist, mode=mode, backend=args.backend,
                                                                        backend_options=opts), args.repeats)
        except MemoryError as exc:  # cupy's OutOfMemoryError is a MemoryError
            print(f"{mode} {precision} B={b}: out of memory ({exc})", flush=True)
            rows.append({"mode": mode, "backend": args.backend, "precision": precision or "default", "B": b,
                         "error": f"out of memory: {exc}"})
            continue
        timing = wall_stats(walls)
        wall = timing["wall_s"]
        steps = sp.meta["steps_per_species"]
        chunks = sp.meta.get("chunks", [b])
        label = sp.meta["backend"].split("-")[-1] if args.backend == "cupy" else "float64"
        cells = int(np.prod(sp.meta["grid_shape"]))
        traffic = nominal_bytes(mode, label) * cells * b * sum(steps.values())
        row = {"mode": mode, "backend": args.backend, "precision": label, "B": b,
               **timing, "models_per_s": b / wall, "ms_per_model": wall / b * 1e3,
               "mean_steps_per_species": float(np.mean(list(steps.values()))),
               "max_residual": float(sp.residual.max()), "all_converged": bool(sp.converged.all()),
               "n_nonconverged": int((~sp.converged).sum()),
               "converged": converged_cell(mode, int((~sp.converged).sum()), b),
               "speedup_vs_galprop_core": galprop_s / (wall / b), "chunks": chunks,
               "nominal_GB_per_s": traffic / wall / 1e9 if copy_bw else None,
               "of_copy_bandwidth": traffic / wall / 1e9 / copy_bw if copy_bw else None,
               "device_pool_mib": device_pool_mib() if args.backend == "cupy" else None,
               "peak_rss_mib": mem.peak_mib, "peak_rss_exact": mem.exact, "rss_increase_mib": mem.increase_mib}
        rows.append(row)
        print(f"{mode:7s} {args.backend:5s} {label:7s} B={b:5d} {row['models_per_s']:9.2f} models/s "
              f"{row['ms_per_model']:10.1f} ms/model ({row['wall_min_s'] / b * 1e3:.1f}-"
              f"{row['wall_max_s'] / b * 1e3:.1f}, {args.repeats} calls) "
              f"steps/species {row['mean_steps_per_species']:6.1f} residual "
              f"{row['max_residual']:.1e} x{row['speedup_vs_galprop_core']:.0f} vs GALPROP ({galprop_s:.1f} s)"
              f" peak RSS {row['peak_rss_mib']:.0f} MiB converged: {row['converged']}"
              + (f" {row['nominal_GB_per_s']:.0f} GB/s nominal" if copy_bw else ""), flush=True)
    tag = args.tag or args.backend
    lines = ["| mode | backend | precision | B | models/s | ms/model | steps/species | max residual | converged | "
             "nominal GB/s | of copy BW | device pool GiB | x GALPROP core | peak RSS MiB | increase MiB |",
             "|" + "---|" * 15]
    for r in rows:
        if "error" in r:
            lines.append(f"| {r['mode']} | {r['backend']} | {r['precision']} | {r['B']} | {r['error']} |" + " |" * 10)
            continue
        bw = f"{r['nominal_GB_per_s']:.0f} | {100 * r['of_copy_bandwidth']:.0f} %" if copy_bw else "- | -"
        pool = f"{r['device_pool_mib'] / 1024:.1f}" if r["device_pool_mib"] is not None else "-"
        lines.append(f"| {r['mode']} | {r['backend']} | {r['precision']} | {r['B']} | {r['models_per_s']:.2f} | "
                     f"{r['ms_per_model']:.2f} ({r['wall_min_s'] / r['B'] * 1e3:.2f}–"
                     f"{r['wall_max_s'] / r['B'] * 1e3:.2f}) | {r['mean_steps_per_species']:.1f} | "
                     f"{r['max_residual']:.1e} | {r['converged']} | {bw} | {pool} | "
                     f"{r['speedup_vs_galprop_core']:.0f} | "
                     f"{r['peak_rss_mib']:.0f} | {r['rss_increase_mib']:.0f} |")
    lines.append(f"\nMedian of {args.repeats} propagate calls per row (ms/model range in brackets); peak RSS: the "
                 f"process's resident-memory high-water mark during the row's calls ({peak_rss_scope(rows)}), "
                 "increase: above the resident size before; device pool: CuPy's default pool after the row, emptied "
                 "before it. converged: every model of the row reached the solver tolerance (`fast`, `exact`); "
                 "`galprop` mode runs GALPROP's fixed time ladder, which stops short of the steady state by design."
                 f"\nGALPROP: {galprop_s:.1f} s per model, one core ({galprop_src})."
                 + (f" Device copy bandwidth (read + write): {copy_bw:.0f} GB/s. nominal GB/s = nominal DRAM bytes "
                    "per cell-step (fast: 32 + 4 x word, galprop: 9 x word) x cells x steps of all species / wall."
                    if copy_bw else ""))
    lines += nonconverged_warning((f"{r['mode']} {r['precision']} B={r['B']}", r["n_nonconverged"], r["B"])
                                  for r in rows if "error" not in r and r["mode"] != "galprop")
    save_results(f"network_speed_{tag}", "\n".join(lines) + "\n",
                 {"args": {k: str(v) if isinstance(v, Path) else v for k, v in vars(args).items()},
                  "galprop_s_per_model": galprop_s, "galprop_source": galprop_src,
                  "copy_bandwidth_GB_s": copy_bw, "rows": rows}, out_dir=args.out_dir)


if __name__ == "__main__":
    main()
