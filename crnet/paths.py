"""Checks on output paths, run before long work rather than at its final write."""

from __future__ import annotations

import os
from pathlib import Path


def require_parent_dir(path: Path | str, what: str = "--out") -> Path:
    """``path`` as a Path; ValueError naming ``what`` when the directory it would be written into is missing."""
    path = Path(path)
    if not path.parent.is_dir():
        raise ValueError(f"{what} {path}: directory {path.parent} does not exist")
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


def atomic_write_text(path: Path | str, text: str) -> Path:
    """Write ``text`` to ``path`` through a temporary file and a rename, so a reader never sees half a file (the
    temporary name carries the process id: two processes writing the same file do not share one)."""
    path = Path(path)
    tmp = path.with_name(f"{path.name}.{os.getpid()}.tmp")
    tmp.write_text(text)
    os.replace(tmp, path)
    return path
