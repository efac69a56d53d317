"""The `crnet` command-line interface (Typer). Sub-commands live in `crnet.commands.*`."""

from __future__ import annotations

import typer

app = typer.Typer(help="crnet: cosmic-ray propagation (crprop) and its neural-network inversion.",
                  no_args_is_help=True, add_completion=False)


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
