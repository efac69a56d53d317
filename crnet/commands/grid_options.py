"""The grid options shared by every command that propagates (simulate, fit, scan, feedback, evaluate), defined once.

``@with_grid_options`` adds --dr, --dz, --ekin-factor, --z-uniform-half, --z-stretch-factor, --dz-max,
--loss-scheme and --half-lives to a
command and hands it one ``grid`` argument, a :class:`crnet.scan.models.GridConfig` (None for every option not
given: the CR-ML galdef's value). A re-simulation must use the scan's grid: ``crnet feedback`` takes it from its
--store and ``crnet evaluate`` from its first --mocks store, and ``crnet simulate`` changes its galdef's grid
(``@with_given_grid_options``: the command gets only the options given, which must agree with the store;
:func:`store_sim` puts them over the store's settings).
"""

from __future__ import annotations

import functools
import inspect
import re
import typing
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, replace
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import numpy as np
import typer

from crnet.commands.io_checks import flag_message

if TYPE_CHECKING:
    from crnet.feedback import SimConfig

GRID_OPTIONS: tuple[tuple[str, Any], ...] = (
    ("dr_kpc", Annotated[float | None, typer.Option(
        "--dr", help="Radial grid step, kpc (default: the paper galdef; crnet simulate: its galdef's; crnet "
        "feedback: its --store's; crnet evaluate: its first --mocks store's).")]),
    ("dz_kpc", Annotated[float | None, typer.Option(
        "--dz", help="Vertical grid step (near the disc with --z-uniform-half), kpc (default as --dr's).")]),
    ("ekin_factor", Annotated[float | None, typer.Option(
        "--ekin-factor", help="Energy grid factor: ratio of neighbouring kinetic energies per nucleon (default as "
        "--dr's).")]),
    ("z_uniform_half_kpc", Annotated[float | None, typer.Option(
        "--z-uniform-half", help="Stretched halo: uniform z steps up to this |z| (kpc), wider beyond "
        "(crprop GalaxySetup.z_uniform_half_kpc); default GALPROP's uniform grid.")]),
    ("z_stretch_factor", Annotated[float | None, typer.Option(
        "--z-stretch-factor", help="Stretched halo: ratio of neighbouring z steps beyond --z-uniform-half "
        "(default 1.15; with --dz-max, only together with --z-uniform-half).")]),
    ("dz_max_kpc", Annotated[float | None, typer.Option(
        "--dz-max", help="Stretched halo: largest z step, kpc, >= --dz (default 1.0, whatever --dz: a --dz above it "
        "needs --dz-max).")]),
    ("loss_scheme", Annotated[str | None, typer.Option(
        "--loss-scheme", help="Momentum-loss stencil: upwind1 (GALPROP's, default) or upwind2 (second order; "
        "not with --mode galprop).")]),
    ("half_lives", Annotated[str | None, typer.Option(
        "--half-lives", help="Radioactive half-lives: galprop (GALPROP's tables, default; 10Be 1.60 Myr) or "
        "measured (10Be 1.387 Myr, crprop.nuclear.decay.MEASURED_HALF_LIVES_YR).")]),
)
"""(GridConfig field, Typer option) pairs; the command-line parameter has the field's name."""


def _flag(option: Any) -> str:
    """The flag of an ``Annotated[..., typer.Option("--flag", ...)]`` (Typer reads the first argument, the default
    of a plain ``typer.Option``, as the flag when the option is annotated)."""
    info = typing.get_args(option)[1]
    return str((info.param_decls or (info.default,))[0])


GRID_FLAGS: dict[str, str] = {name: _flag(option) for name, option in GRID_OPTIONS}
"""GridConfig field -> its command-line flag ('dr_kpc' -> '--dr'), for messages that name the option."""


_FIELD_WORD = re.compile(r"(?<![\w.'\"])(" + "|".join(sorted(GRID_FLAGS, key=len, reverse=True)) + r")(?![\w'\"])")
"""A GridConfig field named as a word of a message, not inside a quoted value (``got 'dr_kpc'``: the user's) nor as
part of a dotted name (``GalaxySetup.dz_kpc``)."""


def grid_message(exc: Exception) -> str:
    """A GridConfig message with its fields named by flag: every message starts with its field, and the stretched
    halo's and the halo's checks name others ('>= dz_kpc (', 'needs z_uniform_half_kpc', 'use dz_kpc <= 1'), which
    are flags on the command line too (walk-through by helper-87, session 21: 'set dz_max_kpc' in a CLI message); a
    quoted value refused, the user's, is left as it is (``--half-lives dr_kpc``: got 'dr_kpc')."""
    return _FIELD_WORD.sub(lambda m: GRID_FLAGS[m.group(1)], flag_message(str(exc), GRID_FLAGS))


_GALDEF_DZ = "the galdef's dz"
"""How crnet simulate names its z step when --dz is not given: the galdef's key, which --dz would replace."""


def check_galdef_grid(setup: Any, given: Mapping[str, Any], z_halos_kpc: Sequence[float]) -> None:
    """crnet simulate's checks of the grid it will propagate on, before any work: ``setup`` (a crprop GalaxySetup,
    its galdef's with the grid options ``given`` applied; {GridConfig field: value}, from
    ``@with_given_grid_options``) for the models of halos ``z_halos_kpc`` (kpc). GridConfig's rules
    (``check_stretch_options``, ``check_stretched_halo``, ``check_halo`` of :class:`crnet.scan.models.GridConfig`)
    on the galdef's dz instead of the paper's and the models' halos instead of the prior box's smallest:
    --z-stretch-factor / --dz-max need --z-uniform-half, the stretched halo must reach dz (--dz-max not given:
    GalaxySetup's 1.0 kpc, named as the default), and every model's halo needs an interior z node; ValueError
    naming the options, and the galdef's dz as such when --dz is not given.
    Before, these failed inside the propagation in crprop's field names (``dz_max_kpc must be >= dz_kpc``), or
    not at all (the stretch options without --z-uniform-half ran on the uniform grid and were recorded as applied;
    walk-through by helper-87, session 21)."""
    from crnet.scan.models import GridConfig

    def named(exc: Exception) -> str:
        message = str(exc)
        if "dz_kpc" not in given:  # the dz in the message is the galdef's, not an option given
            message = re.sub(r"(^|>= )dz_kpc\b", lambda m: m.group(1) + _GALDEF_DZ, message)
        return grid_message(ValueError(message))

    try:
        GridConfig.check_stretch_options(given)  # the galdef's grid has no stretched halo: only an option sets one
        GridConfig.check_stretched_halo(given, float(setup.dz_kpc))
        if len(z_halos_kpc):
            i = int(np.argmin(z_halos_kpc))
            GridConfig.check_halo(setup, float(z_halos_kpc[i]), f"model {i}'s z_halo_kpc = {z_halos_kpc[i]:g} kpc")
    except ValueError as exc:
        raise ValueError(named(exc)) from None


def store_sim(store: Path | str, backend: str, grid: dict[str, Any] | None = None, **given: Any) -> SimConfig:
    """The re-simulation settings (:class:`crnet.feedback.SimConfig`) of a command whose defaults are a store's
    (crnet feedback: --store; crnet evaluate: the first --mocks): :func:`crnet.feedback_inputs.sim_from_store`'s, with
    the grid options given (``grid``, from ``@with_given_grid_options``) and the solver options of ``given`` that are
    not None (mode, tol, max_steps, dataset) in their place. Whether those agree with the store is the library's
    check (:func:`crnet.feedback_inputs.check_resimulation_settings`); FeedbackInputError 'train_store' for a store that
    cannot give settings."""
    from crnet.feedback_inputs import sim_from_store
    from crnet.scan.models import GridConfig

    base = sim_from_store(store, backend=backend)
    options = {name: value for name, value in given.items() if value is not None}
    try:
        merged = GridConfig(**{**asdict(base.grid), **(grid or {})})
    except ValueError as exc:  # a stretched halo that does not reach the store's dz
        raise ValueError(f"{grid_message(exc)} (the grid of {store} with the options given)") from None
    return replace(base, grid=merged, **options)


def with_grid_options(command: Callable[..., Any]) -> Callable[..., Any]:
    """Decorate a Typer command whose last parameter is ``grid``: Typer sees the GRID_OPTIONS instead, and the
    command gets ``grid=GridConfig(**their values)``; a value GridConfig refuses ends the command with its message
    and exit status 2. Apply below ``@app.command``."""
    return _grid_decorator(command, given_only=False)


def with_given_grid_options(command: Callable[..., Any]) -> Callable[..., Any]:
    """As :func:`with_grid_options`, but the command gets ``grid`` = {GridConfig field: value} of the options
    given on the command line only (values checked by GridConfig as there), for a command whose defaults come
    from elsewhere (crnet feedback: its --store)."""
    return _grid_decorator(command, given_only=True)


def _grid_decorator(command: Callable[..., Any], given_only: bool) -> Callable[..., Any]:
    sig = inspect.signature(command)
    if list(sig.parameters)[-1:] != ["grid"]:
        raise TypeError(f"{command.__name__}: with_grid_options needs a last parameter named 'grid'")

    def resolved(annotation: Any) -> Any:  # the command module's string annotations (PEP 563), as Typer needs them
        return eval(annotation, command.__globals__) if isinstance(annotation, str) else annotation  # noqa: S307

    params = [p.replace(annotation=resolved(p.annotation)) for name, p in sig.parameters.items() if name != "grid"]
    params += [inspect.Parameter(name, inspect.Parameter.KEYWORD_ONLY, default=None, annotation=option)
               for name, option in GRID_OPTIONS]

    @functools.wraps(command)
    def wrapper(**kwargs: Any) -> Any:
        from crnet.scan.models import GridConfig

        values = {name: kwargs.pop(name, None) for name, _ in GRID_OPTIONS}  # None: not given
        try:
            if given_only:  # the dz the stretched halo must reach is the galdef's or the store's: checked there
                GridConfig.check_options(values)
            else:
                # the stretch options without --z-uniform-half changed nothing and were recorded as applied
                # (walk-through by helper-87, session 21; a store's, given_only, may have it), after each value's check
                GridConfig.check_options(values)
                GridConfig.check_stretch_options(values)
                grid = GridConfig(**values)
        except ValueError as exc:  # e.g. --half-lives lab: a usage error naming the flag, not a traceback
            typer.echo(f"error: {grid_message(exc)}", err=True)
            raise typer.Exit(code=2) from None
        if given_only:
            return command(**kwargs, grid={name: v for name, v in values.items() if v is not None})
        return command(**kwargs, grid=grid)

    wrapper.__signature__ = sig.replace(parameters=params, return_annotation=resolved(sig.return_annotation))
    wrapper.__annotations__ = {p.name: p.annotation for p in params}
    return wrapper
