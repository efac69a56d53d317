"""`crnet simulate` and `crnet galprop compare`: run crprop from a galdef or a parameter file."""

from __future__ import annotations

import json
import time
import tomllib
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import typer

from crnet import __version__
from crnet.commands.grid_options import check_galdef_grid, with_given_grid_options
from crnet.commands.io_checks import check_output

MODE_HELP = "fast (converged steady state) | galprop (GALPROP's time ladder) | exact (sparse direct, small grids)"


def _load_params_toml(path: Path):
    """PropagationParams from a TOML file: top-level keys = crprop.params.PARAM_NAMES (units in the names),
    or a list of tables [[model]] with those keys for a batch. An optional [galdef] table names the
    galdef of the Galaxy setup (default: the paper's CR-ML galdef shipped with crprop)."""
    from crprop.params import PARAM_NAMES, PropagationParams

    try:
        doc = tomllib.loads(path.read_text())
    except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError) as exc:
        raise ValueError(f"{path}: not a readable TOML file ({exc})") from None
    table = doc.get("galdef", {})
    if not isinstance(table, dict) or not isinstance(table.get("path", ""), str) or set(table) - {"path"}:
        raise ValueError(f"{path}: [galdef] must be a table with one string entry 'path', got {table!r}")
    if "model" in doc:
        stray = sorted(set(doc) - {"model", "galdef"})
        if stray:
            raise ValueError(f"{path}: keys {stray} at the top level next to [[model]] tables: put them in each "
                             "[[model]] (a top-level parameter set is only read when there is no [[model]])")
    models = doc.get("model", [{k: v for k, v in doc.items() if k != "galdef"}])
    if not isinstance(models, list) or not all(isinstance(m, dict) for m in models):
        raise ValueError(f"{path}: 'model' must be a list of tables [[model]], got {models!r}")
    out = []
    for i, m in enumerate(models):
        keys = {k: v for k, v in m.items() if k in PARAM_NAMES}
        unknown = sorted(k for k in m if k not in PARAM_NAMES)
        if unknown:
            raise ValueError(f"{path}: model {i}: unknown keys {unknown}; allowed: {list(PARAM_NAMES)}")
        missing = [k for k in PARAM_NAMES if k not in keys]
        if missing:
            raise ValueError(f"{path}: model {i}: missing {missing}")
        try:
            out.append(PropagationParams(**keys))
        except ValueError as exc:
            raise ValueError(f"{path}: model {i}: {exc}") from None
    galdef = table.get("path")
    if not galdef:
        return out, None
    resolved = Path(galdef) if Path(galdef).is_absolute() else path.parent / galdef  # relative to the TOML file
    return out, resolved


STEP_OPTIONS: dict[str, str] = {"dr": "dr_kpc", "dz": "dz_kpc"}
"""Galdef grid step -> the GridConfig field (grid option) that replaces it."""


def _echo_galdef_warnings(galdef, path: Path, grid: dict[str, Any] | None = None) -> None:
    """What GALPROP would do differently from what the galdef seems to say (repeated keys, ...), on stderr. A note
    on a grid step the grid options replace (--dr, --dz) is given for the step used, naming the option, not for the
    galdef's (walk-through by helper-87, session 21: a galdef's dz = 5.0 was warned about under --dz 1.3)."""
    from crnet.commands.grid_options import GRID_FLAGS
    from crprop.galprop.galdef import grid_step_note

    used = {step: (grid or {}).get(field) for step, field in STEP_OPTIONS.items()}
    replaced = {grid_step_note(galdef, step) for step, value in used.items() if value is not None}
    for note in galdef.warnings:
        if note not in replaced:
            typer.echo(f"warning: galdef {path}: {note}", err=True)
    for step, value in used.items():
        note = None if value is None else grid_step_note(galdef, step, value)
        if note is not None:
            typer.echo(f"warning: galdef {path} with {GRID_FLAGS[STEP_OPTIONS[step]]} {value:g}: {note}", err=True)


def register(app: typer.Typer) -> None:
    @app.command()
    @with_given_grid_options
    def simulate(
        out: Path = typer.Option(..., "--out", help="output HDF5 file (spectra at the Sun: E in GeV/n, fluxes in "
                                 "m^-2 s^-1 sr^-1 (GeV/n)^-1); an existing file is kept unless --overwrite"),
        overwrite: bool = typer.Option(False, "--overwrite", help="replace an existing --out file"),
        galdef: Path | None = typer.Option(None, "--galdef", help="GALPROP galdef file (its own parameters)"),
        params: Path | None = typer.Option(None, "--params", help="TOML file of Table 1 parameters"),
        mode: str = typer.Option("fast", "--mode", help=MODE_HELP),
        backend: str = typer.Option("auto", "--backend", help="auto | numpy | numba | cupy"),
        tol: float = typer.Option(1e-6, "--tol", help="relative residual of mode fast"),
        check_prior: bool = typer.Option(True, "--check-prior/--no-check-prior",
                                         help="reject --params models outside the Table 1 prior box (a --galdef "
                                         "runs as GALPROP would, unchecked)"),
        order: str | None = typer.Option(None, "--order", help="solve order of the nuclear network: parents_first "
                                         "(every source known when a species is solved) or galprop_v54 (GALPROP's "
                                         "heavy-to-light pass: 10B before 10Be, 2H before 1H). Default: galprop_v54 "
                                         "with --galdef (reproduces GALPROP), parents_first with --params (as "
                                         "crnet demo, scan and fit)"),
        grid: dict[str, Any] | None = None,
    ) -> None:
        """Propagate the models of a galdef or a parameter file and write their spectra at the Sun.

        --params takes a TOML file with the ten Table 1 parameters as top-level keys (crprop.params.PARAM_NAMES,
        units in the names: d0_1e28_cm2_s, delta, eta, v_alfven_km_s, z_halo_kpc, nu1, nu2, nu3, r_break1_mv,
        r_break2_mv), or a list of \\[\\[model]] tables with those keys for a batch; an optional \\[galdef] table with
        one entry path = "..." (relative to the TOML file) names the galdef of the Galaxy setup (default: the
        paper's, crprop/data/galdef/galdef_54_crml). The grid options (--dr, --dz, --ekin-factor, the stretched
        halo, --loss-scheme, --half-lives) change that galdef's grid; without them it runs on the galdef's own."""
        from crnet.scan.models import apply_half_lives
        from crnet.spectra_io import write_spectra_h5
        from crprop.galaxy import GalaxySetup, paper_galdef_path
        from crprop.galprop.galdef import GaldefError, read_galdef
        from crprop.nuclear.species import SOLVE_ORDERS
        from crprop.params import PARAM_NAMES, PropagationParams, params_from_galdef
        from crprop.propagate import propagate
        from crprop.solvers import NonConvergenceWarning

        if (galdef is None) == (params is None):
            raise typer.BadParameter("give exactly one of --galdef or --params")
        if order is not None and order not in SOLVE_ORDERS:
            raise typer.BadParameter(f"--order must be one of {SOLVE_ORDERS}, got {order!r}")
        order = order or ("galprop_v54" if galdef is not None else "parents_first")
        try:
            # before the propagation, not at the write
            check_output(out, overwrite=overwrite, inputs={"--galdef": galdef, "--params": params})
            if galdef is not None:
                g = read_galdef(galdef)
                _echo_galdef_warnings(g, galdef, grid)
                plist = [params_from_galdef(g, check_prior=False)]
                setup = GalaxySetup.from_galdef(g, order=order)
                check_prior = False  # a galdef is taken as GALPROP would run it
            else:
                plist, gpath = _load_params_toml(params)
                for i, p in enumerate(plist):  # here, naming the file and the model, not inside propagate
                    try:
                        p.validate(check_prior=check_prior)
                    except ValueError as exc:
                        msg = str(exc).replace("pass check_prior=False", "pass --no-check-prior")
                        raise ValueError(f"{params}: model {i}: {msg}") from None
                g = read_galdef(gpath or paper_galdef_path())
                if gpath is not None:  # the shipped paper galdef's notes are known (README)
                    _echo_galdef_warnings(g, gpath, grid)
                setup = GalaxySetup.from_galdef(g, order=order)
            changes = {name: value for name, value in (grid or {}).items() if name != "half_lives"}
            setup = apply_half_lives(setup.with_changes(**changes) if changes else setup,
                                     (grid or {}).get("half_lives"))
            # the stretched halo and every model's halo on the grid it will run on, by option, before any work
            # (walk-through by helper-87, session 21)
            check_galdef_grid(setup, grid or {}, [p.z_halo_kpc for p in plist])
        except (GaldefError, ValueError) as exc:
            typer.echo(f"error: {exc}", err=True)
            raise typer.Exit(2) from None
        t0 = time.perf_counter()
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always", NonConvergenceWarning)
            try:
                spectra = propagate(setup, plist, mode=mode, backend=backend, tol=tol, check_prior=check_prior)
            except (ValueError, RuntimeError) as exc:
                typer.echo(f"error: {exc}", err=True)
                raise typer.Exit(2) from None
        wall = time.perf_counter() - t0
        for w in caught:
            typer.echo(f"warning: {w.message}", err=True)
        arr = PropagationParams.to_array(plist)
        attrs = {"mode": mode, "backend": spectra.meta.get("backend", backend), "crnet_version": __version__,
                 "grid": json.dumps({"shape": list(spectra.meta["grid_shape"]), "options": grid or {}}),
                 "wall_time_s": wall, "source": str(galdef or params),
                 "half_lives": (grid or {}).get("half_lives") or "galprop", "solve_order": order}
        try:
            write_spectra_h5(out, spectra, params=arr, param_names=list(PARAM_NAMES), attrs=attrs)
        except ValueError as exc:  # a diverged model: nothing written (a file of it could not be read back)
            typer.echo(f"error: {exc}; nothing written to {out}", err=True)
            raise typer.Exit(1) from None
        n_bad = int((~spectra.converged).sum())
        typer.echo(f"{spectra.n_models} model(s), {len(spectra.isotopes)} isotopes, mode {mode}, "
                   f"backend {attrs['backend']}: {wall:.1f} s; max residual {spectra.residual.max():.2e}"
                   f"{'' if n_bad == 0 else f' — {n_bad} NOT converged'} -> {out}")

    galprop_app = typer.Typer(help="Cross-checks against GALPROP runs.", no_args_is_help=True)

    @galprop_app.command("compare")
    def compare(
        run_dir: Path = typer.Argument(..., help="directory with galdef_* and GALPROP output (npz or FITS)"),
        mode: str = typer.Option("galprop", "--mode", help=MODE_HELP),
        backend: str = typer.Option("auto", "--backend", help="solver backend: auto, numpy, numba or cupy"),
        emin: float = typer.Option(0.1, "--emin", help="lowest energy compared, GeV/n"),
        emax: float = typer.Option(1000.0, "--emax", help="highest energy compared, GeV/n"),
        as_json: bool = typer.Option(False, "--json", help="print the table as JSON (rows, wall time in s, the "
                                     "solver's converged flag and largest relative residual)"),
    ) -> None:
        """Per-element largest deviation of crprop from a GALPROP run (same galdef). Exit status 1 when crprop's
        solve did not converge (modes fast and exact; mode galprop runs GALPROP's time ladder, which stops short of
        the steady state as GALPROP's run did, and fails only on a non-finite field), 2 for bad input."""
        from crnet.json_files import strict_json
        from crprop.backends import get_backend
        from crprop.galprop.compare import deviation_table, format_table, load_run
        from crprop.propagate import propagate
        from crprop.solvers import DEFAULT_TOL, NonConvergenceWarning, check_solver_settings

        try:
            run = load_run(run_dir)
            if not (0 < emin < emax and np.isfinite(emax)):
                raise ValueError(f"--emin {emin} / --emax {emax}: need 0 < emin < emax < inf (GeV/n)")
            # a mistyped --mode or --backend: one line, as every other command (was a traceback), before any work
            check_solver_settings(mode=mode)
            get_backend(backend)
        except (ValueError, RuntimeError) as exc:  # RuntimeError: --backend cupy without a GPU
            typer.echo(f"error: {exc}", err=True)
            raise typer.Exit(2) from None
        _echo_galdef_warnings(run.galdef, Path(run.galdef.source or run_dir))
        try:
            with warnings.catch_warnings(record=True) as caught:
                warnings.simplefilter("always")
                # The one warning propagate gives in a normal run (crml_base: none in mode fast) is its
                # NonConvergenceWarning in mode galprop: GALPROP's fixed time ladder stops short of the steady state
                # (relative residual 39 for crml_base) and that ladder's answer, GALPROP's too, is what is compared.
                # In every mode the convergence is reported below from spectra.converged, not from the warning.
                warnings.filterwarnings("ignore", category=NonConvergenceWarning)
                t0 = time.perf_counter()
                spectra = propagate(run.setup(), run.params, mode=mode, backend=backend, check_prior=False)
                wall = time.perf_counter() - t0
            rows = deviation_table(spectra, run.spectra(), emin, emax)
        except ValueError as exc:
            typer.echo(f"error: {exc}", err=True)
            raise typer.Exit(2) from None
        for w in caught:
            typer.echo(f"warning: {w.message}", err=True)
        residual = float(np.max(spectra.residual))
        # mode galprop: the ladder's residual is GALPROP's (not a failure) unless the field is not finite
        failed = not np.isfinite(residual) if mode == "galprop" else not bool(np.all(spectra.converged))
        if as_json:
            typer.echo(json.dumps(strict_json({"run": run.name, "mode": mode, "wall_s": wall,  # NaN, inf: null
                                               "converged": bool(np.all(spectra.converged)),
                                               "max_residual": residual, "rows": rows}), indent=1))
        else:
            typer.echo(format_table(rows, f"crprop ({mode}, {spectra.meta['backend']}, {wall:.1f} s) vs GALPROP "
                                          f"{run.name}, {emin:g}-{emax:g} GeV/n:"))
        if failed:
            n_bad = int((~np.asarray(spectra.converged)).sum())
            why = "a non-finite field" if mode == "galprop" else f"max residual {residual:.2e} > tol {DEFAULT_TOL:.0e}"
            typer.echo(f"error: crprop's {mode} solve NOT converged ({n_bad} of {spectra.n_models} model(s), {why}): "
                       "the deviations above are not those of its solution", err=True)
            raise typer.Exit(1)

    app.add_typer(galprop_app, name="galprop")
