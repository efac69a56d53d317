"""Reading the small JSON files crnet writes for itself (stage markers, the feedback run log, fit results), and the
strict-JSON form of the result files it writes for others (:func:`strict_json_text`).

Its own module rather than :mod:`crnet.paths`: that one checks output paths and writes files atomically; reading
and validating a file's content is another job, and keeping them apart keeps ``paths`` free of parsing.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np

_JSON_TYPES = {list: "list", str: "string", int: "number", float: "number", bool: "boolean", type(None): "null"}
"""JSON's names of the values json.loads returns (a JSON array is a list in Python and in these messages)."""


def read_json_object(path: Path | str, what: str, *, error: type[Exception] = ValueError, hint: str = "",
                     bad: str = "corrupt") -> dict[str, Any]:
    """The JSON object (a dict) in ``path``; ``error`` (ValueError unless given) naming the file and what is wrong:

    * ``<path>: missing <what> (no such file)``;
    * ``<path>: unreadable <what> (<reason>)``: a directory, no permission, an I/O error;
    * ``<path>: <bad> <what> (not JSON text: <reason>)``: not UTF-8 (a binary file);
    * ``<path>: <bad> <what> (<reason>: line <l> column <c> (char <n>))``: not JSON (a truncated copy);
    * ``<path>: <bad> <what> (a JSON <type>, not an object)``.

    ``bad`` is the word for a content problem: "corrupt" for files crnet writes itself into a directory it owns (a
    stage marker, a run log: only a copy or an edit spoils them), "not a" for files a user names (``--from-fit``: a
    wrong file is more likely than a damaged one). ``what`` names the kind of file (``"stage marker"``); ``hint``,
    when given, follows after ``"; "`` (what to do about it), so a caller can keep only the first part with
    ``str(exc).split(";")[0]``.
    """
    path = Path(path)

    def fail(problem: str, reason: str) -> Exception:
        return error(f"{path}: {problem} {what} ({reason})" + (f"; {hint}" if hint else ""))

    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise fail("missing", "no such file") from None
    except UnicodeDecodeError as exc:
        raise fail(bad, f"not JSON text: {exc}") from None
    except OSError as exc:
        raise fail("unreadable", exc.strerror or str(exc)) from None
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:  # its message ends with the line and column
        raise fail(bad, str(exc)) from None
    if not isinstance(data, dict):
        raise fail(bad, f"a JSON {_JSON_TYPES.get(type(data), type(data).__name__)}, not an object")
    return data


def strict_json(value: Any) -> Any:
    """``value`` with numpy scalars as Python numbers and every non-finite float (NaN, inf) as None, in dicts, lists
    and tuples at any depth: Python's default NaN / Infinity tokens are not JSON, and strict readers (jq, JavaScript)
    refuse the file (review by helper-83, session 21: report.json)."""
    if isinstance(value, dict):
        return {k: strict_json(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [strict_json(v) for v in value]
    if isinstance(value, np.floating | np.integer | np.bool_):  # numpy scalars as numbers, not default=str text
        value = value.item()
    if isinstance(value, float) and not np.isfinite(value):
        return None
    return value


def strict_json_text(value: Any) -> str:
    """The indented strict-JSON text of a result file crnet writes for people and other tools (report.json,
    measured.json): :func:`strict_json`, other objects as their ``str``."""
    return json.dumps(strict_json(value), indent=2, default=str, allow_nan=False)
