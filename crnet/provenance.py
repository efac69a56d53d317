"""Which code produced a result: the crnet version and its git commit (light: no torch, no numpy)."""

from __future__ import annotations

import subprocess
from pathlib import Path

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
