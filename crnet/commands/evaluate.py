"""`crnet evaluate`: Tables 3/4 and Figs. 5-7 of trained machines (closure tests with re-simulation)."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import typer

from crnet.commands.grid_options import with_grid_options

if TYPE_CHECKING:
    from crnet.scan.models import GridConfig


def register(app: typer.Typer) -> None:
    @app.command("evaluate")
    @with_grid_options
    def evaluate_cmd(
        machine: list[str] = typer.Option(..., "--machine", help="NAME=MODEL.pt (repeat), e.g. 'Machine A=a.pt'."),
        test_store: Path = typer.Option(..., "--test", help="Pseudo-data store to predict from."),
        mocks: list[Path] = typer.Option(..., "--mocks", help="Store(s) of the collected mocks (scan first)."),
        out: Path = typer.Option(..., "--out", help="Output directory (report.md, report.json, PNGs)."),
        check: Path | None = typer.Option(None, "--check", help="Check Machine model file."),
        n_test: int | None = typer.Option(None, "--n-test", help="Use only the first N test spectra."),
        backend: str = typer.Option("auto", "--backend", help="crprop backend of the re-simulation."),
        dataset: str = typer.Option("paper", "--dataset", help="Likelihood data set."),
        no_progress: bool = typer.Option(False, "--no-progress"),
        grid: GridConfig | None = None,
    ) -> None:
        """Closure tests of every machine, Tables 3 and 4 beside the paper's, Figs. 5-7."""
        from crnet.evaluate import EvalConfig, evaluate
        from crnet.feedback import FeedbackConfig, SimConfig
        from crnet.store import StoreError

        try:
            machines = dict(_pair(m) for m in machine)
            fb = FeedbackConfig(sim=SimConfig(grid=grid, backend=backend, dataset=dataset),
                                n_test=n_test, progress=not no_progress)
            evaluate(EvalConfig(machines, str(test_store), [str(p) for p in mocks], str(out),
                                None if check is None else str(check), fb))
        except (ValueError, StoreError) as exc:
            typer.echo(f"error: {exc}", err=True)
            raise typer.Exit(code=2) from None
        typer.echo((out / "report.md").read_text())


def _pair(text: str) -> tuple[str, str]:
    if "=" not in text:
        raise ValueError(f"--machine expects NAME=MODEL_FILE, got {text!r}")
    name, path = text.split("=", 1)
    return name.strip(), path.strip()
