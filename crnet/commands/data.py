"""`crnet data list` and `crnet data show NAME`: the shipped measurement data sets."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer

from crnet.data import DATASETS, Dataset, MeasurementTable, get_dataset, list_datasets, read_table
from crnet.data.table import FLUX_UNITS, X_UNIT_LABELS
from crnet.json_files import strict_json


def _dataset_dict(ds: Dataset, points: bool) -> dict:
    out = {
        "name": ds.name,
        "description": ds.description,
        "n_points": ds.n_points,
        "species": ds.species,
        "provenance": ds.provenance,
        "units": {"E": "GeV/n (kinetic energy per nucleon)", "flux, stat, sys, sigma": FLUX_UNITS["Ekn"],
                  "phi": "MV"},
        "modulation": [
            {"period": key, "phi_MV": mod.phi_mv, "nuisance": mod.nuisance, "bounds_MV": list(mod.bounds_mv)}
            for key, mod in ds.periods.items()
        ]
        or None,
        "blocks": [],
    }
    for b in ds.blocks:
        blk = {
            "label": b.label,
            "species": b.species,
            "experiment": b.experiment,
            "n_points": b.n_points,
            "E_min_GeV_per_n": float(b.ekin_gev_per_n.min()),
            "E_max_GeV_per_n": float(b.ekin_gev_per_n.max()),
            "lis": b.lis,
            "phi_MV": b.phi_mv,
            "period": b.period,
            "reference": b.reference,
            "source": b.source,
            "x_native": b.x_native_kind,
            "A_eff": b.a_eff,
        }
        if points:
            blk["points"] = {
                "E_GeV_per_n": b.ekin_gev_per_n.tolist(),
                "flux": b.flux.tolist(),
                "stat_lo": b.stat_lo.tolist(),
                "stat_hi": b.stat_hi.tolist(),
                "sys_lo": b.sys_lo.tolist(),
                "sys_hi": b.sys_hi.tolist(),
                "sigma": b.sigma.tolist(),
            }
        out["blocks"].append(blk)
    return out


def _print_dataset(ds: Dataset, points: bool) -> None:
    typer.echo(f"{ds.name}: {ds.description}")
    typer.echo(f"  {ds.n_points} points, species {', '.join(ds.species)}; provenance: {ds.provenance}")
    if not ds.periods:
        typer.echo("  modulation: none (all blocks are interstellar spectra)")
    for j, (key, mod) in enumerate(ds.periods.items(), start=1):
        how = f"nuisance in [{mod.bounds_mv[0]:g}, {mod.bounds_mv[1]:g}] MV" if mod.nuisance else "fixed"
        which = f" period {j} ({key})" if key else ""
        typer.echo(f"  modulation{which}: force field, phi = {mod.phi_mv:g} MV ({how})")
    typer.echo(f"  {'block':<16}{'n':>4}  {'E range [GeV/n]':<22}{'kind':<6}{'x':<5}period")
    for b in ds.blocks:
        rng = f"{b.ekin_gev_per_n.min():.4g} - {b.ekin_gev_per_n.max():.4g}"
        typer.echo(
            f"  {b.label:<16}{b.n_points:>4}  {rng:<22}{'LIS' if b.lis else 'TOA':<6}"
            f"{b.x_native_kind:<5}{b.period}"
        )
        typer.echo(f"  {'':<16}reference: {b.reference}")
        if points:
            typer.echo(f"  {'':<16}{'E [GeV/n]':>12}{'flux':>13}{'stat':>11}{'syst':>11}{'sigma':>11}")
            for j in range(b.n_points):
                typer.echo(
                    f"  {'':<16}{b.ekin_gev_per_n[j]:>12.5g}{b.flux[j]:>13.5g}"
                    f"{0.5 * (b.stat_lo[j] + b.stat_hi[j]):>11.4g}"
                    f"{0.5 * (b.sys_lo[j] + b.sys_hi[j]):>11.4g}{b.sigma[j]:>11.4g}"
                )
    typer.echo(f"  units: E kinetic energy per nucleon [GeV/n], flux [{FLUX_UNITS['Ekn']}]")


def _file_uses(path: Path) -> list[dict[str, str]]:
    """The blocks of the shipped data sets made from a file with ``path``'s content (SHA-256), with how each is
    compared with the model: 'LIS' (interstellar, unmodulated) or 'TOA' (force-field modulated, its period)."""
    import hashlib

    def sha256(file: Path) -> str:
        return hashlib.sha256(file.read_bytes()).hexdigest()

    digest = sha256(path)
    sources = {Path(b.source) for name in DATASETS for b in get_dataset(name).blocks}
    same = {src for src in sources if src.is_file() and src.stat().st_size == path.stat().st_size
            and sha256(src) == digest}  # each shipped file read once, and only when its size matches
    uses = []
    for name in DATASETS:
        for b in get_dataset(name).blocks:
            if Path(b.source) in same:
                uses.append({"dataset": name, "block": b.label, "kind": "LIS" if b.lis else "TOA",
                             "period": b.period})
    return uses


def _read_alone(t: MeasurementTable) -> str | None:
    """How crnet.data.block_from_table takes the file on its own (a user's data set): 'LIS' or 'TOA' with the phi
    of its crdb_phi_MV column, or why it cannot be a block (a malformed '# lis:' line, no nuclear species, a
    crdb_phi_MV column with an empty, negative or second value: its line and column; walk-through by helper-87,
    session 21); None for a table that is no flux (ratios do not enter the chi^2 as blocks). The file, named on the
    output's first line, is cut from the message."""
    from crnet.data import block_from_table

    if t.quantity != "flux":
        return None
    try:
        block = block_from_table(t)
    except ValueError as exc:
        return f"not usable as a data block: {str(exc).removeprefix(f'{t.path}: ')}"
    if block.lis:
        return "LIS (interstellar: no modulation; its metadata say so, crnet.data.dataset.LIS_MARKERS)"
    phi = "" if block.phi_mv is None else f", phi = {block.phi_mv:g} MV from its crdb_phi_MV column"
    return f"TOA (top of atmosphere: force-field modulated{phi})"


def _table_dict(t: MeasurementTable, points: bool, uses: list[dict[str, str]]) -> dict:
    out = {
        "path": t.path,
        "n_points": t.n_points,
        "quantity": t.quantity,
        "species": t.species,
        "x_kind": t.x_kind,
        "x_unit": X_UNIT_LABELS[t.x_kind],
        "value_unit": _value_unit(t),
        "x_range": [float(t.x_rep.min()), float(t.x_rep.max())],
        "meta": t.meta,
        "used_in": uses,
        "read_alone_as": _read_alone(t),
    }
    if points:
        out["points"] = {
            "x_low": _nan_to_none(t.x_low),
            "x_high": _nan_to_none(t.x_high),
            "x_rep": t.x_rep.tolist(),
            t.quantity: t.value.tolist(),
            "stat_lo": t.stat_lo.tolist(),
            "stat_hi": t.stat_hi.tolist(),
            "sys_lo": t.sys_lo.tolist(),
            "sys_hi": t.sys_hi.tolist(),
        }
    return out


def _nan_to_none(arr) -> list[float | None]:
    return strict_json([float(v) for v in arr])  # empty bin edges: JSON has no NaN


def _value_unit(t: MeasurementTable) -> str:
    return FLUX_UNITS[t.x_kind] if t.quantity == "flux" else "dimensionless"


def _print_table(t: MeasurementTable, points: bool, uses: list[dict[str, str]]) -> None:
    unit = X_UNIT_LABELS[t.x_kind]
    typer.echo(f"{t.path}: {t.n_points} rows, {t.quantity} vs {t.x_kind} [{unit}], species {t.species}")
    for key in ("dataset", "experiment", "reference", "data_taking_period", "crdb_phi_MV", "note", "upstream"):
        if key in t.meta:
            typer.echo(f"  {key}: {t.meta[key]}")
    alone = _read_alone(t)
    if alone is not None:
        typer.echo(f"  read on its own (crnet.data.block_from_table): {alone}")
    for use in uses:
        how = ("interstellar (LIS): compared without modulation" if use["kind"] == "LIS"
               else f"top of atmosphere (TOA): force-field modulated, period {use['period']}")
        typer.echo(f"  used in data set {use['dataset']}, block '{use['block']}': {how}")
    if not uses:
        typer.echo("  used in no shipped data set (LIS or TOA is for the user to decide: see the header's notes)")
    typer.echo(f"  x range {t.x_rep.min():.4g} - {t.x_rep.max():.4g} {unit}")
    if points:
        typer.echo(f"  {t.x_kind + ' [' + unit + ']':>14}{t.quantity:>13}{'stat':>11}{'syst':>11}")
        for j in range(t.n_points):
            typer.echo(f"  {t.x_rep[j]:>14.5g}{t.value[j]:>13.5g}{t.stat_err()[j]:>11.4g}{t.sys_err()[j]:>11.4g}")
    typer.echo(f"  units: x [{unit}], {t.quantity} and errors [{_value_unit(t)}]")


def register(app: typer.Typer) -> None:
    data_app = typer.Typer(help="Measured cosmic-ray data sets shipped with crnet.", no_args_is_help=True)

    @data_app.command("list")
    def list_cmd(
        as_json: Annotated[bool, typer.Option("--json", help="Machine-readable output.")] = False,
    ) -> None:
        """List the named data sets."""
        infos = list_datasets()
        if as_json:
            typer.echo(
                json.dumps(
                    [
                        {
                            "name": i.name,
                            "n_points": i.n_points,
                            "species": list(i.species),
                            "description": i.description,
                        }
                        for i in infos
                    ],
                    indent=2,
                )
            )
            return
        for i in infos:
            typer.echo(f"{i.name:<12}{i.n_points:>5} points  {'/'.join(i.species):<14}{i.description}")

    @data_app.command("show")
    def show_cmd(
        name: Annotated[
            str, typer.Argument(help=f"Data set name ({', '.join(DATASETS)}) or a commented-CSV file.")
        ],
        points: Annotated[bool, typer.Option("--points", help="Print every data point.")] = False,
        as_json: Annotated[bool, typer.Option("--json", help="Machine-readable output.")] = False,
    ) -> None:
        """Describe a data set (blocks, energy ranges, modulation, periods, references) or a CSV file."""
        try:
            if name not in DATASETS and (Path(name).suffix.lower() == ".csv" or Path(name).exists()):
                table = read_table(Path(name))
                uses = _file_uses(Path(name))
                if as_json:
                    typer.echo(json.dumps(_table_dict(table, points, uses), indent=2))
                else:
                    _print_table(table, points, uses)
                return
            if name not in DATASETS:
                raise ValueError(f"unknown data set {name!r}; known: {', '.join(DATASETS)} (or give an existing "
                                 "commented-CSV file)")
            ds = get_dataset(name)
        except ValueError as exc:
            typer.echo(f"error: {exc}", err=True)
            raise typer.Exit(code=2) from None
        if as_json:
            typer.echo(json.dumps(_dataset_dict(ds, points), indent=2))
        else:
            _print_dataset(ds, points)

    app.add_typer(data_app, name="data")
