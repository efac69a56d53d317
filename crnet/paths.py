"""Checks on output paths, run before long work rather than at its final write."""

from __future__ import annotations

import os
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
    path.mkdir(parents=True, exist_ok=True)
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


def atomic_write(path: Path | str, write: Callable[[Path], object]) -> Path:
    """Call ``write(tmp)`` on a temporary file beside ``path`` and rename it to ``path``, so a reader never sees
    half a file and a failed or interrupted write keeps the previous one. The temporary name
    (``<name>.<pid>.tmp``) carries the process id: two processes writing the same file do not rename each other's
    half-written file away. A failed ``write`` removes its temporary file (a SIGKILL leaves it behind, harmless)."""
    path = Path(path)
    tmp = path.with_name(f"{path.name}.{os.getpid()}.tmp")
    try:
        write(tmp)
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return path


def atomic_write_text(path: Path | str, text: str) -> Path:
    """Write ``text`` to ``path`` through :func:`atomic_write`."""
    return atomic_write(path, lambda tmp: tmp.write_text(text))
