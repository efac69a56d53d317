"""Shared fixtures: location of the read-only ../shared reference tree (skips cleanly when absent)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[1]


def shared_root() -> Path | None:
    """../shared beside the checkout, or $CRNET_SHARED; None when neither exists."""
    env = os.environ.get("CRNET_SHARED")
    for cand in ([Path(env)] if env else []) + [REPO_ROOT.parent / "shared"]:
        if cand.is_dir():
            return cand
    return None


@pytest.fixture(scope="session")
def shared_dir() -> Path:
    root = shared_root()
    if root is None:
        pytest.skip("../shared reference data not present (set CRNET_SHARED to its path)")
    return root


@pytest.fixture(scope="session")
def internals_dir(shared_dir: Path) -> Path:
    d = shared_dir / "reference" / "galprop-internals"
    if not d.is_dir():
        pytest.skip("galprop-internals reference not present")
    return d


@pytest.fixture(scope="session")
def galprop_ref_dir(shared_dir: Path) -> Path:
    d = shared_dir / "reference" / "galprop"
    if not d.is_dir():
        pytest.skip("GALPROP reference runs not present")
    return d
