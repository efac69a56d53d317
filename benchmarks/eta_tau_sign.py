"""Table 3's eta row before and after session 21's tau = (theta' - theta) / |theta| (Eq. 4.4 divided by theta).

The best fit has eta ~ -1.2, so the machines' eta predictions are negative, and Eq. 4.4 as printed flipped the sign
of eta's tau: the reports written before session 21 print eta's median with the wrong sign and its +/- widths
swapped. This script recomputes the row from the closure arrays a pipeline run kept
(``<run>/closure/<machine>.npz`` or ``<run>/evaluation/closure/<machine>/closure.npz``), with both definitions, and
says how many predictions had eta < 0 (where they differ).

    python benchmarks/eta_tau_sign.py benchmarks/results/pipeline_gpu_ensemble_h100 \
        benchmarks/results/pipeline_gpu_ensemble_seed1_h100

Writes ``benchmarks/results/eta_tau_sign.md`` and ``.json`` (with the command and commit,
:func:`common.save_results`).
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
from common import save_results

from crnet.closure import tau
from crnet.evaluate.tables import tau_summary
from crprop.params import LOG_PARAM_NAMES

ETA = LOG_PARAM_NAMES.index("eta")  # not log-transformed: theta[:, ETA] is eta itself
PICK = ("median", "plus", "minus", "n")


def closure_files(run: Path) -> list[tuple[str, Path]]:
    """(machine, file) of every closure array a run directory holds, in either layout."""
    flat = [(p.stem, p) for p in sorted((run / "closure").glob("*.npz"))]
    nested = [(p.parent.name, p) for p in sorted((run / "evaluation" / "closure").glob("*/closure.npz"))]
    return flat + nested


def eta_rows(path: Path) -> dict:
    with np.load(path, allow_pickle=False) as d:
        theta, theta_prime = d["theta"], d["theta_prime"]
    now = tau(theta, theta_prime)
    before = now.copy()
    before[:, ETA] *= np.sign(theta[:, ETA])  # (theta' - theta) / theta
    return {"n_predictions": int(theta.shape[0]), "n_eta_negative": int(np.count_nonzero(theta[:, ETA] < 0)),
            **{key: {k: tau_summary(t)["eta"][k] for k in PICK} for key, t in (("before", before), ("now", now))}}


def fmt(row: dict) -> str:
    return f"{row['median']:+.2f} +{row['plus']:.2f} -{row['minus']:.2f}"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("runs", nargs="+", type=Path, help="pipeline run directories (or their copies in results/)")
    ap.add_argument("--name", default="eta_tau_sign", help="output name in benchmarks/results")
    args = ap.parse_args()
    out = {}
    lines = ["# Table 3's eta row: tau = (theta' - theta) / theta (before session 21) and / |theta| (now)", "",
             "Every `report.md` under benchmarks/results/ written before session 21 uses the first definition. Where "
             "all eta predictions are negative (the best fit has eta ~ -1.2), the row now is that row mirrored: the "
             "median's sign flipped, + and - widths swapped.", "",
             "| run | machine | predictions | eta < 0 | eta row before, % | eta row now, % |",
             "|---|---|---|---|---|---|"]
    for run in args.runs:
        files = closure_files(run)
        if not files:
            raise SystemExit(f"{run}: no closure arrays (closure/*.npz or evaluation/closure/*/closure.npz)")
        for machine_name, path in files:
            r = out.setdefault(run.name, {})[machine_name] = eta_rows(path)
            lines.append(f"| {run.name} | {machine_name} | {r['n_predictions']} | {r['n_eta_negative']} | "
                         f"{fmt(r['before'])} | {fmt(r['now'])} |")
    save_results(args.name, "\n".join(lines), out)


if __name__ == "__main__":
    main()
