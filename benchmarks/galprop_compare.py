"""crprop against the GALPROP v54 reference runs: per-element deviation tables, figures and timing.

For each run of ../shared/reference/galprop: `galprop` mode for the standard-time-step runs, `fast`
mode for the runs time-stepped towards steady state (*_tconv*). Prints the largest deviation per
element in 0.1-1000 GeV/n, saves a figure of crprop/GALPROP versus energy per element, and times the
full 25-isotope network per backend and mode next to GALPROP's own wall time.

    python benchmarks/galprop_compare.py [--runs crml_base p1 ...] [--backend numba]
Writes benchmarks/results/galprop_compare_<tag>.{json,md} and galprop_compare_<run>_<tag>.png.
"""

from __future__ import annotations

import argparse
import json
import time
import warnings

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
from common import RESULTS, galprop_reference_dir, save_results, warm_up_propagate  # noqa: E402

from crprop.galprop.compare import deviation_table, format_table, load_run  # noqa: E402
from crprop.propagate import propagate  # noqa: E402

STANDARD_RUNS = ["crml_base", "p1", "p2", "p4", "p6", "crml_base_net2"]
CONVERGED_RUNS = ["crml_base_tconv1000", "crml_base_tconv", "p1_tconv", "p2_tconv"]


def figure(run_name: str, model, ref, path) -> None:
    names = [s for s in ref.elements if s in model.elements]
    fig, axes = plt.subplots(2, (len(names) + 2) // 2, figsize=(3.2 * ((len(names) + 2) // 2), 6), sharex=True)
    e = model.ekin_gev_per_n
    for ax, name in zip(axes.ravel(), names + ["B/C"], strict=False):
        if name == "B/C":
            m, r = model.flux("B")[0] / model.flux("C")[0], ref.flux("B")[0] / ref.flux("C")[0]
        else:
            m, r = model.flux(name)[0], ref.flux(name)[0]
        ax.semilogx(e, m / r, lw=1.2)
        ax.axhline(1, color="k", lw=0.5)
        ax.axvspan(0.1, 1000, color="0.93", zorder=0)
        ax.set_ylim(0.9, 1.1)
        ax.set_title(name)
    for ax in axes[-1]:
        ax.set_xlabel("E_kin [GeV/n]")
    axes[0, 0].set_ylabel("crprop / GALPROP")
    fig.suptitle(f"{run_name}: {model.meta['mode']} mode")
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--runs", nargs="+", default=STANDARD_RUNS + CONVERGED_RUNS)
    ap.add_argument("--backend", default="numba")
    ap.add_argument("--tag", default="cpu", help="suffix of the result files (e.g. the device)")
    args = ap.parse_args()
    ref = galprop_reference_dir()
    out = {"backend": args.backend, "runs": {}}
    md = [f"crprop vs GALPROP v54 ({args.backend}); deviations in % of GALPROP's flux; crprop wall times after a "
          "warm-up (no JIT compilation), GALPROP's from each run's json (one OpenMP thread).", ""]
    warm = load_run(ref / args.runs[0])  # compile the kernels once, outside the timings
    warm_up_propagate(warm.setup(), warm.params, args.backend)
    for name in args.runs:
        run = load_run(ref / name)
        mode = "fast" if "tconv" in name else "galprop"
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            t0 = time.perf_counter()
            model = propagate(run.setup(), run.params, mode=mode, backend=args.backend, check_prior=False)
            wall = time.perf_counter() - t0
        rows = deviation_table(model, run.spectra())
        galprop_wall = json.loads((ref / name / f"{name}.json").read_text()).get(
            "wall_time_s")
        title = (f"{name}: crprop {mode}/{args.backend} {wall:.1f} s vs GALPROP {galprop_wall} s "
                 f"(max residual {model.residual.max():.2e})")
        print(format_table(rows, title), flush=True)
        md += [f"### {name}", "", "```", format_table(rows, title), "```", ""]
        out["runs"][name] = {"mode": mode, "crprop_wall_s": wall, "galprop_wall_s": galprop_wall,
                             "residual": float(model.residual.max()), "rows": rows,
                             "steps_per_species": model.meta["steps_per_species"]}
        figure(name, model, run.spectra(), RESULTS / f"galprop_compare_{name}_{args.tag}.png")
    save_results(f"galprop_compare_{args.tag}", "\n".join(md), out)  # its footer says whether the tree was dirty


if __name__ == "__main__":
    main()
