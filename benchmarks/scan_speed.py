"""Scan throughput: mock spectra per second of `crnet scan` (sampler + propagate + likelihood + store).

For K in {64, 512, 2048} chains, with and without solver warm starts, on each backend (numba on the
CPU, cupy on the GPU when one is present), a short MCMC run from around crml_base is timed batch by
batch. The first batch (starting points: cold solves, JIT compilation, tables) is reported apart;
the rates are over the following Metropolis steps. Printed next to GALPROP's cost per model
(crml_base, 25 isotopes, one core; common.galprop_seconds_per_model) and the goal of 2e5 mock spectra
in 5 minutes. Memory per row: the process's peak resident set while the model is built and the scan runs
(benchmarks/common.py:PeakRSS) and, for cupy, the bytes CuPy's default memory pool holds after the run
(emptied before the row, so its high-water mark; common.device_pool_mib).
No repeats: the rates are already over several timed batches; the shared timing keys of common.wall_stats
(``wall_s``, ``wall_min_s``, ``wall_max_s``, ``repeats``) are the median, range and number of those batches' wall
times (one batch per Metropolis step).

    python benchmarks/scan_speed.py [--chains 64 512 2048] [--steps 3] [--backends numba cupy]
                                    [--grid paper|small] [--tag cpu] [--out-dir DIR]

Writes <out-dir>/scan_speed_<tag>.{json,md} (default benchmarks/results; rewritten after every row), the json with
the provenance of common.machine.
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
import warnings
from dataclasses import replace
from pathlib import Path

import numpy as np
from common import (
    PeakRSS,
    device_pool_mib,
    galprop_seconds_per_model,
    nonconverged_warning,
    peak_rss_scope,
    save_results,
    wall_stats,
)

from crnet.scan.analytic import AnalyticSimulator
from crnet.scan.models import FunctionModel, GridConfig
from crnet.scan.runner import ScanConfig, build_model, run_scan
from crprop.params import CRML_BASE

GOAL_MODELS = 200_000
GOAL_SECONDS = 300.0
"""Goal of the issue: 2e5 mock spectra in under 5 minutes on one H100."""

GRIDS = {"paper": GridConfig(), "small": GridConfig(dr_kpc=2.0, dz_kpc=0.39, ekin_factor=1.6),
         "tiny": GridConfig(dr_kpc=4.0, dz_kpc=1.3, ekin_factor=3.0)}
"""'paper': the CR-ML galdef grid (dr 1 kpc, dz 0.2 kpc, Ekin factor 1.25, 21 x 42 x 84 at z_h ~ 4 kpc);
'small': dr 2, dz 0.39, factor 1.6 (11 x 23 x 40); 'tiny': the test grid dr 4, dz 1.3, factor 3 (6 x 7 x 18)."""


class TimedModel:
    """Wraps a ScanModel and records (wall seconds, models, solver steps, non-converged models) per evaluate()."""

    def __init__(self, inner) -> None:
        self.inner = inner
        self.calls: list[tuple[float, int, int, int]] = []
        self.species = inner.species
        self.ekin_gev_per_n = inner.ekin_gev_per_n

    def store_fields(self):
        return self.inner.store_fields()

    def evaluate(self, params, slots=None):
        t0 = time.perf_counter()
        ev = self.inner.evaluate(params, slots)
        self.calls.append((time.perf_counter() - t0, params.shape[0], ev.solver_steps,
                           int((~np.asarray(ev.converged, dtype=bool)).sum())))
        return ev

    def commit(self, slots, accepted):
        self.inner.commit(slots, accepted)


def analytic_like(real) -> FunctionModel:
    """The analytic stand-in (no solver) with the real model's species and energy grid: times the sampler,
    the store and the scan loop alone."""
    sim = AnalyticSimulator(n_energies=real.ekin_gev_per_n.size)
    n_species = len(real.species)

    def simulate(params: np.ndarray):
        ev = sim(params)
        ev.flux = np.repeat(ev.flux[:, :1], n_species, axis=1)
        return ev

    return FunctionModel(simulate, real.species, real.ekin_gev_per_n, real.store_fields())


def bench(backend: str, k: int, steps: int, warm: bool, grid: str, workdir: Path, max_steps: int | None,
          warm_max_gb: float, z_halo_kpc: float | None) -> dict | None:
    # the chains start around crml_base (../shared/reference/galprop/crml_base), optionally with another halo
    base = CRML_BASE if z_halo_kpc is None else replace(CRML_BASE, z_halo_kpc=z_halo_kpc)
    start = base.as_vector().tolist()
    # 'analytic' is no solver backend (ScanConfig refuses it): its config names numpy, whose model is built only
    # for the species and energy grid of the stand-in
    cfg = ScanConfig(n_chains=k, n_steps=steps, seed=1, backend="numpy" if backend == "analytic" else backend,
                     start=start, start_spread=0.01, proposal_scale=0.004, warm_start=warm, grid=GRIDS[grid],
                     warm_start_max_gb=warm_max_gb, max_steps=max_steps)
    if backend == "cupy":  # empty CuPy's pool, so what it holds after the row is the row's high-water mark
        from crprop.backends import release_cached_device_memory

        release_cached_device_memory()
    with PeakRSS() as mem:
        with warnings.catch_warnings(record=True):
            real = build_model(cfg)
        model = TimedModel(analytic_like(real) if backend == "analytic" else real)
        if warm and (not real.warm_start or backend == "analytic"):
            print(f"# {backend} K={k}: warm start needs more than {warm_max_gb} GB; row skipped", flush=True)
            return None
        stamps: list[tuple[float, int]] = []
        t0 = time.perf_counter()
        summary = run_scan(workdir / f"{backend}_{k}_{warm}.h5", cfg, model=model, progress=False,
                           on_batch=lambda b, n: stamps.append((time.perf_counter(), n)))
    device_mib = device_pool_mib() if backend == "cupy" else None
    first_wall = stamps[0][0] - t0
    batch_walls = np.diff([t for t, _ in stamps])  # the timed batches, one per Metropolis step
    wall = stamps[-1][0] - stamps[0][0]
    records = stamps[-1][1] - stamps[0][1]
    later = model.calls[1:]
    n_species = len(real.setup.network.species)
    evaluated = sum(c[1] for c in later)
    model_s = sum(c[0] for c in later)
    return {
        "backend": backend, "chains": k, "warm_start": warm and real.warm_start and backend != "analytic",
        "grid": grid, "grid_shape_zh20": list(real.full_grid.shape), "steps_timed": len(later),
        **wall_stats(batch_walls.tolist()), "first_batch_s": first_wall,
        "first_batch_steps_per_species": model.calls[0][2] / n_species,
        "records_per_s": records / wall if wall > 0 else float("nan"),
        "models_per_s": evaluated / model_s if model_s > 0 else float("nan"),
        "steps_per_species_per_batch": sum(c[2] for c in later) / max(len(later), 1) / n_species,
        "overhead_fraction": 1.0 - model_s / wall if wall > 0 else float("nan"),
        "acceptance": summary.acceptance_rate, "best_chi2": summary.best_chi2,
        # every evaluated model is stored, converged or not: the rates above count the non-converged ones too
        "nonconverged_timed": sum(c[3] for c in later), "models_timed": evaluated,
        "nonconverged_whole_run": summary.n_nonconverged,  # the untimed starting batch included
        "peak_rss_mib": mem.peak_mib, "peak_rss_exact": mem.exact, "rss_increase_mib": mem.increase_mib,
        "device_pool_mib": device_mib,
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--chains", type=int, nargs="+", default=[64, 512, 2048])
    ap.add_argument("--steps", type=int, default=3, help="Metropolis steps timed after the starting batch")
    ap.add_argument("--backends", nargs="+", default=None, help="default: numba, plus cupy when a GPU is seen; "
                    "'analytic' times the pipeline alone (sampler + store) with the analytic stand-in model")
    ap.add_argument("--grid", choices=sorted(GRIDS), default="paper")
    ap.add_argument("--warm", choices=["both", "on", "off"], default="both")
    ap.add_argument("--tag", default=None, help="results file suffix (default: the backends)")
    ap.add_argument("--max-steps", type=int, default=None, help="solver iteration cap per species")
    ap.add_argument("--warm-max-gb", type=float, default=40.0, help="memory allowed for the warm-start cache")
    ap.add_argument("--zh", type=float, default=None, help="start z_h (kpc) instead of crml_base's 3.9")
    ap.add_argument("--out-dir", type=Path, default=None, help="where the results go (default benchmarks/results)")
    args = ap.parse_args()
    if args.steps < 1:
        ap.error("--steps must be >= 1: the rates are over the batches after the starting one")
    from crprop.backends import cupy_available

    backends = args.backends or (["numba"] + (["cupy"] if cupy_available()[0] else []))
    warms = {"both": [False, True], "on": [True], "off": [False]}[args.warm]
    tag = args.tag or "_".join(backends)
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for backend in backends:
            for k in args.chains:
                for warm in warms:
                    row = bench(backend, k, args.steps, warm, args.grid, Path(tmp), args.max_steps, args.warm_max_gb,
                                args.zh)
                    if row is None:
                        continue
                    rows.append(row)
                    print(json.dumps(row), flush=True)
                    # after every row (a long run keeps what it measured); the table is printed once, at the end
                    report(rows, tag, args.grid, args.steps, args.zh, args.max_steps, args.out_dir, echo=False)
    report(rows, tag, args.grid, args.steps, args.zh, args.max_steps, args.out_dir)


def report(rows: list[dict], tag: str, grid: str, steps: int, zh: float | None, max_steps: int | None,
           out_dir: Path | None = None, echo: bool = True) -> str:
    """Write <out_dir>/scan_speed_<tag>.{json,md} (common.save_results; default benchmarks/results), printing the
    table if ``echo``; returns the markdown."""
    galprop_s, galprop_src = galprop_seconds_per_model()
    for row in rows:
        row["x_galprop_core"] = row["records_per_s"] * galprop_s
        row["minutes_for_2e5"] = GOAL_MODELS / row["records_per_s"] / 60.0
    out = {"galprop_s_per_model": galprop_s, "galprop_source": galprop_src,
           "goal": f"{GOAL_MODELS} models in {GOAL_SECONDS:.0f} s ({GOAL_MODELS / GOAL_SECONDS:.0f} models/s)",
           "grid": grid, "timed_steps": steps, "start_z_halo_kpc": zh, "max_steps": max_steps, "rows": rows}
    zh_text = f"z_h = {zh} kpc" if zh is not None else "crml_base z_h = 3.9 kpc"
    # GALPROP's time is crml_base's: the paper grid at z_h 3.9 kpc; another grid or halo makes the ratio a scale only
    scale_only = grid != "paper" or zh is not None
    out["galprop_comparison"] = ("for scale only: GALPROP's time is for the paper grid at z_h 3.9 kpc" if scale_only
                                 else "paper grid, chains around GALPROP's crml_base")
    lines = [f"# Scan speed ({tag}; grid {grid}, {steps} timed MH steps after the start batch; chains "
             f"start around crml_base with {zh_text})", "",
             f"GALPROP: {galprop_s:.1f} s per model on one core ({galprop_src}) = "
             f"{1 / galprop_s:.3f} models/s. Goal: {out['goal']}.", "",
             "| backend | K | warm | samples/s | models/s (solver+chi2) | ADI steps/species/batch | overhead | "
             "x GALPROP core | min for 2e5 | batch s | first batch s | acceptance | non-converged (timed) | "
             "peak RSS MiB | increase MiB | device pool MiB |",
             "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        acc = np.nan if r["acceptance"] is None else r["acceptance"]
        pool = f"{r['device_pool_mib']:.0f}" if r.get("device_pool_mib") is not None else "-"
        lines.append(f"| {r['backend']} | {r['chains']} | {'yes' if r['warm_start'] else 'no'} | "
                     f"{r['records_per_s']:.2f} | {r['models_per_s']:.2f} | {r['steps_per_species_per_batch']:.0f} | "
                     f"{100 * r['overhead_fraction']:.2f} % | {r['x_galprop_core']:.0f} | {r['minutes_for_2e5']:.0f} | "
                     f"{r['wall_s']:.2f} ({r['wall_min_s']:.2f}–{r['wall_max_s']:.2f}) | {r['first_batch_s']:.1f} | "
                     f"{acc:.2f} | {r['nonconverged_timed']} of {r['models_timed']} | {r['peak_rss_mib']:.0f} | "
                     f"{r['rss_increase_mib']:.0f} | {pool} |")
    lines += ["", "samples/s = stored mock spectra per wall second over the timed steps (proposals outside the "
              "prior box are not evaluated); samples/s and models/s count every stored record, converged or not "
              "(non-converged (timed) = models of the timed batches whose solve did not converge; the JSON's "
              "nonconverged_whole_run adds the untimed starting batch); batch s = median wall time of a timed "
              "batch (range in brackets); "
              "models/s = evaluated models per second inside propagate + chi2; "
              "ADI steps/species/batch = solver iterations per species per batch (its slowest model's, capped "
              "by max_steps; before session 7 every model of the batch paid for them); overhead = sampler, "
              "store commits (3 flushes per "
              f"batch) and warm-start bookkeeping. max_steps = {max_steps or 'crprop default'}. x GALPROP core and "
              f"min for 2e5 use GALPROP's {galprop_s:.1f} s per model"
              + (f" ({out['galprop_comparison']})" if scale_only else "") + ". peak RSS = the "
              f"process's resident-memory high-water mark while the row's model is built and its scan runs "
              f"({peak_rss_scope(rows)}), increase = above the resident size before; device pool = bytes CuPy's "
              "memory pool holds after the row (emptied before it), '-' off the GPU."]
    lines += nonconverged_warning(
        ((f"{r['backend']} K={r['chains']} warm {'yes' if r['warm_start'] else 'no'}", r["nonconverged_timed"],
          r["models_timed"]) for r in rows),
        subject="timed model", entry="{label}: {n} of {total}", opening=" (",
        closing="); the rates above include them.")
    return save_results(f"scan_speed_{tag}", "\n".join(lines) + "\n", out, out_dir=out_dir, echo=echo)


if __name__ == "__main__":
    main()
