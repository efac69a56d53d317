"""Which code and which settings produced a result: the crnet version and its git commit, and the comparison of a
run's recorded settings with the current ones that every resume uses (light: no torch, no numpy)."""

from __future__ import annotations

import json
import subprocess
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from crnet import __version__


def code_version(exclude: tuple[str, ...] = ()) -> dict:
    """crnet version and, when the package lives in a git checkout, its commit and dirty flag (uncommitted changes
    to tracked files outside the repository paths ``exclude``)."""
    out = {"crnet": __version__, "git_commit": None, "git_dirty": None}
    root = Path(__file__).resolve().parents[1]
    try:
        commit = subprocess.run(["git", "-C", str(root), "rev-parse", "HEAD"], capture_output=True, text=True,
                                timeout=10, check=True).stdout.strip()
        dirty = subprocess.run(["git", "-C", str(root), "status", "--porcelain", "--untracked-files=no", "--", ".",
                                *(f":(exclude){p}" for p in exclude)],
                               capture_output=True, text=True, timeout=30, check=True).stdout.strip()
        out["git_commit"], out["git_dirty"] = commit, bool(dirty)
    except (OSError, subprocess.SubprocessError):
        pass
    return out


def array_sha256(*arrays: Any) -> str:
    """sha256 hex digest of arrays' values as contiguous float64 (a cache key, or the identity of numbers such as
    a feature scaler)."""
    import hashlib

    import numpy as np

    h = hashlib.sha256()
    for a in arrays:
        h.update(np.ascontiguousarray(a, dtype=np.float64).tobytes())
    return h.hexdigest()


def changed_settings(saved: Mapping[str, Any], current: Mapping[str, Any], keys: Iterable[str] | None = None,
                     nested: bool = False) -> list[str]:
    """Names of the settings whose values differ between a record an earlier run wrote (``saved``, read back
    from JSON) and this run's (``current``), sorted. The one rule every resume check uses:

    - both sides are compared as JSON would store them (tuples as lists, paths as strings);
    - a setting that is None or missing compares equal to missing, at any depth: a record written before an
      option existed resumes under a config that leaves that option unset;
    - ``keys``: compare only these (default: every key of either side);
    - ``nested``: dict-valued settings are compared entry by entry and reported as ``outer.inner``.
    """
    old, new = _as_stored(dict(saved)), _as_stored(dict(current))
    names = sorted(set(old) | set(new)) if keys is None else sorted(keys)
    out = []
    for key in names:
        a, b = old.get(key), new.get(key)
        if nested and isinstance(a, dict) and isinstance(b, dict):
            out += [f"{key}.{k}" for k in sorted(set(a) | set(b)) if a.get(k) != b.get(k)]
        elif a != b:
            out.append(key)
    return out


def list_settings(names: list[str], limit: int = 8) -> str:
    """``names`` for an error message: the first ``limit``, then '...'."""
    return ", ".join(names[:limit]) + (" ..." if len(names) > limit else "")


def _as_stored(value: Any) -> Any:
    return _drop_unset(json.loads(json.dumps(value, sort_keys=True, default=str)))


def _drop_unset(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _drop_unset(v) for k, v in value.items() if v is not None}
    if isinstance(value, list):
        return [_drop_unset(v) for v in value]
    return value
