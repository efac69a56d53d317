"""`crnet chi2 SPECTRA.h5`: chi^2 of propagated spectra against a data set, normalisations profiled."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Annotated

import typer

from crnet.data import DATASETS, DEFAULT_DATASET
from crnet.likelihood import (
    CONFIDENCE_THRESHOLDS,
    DEFAULT_NORM_BOUNDS,
    INTERPOLATIONS,
    RATIO_PARAMETERS,
    chi2,
)
from crnet.spectra_io import read_spectra_h5


def _fmt(value: float) -> str:
    return "nan" if math.isnan(value) else f"{value:.4f}"


def register(app: typer.Typer) -> None:
    @app.command("chi2")
    def chi2_cmd(
        spectra_file: Annotated[Path, typer.Argument(help="HDF5 spectra file written by `crnet simulate`.")],
        dataset: Annotated[str, typer.Option("--dataset", "-d", help=f"One of: {', '.join(DATASETS)}.")] = (
            DEFAULT_DATASET
        ),
        as_json: Annotated[bool, typer.Option("--json", help="Print JSON instead of a table.")] = False,
        norm_lo: Annotated[
            float, typer.Option(help="Lower bound of xi_Li, xi_Be, q_O/q_C.")
        ] = DEFAULT_NORM_BOUNDS[0],
        norm_hi: Annotated[
            float, typer.Option(help="Upper bound of xi_Li, xi_Be, q_O/q_C.")
        ] = DEFAULT_NORM_BOUNDS[1],
        phi: Annotated[
            float | None,
            typer.Option("--phi", help="Fix the force-field phi [MV] of top-of-atmosphere data."),
        ] = None,
        interpolation: Annotated[
            str, typer.Option(help=f"Model interpolation: {', '.join(INTERPOLATIONS)}.")
        ] = ("loglog"),
        no_profile: Annotated[
            bool, typer.Option("--no-profile", help="Use the spectra as given (all scales 1).")
        ] = False,
    ) -> None:
        """Per model: chi2_tot (paper Eq. 4.3), number of points and the profiled normalisations."""
        try:
            content = read_spectra_h5(spectra_file)
            res = chi2(
                content.spectra,
                dataset,
                bounds=(norm_lo, norm_hi),
                profile=not no_profile,
                phi_mv=phi,
                interpolation=interpolation,
            )
        except (ValueError, KeyError) as exc:
            typer.echo(f"error: {exc}", err=True)
            raise typer.Exit(code=2) from None
        records = res.to_records()
        if as_json:
            for rec, row in zip(records, content.params, strict=True):
                rec["params"] = dict(zip(content.param_names, map(float, row), strict=True))
            out = {
                "spectra_file": str(spectra_file),
                "dataset": res.dataset,
                "n_points": res.n_points,
                "interpolation": interpolation,
                "profiled": not no_profile,
                "bounds": {k: list(v) for k, v in res.bounds.items()},
                "delta_chi2_thresholds_14dof": {f"{n}sigma": v for n, v in CONFIDENCE_THRESHOLDS.items()},
                "models": records,
            }
            typer.echo(json.dumps(out, indent=2))
            return
        ratio_names = list(RATIO_PARAMETERS.values())
        header = f"{'model':>6}{'chi2_tot':>14}{'n_points':>10}{'q_C':>10}" + "".join(
            f"{n:>12}" for n in ratio_names
        )
        if res.phi_mv is not None:
            header += f"{'phi_MV':>10}"
        typer.echo(f"# data set {res.dataset!r}, {res.n_points} points; {spectra_file}")
        typer.echo(header)
        for rec in records:
            line = (
                f"{rec['model']:>6}{rec['chi2_tot']:>14.3f}{rec['n_points']:>10}{_fmt(rec['q_C']):>10}"
                + "".join(f"{_fmt(rec[n]):>12}" for n in ratio_names)
            )
            if res.phi_mv is not None:
                line += f"{rec['phi_MV']:>10.1f}"
            typer.echo(line)
