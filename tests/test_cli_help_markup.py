"""Typer renders help through Rich, whose markup swallows an unescaped "[word]": `crnet feedback --help` printed
"its  seed" for "its [feedback] seed" (README audit, session 20). Config sections in help texts are written
"\\[run]"."""

from __future__ import annotations

import re

import typer
from typer.testing import CliRunner

from crnet.cli import app

UNESCAPED_TAG = re.compile(r"(?<!\\)\[[a-z][a-z_. ]*\]")


def _help_texts(command, path: str):
    yield path, command.help or ""
    for param in getattr(command, "params", []):
        yield f"{path} {param.name}", getattr(param, "help", None) or ""
    for name, sub in getattr(command, "commands", {}).items():
        yield from _help_texts(sub, f"{path} {name}")


def test_no_help_text_holds_rich_markup_by_mistake():
    found = [(where, m.group(0)) for where, text in _help_texts(typer.main.get_command(app), "crnet")
             for m in UNESCAPED_TAG.finditer(text)]
    assert found == []


def test_config_sections_show_in_the_rendered_help():
    out = CliRunner().invoke(app, ["feedback", "--help"], env={"COLUMNS": "400"}).output
    assert "its [feedback] seed, else its [run] seed + 3000017" in " ".join(out.split())
