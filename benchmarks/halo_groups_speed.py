"""Halo grouping in propagate: a batch whose halo heights are spread, solved as one batch (the grid of its
largest z_h) against grouped by halo (crprop.propagate.halo_groups), full 25-isotope network.

Models: crml_base +-10 % with z_h drawn uniformly in [--zh-min, --zh-max] kpc (an MCMC batch whose chains have
spread in the D0 - z_h degeneracy, or a set of machine predictions to re-simulate).

Each row is the median of ``--repeats`` propagate calls (range reported), with the process's peak resident memory
during them (benchmarks/common.py:PeakRSS) and models/s against GALPROP's time per model (its paper grid and fixed
z_h = 3.9 kpc, so for scale only: the grids here are coarser, z_h up to --zh-max larger).

    python benchmarks/halo_groups_speed.py --backend numba --grid small --models 32
Writes benchmarks/results/halo_groups_speed_<backend>_<grid>[_<tag>].{json,md}.
"""

from __future__ import annotations

import argparse
import json
import warnings
from dataclasses import asdict

import numpy as np
from common import PeakRSS, galprop_seconds_per_model, peak_rss_scope, repeat_timings, save_results, wall_stats

from crprop.galaxy import GalaxySetup
from crprop.params import CRML_BASE as CRML_BASE_PARAMS
from crprop.params import PropagationParams
from crprop.propagate import HALO_GROUP_MIN_MODELS, batch_grid, halo_groups, propagate

CRML_BASE = asdict(CRML_BASE_PARAMS)
GRIDS = {"paper": {}, "small": {"dr_kpc": 2.0, "dz_kpc": 0.39, "ekin_factor": 1.6},
         "tiny": {"dr_kpc": 4.0, "dz_kpc": 1.3, "ekin_factor": 3.0}}


def models(n: int, zh_min: float, zh_max: float, seed: int = 0) -> list[PropagationParams]:
    rng = np.random.default_rng(seed)
    out = []
    for _ in range(n):
        vals = {k: v * rng.uniform(0.9, 1.1) for k, v in CRML_BASE.items()}
        vals["z_halo_kpc"] = rng.uniform(zh_min, zh_max)
        vals["d0_1e28_cm2_s"] = CRML_BASE["d0_1e28_cm2_s"] * vals["z_halo_kpc"] / 3.9  # along the degeneracy
        out.append(PropagationParams(**vals))
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--backend", default="numba")
    ap.add_argument("--grid", choices=sorted(GRIDS), default="small")
    ap.add_argument("--models", type=int, default=32)
    ap.add_argument("--zh-min", type=float, default=2.0)
    ap.add_argument("--zh-max", type=float, default=12.0)
    ap.add_argument("--repeats", type=int, default=3, help="timed propagate calls per row (median and range)")
    ap.add_argument("--tag", default=None, help="extra results file suffix (e.g. a smaller setting than usual)")
    args = ap.parse_args()
    warnings.simplefilter("ignore")
    galprop_s, galprop_src = galprop_seconds_per_model()
    setup = GalaxySetup.paper().with_changes(**GRIDS[args.grid]) if GRIDS[args.grid] else GalaxySetup.paper()
    plist = models(args.models, args.zh_min, args.zh_max)
    z = np.array([p.z_halo_kpc for p in plist])
    propagate(setup, plist[:2], backend=args.backend, group_halos=False)  # JIT / kernel compilation
    groups = halo_groups(setup, z, HALO_GROUP_MIN_MODELS.get(args.backend, 1))
    cells_one = len(plist) * batch_grid(setup, float(z.max())).shape[1]
    cells_grouped = sum(g.size * batch_grid(setup, float(z[g].max())).shape[1] for g in groups)
    rows = []
    for grouped in (False, True):
        with PeakRSS() as mem:
            sp, walls = repeat_timings(
                lambda grouped=grouped: propagate(setup, plist, backend=args.backend, group_halos=grouped),
                args.repeats)
        timing = wall_stats(walls)
        wall = timing["wall_s"]
        rows.append({"grouped": grouped, **timing, "models_per_s": len(plist) / wall,
                     "ms_per_model": wall / len(plist) * 1e3, "x_galprop_core": galprop_s * len(plist) / wall,
                     "peak_rss_mib": mem.peak_mib, "peak_rss_exact": mem.exact, "rss_increase_mib": mem.increase_mib,
                     "z_cells_per_column": cells_grouped if grouped else cells_one,
                     "groups": [int(g.size) for g in groups] if grouped else [len(plist)],
                     "all_converged": bool(sp.converged.all()), "max_residual": float(sp.residual.max())})
        print(json.dumps(rows[-1]), flush=True)
    tag = f"{args.backend}_{args.grid}" + (f"_{args.tag}" if args.tag else "")
    lines = [f"# Halo grouping, {args.models} models, z_h uniform in [{args.zh_min}, {args.zh_max}] kpc, "
             f"grid {args.grid} ({batch_grid(setup, args.zh_max).shape}), backend {args.backend}", "",
             f"Median of {args.repeats} propagate calls per row (range in brackets); peak RSS: the process's "
             f"resident-memory high-water mark during the row's calls ({peak_rss_scope(rows)}), increase: above the "
             f"resident size before. GALPROP: {galprop_s:.1f} s per model on one core ({galprop_src}); its grid is the "
             "paper's at z_h = 3.9 kpc, so x GALPROP is for scale only.", "",
             "| grouped | groups | z nodes x models | wall s | ms/model | models/s | x GALPROP core | peak RSS MiB "
             "| increase MiB | all converged |", "|---|---|---|---|---|---|---|---|---|---|"]
    lines += [f"| {'yes' if r['grouped'] else 'no'} | {r['groups']} | {r['z_cells_per_column']} | {r['wall_s']:.1f} "
              f"({r['wall_min_s']:.1f}–{r['wall_max_s']:.1f}) | {r['ms_per_model']:.0f} | {r['models_per_s']:.2f} | "
              f"{r['x_galprop_core']:.0f} | {r['peak_rss_mib']:.0f} | {r['rss_increase_mib']:.0f} | "
              f"{r['all_converged']} |" for r in rows]
    lines.append(f"\nSpeed-up {rows[0]['wall_s'] / rows[1]['wall_s']:.2f}x for "
                 f"{rows[0]['z_cells_per_column'] / rows[1]['z_cells_per_column']:.2f}x fewer z nodes.")
    save_results(f"halo_groups_speed_{tag}", "\n".join(lines),
                 {"args": vars(args), "galprop_s_per_model": galprop_s, "galprop_source": galprop_src, "rows": rows})


if __name__ == "__main__":
    main()
