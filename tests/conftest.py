"""Shared fixtures: location of the read-only ../shared reference tree (skips cleanly when absent).

With CRNET_REQUIRE_SHARED=1 (set by .ci/run whenever ../shared exists) a missing reference fails the test instead:
the 80-odd GALPROP / CR-ML / internals comparisons are the end-to-end checks of the physics, and a tree that is
there but not found (a moved folder, a wrong path) must not turn them into silent skips."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[1]


def _missing(why: str) -> None:
    if os.environ.get("CRNET_REQUIRE_SHARED") == "1":
        pytest.fail(f"{why}, but CRNET_REQUIRE_SHARED=1 says the reference data must be there")
    pytest.skip(why)


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
        _missing("../shared reference data not present (set CRNET_SHARED to its path)")
    return root


@pytest.fixture(scope="session")
def internals_dir(shared_dir: Path) -> Path:
    d = shared_dir / "reference" / "galprop-internals"
    if not d.is_dir():
        _missing("galprop-internals reference not present")
    return d


@pytest.fixture(scope="session")
def galprop_ref_dir(shared_dir: Path) -> Path:
    d = shared_dir / "reference" / "galprop"
    if not d.is_dir():
        _missing("GALPROP reference runs not present")
    return d
