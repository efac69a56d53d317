"""Wall time of a posterior-like batch through the full network: this tree against another checkout.

The `fast` solver stops every model at its own converged step and re-packs the batch (crprop.solvers.douglas,
session 7). Before that a batch iterated until its slowest model converged. This script times propagate
calls of a posterior-like batch (stretched_halo_speed.posterior_like, the stretched halo, optionally warm-started
from neighbouring points as in an MCMC scan) in a subprocess per source tree, so the two implementations run
the same problem on the same machine. Each time is the median of ``--repeats`` propagate calls, with the child's
peak resident memory during them (benchmarks/common.py:PeakRSS); this tree's ms/model and models/s are set
against GALPROP's time per model (its paper grid, for scale: the grid here is the stretched halo):

    git worktree add /tmp/crnet_before 68eab3e   # the last commit with the all-models stop
    python benchmarks/per_model_stop_speed.py --before /tmp/crnet_before --models 64 --ekin-factor 2
Writes <out-dir>/per_model_stop_speed_<backend>_<models>[_<tag>].{json,md} (default benchmarks/results), with the
commit of --before (crnet.provenance.code_version on that checkout; "unknown (not a git checkout)" where git cannot
tell).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from pathlib import Path

from common import REPO, galprop_seconds_per_model, save_results

CHILD = r"""
import json, sys, warnings
sys.path.insert(0, {bench!r})
import numpy as np
from common import PeakRSS, repeat_timings
from convergence_spread import scan_like_batch
from crprop.propagate import propagate
warnings.simplefilter("ignore")
setup, plist, moved, zmax = scan_like_batch({models}, {jitter}, {ekin!r})
kw = dict(backend={backend!r}, tol={tol}, z_extent_kpc=zmax)
propagate(setup, plist[:2], **kw)  # JIT compilation and table caches outside the timings
out = {{}}
with PeakRSS() as mem:
    (sp, psi), walls = repeat_timings(lambda: propagate(setup, plist, return_psi=True, **kw), {repeats})
out.update(cold_s=float(np.median(walls)), cold_walls_s=walls, cold_peak_rss_mib=mem.peak_mib,
           cold_rss_increase_mib=mem.increase_mib)
out["cold_steps"] = int(sum(sp.meta["steps_per_species"].values()))
with PeakRSS() as mem:
    sp2, walls = repeat_timings(lambda: propagate(setup, moved, psi0=psi, **kw), {repeats})
out.update(warm_s=float(np.median(walls)), warm_walls_s=walls, warm_peak_rss_mib=mem.peak_mib,
           warm_rss_increase_mib=mem.increase_mib)
out["warm_steps"] = int(sum(sp2.meta["steps_per_species"].values()))
out["converged"] = bool(sp.converged.all() and sp2.converged.all())
out["flux_C_warm"] = sp2.flux("C").tolist()
import crprop
out["crprop"] = crprop.__file__
print("RESULT" + json.dumps(out))
"""


UNKNOWN_COMMIT = "unknown (not a git checkout)"


def checkout_commit(tree: Path) -> str:
    """HEAD of the checkout ``tree`` (with "+ uncommitted changes" when tracked files differ from it), read by
    crnet.provenance.code_version(root=tree) (its git runs without the caller's GIT_* variables);
    :data:`UNKNOWN_COMMIT` where that fails (no git, or ``tree`` is not the top of a checkout)."""
    from crnet.provenance import code_version

    version = code_version(root=tree)
    if not version["git_commit"]:
        return UNKNOWN_COMMIT
    return version["git_commit"] + (" + uncommitted changes" if version["git_dirty"] else "")


def run_tree(tree: Path, args) -> dict:
    code = CHILD.format(bench=str(REPO / "benchmarks"), ekin=args.ekin_factor, models=args.models,
                        jitter=args.jitter, backend=args.backend, tol=args.tol, repeats=args.repeats)
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
    ap.add_argument("--repeats", type=int, default=3, help="timed propagate calls per start (median and range)")
    ap.add_argument("--tag", default=None, help="extra results file suffix (e.g. a smaller setting than usual)")
    ap.add_argument("--out-dir", type=Path, default=None, help="where the results go (default benchmarks/results)")
    args = ap.parse_args()
    galprop_s, galprop_src = galprop_seconds_per_model()
    before_commit = checkout_commit(args.before.resolve())
    rows = {"before": run_tree(args.before.resolve(), args), "this tree": run_tree(REPO, args)}
    flux_b = np.array(rows["before"].pop("flux_C_warm"))
    flux_a = np.array(rows["this tree"].pop("flux_C_warm"))
    good = flux_b > 1e-30 * flux_b.max()
    diff = float(np.abs(flux_a[good] / flux_b[good] - 1.0).max())
    out = {"args": {k: str(v) for k, v in vars(args).items()}, "galprop_s_per_model": galprop_s,
           "galprop_source": galprop_src, "before": str(args.before.resolve()), "before_commit": before_commit,
           "rows": rows, "max_rel_C_flux_difference": diff}
    for start in ("cold", "warm"):
        wall = rows["this tree"][start + "_s"]
        rows["this tree"].update({f"{start}_ms_per_model": wall / args.models * 1e3,
                                  f"{start}_models_per_s": args.models / wall,
                                  f"{start}_x_galprop_core": galprop_s * args.models / wall})
    print(json.dumps(out), flush=True)
    tag = f"{args.backend}_{args.models}" + (f"_{args.tag}" if args.tag else "")
    b, a = rows["before"], rows["this tree"]
    lines = [f"# Per-model stop: {args.models} posterior-like models, full network, {args.backend}", "",
             f"--before: {args.before.resolve()} at commit {before_commit}; --tol {args.tol:g} --jitter {args.jitter:g}"
             f"{' --ekin-factor ' + str(args.ekin_factor) if args.ekin_factor else ''}. Stretched halo; warm = "
             "every model started from the solution of a neighbouring point (log-normal jitter), as in a scan. "
             f"Wall times: median of {args.repeats} propagate calls (range in brackets); peak RSS: the child "
             "process's resident-memory high-water mark during those calls, before / now. GALPROP: "
             f"{galprop_s:.1f} s per model on one core ({galprop_src}); its grid is the paper's, so x GALPROP "
             "(this tree) is for scale only.", "",
             "| start | before: wall s | this tree: wall s | speed-up | batch steps (sum over species), before / "
             "now | this tree: ms/model | models/s | x GALPROP core | peak RSS MiB, before / now |",
             "|---|---|---|---|---|---|---|---|---|"]
    for start in ("cold", "warm"):
        wb, wa = b[start + "_walls_s"], a[start + "_walls_s"]
        lines.append(f"| {start} | {b[start + '_s']:.1f} ({min(wb):.1f}–{max(wb):.1f}) | {a[start + '_s']:.1f} "
                     f"({min(wa):.1f}–{max(wa):.1f}) | {b[start + '_s'] / a[start + '_s']:.2f}x | "
                     f"{b[start + '_steps']} / {a[start + '_steps']} | {a[start + '_ms_per_model']:.0f} | "
                     f"{a[start + '_models_per_s']:.2f} | {a[start + '_x_galprop_core']:.0f} | "
                     f"{b[start + '_peak_rss_mib']:.0f} / {a[start + '_peak_rss_mib']:.0f} |")
    lines += ["", f"All converged: {b['converged']} / {a['converged']}. Largest relative difference of the C flux "
              f"at the Sun (warm batch, all energies) between the two: {diff:.1e}. Both stop every model at a "
              f"residual <= {args.tol:g}, which leaves flux errors of this order (scan_tolerance_numba.md: 2.3e-4 "
              "at tol 1e-4 against tol 1e-8)."]
    save_results(f"per_model_stop_speed_{tag}", "\n".join(lines), out, out_dir=args.out_dir)


if __name__ == "__main__":
    main()
