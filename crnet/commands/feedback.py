"""`crnet feedback`: the feedback loop of one machine (closure test, retrain until 95 % have mean|tau| < 0.1)."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING

import typer

from crnet.commands.grid_options import with_grid_options

if TYPE_CHECKING:
    from crnet.scan.models import GridConfig


def register(app: typer.Typer) -> None:
    @app.command("feedback")
    @with_grid_options
    def feedback_cmd(
        model: Path = typer.Option(..., "--model", help="Trained machine (model file)."),
        store: Path = typer.Option(..., "--store", help="The store the machine was trained on."),
        test_store: Path = typer.Option(..., "--test", help="Pseudo-data store to predict from."),
        out: Path = typer.Option(..., "--out", help="Directory of the rounds and feedback_log.json (resumes)."),
        max_rounds: int = typer.Option(3, "--max-rounds"),
        tau_threshold: float = typer.Option(0.1, "--tau", help="Pass: mean |tau| below this."),
        target_share: float = typer.Option(0.95, "--share", help="Stop when this share passes."),
        n_test: int | None = typer.Option(None, "--n-test"),
        epochs: int = typer.Option(20, "--epochs", help="Epochs of each warm-started retraining."),
        arch: str | None = typer.Option(None, "--arch", help="Network of the machine (paper or crnet); default: the "
                                        "model file's. Every other training setting (ensemble size, input noise, "
                                        "batch size, seed, Machine B's pseudo-data) is the model file's."),
        backend: str = typer.Option("auto", "--backend"),
        dataset: str = typer.Option("paper", "--dataset"),
        no_progress: bool = typer.Option(False, "--no-progress"),
        grid: GridConfig | None = None,
    ) -> None:
        """Run (or resume) the feedback loop and print every round's metrics."""
        from crnet.feedback import FeedbackConfig, SimConfig, run_feedback
        from crnet.machines.training import TrainConfig
        from crnet.store import MockStore, StoreError

        try:
            cfg = FeedbackConfig(sim=SimConfig(grid=grid, backend=backend, dataset=dataset),
                                 tau_threshold=tau_threshold, target_share=target_share, max_rounds=max_rounds,
                                 n_test=n_test, retrain_epochs=epochs, progress=not no_progress)
            tcfg = replace(TrainConfig.of_model(model), progress=not no_progress)
            if arch is not None and arch != tcfg.arch:
                raise ValueError(f"--arch {arch}: the model {model} is a {tcfg.arch!r} machine")
            for path, what in ((store, "--store"), (test_store, "--test")):  # before round 0's re-simulation
                try:
                    MockStore.open(path, "r").close()
                except StoreError as exc:
                    raise ValueError(f"{what}: {exc}") from None
            res = run_feedback(model, store, test_store, out, cfg, tcfg)
        except (ValueError, StoreError) as exc:
            typer.echo(f"error: {exc}", err=True)
            raise typer.Exit(code=2) from None
        typer.echo(json.dumps({"model": str(res.model_path), "stop_rule_met": res.converged, "rounds": res.rounds},
                              indent=2, default=str))
