"""Wall time of a posterior-like batch through the full network: this tree against another checkout.

The `fast` solver stops every model at its own converged step and re-packs the batch (crprop.solvers.douglas,
session 7). Before that a batch iterated until its slowest model converged. This script times one propagate
call of a posterior-like batch (stretched_halo_speed.posterior_like, the stretched halo, optionally warm-started
from neighbouring points as in an MCMC scan) in a subprocess per source tree, so the two implementations run
the same problem on the same machine:

    git worktree add /tmp/crnet_before 68eab3e   # the last commit with the all-models stop
    python benchmarks/per_model_stop_speed.py --before /tmp/crnet_before --models 64 --ekin-factor 2
Writes benchmarks/results/per_model_stop_speed_<backend>_<models>.{json,md}.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from pathlib import Path

from common import REPO, RESULTS, machine

CHILD = r"""
import json, sys, time, warnings
sys.path.insert(0, {bench!r})
import numpy as np
from convergence_spread import scan_like_batch
from crprop.propagate import propagate
warnings.simplefilter("ignore")
setup, plist, moved, zmax = scan_like_batch({models}, {jitter}, {ekin!r})
kw = dict(backend={backend!r}, tol={tol}, z_extent_kpc=zmax)
propagate(setup, plist[:2], **kw)  # JIT compilation and table caches outside the timings
out = {{}}
t0 = time.perf_counter()
sp, psi = propagate(setup, plist, return_psi=True, **kw)
out["cold_s"] = time.perf_counter() - t0
out["cold_steps"] = int(sum(sp.meta["steps_per_species"].values()))
t0 = time.perf_counter()
sp2 = propagate(setup, moved, psi0=psi, **kw)
out["warm_s"] = time.perf_counter() - t0
out["warm_steps"] = int(sum(sp2.meta["steps_per_species"].values()))
out["converged"] = bool(sp.converged.all() and sp2.converged.all())
out["flux_C_warm"] = sp2.flux("C").tolist()
import crprop
out["crprop"] = crprop.__file__
print("RESULT" + json.dumps(out))
"""


def run_tree(tree: Path, args) -> dict:
    code = CHILD.format(bench=str(REPO / "benchmarks"), ekin=args.ekin_factor, models=args.models,
                        jitter=args.jitter, backend=args.backend, tol=args.tol)
    env = dict(os.environ, PYTHONPATH=str(tree))
    done = subprocess.run([sys.executable, "-c", code], cwd=tree, env=env, capture_output=True, text=True,
                          check=False)
    lines = [ln for ln in done.stdout.splitlines() if ln.startswith("RESULT")]
    if done.returncode != 0 or not lines:
        raise RuntimeError(f"{tree}: {done.stderr[-2000:]}")
    out = json.loads(lines[-1][len("RESULT"):])
    if not Path(out["crprop"]).resolve().is_relative_to(tree.resolve()):
        raise RuntimeError(f"{tree}: the child imported crprop from {out['crprop']}, not from this checkout")
    return out


def main() -> None:
    import numpy as np

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--before", type=Path, required=True, help="checkout of the earlier implementation")
    ap.add_argument("--backend", default="numba")
    ap.add_argument("--models", type=int, default=64)
    ap.add_argument("--tol", type=float, default=1e-4)
    ap.add_argument("--jitter", type=float, default=0.02)
    ap.add_argument("--ekin-factor", type=float, default=None)
    args = ap.parse_args()
    rows = {"before": run_tree(args.before.resolve(), args), "this tree": run_tree(REPO, args)}
    flux_b = np.array(rows["before"].pop("flux_C_warm"))
    flux_a = np.array(rows["this tree"].pop("flux_C_warm"))
    good = flux_b > 1e-30 * flux_b.max()
    diff = float(np.abs(flux_a[good] / flux_b[good] - 1.0).max())
    out = {"machine": machine(), "args": {k: str(v) for k, v in vars(args).items()}, "rows": rows,
           "max_rel_C_flux_difference": diff}
    print(json.dumps(out), flush=True)
    tag = f"{args.backend}_{args.models}"
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / f"per_model_stop_speed_{tag}.json").write_text(json.dumps(out, indent=1))
    b, a = rows["before"], rows["this tree"]
    lines = [f"# Per-model stop: {args.models} posterior-like models, full network, {args.backend}", "",
             f"Machine: {machine()}. Command: `python benchmarks/per_model_stop_speed.py --before <checkout of "
             f"68eab3e> --backend {args.backend} --models {args.models} --tol {args.tol:g} --jitter {args.jitter:g}"
             f"{' --ekin-factor ' + str(args.ekin_factor) if args.ekin_factor else ''}`. Stretched halo; warm = "
             "every model started from the solution of a neighbouring point (log-normal jitter), as in a scan.", "",
             "| start | before: wall s | this tree: wall s | speed-up | batch steps (sum over species), before / "
             "now |", "|---|---|---|---|---|"]
    for start in ("cold", "warm"):
        lines.append(f"| {start} | {b[start + '_s']:.1f} | {a[start + '_s']:.1f} | "
                     f"{b[start + '_s'] / a[start + '_s']:.2f}x | {b[start + '_steps']} / {a[start + '_steps']} |")
    lines += ["", f"All converged: {b['converged']} / {a['converged']}. Largest relative difference of the C flux "
              f"at the Sun (warm batch, all energies) between the two: {diff:.1e}. Both stop every model at a "
              f"residual <= {args.tol:g}, which leaves flux errors of this order (scan_tolerance_numba.md: 2.3e-4 "
              "at tol 1e-4 against tol 1e-8)."]
    (RESULTS / f"per_model_stop_speed_{tag}.md").write_text("\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
