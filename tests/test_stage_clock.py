"""A pipeline stage's wall time counts the runs killed before it finished (crnet.stage_clock): the started marker's
heartbeat keeps each run's time, SIGKILL included. Until session 20 a resumed stage's time counted only the run that
finished it."""

from __future__ import annotations

import json
import select
import signal
import subprocess
import sys
import textwrap
import time
import warnings
from collections.abc import Callable
from pathlib import Path

import pytest

from crnet.commands.pipeline import killed_run_lines
from crnet.pipeline_config import load_config
from crnet.pipeline_stages import _Stages
from crnet.stage_clock import StageClock, killed_runs, recorded_killed_runs

CI = Path(__file__).resolve().parents[1] / "configs" / "pipeline_ci.toml"
CODE = {"crnet": "0.0.1", "source_sha256": "1" * 64, "git_commit": None}
HEARTBEAT_S = 0.05
"""The heartbeat of these tests (the default is 10 s)."""
KILL_AFTER_S = 1.0
STARTUP_LIMIT_S = 120.0
"""How long the subprocess may take to import crnet and begin the stage (~1.5 s idle) before the test fails."""
TIMING_SLACK_S = 0.5
"""How far a killed run's recorded time may be below the time it ran: the heartbeat (0.05 s) plus the scheduling of
a loaded 2-core CI machine, where a thread may wait long for the GIL and the CPU."""

KILLED_RUN = textwrap.dedent("""
    import sys, time
    from pathlib import Path
    import crnet.stage_clock
    crnet.stage_clock.HEARTBEAT_S = float(sys.argv[3])
    from crnet.pipeline_config import load_config
    from crnet.pipeline_stages import _Stages

    out = Path(sys.argv[2])
    st = _Stages(out, load_config(sys.argv[1], str(out)), code={"crnet": "0.0.1", "source_sha256": "1" * 64,
                                                              "git_commit": None})

    def work(resume):
        print("resume" if resume else "fresh", flush=True)
        time.sleep(600)

    st.run("test_pseudodata", work)
""")


def _killed_run(out: Path) -> tuple[str, float]:
    """Start the stage in a subprocess, SIGKILL it KILL_AFTER_S after its work began; (how it began, seconds it
    worked before the kill as seen from here)."""
    proc = subprocess.Popen([sys.executable, "-c", KILLED_RUN, str(CI), str(out), str(HEARTBEAT_S)],
                            stdout=subprocess.PIPE, text=True)
    try:
        ready, _, _ = select.select([proc.stdout], [], [], STARTUP_LIMIT_S)
        assert ready, f"the stage did not start within {STARTUP_LIMIT_S} s"
        began = proc.stdout.readline().strip()
        t0 = time.perf_counter()
        time.sleep(KILL_AFTER_S)
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=30)
        return began, time.perf_counter() - t0
    finally:
        proc.kill()
        proc.stdout.close()


def _started(out: Path) -> dict:
    return json.loads((out / "stages/test_pseudodata.started.json").read_text())


def test_two_killed_runs_count_in_the_finished_stage(tmp_path):
    began, worked = _killed_run(tmp_path)
    assert began == "fresh"
    first = _started(tmp_path)
    assert first["killed_runs_s"] == []
    assert worked - TIMING_SLACK_S <= first["elapsed_s"] <= worked + HEARTBEAT_S
    began, worked = _killed_run(tmp_path)
    assert began == "resume"  # the checkpoints of the killed run are the stage's own
    second = _started(tmp_path)
    assert second["killed_runs_s"] == [first["elapsed_s"]]
    assert worked - TIMING_SLACK_S <= second["elapsed_s"] <= worked + HEARTBEAT_S

    st = _Stages(tmp_path, load_config(CI, str(tmp_path)), code=CODE)
    assert st.run("test_pseudodata", lambda resume: (time.sleep(0.2), "test_pseudo.h5")[1]) == "test_pseudo.h5"
    marker = json.loads((tmp_path / "stages/test_pseudodata.json").read_text())
    killed = [first["elapsed_s"], second["elapsed_s"]]
    assert marker["killed_runs_s"] == killed and marker["resumed"] is True
    assert 0.2 <= marker["this_run_s"] < 0.2 + TIMING_SLACK_S
    assert marker["wall_s"] == pytest.approx(sum(killed) + marker["this_run_s"], rel=1e-12)
    assert marker["wall_s"] >= 2 * (KILL_AFTER_S - TIMING_SLACK_S) + 0.2
    assert st.timings == {"test_pseudodata": marker["wall_s"]} and st.killed_runs == {"test_pseudodata": killed}
    assert not (tmp_path / "stages/test_pseudodata.started.json").exists()

    again = _Stages(tmp_path, load_config(CI, str(tmp_path)), code=CODE)  # a later run reads the same from the marker
    again.run("test_pseudodata", lambda resume: pytest.fail("re-ran"))
    assert again.timings == st.timings and again.killed_runs == st.killed_runs
    (line,) = killed_run_lines(again.killed_runs)
    assert line.startswith(f"timings_s of test_pseudodata includes 2 earlier run(s) killed or failed "
                           f"({sum(killed):.1f} s; ")


def test_a_stage_that_raises_leaves_its_time_to_the_next_run(tmp_path):
    st = _Stages(tmp_path, load_config(CI, str(tmp_path)), code=CODE)

    def fails(resume: bool) -> None:
        time.sleep(0.3)
        raise RuntimeError("out of memory")

    with pytest.raises(RuntimeError, match="out of memory"):
        st.run("test_pseudodata", fails)
    started = _started(tmp_path)
    assert 0.3 <= started["elapsed_s"] < 0.3 + TIMING_SLACK_S  # the final time, not the last heartbeat's (0 here)
    st = _Stages(tmp_path, load_config(CI, str(tmp_path)), code=CODE)
    st.run("test_pseudodata", lambda resume: "test_pseudo.h5")
    assert st.killed_runs == {"test_pseudodata": [started["elapsed_s"]]}
    assert st.timings["test_pseudodata"] >= started["elapsed_s"]


def test_the_heartbeat_rewrites_the_marker_while_the_stage_runs(tmp_path):
    written: list[dict] = []
    with StageClock(written.append, {"stage": "scan", "killed_runs_s": [3.0]}, heartbeat_s=HEARTBEAT_S) as clock:
        time.sleep(0.5)
    times = [w["elapsed_s"] for w in written]
    assert times[0] == 0.0 and len(times) >= 3 and times == sorted(times)
    assert all(w["stage"] == "scan" and w["killed_runs_s"] == [3.0] for w in written)
    assert 0.5 <= clock.elapsed_s < 0.5 + TIMING_SLACK_S
    assert times[-1] <= clock.elapsed_s  # a normal exit leaves the marker to be removed: no final write
    with pytest.raises(ValueError, match="heartbeat_s must be > 0 s, got 0"):
        StageClock(written.append, {}, heartbeat_s=0)


def _full_disk_after_first_write(calls: list) -> Callable[[dict], None]:
    def write(content: dict) -> None:
        calls.append(content)
        if len(calls) > 1:
            raise OSError(28, "No space left on device")

    return write


def test_a_failing_heartbeat_warns_in_the_callers_thread_and_the_stage_goes_on():
    calls: list = []
    with pytest.warns(RuntimeWarning, match="No space left on device") as record:
        with StageClock(_full_disk_after_first_write(calls), {}, heartbeat_s=HEARTBEAT_S):
            time.sleep(0.3)
    assert len(calls) == 2  # the heartbeat stopped after the failed write
    assert len(record) == 1 and record[0].filename == __file__  # warned when the block was left, not from the thread


def test_a_failing_heartbeat_never_replaces_the_stages_own_error():
    calls: list = []
    with pytest.warns(RuntimeWarning, match="No space left on device"):
        warnings.simplefilter("error")  # -W error: the warning must not become the exception that leaves the stage
        with pytest.raises(KeyError, match="the stage's own"):
            with StageClock(_full_disk_after_first_write(calls), {}, heartbeat_s=HEARTBEAT_S):
                time.sleep(0.3)
                raise KeyError("the stage's own")
    assert len(calls) == 3  # entry, the failed heartbeat, and the failed final write at the exception


def test_markers_of_earlier_code_count_as_runs_of_unknown_time():
    assert killed_runs({"stage": "scan", "settings": {}}) == [None]  # started before session 20
    assert killed_runs({"killed_runs_s": [12.5], "elapsed_s": 3}) == [12.5, 3.0]
    assert recorded_killed_runs({"wall_s": 4.0, "resumed": True}) == [None]
    assert recorded_killed_runs({"wall_s": 4.0, "resumed": False}) == []
    assert recorded_killed_runs({"wall_s": 4.0, "resumed": True, "killed_runs_s": [1.0, None]}) == [1.0, None]
    assert killed_run_lines({"scan": [None]}) == [
        "timings_s of scan leaves out at least 1 earlier run of unknown time (killed under code before session 20)"]
    assert killed_run_lines({"scan": [2.04, None]}) == [
        "timings_s of scan includes 1 earlier run(s) killed or failed (2.0 s; a kill loses at most 10 s of its "
        "count) and leaves out at least 1 earlier run of unknown time (killed under code before session 20)"]
    assert killed_run_lines({"scan": []}) == []
