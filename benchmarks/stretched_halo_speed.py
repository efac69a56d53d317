"""Stretched-halo z grid against GALPROP's uniform z grid: speed and accuracy on a posterior-like batch.

Models: the session-3 best fit (chi2_tot 450.21, benchmarks/results/pipeline_gpu_fit_h100/fit.json) with z_h
drawn from the quantiles the 512 MCMC chain states of that run had (1.3 / 5.4 / 9.2 / 13.5 / 18.1 kpc at
0 / 10 / 50 / 90 / 100 %), D0 along the D0 - z_h degeneracy (D0 proportional to z_h) and the other parameters
+-5 %. The batch is solved once on the uniform grid (dz = 0.2 kpc to the largest halo) and once on the
stretched grid (GalaxySetup.z_uniform_half_kpc, default 1.5 kpc / factor 1.15 / 1 kpc), each as one batch on the
grid of the largest halo (``group_halos=False, z_extent_kpc`` = the largest z_h, as the warm-up: halo grouping,
propagate's default, is timed apart in halo_groups_speed; until session 22 the timed calls grouped); the table gives
models/s, z nodes, Douglas steps and the largest relative difference of the element fluxes at the Sun
(0.05-3000 GeV/n) between the two, the accuracy cost of the stretch. Each wall time is the median of ``--repeats``
propagate calls (range reported); memory: the process's peak resident set during a row's calls
(benchmarks/common.py:PeakRSS) and, for cupy, the bytes CuPy's default memory pool holds after them (emptied before
the row, so its high-water mark).

    python benchmarks/stretched_halo_speed.py --backend numba --models 8 --ekin-factor 1.5
    python benchmarks/stretched_halo_speed.py --backend cupy --models 512 --precision float32
Writes <out-dir>/stretched_halo_speed_<backend>[_<precision>]_<models>.{json,md} (default benchmarks/results).
"""

from __future__ import annotations

import argparse
import json
import warnings
from dataclasses import asdict
from pathlib import Path

import numpy as np
from common import (
    PeakRSS,
    device_pool_mib,
    galprop_seconds_per_model,
    peak_rss_scope,
    repeat_timings,
    save_results,
    wall_stats,
)

from crprop.backends import release_cached_device_memory
from crprop.galaxy import GalaxySetup
from crprop.params import PRIOR_BOX, PropagationParams
from crprop.propagate import batch_grid, propagate
from crprop.solvers import NonConvergenceWarning

BEST_FIT = PropagationParams(7.38, 0.426, -1.16, 24.7, 8.97, 0.826, 2.379, 2.238, 1390.0, 2.5e5)
"""Session-3 chi2_tot minimum (rounded), the centre of the posterior-like batch."""
ZH_QUANTILES = ([0.0, 0.1, 0.5, 0.9, 1.0], [1.3, 5.4, 9.2, 13.5, 18.1])
"""(probability, z_h kpc) of the last step's 512 chain states in pipeline_gpu_fit_h100 (session 3)."""
ELEMENTS = ("Li", "Be", "B", "C", "N", "O")


def posterior_like(n: int, seed: int = 0) -> list[PropagationParams]:
    rng = np.random.default_rng(seed)
    best = asdict(BEST_FIT)
    zh = np.interp(rng.uniform(0.0, 1.0, n), *ZH_QUANTILES)
    out = []
    for z in zh:
        vals = {k: v * rng.uniform(0.95, 1.05) for k, v in best.items()}
        vals["z_halo_kpc"] = float(z)
        d0 = best["d0_1e28_cm2_s"] * z / best["z_halo_kpc"] * rng.uniform(0.95, 1.05)
        vals["d0_1e28_cm2_s"] = float(np.clip(d0, *PRIOR_BOX["d0_1e28_cm2_s"][:2]))  # stay inside Table 1
        out.append(PropagationParams(**vals))
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--backend", default="numba")
    ap.add_argument("--models", type=int, default=8)
    ap.add_argument("--precision", default=None, help="cupy: float32 | float64")
    ap.add_argument("--ekin-factor", type=float, default=None, help="coarser energy grid (CPU runs)")
    ap.add_argument("--z-uniform-half", type=float, default=1.5)
    ap.add_argument("--stretch", type=float, default=1.15)
    ap.add_argument("--dz-max", type=float, default=1.0)
    ap.add_argument("--repeats", type=int, default=3, help="timed propagate calls per grid (median and range)")
    ap.add_argument("--out-dir", type=Path, default=None, help="where the results go (default benchmarks/results)")
    args = ap.parse_args()
    warnings.simplefilter("ignore", NonConvergenceWarning)  # the table's "all converged" column says it
    base = GalaxySetup.paper()
    if args.ekin_factor:
        base = base.with_changes(ekin_factor=args.ekin_factor)
    stretched = base.with_changes(z_uniform_half_kpc=args.z_uniform_half, z_stretch_factor=args.stretch,
                                  dz_max_kpc=args.dz_max)
    opts = {"precision": args.precision} if args.precision else None
    plist = posterior_like(args.models)
    zmax = max(p.z_halo_kpc for p in plist)
    # one batch on the grid of the largest halo, for the warm-up and the timed calls alike (module docstring)
    kw = {"backend": args.backend, "backend_options": opts, "z_extent_kpc": zmax, "group_halos": False}
    for s in (base, stretched):  # JIT / kernel compilation and table caches outside the timings
        propagate(s, plist[:2], **kw)
    rows, fluxes = [], {}
    for name, s in (("uniform (GALPROP)", base), ("stretched", stretched)):
        release_cached_device_memory()  # empty CuPy's pool (and the last solve's workspace); no-op without CuPy
        with PeakRSS() as mem:
            sp, walls = repeat_timings(lambda s=s: propagate(s, plist, **kw), args.repeats)
        timing = wall_stats(walls)
        wall = timing["wall_s"]
        e = sp.ekin_gev_per_n
        m = (e > 0.05) & (e < 3e3)
        fluxes[name] = {el: sp.flux(el)[:, m] for el in ELEMENTS}
        steps = sp.meta.get("steps_per_species", {})
        rows.append({"grid": name, "z_nodes": batch_grid(s, zmax).shape[1], "solved_z_nodes": sp.meta["grid_shape"][1],
                     "halo_groups": sp.meta.get("halo_groups"), **timing,
                     "models_per_s": len(plist) / wall, "ms_per_model": 1e3 * wall / len(plist),
                     "max_steps_per_species": int(max(steps.values())) if steps else None,
                     "all_converged": bool(sp.converged.all()), "max_residual": float(sp.residual.max()),
                     "peak_rss_mib": mem.peak_mib, "peak_rss_exact": mem.exact, "rss_increase_mib": mem.increase_mib,
                     "device_pool_mib": device_pool_mib() if args.backend == "cupy" else None})
        print(json.dumps(rows[-1]), flush=True)
    u, st = fluxes["uniform (GALPROP)"], fluxes["stretched"]
    diff = {el: float(np.abs(st[el] / u[el] - 1.0).max()) for el in ELEMENTS}
    bc = float(np.abs((st["B"] / st["C"]) / (u["B"] / u["C"]) - 1.0).max())
    galprop_s, galprop_src = galprop_seconds_per_model()
    out = {"args": vars(args), "rows": rows, "max_rel_flux_difference": diff,
           "max_rel_b_over_c_difference": bc, "galprop_s_per_model": galprop_s, "galprop_timing_source": galprop_src,
           "z_halo_kpc": [p.z_halo_kpc for p in plist]}
    print(json.dumps({"max_rel_flux_difference": diff, "b_over_c": bc}), flush=True)
    tag = "_".join([args.backend] + ([args.precision] if args.precision else []) + [str(args.models)])
    shape = batch_grid(base, zmax).shape
    zmin = min(out["z_halo_kpc"])
    lines = [f"# Stretched halo vs uniform z grid: {args.models} posterior-like models (z_h {zmin:.1f}"
             f"-{zmax:.1f} kpc), backend {args.backend}{' ' + args.precision if args.precision else ''}",
             "", f"Grid {shape[0]} x z x {shape[2]}. Command: "
             f"`python benchmarks/stretched_halo_speed.py --backend {args.backend} --models {args.models}"
             f"{' --precision ' + args.precision if args.precision else ''}"
             f"{' --ekin-factor ' + str(args.ekin_factor) if args.ekin_factor else ''}`. Stretch: uniform "
             f"to {args.z_uniform_half} kpc, factor {args.stretch}, steps up to {args.dz_max} kpc. Wall: median of "
             f"{args.repeats} propagate calls (range in brackets), each solving the whole batch on the grid of the "
             f"largest halo, {zmax:.1f} kpc (no halo grouping); peak RSS: the process's resident-memory high-water "
             f"mark during the row's calls ({peak_rss_scope(rows)}), increase: above the resident size before; GPU "
             "pool: CuPy's default memory pool after the row (emptied before it).", "",
             "| z grid | z nodes | wall s | models/s | ms/model | GALPROP s/model (1 core, crml_base) | max steps | "
             "all converged | peak RSS MiB | increase MiB | GPU pool MiB |",
             "|---|---|---|---|---|---|---|---|---|---|---|"]
    lines += [f"| {r['grid']} | {r['z_nodes']} | {r['wall_s']:.1f} ({r['wall_min_s']:.1f}–{r['wall_max_s']:.1f}) | "
              f"{r['models_per_s']:.2f} | {r['ms_per_model']:.0f} | {galprop_s:.1f} | {r['max_steps_per_species']} | "
              f"{r['all_converged']} | {r['peak_rss_mib']:.0f} | {r['rss_increase_mib']:.0f} | "
              + (f"{r['device_pool_mib']:.0f} |" if r["device_pool_mib"] is not None else "- |")
              for r in rows]
    lines += ["", f"Speed-up {rows[0]['wall_s'] / rows[1]['wall_s']:.2f}x. Largest relative flux difference "
              "stretched vs uniform, 0.05-3000 GeV/n, over all models: "
              + ", ".join(f"{el} {v:.1e}" for el, v in diff.items()) + f"; B/C {bc:.1e}."]
    out["args"] = {k: str(v) if isinstance(v, Path) else v for k, v in vars(args).items()}
    out.update(group_halos=False, z_extent_kpc=zmax)  # every row's halo_groups is then None: one batch
    save_results(f"stretched_halo_speed_{tag}", "\n".join(lines) + "\n", out, out_dir=args.out_dir)


if __name__ == "__main__":
    main()
