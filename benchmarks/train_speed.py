"""Training throughput of the machines (records x epochs per second), fp32 and bfloat16 autocast, and what it
means for the paper-scale pipeline.

A synthetic store (tests/helpers_store.py: the paper's 84-bin grid and store schema, an analytic map of the
parameters) of ``--records`` records is written once; each machine trains ``--epochs`` epochs on it with its
own default architecture and batch size (A-paper, A-crnet with 5 % input noise; Machine B trains the same
network as A on pseudo-data, so its speed per record is A's). The timed quantity is the whole ``train`` call
divided by epochs x training records, so it includes validation, checkpoints and the data pipeline.
The last column extrapolates to ``pipeline_paper.toml``: 2e5 mocks (80 % left after the hold-out,
90 % of that for training) and each architecture's default epochs (paper 100, crnet 200) without early stopping,
an upper bound.

    python benchmarks/train_speed.py --records 2000 --epochs 2            # CPU
    python benchmarks/train_speed.py --records 50000 --epochs 3 --amp     # GPU, fp32 and bf16
Writes benchmarks/results/train_speed_<device>.{json,md}.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

import torch
from common import REPO, RESULTS, machine

from crnet.machines.crnet_variant import CRNET_BATCH_SIZE
from crnet.machines.paper import PAPER_BATCH_SIZE, PAPER_EPOCHS
from crnet.machines.training import TrainConfig, train

sys.path.insert(0, str(REPO / "tests"))
from helpers_store import write_synthetic_store  # noqa: E402

PAPER_SCALE_TRAIN_RECORDS = int(2e5 * 0.8 * 0.9)
"""Machine A's training records at paper scale: 2e5 mocks, 20 % held out for the test centres, 10 % validation."""
DEFAULT_EPOCHS = {"paper": PAPER_EPOCHS, "crnet": 200}
"""Epoch caps of TrainConfig.resolved() for the two architectures (early stopping usually ends sooner)."""


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--records", type=int, default=2000)
    ap.add_argument("--epochs", type=int, default=2)
    ap.add_argument("--amp", action="store_true", help="also time bfloat16 autocast (CUDA only)")
    args = ap.parse_args()
    device = "cuda" if torch.cuda.is_available() else "cpu"
    precisions = [False, True] if args.amp and device == "cuda" else [False]
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        store = Path(tmp) / "mocks.h5"
        write_synthetic_store(store, args.records, seed=0)
        for arch, noise, batch in (("paper", 0.0, PAPER_BATCH_SIZE), ("crnet", 0.05, CRNET_BATCH_SIZE)):
            for amp in precisions:
                out = Path(tmp) / f"A-{arch}-{int(amp)}.pt"
                cfg = TrainConfig(machine="A", arch=arch, epochs=args.epochs, patience=args.epochs + 1,
                                  device=device, amp=amp, input_noise=noise, progress=False)
                if device == "cuda":
                    torch.cuda.synchronize()
                t0 = time.perf_counter()
                res = train(store, out, cfg)
                if device == "cuda":
                    torch.cuda.synchronize()
                wall = time.perf_counter() - t0
                n_train = int(round(args.records * (1 - cfg.val_fraction)))
                rate = n_train * res.epochs_run / wall
                paper_min = PAPER_SCALE_TRAIN_RECORDS * DEFAULT_EPOCHS[arch] / rate / 60.0
                rows.append({"machine": f"A-{arch}", "input_noise": noise, "batch_size": batch, "amp": amp,
                             "records": args.records, "epochs": res.epochs_run, "wall_s": wall,
                             "record_epochs_per_s": rate, "paper_scale_minutes_upper": paper_min})
    name = torch.cuda.get_device_name(0) if device == "cuda" else f"{machine()['cores']}-core CPU"
    lines = [f"# Training throughput ({name})", "",
             f"Machine: {machine()}, torch {torch.__version__}. Command: `python benchmarks/train_speed.py "
             f"--records {args.records} --epochs {args.epochs}{' --amp' if args.amp else ''}`. Synthetic store, "
             "paper grid; time of the whole train call (validation, checkpoints, data pipeline included).", "",
             "| machine | batch | bf16 autocast | records x epochs | wall s | records x epochs / s | "
             f"paper scale ({PAPER_SCALE_TRAIN_RECORDS:,} records x default epochs), min, upper bound |",
             "|---|---|---|---|---|---|---|"]
    for r in rows:
        lines.append(f"| {r['machine']} | {r['batch_size']} | {'yes' if r['amp'] else 'no'} | "
                     f"{r['records']} x {r['epochs']} | {r['wall_s']:.1f} | {r['record_epochs_per_s']:.0f} | "
                     f"{r['paper_scale_minutes_upper']:.0f} |")
    text = "\n".join(lines) + "\n"
    print(text)
    tag = "cuda" if device == "cuda" else "cpu"
    (RESULTS / f"train_speed_{tag}.md").write_text(text)
    (RESULTS / f"train_speed_{tag}.json").write_text(json.dumps({"machine": machine(), "device": name,
                                                                 "rows": rows}, indent=2))


if __name__ == "__main__":
    main()
