"""crnet.run_lock: one run per output directory (helper-51, session 17: two pipeline runs on one directory were
accepted and broke each other's checkpoints), and checkpoint writes whose temporary file is per process."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from crnet import run_lock as run_lock_module
from crnet.run_lock import RunLockWarning, lock_path, run_lock

HOLDER = textwrap.dedent("""
    import sys, time
    from crnet.run_lock import run_lock
    with run_lock(sys.argv[1], "test holder"):
        print("locked", flush=True)
        time.sleep(120)
""")


def _start_holder(directory: Path) -> subprocess.Popen:
    proc = subprocess.Popen([sys.executable, "-c", HOLDER, str(directory)], stdout=subprocess.PIPE, text=True)
    line = proc.stdout.readline()  # waits until the child holds the lock
    assert line.strip() == "locked", line
    return proc


def test_second_process_refused_while_held_and_sigkill_leaves_no_stale_lock(tmp_path):
    proc = _start_holder(tmp_path)
    try:
        info = json.loads(lock_path(tmp_path).read_text())
        assert info["pid"] == proc.pid and info["what"] == "test holder"
        with pytest.raises(ValueError) as err, run_lock(tmp_path, "second"):
            pass
        message = str(err.value)
        assert str(lock_path(tmp_path)) in message and f"pid {proc.pid}" in message and "\n" not in message
        proc.send_signal(signal.SIGKILL)  # no finally, no atexit: only the OS can release the lock
        assert proc.wait(timeout=30) == -signal.SIGKILL
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert lock_path(tmp_path).is_file()  # the file stays; its lock went with the process
    with run_lock(tmp_path, "after the kill") as path:
        assert json.loads(path.read_text())["pid"] == os.getpid()


def test_released_on_exit_and_on_error(tmp_path):
    with run_lock(tmp_path, "first"):
        pass
    assert lock_path(tmp_path).read_text() == ""  # the holder's entry is cleared when it lets go
    with pytest.raises(RuntimeError, match="boom"), run_lock(tmp_path, "failing"):
        raise RuntimeError("boom")
    with run_lock(tmp_path, "again"):  # an exception inside the block released it too
        proc = subprocess.run([sys.executable, "-c", "from crnet.run_lock import run_lock\n"
                               f"with run_lock({str(tmp_path)!r}, 'x'): pass"], capture_output=True, text=True)
        assert proc.returncode != 0 and f"pid {os.getpid()}" in proc.stderr  # ... and the new holder is named


def test_same_process_other_directory_allowed_same_directory_refused(tmp_path):
    a, b = tmp_path / "a", tmp_path / "b" / "nested"
    with run_lock(a, "pipeline a"), run_lock(b, "pipeline b"):  # created if missing
        assert b.is_dir()
        assert json.loads(lock_path(b).read_text())["what"] == "pipeline b"
        with pytest.raises(ValueError, match=rf"{lock_path(a)}: .* in use by another run \(pid {os.getpid()}"), \
                run_lock(a, "again"):
            pass
    with run_lock(a, "later"):  # both released, the refused attempt took nothing
        pass


def test_without_fcntl_warns_and_runs_unlocked(tmp_path, monkeypatch):
    monkeypatch.setattr(run_lock_module, "fcntl", None)
    with pytest.warns(RunLockWarning, match="not locked against a second run"), run_lock(tmp_path, "x") as path:
        assert path == lock_path(tmp_path) and not path.exists()


class _FlockFails:
    """An fcntl stand-in whose flock fails with ``code`` (a file system without locking, or another error)."""

    def __init__(self, code: int) -> None:
        self.code, self.LOCK_EX, self.LOCK_NB, self.LOCK_UN = code, 2, 4, 8

    def flock(self, fd: int, op: int) -> None:
        raise OSError(self.code, os.strerror(self.code))


@pytest.mark.parametrize("code", sorted(run_lock_module.NO_LOCKING_ERRNOS))
def test_a_file_system_without_locking_warns_and_runs_unlocked(tmp_path, monkeypatch, code):
    monkeypatch.setattr(run_lock_module, "fcntl", _FlockFails(code))
    with pytest.warns(RunLockWarning, match=r"\.lock: the file system does not support locking"), \
            run_lock(tmp_path, "test") as path:
        assert path == lock_path(tmp_path)


def test_errors_of_an_unlocked_run_do_not_carry_the_flock_error(tmp_path, monkeypatch):
    import errno

    monkeypatch.setattr(run_lock_module, "fcntl", _FlockFails(errno.ENOLCK))
    with pytest.warns(RunLockWarning), pytest.raises(KeyError) as err:
        with run_lock(tmp_path, "test"):
            raise KeyError("the run's own error")
    assert err.value.__context__ is None  # no 'During handling of ... No locks available' in its traceback


def test_another_flock_error_names_the_lock_file(tmp_path, monkeypatch):
    import errno

    monkeypatch.setattr(run_lock_module, "fcntl", _FlockFails(errno.EIO))
    with pytest.raises(OSError, match=r"\.lock: cannot lock .*Input/output error"):
        with run_lock(tmp_path, "test"):
            pass


def test_checkpoint_temporary_file_is_per_process(tmp_path, monkeypatch):
    """Two processes saving one checkpoint must not share a temporary name (the first run of the review died
    renaming '<ckpt>.tmp' that the second had already renamed)."""
    import numpy as np
    import torch

    from crnet.machines import checkpoint as ckpt_module

    net = torch.nn.Linear(2, 1)
    opt = torch.optim.Adam(net.parameters())
    sched = torch.optim.lr_scheduler.ConstantLR(opt, factor=1.0, total_iters=0)
    path = tmp_path / "m.pt.ckpt"
    other = path.with_name(path.name + ".tmp")  # what another process (or the old code) left
    other.write_text("someone else's half-written file")
    saved: list[Path] = []
    real_save = torch.save
    monkeypatch.setattr(ckpt_module.torch, "save", lambda obj, f: (saved.append(Path(f)), real_save(obj, f))[1])
    identity = {"run": 1}
    ckpt_module.save_checkpoint(path, identity, net, opt, sched, np.random.default_rng(0), {"epoch": 1},
                                net.state_dict())
    assert saved == [tmp_path / f"m.pt.ckpt.{os.getpid()}.tmp"] and not saved[0].exists()
    assert other.read_text() == "someone else's half-written file"  # untouched
    assert ckpt_module.checkpoint_state(ckpt_module.read_checkpoint(path, identity)) == {"epoch": 1}

    def failing(obj, f):
        Path(f).write_text("half")
        raise OSError("disk full")

    monkeypatch.setattr(ckpt_module.torch, "save", failing)
    with pytest.raises(OSError, match="disk full"):
        ckpt_module.save_checkpoint(path, identity, net, opt, sched, np.random.default_rng(0), {"epoch": 2},
                                    net.state_dict())
    assert not saved[0].exists()  # its temporary file removed, the last good checkpoint kept
    assert ckpt_module.checkpoint_state(ckpt_module.read_checkpoint(path, identity)) == {"epoch": 1}
