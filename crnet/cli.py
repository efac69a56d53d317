"""The `crnet` command-line interface (Typer). Sub-commands live in `crnet.commands.*`."""

from __future__ import annotations

import warnings

import typer

app = typer.Typer(help="crnet: cosmic-ray propagation (crprop) and its neural-network inversion.",
                  no_args_is_help=True, add_completion=False)


def format_warning(message: Warning | str, category: type[Warning], filename: str, lineno: int,
                   line: str | None = None) -> str:
    """A warning as the CLI prints it: one line naming its category, without Python's file:line and source line
    (which point into crnet's code, not at the user's input)."""
    return f"warning ({category.__name__}): {message}\n"


@app.callback()
def main() -> None:
    """Every command prints warnings through :func:`format_warning`."""
    warnings.formatwarning = format_warning


@app.command()
def version() -> None:
    """Print the crnet version."""
    from crnet import __version__

    typer.echo(__version__)


def _register() -> None:
    """Attach sub-commands; each module owns its commands and registers them on `app`."""
    from crnet.commands import register_all

    register_all(app)


_register()

if __name__ == "__main__":
    app()
