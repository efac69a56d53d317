"""Which code and which settings produced a result: the crnet version and its git commit, and the comparison of a
run's recorded settings with the current ones that every resume uses (light: no torch, no numpy)."""

from __future__ import annotations

import json
import os
import subprocess
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from crnet import __version__

PACKAGE_ROOT = Path(__file__).resolve().parents[1]
"""The directory holding the crnet and crprop packages (the repository root of a checkout)."""

SOURCE_PACKAGES: tuple[str, ...] = ("crnet", "crprop")
"""The packages whose files :func:`source_sha256` digests: everything a pipeline stage's result is computed by."""


def _git(*args: str, timeout: float, root: Path | None = None) -> str:
    """stdout of ``git -C root <args>`` (``root`` None: :data:`PACKAGE_ROOT`), run without the caller's GIT_*
    variables: a git hook exports GIT_DIR / GIT_WORK_TREE / GIT_INDEX_FILE, which would point the command at another
    repository than crnet's."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("GIT_")}
    return subprocess.run(["git", "-C", str(PACKAGE_ROOT if root is None else root), *args], capture_output=True,
                          text=True, timeout=timeout, check=True, env=env).stdout


def git_commit(root: Path | None = None) -> str | None:
    """HEAD of the git checkout crnet lives in (or whose top is ``root``: another checkout of crnet, as a benchmark's
    --before tree), or None: not a checkout, no git, or a checkout that is not crnet's own (a package installed into a
    virtual environment inside another repository would report that repository's HEAD: git searches upward)."""
    root = (PACKAGE_ROOT if root is None else Path(root)).resolve()
    try:  # splitlines: a path may hold spaces
        top, commit = _git("rev-parse", "--show-toplevel", "HEAD", timeout=10, root=root).splitlines()
    except (OSError, subprocess.SubprocessError, ValueError):
        return None
    return commit if Path(top).resolve() == root else None


def code_version(exclude: tuple[str, ...] = (), root: Path | None = None) -> dict:
    """crnet version and, when the package lives in its own git checkout (:func:`git_commit`; or the checkout whose
    top is ``root``), its commit and dirty flag (uncommitted changes to tracked files outside the repository paths
    ``exclude``). ``crnet`` is this package's version either way."""
    out = {"crnet": __version__, "git_commit": None, "git_dirty": None}
    commit = git_commit(root)
    if commit is None:
        return out
    try:
        dirty = _git("status", "--porcelain", "--untracked-files=no", "--", ".",
                     *(f":(exclude){p}" for p in exclude), timeout=30, root=root).strip()
        out["git_commit"], out["git_dirty"] = commit, bool(dirty)
    except (OSError, subprocess.SubprocessError):
        pass
    return out


def source_sha256() -> str:
    """sha256 of the installed crnet and crprop packages (:data:`SOURCE_PACKAGES`): every file's path relative to
    :data:`PACKAGE_ROOT` and its bytes, in path order, compiled caches (``__pycache__``, where numba's on-disk
    kernels go too) and hidden files (a path part starting with "."; editor swap files, .DS_Store) left out (~10 ms).
    It identifies the code itself: the same with or without git, blind to commits that change only tests or the
    documents outside the packages, and different for uncommitted edits and for the bundled data tables (cross
    sections) the results depend on."""
    import hashlib

    h = hashlib.sha256()
    def is_source(f: Path) -> bool:
        parts = f.relative_to(PACKAGE_ROOT).parts
        return (f.is_file() and f.suffix not in (".pyc", ".pyo")
                and not any(part == "__pycache__" or part.startswith(".") for part in parts))

    files = sorted(f for name in SOURCE_PACKAGES for f in (PACKAGE_ROOT / name).rglob("*") if is_source(f))
    for f in files:
        rel = f.relative_to(PACKAGE_ROOT).as_posix().encode()
        data = f.read_bytes()
        h.update(len(rel).to_bytes(8, "little") + rel + len(data).to_bytes(8, "little"))
        h.update(data)
    return h.hexdigest()


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
