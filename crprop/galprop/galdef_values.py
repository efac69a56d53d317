"""How GALPROP v54 reads the value of a galdef line (``sscanf`` with ``%d``, ``%le``, ``%s``, ``"%le,%n"``), and the
characters where Python's and C's notions of whitespace part (:func:`check_c_whitespace`).

Used by :mod:`crprop.galprop.galdef`; split from it to keep that module short.
"""

from __future__ import annotations

import re
import unicodedata
from typing import Any

from crprop.galprop.galdef_keys import GaldefError, KeySpec

C_WHITESPACE = " \t\n\v\f\r"
"""The characters C's isspace (and so GALPROP's sscanf) skips in the "C" locale."""
_NOT_C_WHITESPACE = re.compile(rf"[^\S{C_WHITESPACE}]")
"""Whitespace to Python (str.split, regex \\s) that C does not skip: \\x1c-\\x1f, \\x85, \\xa0 in a latin-1 file
(and any other Unicode space in a str)."""

_INT = re.compile(r"[+-]?[0-9]+")
DECIMAL_NUMBER = re.compile(r"[+-]?([0-9]+\.?[0-9]*|\.[0-9]+)([eE][+-]?[0-9]+)?")
"""A plain ASCII decimal number as GALPROP's sscanf reads one (also what crnet's data files may hold)."""
FLOAT_LIST = re.compile(rf"[ \t]*((?:{DECIMAL_NUMBER.pattern})(?:,[ \t]*(?:{DECIMAL_NUMBER.pattern}))*)")
"""A list value as GALPROP's ``sscanf(.., "%le,%n")`` loop reads it: whitespace may precede each number,
a comma must follow it directly."""
_LEADING_NUMBER = re.compile(rf"[ \t]*(,|(?:{DECIMAL_NUMBER.pattern})(?:,|\s|$))")
"""Text that starts like another list item (a comma, or a number on its own): not a comment."""


def parse_value(spec: KeySpec, rest: str, loc: str) -> tuple[Any, str, str]:
    """(typed value, raw token, comment) of the text after ``=``; ``loc`` locates the line in messages."""
    key = spec.name
    if spec.vtype == "text":
        return rest.strip(), rest.strip(), ""
    if spec.vtype == "floats" and rest.strip():
        return _parse_floats(key, rest, loc)
    parts = rest.split(None, 1)
    if not parts:
        raise GaldefError(f"{loc}: {key} has no value (GALPROP would keep its default silently)", key)
    tok, comment = parts[0], (parts[1].strip() if len(parts) > 1 else "")
    if spec.vtype == "int":
        if not _INT.fullmatch(tok):
            raise GaldefError(f"{loc}: {key} = {tok!r} is not an integer (GALPROP reads %d)", key)
        return int(tok, 10), tok, comment
    if spec.vtype == "float":
        if not DECIMAL_NUMBER.fullmatch(tok):
            raise GaldefError(f"{loc}: {key} = {tok!r} is not a finite number", key)
        return float(tok), tok, comment
    return tok, tok, comment


def _parse_floats(key: str, rest: str, loc: str) -> tuple[tuple[float, ...], str, str]:
    """(values, raw list text, comment) of a comma-separated list value such as ``B_field_parameters``.

    GALPROP reads n values with ``sscanf(&input[start], "%le,%n", ...)``: leading whitespace before a
    number is skipped, but the comma must follow the number directly. So ``1,2,3`` and ``1, 2, 3`` are
    accepted; a space-separated list (``1 2 3``), a comma after whitespace (``1 ,2``), a trailing comma or
    junk glued to a number is refused naming the key (GALPROP would mis-read or half-read those).
    """
    shown = rest.strip()
    m = FLOAT_LIST.match(rest)
    if m is None:
        raise GaldefError(f"{loc}: {key} = {shown!r} is not a comma-separated list of numbers "
                          "(GALPROP reads '%le,' per value)", key)
    raw, tail = m.group(1), rest[m.end():]
    if tail and not tail[0].isspace():
        if tail.startswith(","):
            what = "ends with a comma" if not tail[1:].strip() else "has a comma not followed by a number"
        else:
            what = f"has {tail.split()[0]!r} glued to the number {raw.split(',')[-1].strip()!r}"
        raise GaldefError(f"{loc}: {key} = {shown!r} is not a comma-separated list of numbers: it {what}", key)
    if _LEADING_NUMBER.match(tail):
        raise GaldefError(f"{loc}: {key} = {shown!r}: values must be separated by commas, as in '1,2,3' or "
                          "'1, 2, 3' (GALPROP reads each with sscanf '%le,', the comma right after the number, "
                          "and would mis-read a space-separated list or ' ,'); a comment after the values must "
                          "not start with a number or a comma", key)
    return tuple(float(t) for t in raw.split(",")), raw, tail.strip()


def check_c_whitespace(line: str, key: str, loc: str) -> None:
    """GaldefError naming ``loc``, ``key`` and the character when the key line ``line`` holds a character that Python
    splits on but GALPROP's sscanf does not (:data:`_NOT_C_WHITESPACE`): crprop would read a key or value there that
    GALPROP does not (``D0_xx\\xa0= 1e28`` is no D0_xx line to GALPROP; ``=\\x1c3e28`` no number)."""
    m = _NOT_C_WHITESPACE.search(line)
    if m is not None:
        ch = m.group()
        name = unicodedata.name(ch, "a control character")
        raise GaldefError(f"{loc}: {key}: the line holds {ch!r} ({name}, column {m.start() + 1}), which Python "
                          "reads as whitespace but GALPROP's sscanf does not, so GALPROP would read this line "
                          "differently; replace it with a space", key)
