"""Full 25-isotope network throughput at the paper grid: models/s per backend, mode and precision.

Models are scattered +-20 % around crml_base (inside the Table 1 prior). Each configuration is
timed on a second batch after a warm-up batch (JIT / kernel compilation excluded). Prints models/s,
ms/model, steps per species, memory, and GALPROP's time per model in the same table.

    python benchmarks/network_speed.py --backend numba --batches 1 8
    python benchmarks/network_speed.py --backend cupy --precision float32 --batches 64 512 2048
Writes benchmarks/results/network_speed_<backend>[_<precision>].{json,md}.
"""

from __future__ import annotations

import argparse
import json
import resource
import time
import warnings

import numpy as np
from common import RESULTS, galprop_seconds_per_model, machine

from crprop.galaxy import GalaxySetup
from crprop.params import PropagationParams
from crprop.propagate import propagate

CRML_BASE = dict(d0_1e28_cm2_s=3.25, delta=0.478, eta=-1.55, v_alfven_km_s=34.9, z_halo_kpc=3.9, nu1=0.28,
                 nu2=2.42, nu3=2.12, r_break1_mv=880.0, r_break2_mv=4.67e5)


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
    ap.add_argument("--precision", default=None, help="cupy only: float64 | float32")
    ap.add_argument("--batches", type=int, nargs="+", default=[1, 8])
    ap.add_argument("--modes", nargs="+", default=["fast"])
    args = ap.parse_args()
    warnings.simplefilter("ignore")
    setup = GalaxySetup.paper()
    galprop_s, galprop_src = galprop_seconds_per_model()
    opts = {"precision": args.precision} if args.precision else None
    propagate(setup, models(2, 0), mode="fast", backend=args.backend, backend_options=opts)  # warm-up / JIT
    rows = []
    for mode in args.modes:
        for b in args.batches:
            plist = models(b, b)
            propagate(setup, plist[: min(b, 2)], mode=mode, backend=args.backend, backend_options=opts)
            t0 = time.perf_counter()
            sp = propagate(setup, plist, mode=mode, backend=args.backend, backend_options=opts)
            wall = time.perf_counter() - t0
            steps = np.mean(list(sp.meta["steps_per_species"].values()))
            row = {"mode": mode, "backend": args.backend, "precision": args.precision or "float64", "B": b,
                   "wall_s": wall, "models_per_s": b / wall, "ms_per_model": wall / b * 1e3,
                   "mean_steps_per_species": float(steps), "max_residual": float(sp.residual.max()),
                   "all_converged": bool(sp.converged.all()), "speedup_vs_galprop_core": galprop_s / (wall / b),
                   "device_pool_GiB": device_memory(),
                   "host_maxrss_GiB": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20}
            rows.append(row)
            print(f"{mode:7s} {args.backend:5s} {row['precision']:7s} B={b:5d} {row['models_per_s']:9.2f} models/s "
                  f"{row['ms_per_model']:10.1f} ms/model steps/species {steps:6.1f} residual "
                  f"{row['max_residual']:.1e} x{row['speedup_vs_galprop_core']:.0f} vs GALPROP ({galprop_s:.1f} s)",
                  flush=True)
    tag = args.backend + (f"_{args.precision}" if args.precision else "")
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / f"network_speed_{tag}.json").write_text(json.dumps(
        {"machine": machine(), "galprop_s_per_model": galprop_s, "galprop_source": galprop_src, "rows": rows},
        indent=1))
    lines = ["| mode | backend | precision | B | models/s | ms/model | steps/species | max residual | x GALPROP |",
             "|---|---|---|---|---|---|---|---|---|"]
    lines += [f"| {r['mode']} | {r['backend']} | {r['precision']} | {r['B']} | {r['models_per_s']:.2f} | "
              f"{r['ms_per_model']:.1f} | {r['mean_steps_per_species']:.1f} | {r['max_residual']:.1e} | "
              f"{r['speedup_vs_galprop_core']:.0f} |" for r in rows]
    lines.append(f"\nGALPROP: {galprop_s:.1f} s per model, one core ({galprop_src}).")
    (RESULTS / f"network_speed_{tag}.md").write_text("\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
