"""CLI sub-commands. Each module defines `register(app)`; `register_all` wires them in order."""

from __future__ import annotations

import importlib

import typer

# Modules providing `register(app: typer.Typer) -> None`. A module is listed once it exists.
COMMAND_MODULES: list[str] = ["simulate", "demo", "data", "chi2", "fit", "scan", "store", "train", "predict",
                              "pseudodata", "feedback", "evaluate", "pipeline"]


def register_all(app: typer.Typer) -> None:
    for name in COMMAND_MODULES:
        importlib.import_module(f"crnet.commands.{name}").register(app)
