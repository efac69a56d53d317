"""`crnet chi2 SPECTRA.h5`: chi^2 of propagated spectra against a data set, normalisations profiled."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Annotated

import typer

from crnet.commands.io_checks import check_dataset_option, check_input_file
from crnet.data import DATASETS, DEFAULT_DATASET, get_dataset
from crnet.likelihood import (
    CONFIDENCE_THRESHOLDS,
    DEFAULT_NORM_BOUNDS,
    INTERPOLATIONS,
    RATIO_PARAMETERS,
    chi2,
)
from crnet.likelihood.modulation import PHI_MAX_MV
from crnet.spectra_io import read_spectra_h5


def _fmt(value: float) -> str:
    return "nan" if math.isnan(value) else f"{value:.4f}"


def _check_phi_value(mv: float, given: str) -> None:
    if not (math.isfinite(mv) and mv >= 0):
        raise ValueError(f"--phi must be finite and >= 0 (MV), got {given!r}")
    if mv > PHI_MAX_MV:  # walk-through by helper-87, session 21: silently the unmodulated chi2 (see PHI_MAX_MV)
        raise ValueError(f"--phi {given}: {mv:g} MV is above {PHI_MAX_MV:g} MV; the allowed range is 0 to "
                         f"{PHI_MAX_MV:g} MV (physical force-field potentials lie below it; far above it E + Phi "
                         "leaves the model's energy grid, where the flux is kept unmodulated)")


def parse_phi_option(values: list[str] | None, periods: list[str]) -> float | dict[str, float] | None:
    """``--phi`` values as ``chi2``'s ``phi_mv``: one plain number (MV), or N=MV entries naming periods by their
    1-based number in ``periods``. Raises ValueError naming the bad entry and the allowed forms."""
    if not values:
        return None
    if not periods:
        raise ValueError(f"--phi {' '.join(values)}: the data set has no top-of-atmosphere block to modulate (all its "
                         "blocks are interstellar spectra); leave --phi out")
    if len(values) == 1 and "=" not in values[0]:
        try:
            mv = float(values[0])
        except ValueError:
            raise ValueError(f"--phi: {values[0]!r} is not a number (MV)") from None
        if len(periods) > 1:  # the library's message shows its Python form {period: MV}
            raise ValueError(f"--phi {values[0]}: the data set has {len(periods)} modulation periods {periods}; fix "
                             "each with N=MV (N = its number, from 1): "
                             + " ".join(f"--phi {j}=MV" for j in range(1, len(periods) + 1)))
        _check_phi_value(mv, values[0])
        return mv
    out: dict[str, float] = {}
    for item in values:
        index, sep, value = item.partition("=")
        try:
            j, mv = int(index), float(value)
        except ValueError:
            j, mv = 0, math.nan
        if not sep or not 1 <= j <= len(periods) or not math.isfinite(mv):
            named = [p or "all its top-of-atmosphere blocks" for p in periods]  # '' is the one unnamed period
            raise ValueError(f"--phi: {item!r} is not N=MV with N in 1..{len(periods)} (the data set's "
                             f"modulation periods {named}) and MV a number")
        _check_phi_value(mv, item)
        if periods[j - 1] in out:
            raise ValueError(f"--phi: period {j} is given twice ({out[periods[j - 1]]:g} MV, then {item!r}); give "
                             "each period once")
        out[periods[j - 1]] = mv
    return out


def register(app: typer.Typer) -> None:
    @app.command("chi2")
    def chi2_cmd(
        spectra_file: Annotated[Path, typer.Argument(help="HDF5 spectra file written by `crnet simulate`.")],
        dataset: Annotated[str, typer.Option("--dataset", "-d", help=f"One of: {', '.join(DATASETS)}.")] = (
            DEFAULT_DATASET
        ),
        as_json: Annotated[bool, typer.Option("--json", help="Print JSON instead of a table.")] = False,
        norm_lo: Annotated[
            float, typer.Option(help="Lower bound of xi_Li, xi_Be, q_O/q_C (dimensionless, > 0).")
        ] = DEFAULT_NORM_BOUNDS[0],
        norm_hi: Annotated[
            float, typer.Option(help="Upper bound of xi_Li, xi_Be, q_O/q_C (dimensionless, >= --norm-lo).")
        ] = DEFAULT_NORM_BOUNDS[1],
        phi: Annotated[
            list[str] | None,
            typer.Option(
                "--phi",
                help=f"Fix the force-field phi [MV, 0 to {PHI_MAX_MV:g}] of top-of-atmosphere data: MV for a data "
                "set with one modulation period; N=MV (N = the period's number in `crnet data show`, from 1) for "
                "one of several periods, repeatable.",
            ),
        ] = None,
        interpolation: Annotated[
            str, typer.Option(help=f"Model interpolation: {', '.join(INTERPOLATIONS)}.")
        ] = ("loglog"),
        no_profile: Annotated[
            bool, typer.Option("--no-profile", help="Use the spectra as given (q_C and the ratios all 1); the phi "
                               "of top-of-atmosphere data is still profiled unless --phi fixes it.")
        ] = False,
    ) -> None:
        """Per model: chi2_tot (paper Eq. 4.3), number of points and the profiled normalisations. Models whose
        spectra did not converge are marked '!' (JSON: converged false)."""
        try:
            # crnet.likelihood.chi2 refuses both too, but after the spectra file is read and naming its own
            # parameters (bounds of xi_Li, interpolation), not these options: checked here first
            if interpolation not in INTERPOLATIONS:
                raise ValueError(f"--interpolation must be one of {', '.join(INTERPOLATIONS)}, got {interpolation!r}")
            check_dataset_option(dataset)  # before the spectra file is read
            if not (0 < norm_lo <= norm_hi < math.inf):
                raise ValueError(f"--norm-lo {norm_lo:g} / --norm-hi {norm_hi:g}: need 0 < norm-lo <= norm-hi < inf "
                                 "(dimensionless normalisation factors)")
            # a mock store is refused by read_spectra_h5 itself
            content = read_spectra_h5(check_input_file(spectra_file, "SPECTRA_FILE"))
            res = chi2(
                content.spectra,
                dataset,
                bounds=(norm_lo, norm_hi),
                profile=not no_profile,
                phi_mv=parse_phi_option(phi, list(get_dataset(dataset).periods)),
                interpolation=interpolation,
            )
        except (ValueError, KeyError) as exc:
            typer.echo(f"error: {exc}", err=True)
            raise typer.Exit(code=2) from None
        records = res.to_records()
        converged = content.spectra.converged
        for rec, ok, r in zip(records, converged, content.spectra.residual, strict=True):
            rec["converged"], rec["residual"] = bool(ok), float(r)
        n_bad = int((~converged).sum())
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
        multi = res.phi_mv is None and bool(res.phi_by_period)
        if res.phi_mv is not None:
            header += f"{'phi_MV':>10}"
        elif multi:
            header += "".join(f"{f'phi{j}_MV':>10}" for j in range(1, len(res.phi_by_period) + 1))
        typer.echo(f"# data set {res.dataset!r}, {res.n_points} points; {spectra_file}")
        if multi:
            for j, key in enumerate(res.phi_by_period, start=1):
                typer.echo(f"# phi{j}: modulation period {key!r}")
        typer.echo(header)
        for rec in records:
            line = (
                f"{rec['model']:>6}{rec['chi2_tot']:>14.3f}{rec['n_points']:>10}{_fmt(rec['q_C']):>10}"
                + "".join(f"{_fmt(rec[n]):>11}{'*' if n in rec.get('ratios_at_bound', []) else ' '}"
                          for n in ratio_names)
            )
            bound = rec.get("phi_at_bound", [])
            if res.phi_mv is not None:
                line += f"{rec['phi_MV']:>9.1f}{'*' if bound else ' '}"
            elif multi:
                line += "".join(f"{rec[f'phi_MV[{key}]']:>9.1f}{'*' if key in bound else ' '}"
                                for key in res.phi_by_period)
            typer.echo(line + ("  !" if not rec["converged"] else ""))
        if n_bad:
            typer.echo(f"# ! spectra not converged ({n_bad} of {len(records)} models, largest residual "
                       f"{content.spectra.residual[~converged].max():.2e}): chi2 of unconverged spectra")
        n_ratio_bound = sum(bool(rec.get("ratios_at_bound")) for rec in records)
        if n_ratio_bound:
            typer.echo(f"# * normalisation ratio on a bound of --norm-lo/--norm-hi ({n_ratio_bound} of {len(records)} "
                       "models): chi2 is the minimum inside the range, the fit wants a ratio outside it")
        n_bound = sum(bool(rec.get("phi_at_bound")) for rec in records)
        if n_bound:
            typer.echo(f"# * phi on a bound of its prior range ({n_bound} of {len(records)} models): chi2 is the "
                       "minimum inside the range, the fit wants a phi outside it")
