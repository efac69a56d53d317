"""`crnet train --store mocks.h5 --machine A|B|check --out model.pt`: train a machine on a mock store."""

from __future__ import annotations

import json
import math
import re
from pathlib import Path

import typer

from crnet.commands.io_checks import check_dataset_option, check_output, flag_message, store_dataset
from crnet.commands.pseudodata import PSEUDO_FLAGS
from crnet.data import DEFAULT_DATASET
from crnet.machines import ARCHITECTURES, LR_SCHEDULES, MACHINES
from crnet.machines.data import DEFAULT_MEMORY_LIMIT_BYTES
from crnet.pseudodata import DEFAULT_PSEUDO_SIGMA, ENVELOPE_DELTA, NOISE_MODELS, PAPER_MAX_RELATIVE, PseudoDataConfig
from crnet.store import StoreError

GIB = 1024**3

TRAIN_FLAGS: dict[str, str] = {
    "machine": "--machine", "arch": "--arch", "epochs": "--epochs", "batch_size": "--batch-size",
    "learning_rate": "--lr", "weight_decay": "--weight-decay", "lr_schedule": "--lr-schedule",
    "patience": "--patience", "seed": "--seed", "val_fraction": "--val-fraction", "max_sigma": "--max-sigma",
    "device": "--device", "threads": "--threads", "input_noise": "--input-noise", "ensemble": "--ensemble",
    "init_from": "--init-from", "stream_block_size": "--memory-gb", **PSEUDO_FLAGS,
}
"""crnet.machines.training.TrainConfig fields (and its pseudo-data settings') -> this command's options."""


def _differing_options(message: str) -> str:
    """A refused resume's "checkpoint was written by a different run (differs in learning_rate, ...)" with the
    settings that are options of this command named by their option (--lr, ...)."""
    def named(m: re.Match) -> str:
        names = [TRAIN_FLAGS.get(name, name) for name in m.group(2).split(", ")]
        return m.group(1) + ", ".join(names) + m.group(3)

    return re.sub(r"(different run \(differs in )([^)]*)(\))", named, message, count=1)


def _print_summary(result, as_json: bool) -> None:
    metrics = result.metrics
    if as_json:
        typer.echo(json.dumps({"model": str(result.model_path), "checkpoint": str(result.checkpoint_path),
                               "training_file": str(result.store_path), "epochs_run": result.epochs_run,
                               "best_epoch": result.best_epoch, "best_val_loss": result.best_val_loss,
                               "stopped_early": result.stopped_early, "metrics": metrics}, indent=2))
        return
    typer.echo(f"model {result.model_path} (best epoch {result.best_epoch} of {result.epochs_run}, "
               f"val loss {result.best_val_loss:.4e}{', stopped early' if result.stopped_early else ''})")
    if "per_parameter" not in metrics:
        typer.echo("validation: " + ", ".join(f"{k} {v}" for k, v in metrics.items()))
        return
    typer.echo(f"validation split ({metrics['n']} records): share of predictions outside the prior box "
               f"{metrics['frac_predictions_outside_box']:.3%}")
    typer.echo(f"{'parameter':<16}{'R2':>9}{'median |rel err|':>18}{'mean |rel err|':>16}{'outside box':>13}")
    for name, m in metrics["per_parameter"].items():
        typer.echo(f"{name:<16}{m['r2']:>9.4f}{m['rel_err_median']:>18.4f}{m['rel_err_mean']:>16.4f}"
                   f"{m['frac_outside_box']:>13.3%}")


def register(app: typer.Typer) -> None:
    @app.command("train")
    def train_cmd(
        store: Path = typer.Option(..., "--store", help="Mock store (HDF5) written by `crnet scan`, or pseudo-data."),
        machine: str = typer.Option("A", "--machine", help=f"One of {', '.join(MACHINES)}."),
        out: Path = typer.Option(..., "--out", help="Model file to write (checkpoint: <out>.ckpt); an existing model "
                                 "file is replaced (--resume continues its checkpoint instead), except the "
                                 "--store or --init-from file itself, which is refused."),
        arch: str = typer.Option("paper", "--arch", help=f"Network of A/B: {', '.join(ARCHITECTURES)}."),
        epochs: int | None = typer.Option(None, "--epochs", help="Maximum epochs (default: paper 100, crnet 200)."),
        batch_size: int | None = typer.Option(None, "--batch-size", help="Mini-batch size (default per network)."),
        lr: float | None = typer.Option(None, "--lr", help="Initial learning rate (default per network)."),
        weight_decay: float | None = typer.Option(None, "--weight-decay", help="AdamW weight decay (crnet 1e-4)."),
        lr_schedule: str | None = typer.Option(None, "--lr-schedule", help=f"One of {', '.join(LR_SCHEDULES)} "
                                               "(default: paper machines constant, others plateau)."),
        patience: int | None = typer.Option(None, "--patience", help="Early stopping: epochs without validation "
                                            "gain (default: paper machines none, others 20)."),
        seed: int = typer.Option(0, "--seed", help="Seed of the split, initialisation and shuffling."),
        val_fraction: float = typer.Option(0.1, "--val-fraction", help="Share of records held out (paper: 0.1)."),
        max_sigma: float | None = typer.Option(None, "--max-sigma", help="Train only on chi2 < min + Delta(n sigma)."),
        resume: bool = typer.Option(False, "--resume", help="Continue from <out>.ckpt."),
        init_from: Path | None = typer.Option(None, "--init-from", help="Start from this model file's weights "
                                              "(same network; fresh optimiser), e.g. to retrain on more mocks."),
        device: str = typer.Option("auto", "--device", help="auto, cpu or cuda."),
        amp: bool = typer.Option(False, "--amp", help="bfloat16 mixed precision on CUDA."),
        threads: int | None = typer.Option(None, "--threads", help="CPU threads for torch."),
        memory_gb: float = typer.Option(DEFAULT_MEMORY_LIMIT_BYTES / GIB, "--memory-gb",
                                        help="Features up to this size stay in memory; larger stores stream."),
        n_pseudo: int = typer.Option(10000, "--n-pseudo", help="Machine B: number of pseudo-spectra to make."),
        noise: str = typer.Option("paper", "--noise", help=f"Machine B noise: {', '.join(NOISE_MODELS)}."),
        pseudo_sigma: float = typer.Option(DEFAULT_PSEUDO_SIGMA, "--pseudo-sigma",
                                           help="Machine B: central values within this confidence level."),
        max_relative: float = typer.Option(PAPER_MAX_RELATIVE, "--max-relative", help="'paper' noise amplitude."),
        delta_low: float = typer.Option(ENVELOPE_DELTA[0], "--delta-low", help="'envelope' noise: Delta low."),
        delta_high: float = typer.Option(ENVELOPE_DELTA[1], "--delta-high", help="'envelope' noise: Delta high."),
        input_noise: float = typer.Option(0.0, "--input-noise", help="Machines A/B: train on fresh pseudo-experiment "
                                          "fluctuations of at most this relative size per element and bin (e.g. "
                                          "0.05); 0 = off (the paper's Machine A)."),
        holdout_fraction: float = typer.Option(0.0, "--holdout-fraction", help="Share of the store's records held "
                                               "out of training (a hash of each record, as `crnet pipeline`'s "
                                               "\\[train] holdout_fraction): Machine A skips them and Machine B "
                                               "draws its centres from the rest; `crnet pseudodata "
                                               "--holdout-fraction` with the same value then tests on them. 0 = the "
                                               "paper's protocol."),
        ensemble: int = typer.Option(1, "--ensemble", help="Machines A/B: train this many members (seeds seed + "
                                     "1000 k) and predict their mean; members are kept as OUT.member<k>."),
        dataset: str | None = typer.Option(None, "--dataset", help="Data set for re-profiling pseudo-data (default: "
                                           f"the store's, else {DEFAULT_DATASET!r})."),
        update_chi2: bool = typer.Option(False, "--update-chi2", help="Recompute the store's chi2 on --dataset."),
        no_progress: bool = typer.Option(False, "--no-progress", help="No progress bar."),
        as_json: bool = typer.Option(False, "--json", help="Print the summary as JSON."),
    ) -> None:
        """Train Machine A (mock spectra), Machine B (pseudo-data) or the Check Machine; write the model file."""
        from crnet.machines.modelfile import resolve_device  # torch is imported only when training
        from crnet.machines.training import TrainConfig, train

        try:
            check_output(out, inputs={"--store": store, "--init-from": init_from})
            if not (math.isfinite(memory_gb) and memory_gb >= 0):
                raise ValueError(f"--memory-gb must be finite and >= 0 (GiB), got {memory_gb}")
            if threads is not None and threads < 1:
                raise ValueError(f"--threads must be >= 1 (CPU threads), got {threads}")
            check_dataset_option(dataset)  # before the store is read
            if dataset is None:
                dataset = store_dataset(store)
            try:
                pseudo = PseudoDataConfig(n_pseudo=n_pseudo, n_sigma=pseudo_sigma, noise=noise,
                                          max_relative=max_relative, envelope_delta=(delta_low, delta_high),
                                          dataset=dataset, update_chi2=update_chi2, seed=seed,
                                          centres="train" if holdout_fraction > 0 else "all",  # as crnet pipeline
                                          holdout_fraction=holdout_fraction)
                cfg = TrainConfig(machine=machine, arch=arch, epochs=epochs, batch_size=batch_size, learning_rate=lr,
                                  weight_decay=weight_decay, lr_schedule=lr_schedule, patience=patience, seed=seed,
                                  val_fraction=val_fraction, max_sigma=max_sigma, device=device, amp=amp,
                                  threads=threads, memory_limit_bytes=int(memory_gb * GIB),
                                  progress=not no_progress, pseudo=pseudo,
                                  init_from=str(init_from) if init_from else None, input_noise=input_noise,
                                  ensemble=ensemble)
                cfg.resolved()  # its checks before any work, each naming one field: named here by its option
                resolve_device(device)  # "device 'foo' is not a torch device" -> "--device 'foo' ..."
            except ValueError as exc:
                raise ValueError(flag_message(str(exc), TRAIN_FLAGS)) from None
            try:
                result = train(store, out, cfg, resume=resume)
            except ValueError as exc:  # a refused --resume names the settings that differ by their options
                raise ValueError(_differing_options(str(exc))) from None
        except (ValueError, StoreError) as exc:
            typer.echo(f"error: {exc}", err=True)
            raise typer.Exit(code=2) from None
        _print_summary(result, as_json)
