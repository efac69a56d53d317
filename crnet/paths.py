"""Checks on output paths, run before long work rather than at its final write."""

from __future__ import annotations

from pathlib import Path


def require_parent_dir(path: Path | str, what: str = "--out") -> Path:
    """``path`` as a Path; ValueError naming ``what`` when the directory it would be written into is missing."""
    path = Path(path)
    if not path.parent.is_dir():
        raise ValueError(f"{what} {path}: directory {path.parent} does not exist")
    return path
