"""`crnet fit --out fit.json`: best fit of chi2_tot (profile-likelihood minimum) and its Laplace covariance."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import typer

from crnet.commands.grid_options import with_grid_options
from crnet.commands.io_checks import check_dataset_option, check_output, flag_message
from crnet.commands.scan import _parse_start

if TYPE_CHECKING:
    from crnet.scan.models import GridConfig

FIT_FLAGS: dict[str, str] = {"start": "--start", "max_evaluations": "--max-evaluations", "backend": "--backend",
                             "tol": "--tol", "dataset": "--dataset"}
"""crnet.scan.fit.FitConfig and crnet.scan.models.PropagateModel arguments -> this command's options."""


def register(app: typer.Typer) -> None:
    @app.command("fit")
    @with_grid_options
    def fit_cmd(
        out: Path = typer.Option(..., "--out", "-o", help="Fit result to write (JSON); an existing file is kept "
                                 "unless --overwrite."),
        overwrite: bool = typer.Option(False, "--overwrite", help="Replace an existing --out file."),
        start: str | None = typer.Option(None, "--start", help="Start: 10 comma-separated values in PARAM_NAMES "
                                         "order (D0 [1e28 cm^2/s], ..., breaks in MV); default crml_base."),
        max_evaluations: int = typer.Option(60, "--max-evaluations", help="Cap on residual evaluations (each "
                                            "Jacobian costs 10 more models)."),
        backend: str = typer.Option("auto", "--backend", help="Solver backend: auto, numpy, numba, cupy."),
        tol: float | None = typer.Option(None, "--tol", help="Solver relative residual (default crprop's)."),
        dataset: str = typer.Option("paper", "--dataset", "-d", help="Likelihood data set."),
        progress: bool = typer.Option(True, "--progress/--no-progress", help="Print every evaluation."),
        grid: GridConfig | None = None,
    ) -> None:
        """Minimise chi2_tot over the Table 1 box (least squares, profiled normalisations); the result starts
        a scan with `crnet scan --from-fit`. Exit status 1 when the minimiser did not converge (e.g. stopped at
        --max-evaluations; the file is still written, marked not converged), 2 for bad input."""
        from crnet.scan.fit import FitConfig, FitFailed, fit_best
        from crnet.scan.models import PropagateModel
        from crprop.params import PARAM_UNITS

        try:
            check_output(out, overwrite=overwrite)  # before the fit, not at its final write
            check_dataset_option(dataset)  # PropagateModel reads it only at the first chi2, after a propagation
            try:
                cfg = FitConfig(start=_parse_start(start), max_evaluations=max_evaluations)
                model = PropagateModel(grid, backend=backend, tol=tol, dataset=dataset, warm_start=False)
            except ValueError as exc:  # their argument names, as this command's options
                raise ValueError(flag_message(str(exc), FIT_FLAGS)) from None
            res = fit_best(model, cfg, progress=progress)
        except ValueError as exc:
            typer.echo(f"error: {exc}", err=True)
            raise typer.Exit(code=2) from None
        except FitFailed as exc:  # not bad input: the fit met a model it cannot differentiate (nothing written)
            typer.echo(f"error: {exc}", err=True)
            raise typer.Exit(code=1) from None
        res.save(out)
        state = "converged" if res.success else f"NOT converged ({res.message})"
        typer.echo(f"chi2_tot {res.chi2:.2f} after {res.n_evaluations} evaluations ({res.n_models} models, "
                   f"{res.wall_s:.1f} s), {state}; written to {out}")
        for name, value in res.params.items():
            typer.echo(f"  {name:20s} {value:.6g} {PARAM_UNITS.get(name, '')}".rstrip())
        if not res.success:
            raise typer.Exit(code=1)
