"""crnet.paths.atomic_write: the one temporary-file-and-rename rule of model files, checkpoints and JSON state."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from crnet.paths import STALE_TEMPORARY_AGE_S, atomic_write, atomic_write_text, remove_stale_temporaries


def test_atomic_write_replaces_through_a_per_process_temporary(tmp_path: Path) -> None:
    path = tmp_path / "state.json"
    path.write_text("old")
    seen: list[Path] = []

    def write(tmp: Path) -> None:
        seen.append(tmp)
        assert path.read_text() == "old"  # the previous file stays readable while the new one is written
        tmp.write_text("new")

    assert atomic_write(path, write) == path
    assert path.read_text() == "new"
    assert seen == [tmp_path / f"state.json.{os.getpid()}.tmp"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["state.json"]


def test_a_failed_write_keeps_the_old_file_and_removes_its_temporary(tmp_path: Path) -> None:
    path = tmp_path / "model.pt"
    path.write_bytes(b"old model")
    other = tmp_path / "model.pt.tmp"  # another writer's (or an older crnet's) temporary name: not ours to remove
    other.write_bytes(b"theirs")

    def write(tmp: Path) -> None:
        tmp.write_bytes(b"half")
        raise OSError("disk full")

    with pytest.raises(OSError, match="disk full"):
        atomic_write(path, write)
    assert path.read_bytes() == b"old model"
    assert other.read_bytes() == b"theirs"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model.pt", "model.pt.tmp"]


def test_atomic_write_text_writes_the_text(tmp_path: Path) -> None:
    path = atomic_write_text(tmp_path / "a.txt", "héllo\n")
    assert path.read_text() == "héllo\n"


def _dead_pid() -> int:
    """The pid of a process that has exited (a child reaped by the wait)."""
    import subprocess
    import sys

    child = subprocess.Popen([sys.executable, "-c", "pass"])
    child.wait()
    return child.pid


def test_a_write_removes_the_temporary_a_killed_writer_left(tmp_path: Path) -> None:
    """A SIGKILL between write and rename left ``<name>.<pid>.tmp`` behind, as large as a checkpoint, forever
    (session 20's known defect); the next write of the same file removes it once it is old enough."""
    path = tmp_path / "m.pt.ckpt"
    dead = tmp_path / f"m.pt.ckpt.{_dead_pid()}.tmp"
    fresh_dead = tmp_path / f"m.pt.ckpt.{_dead_pid()}.tmp"  # a dead writer's, written a moment ago
    alive = tmp_path / f"m.pt.ckpt.{os.getppid()}.tmp"  # a running process (pytest's parent) may still rename it
    other = tmp_path / "m.pt.ckpt.old.tmp"  # not a pid: a name atomic_write never makes
    sibling = tmp_path / f"m.pt.{_dead_pid()}.tmp"  # another file's temporary
    for f in (dead, fresh_dead, alive, other, sibling):
        f.write_bytes(b"half")
    old = os.stat(dead).st_mtime - 2 * STALE_TEMPORARY_AGE_S
    for f in (dead, alive, other, sibling):
        os.utime(f, (old, old))
    atomic_write_text(path, "new")
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(
        p.name for p in (path, fresh_dead, alive, other, sibling))
    assert remove_stale_temporaries(path, min_age_s=0.0) == [fresh_dead]


def test_a_temporary_the_sweep_cannot_remove_does_not_fail_the_write(tmp_path: Path) -> None:
    """A directory named like a stale temporary (or another user's file in a shared directory) raised out of
    atomic_write after the rename: the write had succeeded, and every later write of the file failed the same way
    (review by helper-92, session 21). A pid no process can have is left alone."""
    path = tmp_path / "out.txt"
    stuck = tmp_path / f"out.txt.{_dead_pid()}.tmp"
    stuck.mkdir()
    huge = tmp_path / "out.txt.99999999999999999999.tmp"
    huge.write_text("?")
    old = os.stat(stuck).st_mtime - 2 * STALE_TEMPORARY_AGE_S
    for f in (stuck, huge):
        os.utime(f, (old, old))
    for text in ("first", "second"):
        atomic_write_text(path, text)
        assert path.read_text() == text
    assert stuck.is_dir() and huge.is_file()
