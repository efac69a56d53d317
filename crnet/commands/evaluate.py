"""`crnet evaluate`: Tables 3/4 and Figs. 5-7 of trained machines (closure tests with re-simulation).

The re-simulations repeat the collected mocks' simulations, since Table 4 counts them from the mocks' chi2_min: the
grid, solver mode, tolerance and step cap come from the first --mocks store
(:func:`crnet.feedback_inputs.sim_from_store`, as ``crnet feedback`` takes them from its --store). An option given
must agree with it; the library refuses any other value before predicting
(:func:`crnet.evaluate.report.check_evaluation_settings`), and this command names the option in the message. The
data set defaults to the store's too, but may differ: every mock's chi2 is then recomputed against it (the paper's
updated-data case).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import typer

from crnet.commands.feedback import OPTION_NAMES as FEEDBACK_OPTION_NAMES
from crnet.commands.grid_options import store_sim, with_given_grid_options
from crnet.commands.io_checks import flag_message
from crnet.pipeline_config import CLOSURE_SEED_OFFSET

OPTION_NAMES: dict[str, str] = {
    **{k: v for k, v in FEEDBACK_OPTION_NAMES.items() if k.startswith("sim")},
    "train_store": "--mocks", "mock_stores": "--mocks", "test_store": "--test", "machines": "--machine",
    "check_model": "--check",
}
"""crnet.feedback / crnet.evaluate argument names (FeedbackInputError.argument) -> this command's options."""


def register(app: typer.Typer) -> None:
    @app.command("evaluate")
    @with_given_grid_options
    def evaluate_cmd(
        machine: list[str] = typer.Option(..., "--machine", help="NAME=MODEL.pt (repeat), e.g. 'Machine A=a.pt'."),
        test_store: Path = typer.Option(..., "--test", help="Pseudo-data store to predict from."),
        mocks: list[Path] = typer.Option(..., "--mocks", help="Store(s) of the collected mocks (scan first; all "
                                         "of one propagation setup). The re-simulations repeat the first one's "
                                         "grid and solver settings."),
        out: Path = typer.Option(..., "--out", help="Output directory (report.md, report.json, PNGs)."),
        check: Path | None = typer.Option(None, "--check", help="Check Machine model file."),
        n_test: int | None = typer.Option(None, "--n-test", help="Use only the first N test spectra."),
        seed: int = typer.Option(0, "--seed", help="Seed of the closure-test noise (crnet pipeline: its \\[feedback] "
                                 f"seed, else its \\[run] seed + {CLOSURE_SEED_OFFSET}: give that to reuse a "
                                 "pipeline's cached closure tests)."),
        backend: str = typer.Option("auto", "--backend", help="crprop backend of the re-simulation."),
        mode: str | None = typer.Option(None, "--mode", help="Solver mode of the re-simulations (fast or exact); "
                                        "default: the first --mocks store's."),
        tol: float | None = typer.Option(None, "--tol", help="Solver tolerance (relative residual) of the "
                                         "re-simulations; default: the first --mocks store's."),
        max_steps: int | None = typer.Option(None, "--max-steps", help="Solver step cap per species of the "
                                             "re-simulations; default: the first --mocks store's."),
        dataset: str | None = typer.Option(None, "--dataset", help="Likelihood data set of the re-simulations; "
                                           "default: the first --mocks store's (another one: the mocks' chi2 are "
                                           "recomputed against it)."),
        no_progress: bool = typer.Option(False, "--no-progress"),
        grid: dict[str, Any] | None = None,
    ) -> None:
        """Closure tests of every machine, Tables 3 and 4 beside the paper's, Figs. 5-7.

        The re-simulations repeat the first --mocks store's simulations: the grid options (--dr ... --half-lives),
        --mode, --tol, --max-steps and --dataset default to the store's, and one given must agree with it (checked,
        with the --mocks stores against each other, before any prediction); --dataset may differ."""
        from crnet.evaluate import EvalConfig, evaluate
        from crnet.feedback import FeedbackConfig
        from crnet.feedback_inputs import FeedbackInputError
        from crnet.store import StoreError

        try:
            try:
                machines = _machines(machine)
                sim = store_sim(mocks[0], backend, grid, mode=mode, tol=tol, max_steps=max_steps, dataset=dataset)
                try:
                    fb = FeedbackConfig(sim=sim, n_test=n_test, seed=seed, progress=not no_progress)
                except ValueError as exc:  # named by its option (re-read by helper-122, session 23)
                    raise ValueError(flag_message(str(exc), {"seed": "--seed", "n_test": "--n-test"})) from None
                evaluate(EvalConfig(machines, str(test_store), [str(p) for p in mocks], str(out),
                                    None if check is None else str(check), fb))
            except FeedbackInputError as exc:
                raise ValueError(exc.named(OPTION_NAMES)) from None
        except (ValueError, StoreError) as exc:
            typer.echo(f"error: {exc}", err=True)
            raise typer.Exit(code=2) from None
        typer.echo((out / "report.md").read_text())


def _machines(given: list[str]) -> dict[str, str]:
    """{name: model file} of the --machine options; ValueError for a malformed one or a name given twice (a dict
    kept the last silently: the other machine was not evaluated)."""
    machines: dict[str, str] = {}
    for text in given:
        name, path = _pair(text)
        if name in machines:
            raise ValueError(f"--machine: the name {name!r} is given twice ({machines[name]} and {path}); give each "
                             "machine its own name")
        machines[name] = path
    return machines


def _pair(text: str) -> tuple[str, str]:
    if "=" not in text:
        raise ValueError(f"--machine expects NAME=MODEL_FILE, got {text!r}")
    name, path = (part.strip() for part in text.split("=", 1))
    if not name or not path:
        raise ValueError(f"--machine expects NAME=MODEL_FILE with a name and a file, got {text!r}")
    return name, path
