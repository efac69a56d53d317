"""`crnet feedback`: the feedback loop of one machine (closure test, retrain until 95 % have mean|tau| < 0.1).

The re-simulations repeat the --store's simulations: grid, solver mode, tolerance, step cap and data set come from
its attributes (:func:`crnet.feedback_inputs.sim_from_store`). An option given must agree with the store (the retraining
merges the re-simulations into it); the library refuses any other value before round 0
(:func:`crnet.feedback_inputs.check_feedback_inputs`), and this command names the option in the message.
"""

from __future__ import annotations

import json
import re
from dataclasses import replace
from pathlib import Path
from typing import Any

import typer

from crnet.commands.grid_options import GRID_FLAGS, store_sim, with_given_grid_options
from crnet.commands.io_checks import check_dataset_option, flag_message
from crnet.pipeline_config import CLOSURE_SEED_OFFSET

OPTION_NAMES: dict[str, str] = {
    "model": "--model", "train_store": "--store", "test_store": "--test", "sim.mode": "--mode", "sim.tol": "--tol",
    "sim.max_steps": "--max-steps", "sim.dataset": "--dataset", "sim": "re-simulation setting",
    **{f"sim.grid.{name}": flag for name, flag in GRID_FLAGS.items()},
}
"""crnet.feedback's argument names (FeedbackInputError.argument) -> this command's options."""

CONFIG_FLAGS: dict[str, str] = {
    "tau_threshold": "--tau", "target_share": "--share", "max_rounds": "--max-rounds", "n_test": "--n-test",
    "retrain_epochs": "--epochs", "seed": "--seed",
}
"""crnet.feedback.FeedbackConfig fields -> this command's options (crnet.commands.scan.flag_message)."""

IDENTITY_OPTIONS: dict[str, str] = {
    **{f"feedback.{field}": flag for field, flag in CONFIG_FLAGS.items()}, "retraining.epochs": "--epochs",
    "retraining.arch": "--arch", "model_sha256": "--model", "test_store_sha256": "--test",
    "train_store_sha256": "--store",
}
"""Entries of a feedback loop's identity (crnet.feedback.loop_identity) -> this command's options; the others are
the model file's training settings."""


def _identity_options(message: str) -> str:
    """A refused loop's "belongs to another run (differs in feedback.seed, ...)" with the identity entries that are
    options of this command named by their option (``--seed (feedback.seed)``)."""
    def named(m: re.Match) -> str:
        listed, more = m.group(2).removesuffix(" ..."), m.group(2).endswith(" ...")  # list_settings' cut
        names = [f"{IDENTITY_OPTIONS[n]} ({n})" if n in IDENTITY_OPTIONS else n for n in listed.split(", ")]
        names = [n for i, n in enumerate(names) if n.split(" ")[0] not in [k.split(" ")[0] for k in names[:i]]]
        return m.group(1) + ", ".join(names) + (" ..." if more else "") + m.group(3)

    return re.sub(r"(another run \(differs in )([^)]*)(\))", named, message, count=1)


def register(app: typer.Typer) -> None:
    @app.command("feedback")
    @with_given_grid_options
    def feedback_cmd(
        model: Path = typer.Option(..., "--model", help="Trained machine (model file)."),
        store: Path = typer.Option(..., "--store", help="The store the machine was trained on (Machine B: the scan "
                                   "its pseudo-data were made from); re-simulations repeat its grid and solver "
                                   "settings, and each round's retraining adds them to it."),
        test_store: Path = typer.Option(..., "--test", help="Pseudo-data store to predict from."),
        out: Path = typer.Option(..., "--out", help="Directory of the rounds and feedback_log.json (resumes)."),
        max_rounds: int = typer.Option(3, "--max-rounds", help="Most rounds (re-simulate, retrain); raising it "
                                       "extends a finished loop."),
        tau_threshold: float = typer.Option(0.1, "--tau", help="Pass: mean |tau| below this."),
        target_share: float = typer.Option(0.95, "--share", help="Stop when this share passes."),
        n_test: int | None = typer.Option(None, "--n-test", help="Test pseudo-spectra predicted and re-simulated "
                                          "per round (default: all of --test)."),
        epochs: int = typer.Option(20, "--epochs", help="Epochs of each warm-started retraining."),
        seed: int = typer.Option(0, "--seed", help="Seed of the closure-test noise (crnet pipeline: its \\[feedback] "
                                 f"seed, else its \\[run] seed + {CLOSURE_SEED_OFFSET}: give that to go on with a "
                                 "pipeline's loop by hand)."),
        arch: str | None = typer.Option(None, "--arch", help="Network of the machine (paper or crnet); default: the "
                                        "model file's. Every other training setting (ensemble size, input noise, "
                                        "batch size, seed, Machine B's pseudo-data) is the model file's."),
        backend: str = typer.Option("auto", "--backend", help="crprop backend of the re-simulations (auto: CuPy "
                                    "on a GPU)."),
        mode: str | None = typer.Option(None, "--mode", help="Solver mode of the re-simulations (fast or exact); "
                                        "default: the --store's."),
        tol: float | None = typer.Option(None, "--tol", help="Solver tolerance (relative residual) of the "
                                         "re-simulations; default: the --store's."),
        max_steps: int | None = typer.Option(None, "--max-steps", help="Solver step cap per species of the "
                                             "re-simulations; default: the --store's."),
        dataset: str | None = typer.Option(None, "--dataset", help="Likelihood data set; default: the --store's."),
        no_progress: bool = typer.Option(False, "--no-progress", help="No progress bars."),
        grid: dict[str, Any] | None = None,
    ) -> None:
        """Run (or resume) the feedback loop and print every round's metrics.

        The re-simulations repeat the --store's simulations: the grid options (--dr ... --half-lives), --mode,
        --tol, --max-steps and --dataset default to the store's, and one given must agree with it (checked, with
        the stores and the model, before round 0)."""
        from crnet.feedback import FeedbackConfig, run_feedback
        from crnet.feedback_inputs import FeedbackInputError
        from crnet.machines.training import TrainConfig
        from crnet.store import StoreError

        try:
            try:
                if n_test is not None and n_test < 1:  # FeedbackConfig's message offers None, which is no option
                    raise ValueError(f"--n-test must be >= 1 (pseudo-spectra; leave it out for all of --test), got "
                                     f"{n_test}")
                try:  # its checks of these options first: before the store, the model and the data set are read
                    FeedbackConfig(tau_threshold=tau_threshold, target_share=target_share, max_rounds=max_rounds,
                                   n_test=n_test, retrain_epochs=epochs, seed=seed)
                except ValueError as exc:
                    raise ValueError(flag_message(str(exc), CONFIG_FLAGS)) from None
                check_dataset_option(dataset)
                sim = store_sim(store, backend, grid, mode=mode, tol=tol, max_steps=max_steps, dataset=dataset)
                cfg = FeedbackConfig(sim=sim, tau_threshold=tau_threshold, target_share=target_share,
                                     max_rounds=max_rounds, n_test=n_test, retrain_epochs=epochs, seed=seed,
                                     progress=not no_progress)
                tcfg = replace(TrainConfig.of_model(model), progress=not no_progress)
                if arch is not None and arch != tcfg.arch:
                    raise ValueError(f"--arch {arch}: the model {model} is a {tcfg.arch!r} machine")
                try:
                    res = run_feedback(model, store, test_store, out, cfg, tcfg)
                except FeedbackInputError:
                    raise
                except ValueError as exc:  # "belongs to another run (differs in feedback.seed, ...)": the options
                    raise ValueError(_identity_options(str(exc))) from None
            except FeedbackInputError as exc:
                raise ValueError(exc.named(OPTION_NAMES)) from None
        except (ValueError, StoreError) as exc:
            typer.echo(f"error: {exc}", err=True)
            raise typer.Exit(code=2) from None
        typer.echo(json.dumps({"model": str(res.model_path), "stop_rule_met": res.converged, "rounds": res.rounds},
                              indent=2, default=str))
