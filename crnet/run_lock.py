"""One run per output directory: an exclusive lock on ``<directory>/.lock`` held for the whole run.

Two ``crnet pipeline`` runs on one output directory would write the same stage markers, checkpoints and stores at
the same time (review by helper-51, session 17: the second run's training replaced the first one's checkpoint
while it was being written). :func:`run_lock` takes an exclusive, non-blocking ``fcntl.flock`` on
``<directory>/.lock`` and refuses, naming the lock file and the holder's process id, when another run holds it.

- The lock belongs to the open file, not to the file's existence: it is released when the ``with`` block ends and
  by the operating system when the process ends in any way (SIGKILL, power loss of a local disk's host), so a
  killed run leaves no stale lock behind. The file itself stays (removing it would let a third run lock a new
  file while a second one still holds the old one); what it holds (pid, start time, what runs) is only
  informational, for the refusal message.
- Locks on different directories are independent, in one process or several. The same directory locked twice
  in one process is refused like a second process (each :func:`run_lock` opens the file anew, and Linux's flock
  locks of two open files conflict): a run must not be started inside itself.
- A process forked while holding the lock (``multiprocessing`` with fork) shares it until it exits; processes
  started with exec do not inherit it (Python opens files non-inheritable).
- On a platform without :mod:`fcntl` (Windows), or a file system without locking (:data:`NO_LOCKING_ERRNOS`),
  nothing is locked: :func:`run_lock` warns once per call
  (:class:`RunLockWarning`) and the run goes on unprotected. The project runs on Linux (macOS has fcntl too);
  refusing there would make the pipeline unusable for a protection the user can give by hand (one run per
  directory). On network file systems flock is as reliable as the file system's locking (Linux NFS emulates it
  with byte-range locks).

:func:`file_lock` is the same lock for one file (a mock store), on the sidecar ``<file>.lock`` beside it.
"""

from __future__ import annotations

import contextlib
import errno
import json
import os
import time
import warnings
from collections.abc import Callable, Iterator
from pathlib import Path

from crnet.paths import make_output_dir

try:
    import fcntl
except ImportError:  # Windows
    fcntl = None  # type: ignore[assignment]

LOCK_NAME = ".lock"

NO_LOCKING_ERRNOS: frozenset[int] = frozenset({errno.ENOLCK, errno.ENOSYS, errno.EOPNOTSUPP, errno.EINVAL})
"""flock errors of a file system without locking (Lustre mounted noflock, some NFS setups): the run goes on
unlocked with a :class:`RunLockWarning`, as where fcntl is missing, rather than not at all."""


class RunLockWarning(UserWarning):
    """The output directory could not be locked (no fcntl on this platform)."""


def lock_path(directory: Path | str) -> Path:
    """The lock file of ``directory``: ``<directory>/.lock``."""
    return Path(directory) / LOCK_NAME


def _holder(fd: int) -> str:
    """'pid N, started T' from the lock file, for the refusal message ('pid unknown' while the holder is still
    writing it, or for a file this module did not write)."""
    try:
        info = json.loads(os.pread(fd, 4096, 0).decode())
        return f"pid {int(info['pid'])}, started {info['started']}, {info['what']}"
    except (OSError, UnicodeDecodeError, ValueError, KeyError, TypeError):
        return "pid unknown"


@contextlib.contextmanager
def run_lock(directory: Path | str, what: str) -> Iterator[Path]:
    """Hold an exclusive lock on ``directory`` (created if missing) for the ``with`` block; yields the lock file.

    ``what`` says what runs ("crnet pipeline"); it is written into the lock file with the process id and start
    time. ValueError naming the lock file and the holder's pid when another run (another process, or this
    process on the same directory) holds the lock. See the module docstring for what is released when."""
    directory = make_output_dir(directory, f"{what}: output directory")
    path = lock_path(directory)
    with _exclusive(path, what, f"{directory} is not locked against a second run; start only one run per output "
                    "directory", lambda holder: f"{path}: {directory} is in use by another run ({holder}); wait for "
                    "it to end or use another output directory (the lock goes when that process ends)"):
        yield path


def file_lock_path(target: Path | str) -> Path:
    """The sidecar lock file of the file ``target``: ``<target>.lock`` beside it."""
    target = Path(target)
    return target.with_name(target.name + ".lock")


@contextlib.contextmanager
def file_lock(target: Path | str, what: str, busy: str | None = None,
              error: type[ValueError] = ValueError) -> Iterator[Path]:
    """Hold an exclusive lock on the file ``target`` (which need not exist) for the ``with`` block, through its
    sidecar :func:`file_lock_path` (``<target>.lock``); yields the lock file. The same rules as :func:`run_lock`
    (released when the process ends; the same file twice in one process is refused; warned and unlocked where
    the platform or file system cannot lock). Used by ``crnet scan`` (:func:`crnet.scan.runner.run_scan`,
    :func:`crnet.scan.distributed.run_distributed`) on its store: HDF5's own file lock does not stop a second
    ``--overwrite`` (a new file renamed over the path) and is off where HDF5_USE_FILE_LOCKING=FALSE.

    ``busy`` : the refusal's text after '<target>: ' (default: in use by another run, wait for it to end); the
    holder (pid, start, what) and the lock file follow in parentheses; ``error`` : its class (a ValueError).
    A directory that does not exist (nothing can be written there) or cannot take the lock file (read-only) is
    not locked: the caller's own write fails, or the run goes on with a :class:`RunLockWarning`."""
    target = Path(target)
    path = file_lock_path(target)
    if not target.parent.is_dir():
        yield path
        return
    text = busy or "in use by another run; wait for it to end (the lock goes when that process ends)"
    with _exclusive(path, what, f"{target} is not locked against a second writer; start only one run on it",
                    lambda holder: f"{target}: {text} ({holder}; lock file {path})", unwritable_ok=True, error=error):
        yield path


@contextlib.contextmanager
def _exclusive(path: Path, what: str, unprotected: str, refusal: Callable[[str], str],
               unwritable_ok: bool = False, error: type[ValueError] = ValueError) -> Iterator[None]:
    """The flock of :func:`run_lock` and :func:`file_lock` on the lock file ``path``: error(refusal(holder))
    when held elsewhere; ``unprotected`` ends the warning where nothing can be locked."""
    if fcntl is None:
        warnings.warn(f"{path}: no fcntl on this platform, so {unprotected}", RunLockWarning, stacklevel=5)
        yield
        return
    writable = True
    try:
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    except OSError as exc:
        if not (unwritable_ok and exc.errno in (errno.EACCES, errno.EPERM, errno.EROFS)):
            raise
        try:  # another user's lock file in a shared directory: flock needs no write access (re-read by
            fd, writable = os.open(path, os.O_RDONLY), False  # helper-121, session 23: the run went on unlocked)
        except OSError:
            warnings.warn(f"{path}: cannot open or create the lock file ({exc.strerror}), so {unprotected}",
                          RunLockWarning, stacklevel=5)
            yield
            return
    try:
        unsupported = None
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise error(refusal(_holder(fd))) from None
        except OSError as exc:
            # NFS emulates flock with byte-range locks, which refuse an exclusive lock on a file opened read-only
            # (EBADF): that is a lock this run cannot take, as on a file system without locking (helper-123)
            if exc.errno not in NO_LOCKING_ERRNOS and not (not writable and exc.errno == errno.EBADF):
                raise OSError(exc.errno, f"{path}: cannot lock ({exc.strerror})") from None
            unsupported = exc.strerror
        if unsupported is not None:  # outside the except: the run's own errors must not carry the flock error
            warnings.warn(f"{path}: the file system does not support locking ({unsupported}), so {unprotected}",
                          RunLockWarning, stacklevel=5)
            yield
            return
        if writable:  # the holder's entry, for a refused second run's message
            info = {"pid": os.getpid(), "started": time.strftime("%Y-%m-%dT%H:%M:%S%z"), "what": what}
            os.ftruncate(fd, 0)
            os.pwrite(fd, json.dumps(info).encode(), 0)
        try:
            yield
        finally:
            if writable:
                os.ftruncate(fd, 0)  # still held: no other run has written its own entry yet
            fcntl.flock(fd, fcntl.LOCK_UN)
    finally:
        os.close(fd)
