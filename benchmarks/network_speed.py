"""Full 25-isotope network throughput at the paper grid: models/s per backend, mode and precision.

Models are scattered +-20 % around crml_base (inside the Table 1 prior). Each mode and precision is
warmed up on a 2-model batch first (JIT / kernel compilation excluded from the timing). Prints models/s,
ms/model, steps per species, memory, and GALPROP's time per model in the same table.

    python benchmarks/network_speed.py --backend numba --batches 1 8
    python benchmarks/network_speed.py --backend cupy --modes fast galprop --precisions float32 float64 \
        --batches 1 64 512 2048 --only fast:float32:8192 --tag cupy_h100
Writes benchmarks/results/network_speed_<tag>.{json,md} (tag defaults to the backend).
"""

from __future__ import annotations

import argparse
import json
import resource
import time
import warnings
from dataclasses import asdict

import numpy as np
from common import RESULTS, copy_bandwidth_gb_s, galprop_seconds_per_model, machine, nominal_bytes

from crprop.galaxy import GalaxySetup
from crprop.params import CRML_BASE as CRML_BASE_PARAMS
from crprop.params import PropagationParams
from crprop.propagate import propagate

CRML_BASE = asdict(CRML_BASE_PARAMS)


def models(n: int, seed: int) -> list[PropagationParams]:
    rng = np.random.default_rng(seed)
    out = []
    for _ in range(n):
        vals = {k: v * rng.uniform(0.8, 1.2) for k, v in CRML_BASE.items()}
        vals["z_halo_kpc"] = CRML_BASE["z_halo_kpc"]  # one halo: the paper grid (z nodes +-0.1 .. +-3.9)
        out.append(PropagationParams(**vals))
    return out


def device_memory() -> float | None:
    try:
        import cupy

        return cupy.get_default_memory_pool().total_bytes() / 2**30
    except Exception:
        return None


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--backend", default="numba")
    ap.add_argument("--precisions", nargs="+", default=[None], help="cupy only: float64 float32 (default: the "
                    "backend's per-mode default)")
    ap.add_argument("--batches", type=int, nargs="+", default=[1, 8])
    ap.add_argument("--modes", nargs="+", default=["fast"])
    ap.add_argument("--only", nargs="*", default=[], help="extra mode:precision:B rows, e.g. fast:float32:8192")
    ap.add_argument("--tag", default=None, help="results file suffix (default: the backend)")
    args = ap.parse_args()
    warnings.simplefilter("ignore")
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
        t0 = time.perf_counter()
        try:
            sp = propagate(setup, plist, mode=mode, backend=args.backend, backend_options=opts)
        except MemoryError as exc:  # cupy's OutOfMemoryError is a MemoryError
            print(f"{mode} {precision} B={b}: out of memory ({exc})", flush=True)
            rows.append({"mode": mode, "backend": args.backend, "precision": precision or "default", "B": b,
                         "error": f"out of memory: {exc}"})
            continue
        wall = time.perf_counter() - t0
        steps = sp.meta["steps_per_species"]
        chunks = sp.meta.get("chunks", [b])
        label = sp.meta["backend"].split("-")[-1] if args.backend == "cupy" else "float64"
        cells = int(np.prod(sp.meta["grid_shape"]))
        traffic = nominal_bytes(mode, label) * cells * b * sum(steps.values())
        row = {"mode": mode, "backend": args.backend, "precision": label, "B": b,
               "wall_s": wall, "models_per_s": b / wall, "ms_per_model": wall / b * 1e3,
               "mean_steps_per_species": float(np.mean(list(steps.values()))),
               "max_residual": float(sp.residual.max()), "all_converged": bool(sp.converged.all()),
               "speedup_vs_galprop_core": galprop_s / (wall / b), "chunks": chunks,
               "nominal_GB_per_s": traffic / wall / 1e9 if copy_bw else None,
               "of_copy_bandwidth": traffic / wall / 1e9 / copy_bw if copy_bw else None,
               "device_pool_GiB": device_memory(),
               "host_maxrss_GiB": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20}
        rows.append(row)
        print(f"{mode:7s} {args.backend:5s} {label:7s} B={b:5d} {row['models_per_s']:9.2f} models/s "
              f"{row['ms_per_model']:10.1f} ms/model steps/species {row['mean_steps_per_species']:6.1f} residual "
              f"{row['max_residual']:.1e} x{row['speedup_vs_galprop_core']:.0f} vs GALPROP ({galprop_s:.1f} s)"
              + (f" {row['nominal_GB_per_s']:.0f} GB/s nominal" if copy_bw else ""), flush=True)
    tag = args.tag or args.backend
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / f"network_speed_{tag}.json").write_text(json.dumps(
        {"machine": machine(), "galprop_s_per_model": galprop_s, "galprop_source": galprop_src,
         "copy_bandwidth_GB_s": copy_bw, "rows": rows}, indent=1))
    lines = ["| mode | backend | precision | B | models/s | ms/model | steps/species | max residual | "
             "nominal GB/s | of copy BW | device pool GiB | x GALPROP core |", "|" + "---|" * 12]
    for r in rows:
        if "error" in r:
            lines.append(f"| {r['mode']} | {r['backend']} | {r['precision']} | {r['B']} | {r['error']} |" + " |" * 7)
            continue
        bw = f"{r['nominal_GB_per_s']:.0f} | {100 * r['of_copy_bandwidth']:.0f} %" if copy_bw else "- | -"
        pool = f"{r['device_pool_GiB']:.1f}" if r["device_pool_GiB"] is not None else "-"
        lines.append(f"| {r['mode']} | {r['backend']} | {r['precision']} | {r['B']} | {r['models_per_s']:.2f} | "
                     f"{r['ms_per_model']:.2f} | {r['mean_steps_per_species']:.1f} | {r['max_residual']:.1e} | {bw} | "
                     f"{pool} | {r['speedup_vs_galprop_core']:.0f} |")
    lines.append(f"\nGALPROP: {galprop_s:.1f} s per model, one core ({galprop_src}). Machine: {machine()}."
                 + (f" Device copy bandwidth (read + write): {copy_bw:.0f} GB/s. nominal GB/s = nominal DRAM bytes "
                    "per cell-step (fast: 32 + 4 x word, galprop: 9 x word) x cells x steps of all species / wall."
                    if copy_bw else ""))
    (RESULTS / f"network_speed_{tag}.md").write_text("\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
