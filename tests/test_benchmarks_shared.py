"""The benchmark scripts' shared pieces that replaced copies: the non-converged warning under a timing table, the
tiny-grid warm-up (benchmarks/common.py) and per_model_stop_speed's --before commit (through crnet.provenance)."""

from __future__ import annotations

import importlib.util
import shutil
import subprocess
import sys
import types
import warnings
from pathlib import Path

import pytest

_BENCH = Path(__file__).resolve().parents[1] / "benchmarks"


def _load(name: str) -> types.ModuleType:
    spec = importlib.util.spec_from_file_location(f"benchmarks_{name}_under_test", _BENCH / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


common = _load("common")


def test_nonconverged_warning_is_empty_when_every_row_converged() -> None:
    assert common.nonconverged_warning([("fast numba B=1", 0, 1), ("fast numba B=16", 0, 16)]) == []
    assert common.nonconverged_warning([]) == []


def test_nonconverged_warning_keeps_the_solver_and_network_tables_wording() -> None:
    rows = [("fast numba B=1", 0, 1), ("fast numba B=16", 2, 16), ("fast numpy B=16", 1, 16)]
    assert common.nonconverged_warning(rows) == [
        "", "**Warning: not every model converged** in fast numba B=16 (2 of 16); fast numpy B=16 (1 of 16); "
        "their times are for non-converged solves."]


def test_nonconverged_warning_keeps_the_scan_table_wording() -> None:
    rows = [("numba K=64 warm yes", 3, 128), ("numba K=64 warm no", 0, 128)]
    got = common.nonconverged_warning(rows, subject="timed model", entry="{label}: {n} of {total}", opening=" (",
                                      closing="); the rates above include them.")
    assert got == ["", "**Warning: not every timed model converged** (numba K=64 warm yes: 3 of 128); the rates "
                       "above include them."]


def test_warm_up_runs_each_call_once_with_warnings_silenced() -> None:
    calls = []

    def noisy(tag: str):
        def run() -> None:
            calls.append(tag)
            warnings.warn("compiling", RuntimeWarning, stacklevel=1)
        return run

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        seconds = common.warm_up(noisy("a"), noisy("b"))
    assert calls == ["a", "b"] and seconds >= 0.0
    assert not caught


def test_warm_up_propagate_solves_each_mode_on_the_tiny_grid(monkeypatch: pytest.MonkeyPatch) -> None:
    import crprop.propagate

    solved = []
    monkeypatch.setattr(crprop.propagate, "propagate",
                        lambda setup, params, **kw: solved.append((setup, params, kw)))
    setup = types.SimpleNamespace(with_changes=lambda **changes: ("tiny", changes))
    assert common.warm_up_propagate(setup, "p", "numba", modes=("galprop", "fast")) >= 0.0
    assert solved == [(("tiny", common.TINY_GRID), "p",
                       {"mode": mode, "backend": "numba", "check_prior": False}) for mode in ("galprop", "fast")]


@pytest.mark.skipif(shutil.which("git") is None, reason="needs git")
def test_checkout_commit_reads_head_and_dirty_flag_of_another_checkout(tmp_path: Path,
                                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.syspath_prepend(str(_BENCH))  # per_model_stop_speed imports common
    monkeypatch.delitem(sys.modules, "common", raising=False)
    stop = _load("per_model_stop_speed")
    assert stop.checkout_commit(tmp_path) == stop.UNKNOWN_COMMIT  # no checkout
    repo = tmp_path / "repo"
    repo.mkdir()

    def git(*args: str) -> str:
        return subprocess.run(["git", "-C", str(repo), "-c", "user.name=t", "-c", "user.email=t@t", *args],
                              capture_output=True, text=True, check=True).stdout.strip()

    git("init", "-q")
    (repo / "f.txt").write_text("a")
    git("add", "f.txt")
    git("commit", "-q", "-m", "one")
    head = git("rev-parse", "HEAD")
    assert stop.checkout_commit(repo) == head
    (repo / "f.txt").write_text("b")
    assert stop.checkout_commit(repo) == f"{head} + uncommitted changes"
