"""The wall time of a pipeline stage across the runs it took: a killed run's time is kept in the stage's started
marker, which a background thread rewrites every :data:`HEARTBEAT_S` seconds while the stage runs.

The GPU machines run a command for at most 10 minutes, so a paper-scale stage (a scan of ~1 h) is finished by several
runs, each killed by ``timeout`` and resumed by the next (``benchmarks/gpu_session.sh pipe``). SIGTERM and SIGKILL run
no Python ``finally``; the heartbeat is what tells the next run how long the killed one worked. Until session 20 a
resumed stage's time counted only the run that finished it (a scan of ~35 s read 17.7 s in the session-19
walk-through)."""

from __future__ import annotations

import threading
import time
import warnings
from collections.abc import Callable
from typing import Any

HEARTBEAT_S = 10.0
"""Seconds between rewrites of the started marker's ``elapsed_s``: a killed run's time is known to within this
(undercounted by at most HEARTBEAT_S per kill). A rewrite is one file of a few kB, nothing against stages of
minutes."""


class StageClock:
    """Times one run of a stage and keeps the started marker's ``elapsed_s`` current while it runs.

    ``write(marker_content)`` writes the started marker (atomically); ``content`` is the rest of the marker (stage,
    settings, ``killed_runs_s`` of earlier runs). Use as a context manager around the stage's work: on entry the
    marker is written with ``elapsed_s`` 0 and then every ``heartbeat_s`` seconds (default :data:`HEARTBEAT_S`)
    with the time so far. When an exception (Ctrl-C included) leaves the block, the marker gets this run's exact
    final time, so an error that leaves the stage unfinished counts like a kill; a normal exit writes nothing more
    (the caller writes the finished marker and removes this one).

    A failed rewrite (a full disk) stops the heartbeat; the warning about it is given in the caller's thread when
    the block is left, never from the heartbeat's thread (whose warnings filters and recorders are the process's),
    and never in place of the stage's own exception."""

    def __init__(self, write: Callable[[dict[str, Any]], None], content: dict[str, Any],
                 heartbeat_s: float | None = None) -> None:
        heartbeat_s = HEARTBEAT_S if heartbeat_s is None else heartbeat_s
        if not heartbeat_s > 0:
            raise ValueError(f"heartbeat_s must be > 0 s, got {heartbeat_s}")
        self._write = write
        self._content = content
        self._heartbeat_s = heartbeat_s
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._t0 = 0.0
        self._failed: OSError | None = None
        self.elapsed_s = 0.0
        """Seconds this run has worked on the stage (final once the context is left)."""

    def _beat(self, elapsed_s: float | None = None) -> None:
        try:
            elapsed_s = time.perf_counter() - self._t0 if elapsed_s is None else elapsed_s
            self._write({**self._content, "elapsed_s": elapsed_s})
        except OSError as exc:  # a full disk must not stop the stage; its time is then known less well
            self._failed = self._failed or exc
            self._stop.set()

    def _loop(self) -> None:
        while not self._stop.wait(self._heartbeat_s):
            self._beat()

    def __enter__(self) -> StageClock:
        self._t0 = time.perf_counter()
        self._write({**self._content, "elapsed_s": 0.0})
        self._thread = threading.Thread(target=self._loop, name="crnet-stage-heartbeat", daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
        self.elapsed_s = time.perf_counter() - self._t0
        if exc[0] is not None:  # the stage stays unfinished: the next run reads this run's time from the marker
            self._beat(self.elapsed_s)
        if self._failed is not None:
            with warnings.catch_warnings():
                if exc[0] is not None:  # the stage's own exception goes on unchanged, whatever the filters say
                    warnings.simplefilter("always")
                warnings.warn(f"the stage's started marker could not be updated ({self._failed}); its time since the "
                              "last update is not counted if this run is killed", RuntimeWarning, stacklevel=2)


def _times(values: list[Any]) -> list[float | None]:
    return [float(t) if isinstance(t, (int, float)) else None for t in values]


def killed_runs(started: dict[str, Any]) -> list[float | None]:
    """The times (s) of the runs a started marker says were killed (or failed) before finishing the stage: its
    ``killed_runs_s`` plus its own ``elapsed_s`` (as its last heartbeat, or a failed run's exit, left it). None
    stands for time that is unknown: a marker written before session 20 holds neither, and counts as one such entry
    (the code then rewrote the marker on every run, so it may stand for several)."""
    earlier = started.get("killed_runs_s")
    if not isinstance(earlier, list):
        return [None]
    return _times(earlier) + _times([started.get("elapsed_s")])


def recorded_killed_runs(finished: dict[str, Any]) -> list[float | None]:
    """The killed runs' times a finished marker recorded (:func:`killed_runs` of its started marker); [None] for a
    resumed stage's marker written before session 20, [] for one that was not resumed."""
    recorded = finished.get("killed_runs_s")
    if isinstance(recorded, list):
        return _times(recorded)
    return [None] if finished.get("resumed") else []
