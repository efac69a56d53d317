"""Checks on output paths, run before long work rather than at its final write."""

from __future__ import annotations

import glob
import os
import time
from collections.abc import Callable
from pathlib import Path


def require_parent_dir(path: Path | str, what: str = "--out") -> Path:
    """``path`` as a Path; ValueError naming ``what`` when the directory it would be written into is missing."""
    path = Path(path)
    if not path.parent.is_dir():
        raise ValueError(f"{what} {path}: directory {path.parent} does not exist")
    return path


def require_output_dir(path: Path | str, what: str = "--out") -> Path:
    """``path`` as a Path; ValueError naming ``what`` when it is an existing file, not a directory (a store or a
    JSON file given by mistake: ``mkdir`` would end in a FileExistsError traceback). Nothing is created."""
    path = Path(path)
    if path.exists() and not path.is_dir():
        raise ValueError(f"{what} {path}: an existing file, not a directory; give a new or existing directory")
    return path


def make_output_dir(path: Path | str, what: str = "--out") -> Path:
    """Create the output directory ``path`` (and its parents) if missing, after :func:`require_output_dir`."""
    path = require_output_dir(path, what)
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError as exc:  # a traceback before (review by helper-118, session 23: --out /dev/null/fb)
        raise ValueError(f"{what} {path}: cannot create this directory ({exc.strerror or exc})") from None
    return path


def same_file(a: Path | str, b: Path | str) -> bool:
    """Whether ``a`` and ``b`` name the same file (links and relative paths resolved)."""
    a, b = Path(a), Path(b)
    try:
        if a.exists() and b.exists():
            return os.path.samefile(a, b)
    except OSError:
        pass
    return a.resolve() == b.resolve()


STALE_TEMPORARY_AGE_S = 600.0
"""A ``<name>.<pid>.tmp`` left beside a file is removed by the next write of that file when its process is gone and
it was last written this long ago (s): no write of a model, checkpoint or marker takes minutes, so a temporary this
old whose process no longer exists is what a SIGKILL during a write left behind. The age also spares a writer on
another host that shares the directory (its pid means nothing here)."""


def _process_exists(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except (OSError, OverflowError, ValueError):  # PermissionError: someone else's; a pid no process can have: keep
        return True
    return True


def remove_stale_temporaries(path: Path | str, min_age_s: float = STALE_TEMPORARY_AGE_S) -> list[Path]:
    """Remove the temporaries of :func:`atomic_write` for ``path`` (``<name>.<pid>.tmp``) whose process no longer
    exists and that are at least ``min_age_s`` old; returns those removed. Files of any other name are left. Never
    raises: it is housekeeping after a successful write, and one it cannot remove (another user's in a shared
    directory, a directory of that name) must not fail the write, nor every later one (review by helper-92)."""
    path = Path(path)
    removed = []
    now = time.time()
    for tmp in path.parent.glob(f"{glob.escape(path.name)}.*.tmp"):
        pid = tmp.name[len(path.name) + 1: -len(".tmp")]
        if not pid.isdigit() or int(pid) == os.getpid() or _process_exists(int(pid)):
            continue
        try:
            if now - tmp.stat().st_mtime >= min_age_s:
                tmp.unlink()
                removed.append(tmp)
        except OSError:  # removed meanwhile by another run's sweep, not ours to remove, or a directory
            pass
    return removed


def atomic_write(path: Path | str, write: Callable[[Path], object]) -> Path:
    """Call ``write(tmp)`` on a temporary file beside ``path`` and rename it to ``path``, so a reader never sees
    half a file and a failed or interrupted write keeps the previous one. The temporary name
    (``<name>.<pid>.tmp``) carries the process id: two processes writing the same file do not rename each other's
    half-written file away. A failed ``write`` removes its temporary file; one a SIGKILL left behind is removed by
    a later successful write of the same file (:func:`remove_stale_temporaries`: a dead process's, 10 min old)."""
    path = Path(path)
    tmp = path.with_name(f"{path.name}.{os.getpid()}.tmp")
    try:
        write(tmp)
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    remove_stale_temporaries(path)
    return path


def atomic_write_text(path: Path | str, text: str) -> Path:
    """Write ``text`` to ``path`` through :func:`atomic_write`."""
    return atomic_write(path, lambda tmp: tmp.write_text(text))
