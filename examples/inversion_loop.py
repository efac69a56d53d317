"""Python-API version of `crnet pipeline`: scan -> train Machine A -> feedback loop -> evaluation.

Tiny scale by default (tiny grid, 16 Sobol mocks, backend "auto": numba on a CPU, ~15 s on a 2-core CPU as
tests/test_example.py runs it):

    .venv/bin/python examples/inversion_loop.py /tmp/crnet_example
"""

from __future__ import annotations

import sys
from pathlib import Path

import torch

from crnet.evaluate import EvalConfig, evaluate
from crnet.feedback import FeedbackConfig, SimConfig, run_feedback
from crnet.machines.training import TrainConfig, train
from crnet.pseudodata import PseudoDataConfig, make_pseudodata
from crnet.scan.models import GridConfig
from crnet.scan.runner import ScanConfig, run_scan


def main(out: Path) -> None:
    torch.set_num_threads(1)
    out.mkdir(parents=True, exist_ok=True)
    grid = GridConfig(dr_kpc=4.0, dz_kpc=1.3, ekin_factor=3.0)  # tiny grid; None everywhere = the paper grid
    scan = out / "scan.h5"
    run_scan(scan, ScanConfig(design="sobol", n_points=16, batch_size=16, backend="auto", grid=grid), resume=True)
    tcfg = TrainConfig(machine="A", arch="paper", epochs=2, batch_size=8, threads=1)
    model = out / "machine_a.pt"
    if not model.is_file():
        train(scan, model, tcfg)
    test, loop_data = out / "test_pseudo.h5", out / "feedback_pseudo.h5"
    if not test.is_file():  # scored by the evaluation only
        make_pseudodata(scan, test, PseudoDataConfig(n_pseudo=4, seed=1_000_003))
    if not loop_data.is_file():  # the feedback loop retrains on what it predicts: its own pseudo-data
        make_pseudodata(scan, loop_data, PseudoDataConfig(n_pseudo=4, seed=2_000_029))
    fb = FeedbackConfig(sim=SimConfig(grid=grid, backend="auto"), max_rounds=2, n_test=3, retrain_epochs=1)
    loop = run_feedback(model, scan, loop_data, out / "feedback", fb, tcfg)
    print("feedback rounds:", [(r["round"], round(r["passing_share"], 3)) for r in loop.rounds])
    stores = [str(scan)] + [str(out / "feedback" / f"round_{r['round']}" / "resim.h5") for r in loop.rounds]
    report = evaluate(EvalConfig({"Machine A (paper)": str(loop.model_path)}, str(test), stores, str(out / "eval"),
                                 feedback=fb))
    print((out / "eval" / "report.md").read_text())
    print("chi2_min:", report["chi2_min"])


if __name__ == "__main__":
    main(Path(sys.argv[1] if len(sys.argv) > 1 else "runs/example_inversion_loop"))
