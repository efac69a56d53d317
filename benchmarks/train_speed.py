"""Training throughput of the machines (records x epochs per second), fp32 and bfloat16 autocast, and what it
means for the paper-scale pipeline.

A synthetic store (tests/helpers_store.py: the paper's 84-bin grid and store schema, an analytic map of the
parameters) of ``--records`` records is written once; each machine trains ``--epochs`` epochs on it with its
own default architecture and batch size (A-paper, A-crnet with 5 % input noise; Machine B trains the same
network as A on pseudo-data, so its speed per record is A's). The timed quantity is the whole ``train`` call
divided by epochs x training records, so it includes validation, checkpoints and the data pipeline.
The rate is the median of ``--repeats`` train calls (range reported); memory is the process's peak resident set
during them (benchmarks/common.py:PeakRSS) and, on CUDA, torch's peak allocated device memory. No GALPROP column:
a record x epoch is a training step, not a simulated model. The last column extrapolates to
``pipeline_paper.toml``: 2e5 mocks (80 % left after the hold-out, 90 % of that for training) and each
architecture's default epochs (paper 100, crnet 200) without early stopping, an upper bound.

    python benchmarks/train_speed.py --records 2000 --epochs 2            # CPU
    python benchmarks/train_speed.py --records 50000 --epochs 3 --amp     # GPU, fp32 and bf16
Writes benchmarks/results/train_speed_<device>.{json,md}.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

import torch
from common import REPO, PeakRSS, machine, peak_rss_scope, repeat_timings, save_results, wall_stats

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
    ap.add_argument("--repeats", type=int, default=3, help="timed train calls per row (median and range reported)")
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

                def run(cfg=cfg, out=out):
                    res = train(store, out, cfg)
                    if device == "cuda":
                        torch.cuda.synchronize()
                    return res

                if device == "cuda":
                    torch.cuda.synchronize()
                    torch.cuda.reset_peak_memory_stats()
                with PeakRSS() as mem:
                    res, walls = repeat_timings(run, args.repeats)
                cuda_mib = torch.cuda.max_memory_allocated() / 2**20 if device == "cuda" else None
                timing = wall_stats(walls)
                wall = timing["wall_s"]
                n_train = int(round(args.records * (1 - cfg.val_fraction)))
                rate = n_train * res.epochs_run / wall
                paper_min = PAPER_SCALE_TRAIN_RECORDS * DEFAULT_EPOCHS[arch] / rate / 60.0
                rows.append({"machine": f"A-{arch}", "input_noise": noise, "batch_size": batch, "amp": amp,
                             "records": args.records, "epochs": res.epochs_run, **timing,
                             "record_epochs_per_s": rate, "paper_scale_minutes_upper": paper_min,
                             "peak_rss_mib": mem.peak_mib, "peak_rss_exact": mem.exact,
                             "rss_increase_mib": mem.increase_mib, "cuda_max_allocated_mib": cuda_mib})
                print(f"A-{arch} amp={amp} {wall:.2f} s ({min(walls):.2f}-{max(walls):.2f}) {rate:.0f} record-epochs/s "
                      f"peak RSS {mem.peak_mib:.0f} MiB"
                      + (f" CUDA max allocated {cuda_mib:.0f} MiB" if cuda_mib is not None else ""), flush=True)
    name = torch.cuda.get_device_name(0) if device == "cuda" else f"{machine()['cores']}-core CPU"
    lines = [f"# Training throughput ({name})", "",
             f"torch {torch.__version__}. Synthetic store, paper grid; time of the whole train call (validation, "
             f"checkpoints, data pipeline included), median of {args.repeats} calls per row (range in brackets). "
             "Peak RSS: the process's resident-memory high-water mark during the row's calls "
             f"({peak_rss_scope(rows)}), increase: above the resident size before; CUDA MiB: "
             "torch.cuda.max_memory_allocated over the row.", "",
             "| machine | batch | bf16 autocast | records x epochs | wall s | records x epochs / s | "
             f"paper scale ({PAPER_SCALE_TRAIN_RECORDS:,} records x default epochs), min, upper bound | "
             "peak RSS MiB | increase MiB | CUDA MiB |",
             "|---|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        cuda = f"{r['cuda_max_allocated_mib']:.0f}" if r["cuda_max_allocated_mib"] is not None else "-"
        lines.append(f"| {r['machine']} | {r['batch_size']} | {'yes' if r['amp'] else 'no'} | "
                     f"{r['records']} x {r['epochs']} | {r['wall_s']:.2f} "
                     f"({r['wall_min_s']:.2f}–{r['wall_max_s']:.2f}) | {r['record_epochs_per_s']:.0f} | "
                     f"{r['paper_scale_minutes_upper']:.0f} | {r['peak_rss_mib']:.0f} | "
                     f"{r['rss_increase_mib']:.0f} | {cuda} |")
    tag = "cuda" if device == "cuda" else "cpu"
    save_results(f"train_speed_{tag}", "\n".join(lines), {"device": name, "args": vars(args), "rows": rows})


if __name__ == "__main__":
    main()
