"""`crnet store info FILE` and `crnet store merge OUT SHARD...`: inspect and combine mock stores."""

from __future__ import annotations

import json
from pathlib import Path

import typer

from crnet.commands.io_checks import check_input_file, check_output
from crnet.paths import same_file

store_app = typer.Typer(help="Inspect and combine mock stores written by `crnet scan`.", no_args_is_help=True)

INFO_ORDER: tuple[str, ...] = (
    "path", "format", "format_version", "n_complete", "capacity", "file_bytes", "design", "dataset", "temperature",
    "solver_mode", "backend", "cross_sections", "seed", "crnet_version", "n_species", "n_energies",
    "ekin_range_gev_per_n", "n_chains", "max_step", "acceptance_rate", "acceptance_rate_in_box", "converged_fraction",
    "chi2_min", "chi2_median", "share_within_sigma_of_min", "n_nonfinite_chi2", "checkpoint", "grid",
)


@store_app.command("info")
def info_cmd(
    path: Path = typer.Argument(..., help="Mock store (HDF5)."),
    as_json: bool = typer.Option(False, "--json", help="Print JSON."),
) -> None:
    """Summary: records, chains, acceptance, chi2 range, provenance and checkpoint state."""
    from crnet.store import StoreError
    from crnet.store_read import store_info

    try:
        info = store_info(check_input_file(path, "PATH"))
    except (StoreError, ValueError) as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(code=2) from None
    if as_json:
        typer.echo(json.dumps(info, indent=2, default=str))
        return
    for key in INFO_ORDER:
        if key in info:
            value = info[key]
            text = json.dumps(value) if isinstance(value, dict | list) else value
            typer.echo(f"{key:>22}: {text}")
    if "merged_from" in info:
        typer.echo(f"{'merged_from':>22}: {len(info['merged_from'])} stores")
        for m in info["merged_from"]:
            typer.echo(f"{'':>24}{m['path']} ({m['records']} records, chain offset {m['chain_offset']})")


@store_app.command("merge")
def merge_cmd(
    out: Path = typer.Argument(..., help="Merged store to write (an existing file is kept unless --overwrite)."),
    inputs: list[Path] = typer.Argument(..., help="Stores (shards) to combine."),
    overwrite: bool = typer.Option(False, "--overwrite", help="Replace an existing OUT."),
) -> None:
    """Combine the committed records of several stores (same grid, data set, solver) into one."""
    from crnet.store import StoreError
    from crnet.store_read import merge_stores, store_info

    try:
        # OUT among the inputs first (else "file exists" hid it); then an existing OUT named with --overwrite only
        # (merge_stores' own message names its Python argument)
        if any(same_file(out, a) for a in inputs):
            raise ValueError(f"OUT {out} is also one of the INPUTS: writing it would destroy that input; give "
                             "another file name")
        check_output(out, "OUT", overwrite=overwrite)
        for a in inputs:
            check_input_file(a, "input")
        merge_stores(inputs, out, overwrite=overwrite)
    except (StoreError, ValueError) as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(code=2) from None
    typer.echo(f"{store_info(out)['n_complete']} records from {len(inputs)} stores in {out}")


def register(app: typer.Typer) -> None:
    app.add_typer(store_app, name="store")
