"""Table 4's unbiased-floor oracle for a pipeline run whose report is saved in benchmarks/results.

For a finished `crnet pipeline` run, the saved report.json (chi^2_tot minimum) and the closure files (the test
truths, closure/machine_a_crnet.npz or, as `crnet evaluate` writes them, closure/machine_a_crnet/closure.npz) are
enough: the script computes the unbiased tau floor at every distinct test centre (21 solves each,
crnet.evaluate.floor.tau_floors), moves every test truth by a draw from its centre's floor covariance
(oracle_predictions), re-simulates the draws with the run's solver settings and scores
them as Table 4 does (crnet.evaluate.report.oracle_chi2, the code `crnet evaluate` runs). It prints the oracle
row beside the machines' rows, with a per-centre table (truth's own Delta chi2 needs one more solve per centre).
`crnet evaluate` scores the oracle itself now (report.json's table4_fractions, 'Unbiased-floor oracle'); this script
adds the per-centre table, or the oracle for runs evaluated before it did.

    python benchmarks/oracle_table4.py --config configs/pipeline_gpu_ensemble.toml \
        --results pipeline_gpu_ensemble_h100 [--backend auto|cupy|numba]
Writes benchmarks/results/<results>/oracle.{json,md}.
"""

from __future__ import annotations

import argparse
import json
import time
from dataclasses import replace
from pathlib import Path

import numpy as np
from common import RESULTS, machine

from crnet.evaluate.floor import centre_labels
from crnet.evaluate.report import ORACLE_ROW, EvalConfig, oracle_chi2, table4_row
from crnet.feedback import read_in_row_order, resimulate
from crnet.likelihood import delta_chi2_threshold
from crnet.pipeline_config import load_config
from crnet.store import MockStore


def closure_file(res_dir: Path, name: str) -> Path:
    """A machine's closure results: closure/<name>.npz as saved from the session-6 runs, or closure/<name>/closure.npz,
    where `crnet evaluate` writes them now (one folder per machine, crnet.evaluate.report)."""
    flat = res_dir / "closure" / f"{name}.npz"
    return flat if flat.exists() else res_dir / "closure" / name / "closure.npz"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--config", required=True, help="the run's pipeline TOML")
    ap.add_argument("--results", required=True, help="directory under benchmarks/results with report.json, closure/")
    ap.add_argument("--backend", default="auto")
    args = ap.parse_args()
    res_dir = RESULTS / args.results
    report = json.loads((res_dir / "report.json").read_text())
    chi2_min = float(report["chi2_min"])
    truth = np.load(closure_file(res_dir, "machine_a_crnet"))["truth"]
    cfg = load_config(args.config)
    fb = cfg.feedback.settings
    fb = replace(fb, sim=replace(fb.sim, backend=args.backend), progress=False)
    work = Path(res_dir / "oracle_work")
    work.mkdir(exist_ok=True)
    ecfg = EvalConfig(machines={"unused": "-"}, test_store="-", mock_stores=["-"], out=str(work), feedback=fb)
    t0 = time.perf_counter()
    chi2 = oracle_chi2(ecfg, truth, work)
    wall_oracle = time.perf_counter() - t0
    labels = centre_labels(truth)
    row = table4_row(chi2, chi2_min, truth)
    centres = np.unique(np.asarray(truth, dtype=np.float64), axis=0)
    t0 = time.perf_counter()
    tpath = resimulate(centres, work / "truth_resim.h5", fb.sim, False)
    with MockStore.open(tpath, "r") as st:
        truth_chi2 = read_in_row_order(st, "chi2")
    wall_truth = time.perf_counter() - t0
    four = delta_chi2_threshold(4.0)
    per_centre = []
    closures = {n: np.load(closure_file(res_dir, n)) for n in ("machine_a_crnet", "machine_b_crnet")}
    for k in range(centres.shape[0]):
        s = labels == k
        entry = {"n": int(s.sum()), "truth_delta_chi2": float(truth_chi2[k] - chi2_min),
                 "oracle_median_delta_chi2": float(np.median(chi2[s] - chi2_min)),
                 "oracle_le_4sigma": float(np.mean(chi2[s] - chi2_min <= four))}
        for n, z in closures.items():
            d = z["chi2_resim"][s] - chi2_min
            entry[f"{n}_median_delta_chi2"] = float(np.median(d))
            entry[f"{n}_le_4sigma"] = float(np.mean(d <= four))
        per_centre.append(entry)
    out = {"machine": machine(), "config": args.config, "results": args.results, "backend": args.backend,
           "chi2_min": chi2_min, "delta_chi2_4sigma": four, "oracle": row, "wall_s_oracle": wall_oracle,
           "wall_s_truths": wall_truth, "n_centres": int(centres.shape[0]),
           "machines": {n: report["table4_fractions"][n] for n in report["table4_fractions"]},
           "per_centre": per_centre}
    (res_dir / "oracle.json").write_text(json.dumps(out, indent=1))
    lines = [f"# Table 4 with the unbiased-floor oracle: {args.results}", "",
             f"Machine: {machine()}. Command: `python benchmarks/oracle_table4.py --config {args.config} "
             f"--results {args.results} --backend {args.backend}`. {centres.shape[0]} centres, floor at each "
             f"(21 solves), one draw per test prediction; oracle {wall_oracle:.0f} s, truths {wall_truth:.0f} s.", "",
             "| method | <= 4 sigma | <= 6 sigma | 68 % interval <= 4 sigma (centres) |", "|---|---|---|---|"]
    rows = {**{n: r for n, r in report["table4_fractions"].items() if n != ORACLE_ROW}, ORACLE_ROW: row}
    for n, r in rows.items():
        ci = f"{100 * r['le_4sigma_lo']:.1f}-{100 * r['le_4sigma_hi']:.1f} %" if "le_4sigma_lo" in r else "-"
        lines.append(f"| {n} | {100 * r['le_4sigma']:.1f} % | {100 * (r['le_4sigma'] + r['4_to_6sigma']):.1f} % "
                     f"| {ci} |")
    lines += ["", f"Per centre (Delta chi2 to the minimum {chi2_min:.2f}; 4 sigma = {four:.1f}):", "",
              "| centre | n | truth | oracle median | A-crnet median | B-crnet median | oracle / A / B <= 4 sigma |",
              "|---|---|---|---|---|---|---|"]
    for k, e in enumerate(per_centre):
        lines.append(f"| {k} | {e['n']} | {e['truth_delta_chi2']:.1f} | {e['oracle_median_delta_chi2']:.1f} | "
                     f"{e['machine_a_crnet_median_delta_chi2']:.1f} | {e['machine_b_crnet_median_delta_chi2']:.1f} | "
                     f"{100 * e['oracle_le_4sigma']:.0f} / {100 * e['machine_a_crnet_le_4sigma']:.0f} / "
                     f"{100 * e['machine_b_crnet_le_4sigma']:.0f} % |")
    (res_dir / "oracle.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
