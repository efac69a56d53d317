"""How unevenly a batch converges: per-model Douglas steps against the batch's steps, species by species.

Until session 7 a `fast` solve of B models iterated until its slowest model's residual was below tol, so every
model paid for the slowest one (now each model stops at its own step; this probe measured what that could save).
This probe runs the full network for a posterior-like batch (stretched_halo_speed.posterior_like: the session-3
best fit with z_h spread over 1.3-18 kpc along the D0 - z_h degeneracy) and records every species' per-model steps
(``SolveResult.model_steps``; the first version re-iterated each species with a per-step residual record, which
tests/test_solver_core.py shows gives the same steps). It reports, per species, the steps the batch needs (its
slowest model) and the mean of the models' own steps; the ratio sum(own steps) / (B x batch steps) is the work
a per-model stop leaves, the rest is what it saves.

Two starts: cold (psi0 = 0, as a fresh batch) and warm (the scan's case: every model starts from the solution
of a neighbouring parameter point, the previous chain state, moved by a log-normal jitter of ``--jitter``).

    python benchmarks/convergence_spread.py --models 32 --ekin-factor 1.5 --tol 1e-4
Writes benchmarks/results/convergence_spread_<backend>_<models>.{json,md}.
"""

from __future__ import annotations

import argparse
import json
import time
import warnings
from dataclasses import asdict

import numpy as np
from common import RESULTS, machine
from stretched_halo_speed import posterior_like

import crprop.propagate as propagate_module
from crprop.galaxy import GalaxySetup
from crprop.params import PRIOR_BOX, PropagationParams


def record(out: dict[int, np.ndarray]):
    """A solve_species stand-in for crprop.propagate that also records every species' per-model steps
    (SolveResult.model_steps: the step at which each model met tol, max_steps if never)."""
    original = propagate_module.solve_species

    def wrapped(*args, **kw):
        result = original(*args, **kw)
        out[len(out)] = np.asarray(result.model_steps)
        return result

    return original, wrapped


def jittered(plist: list[PropagationParams], sigma: float, seed: int) -> list[PropagationParams]:
    rng = np.random.default_rng(seed)
    out = []
    for p in plist:
        vals = {k: float(np.clip(v * np.exp(sigma * rng.standard_normal()), *PRIOR_BOX[k][:2]))
                for k, v in asdict(p).items()}
        out.append(PropagationParams(**vals))
    return out


def scan_like_batch(n_models: int, jitter: float, ekin_factor: float | None = None):
    """(setup, points, moved points, z extent kpc): the stretched-halo setup (optionally a coarser energy grid),
    n_models posterior-like points and the same points moved by a log-normal jitter (a scan's next proposals),
    with the z extent that holds both, so the first batch's psi warm-starts the second."""
    setup = GalaxySetup.paper().with_changes(z_uniform_half_kpc=1.5, z_stretch_factor=1.15, dz_max_kpc=1.0)
    if ekin_factor:
        setup = setup.with_changes(ekin_factor=ekin_factor)
    plist = posterior_like(n_models)
    moved = jittered(plist, jitter, seed=1)
    return setup, plist, moved, float(max(p.z_halo_kpc for p in plist + moved))


def run(setup: GalaxySetup, plist, backend: str, tol: float, max_steps: int, psi0=None, z_extent=None):
    steps: dict[int, np.ndarray] = {}
    original, wrapped = record(steps)
    propagate_module.solve_species = wrapped
    try:
        _, psi = propagate_module.propagate(setup, plist, backend=backend, tol=tol, max_steps=max_steps,
                                            return_psi=True, psi0=psi0, group_halos=False, z_extent_kpc=z_extent)
    finally:
        propagate_module.solve_species = original
    return steps, psi


def summarise(steps: dict[int, np.ndarray]) -> dict:
    batch = np.array([s.max() + 1 for s in steps.values()], dtype=float)  # steps counted from 1
    own = np.array([(s + 1).mean() for s in steps.values()])
    b = len(next(iter(steps.values())))
    return {"species": len(steps), "models": b, "batch_steps_mean": float(batch.mean()),
            "own_steps_mean": float(own.mean()), "work_ratio": float(own.sum() / batch.sum()),
            "batch_steps": batch.astype(int).tolist(), "own_steps_mean_per_species": own.round(1).tolist(),
            "own_steps_p10_p50_p90": [np.percentile(np.concatenate(list(steps.values())) + 1, q).item()
                                      for q in (10, 50, 90)]}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--backend", default="numba")
    ap.add_argument("--models", type=int, default=32)
    ap.add_argument("--tol", type=float, default=1e-4)
    ap.add_argument("--max-steps", type=int, default=600)
    ap.add_argument("--jitter", type=float, default=0.02, help="log-normal sigma of the warm-start move")
    ap.add_argument("--ekin-factor", type=float, default=None, help="coarser energy grid (CPU runs)")
    args = ap.parse_args()
    warnings.simplefilter("ignore")
    setup, plist, moved, z_extent = scan_like_batch(args.models, args.jitter, args.ekin_factor)
    t0 = time.perf_counter()
    cold, psi = run(setup, plist, args.backend, args.tol, args.max_steps, z_extent=z_extent)
    warm, _ = run(setup, moved, args.backend, args.tol, args.max_steps, psi0=psi, z_extent=z_extent)
    rows = {"cold": summarise(cold), "warm": summarise(warm)}
    out = {"machine": machine(), "args": vars(args), "wall_s": time.perf_counter() - t0, **rows,
           "z_halo_kpc": [p.z_halo_kpc for p in plist]}
    print(json.dumps({k: {kk: v[kk] for kk in ("batch_steps_mean", "own_steps_mean", "work_ratio")}
                      for k, v in rows.items()}), flush=True)
    tag = f"{args.backend}_{args.models}"
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / f"convergence_spread_{tag}.json").write_text(json.dumps(out, indent=1))
    lines = [f"# Per-model convergence in a batch of {args.models} posterior-like models ({args.backend})", "",
             f"Machine: {machine()}. Command: `python benchmarks/convergence_spread.py --backend {args.backend} "
             f"--models {args.models} --tol {args.tol:g} --jitter {args.jitter:g}"
             f"{' --ekin-factor ' + str(args.ekin_factor) if args.ekin_factor else ''}`. Stretched halo, full "
             f"network ({rows['cold']['species']} species), z_h {min(out['z_halo_kpc']):.1f}-{z_extent:.1f} kpc.",
             "", "| start | batch steps per species (mean) | models' own steps (mean) | own / batch work | "
             "own steps p10 / p50 / p90 |", "|---|---|---|---|---|"]
    for name, r in rows.items():
        p = r["own_steps_p10_p50_p90"]
        lines.append(f"| {name} | {r['batch_steps_mean']:.1f} | {r['own_steps_mean']:.1f} | "
                     f"{r['work_ratio']:.3f} | {p[0]:.0f} / {p[1]:.0f} / {p[2]:.0f} |")
    lines += ["", "own / batch work: the share of the batch's Douglas work a per-model stop would still do."]
    (RESULTS / f"convergence_spread_{tag}.md").write_text("\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
