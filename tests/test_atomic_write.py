"""crnet.paths.atomic_write: the one temporary-file-and-rename rule of model files, checkpoints and JSON state."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from crnet.paths import atomic_write, atomic_write_text


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
