"""benchmarks/common.py: the timing, memory and provenance helpers every benchmark script shares."""

from __future__ import annotations

import importlib.util
import json
import os
import sys
import types
from pathlib import Path

import numpy as np
import pytest

_PATH = Path(__file__).resolve().parents[1] / "benchmarks" / "common.py"
_spec = importlib.util.spec_from_file_location("benchmarks_common_under_test", _PATH)
common = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(common)


def test_repeat_timings_calls_run_repeats_times_and_returns_the_last_result() -> None:
    calls = []
    result, walls = common.repeat_timings(lambda: calls.append(len(calls)) or len(calls), 3)
    assert calls == [0, 1, 2] and result == 3
    assert len(walls) == 3 and all(w >= 0.0 for w in walls)
    with pytest.raises(ValueError, match="repeats"):
        common.repeat_timings(lambda: None, 0)


def test_wall_stats_median_range_and_count() -> None:
    assert common.wall_stats([3.0, 1.0, 2.0, 10.0]) == {"wall_s": 2.5, "wall_min_s": 1.0, "wall_max_s": 10.0,
                                                        "repeats": 4}
    assert common.wall_stats([0.5])["wall_s"] == 0.5
    with pytest.raises(ValueError):
        common.wall_stats([])


def test_device_pool_mib_is_none_without_cupy(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delitem(sys.modules, "cupy", raising=False)
    assert common.device_pool_mib() is None
    assert "cupy" not in sys.modules  # never imports CuPy itself


def test_device_pool_mib_reads_the_default_pool_total(monkeypatch: pytest.MonkeyPatch) -> None:
    pool = types.SimpleNamespace(total_bytes=lambda: 3 << 20, used_bytes=lambda: 1 << 20)
    monkeypatch.setitem(sys.modules, "cupy", types.SimpleNamespace(get_default_memory_pool=lambda: pool))
    assert common.device_pool_mib() == 3.0


def test_peak_rss_sees_the_blocks_own_allocation() -> None:
    with common.PeakRSS() as mem:
        a = np.ones(64 << 17)  # 64 MiB, touched
        del a
    assert mem.peak_mib >= mem.increase_mib >= 0.0
    if mem.exact:  # Linux: the high-water mark is reset at entry
        assert mem.increase_mib > 32.0


def test_save_results_writes_the_machine_once_into_out_dir(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    common.save_results("probe", "| a |\n|---|\n| 1 |", {"rows": [1]}, out_dir=tmp_path / "sub")
    md = (tmp_path / "sub" / "probe.md").read_text()
    payload = json.loads((tmp_path / "sub" / "probe.json").read_text())
    assert md.startswith("| a |") and md.count("Measured with") == 1 and "cores" in md
    assert payload["rows"] == [1] and payload["provenance"]["cores"] >= 1 and "machine" not in payload
    assert "Measured with" in capsys.readouterr().out


def test_save_results_echo_off_writes_without_printing(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    """scan_speed rewrites its results after every row (echo=False) and prints the table once, at the end."""
    text = common.save_results("probe", "| b |\n|---|\n| 2 |", {"rows": [2]}, out_dir=tmp_path, echo=False)
    assert capsys.readouterr().out == ""
    assert (tmp_path / "probe.md").read_text() == text
    assert text.startswith("| b |") and text.count("Measured with") == 1
    assert json.loads((tmp_path / "probe.json").read_text())["rows"] == [2]


def test_peak_rss_scope_says_whether_the_peak_was_reset(monkeypatch: pytest.MonkeyPatch) -> None:
    """Without a writable /proc/self/clear_refs the peak is the process's lifetime maximum: tables must say so
    instead of "reset per row" (review by helper-102, session 22)."""
    real_write = Path.write_text

    def refuse_clear_refs(self, *args, **kwargs):
        if str(self) == "/proc/self/clear_refs":
            raise PermissionError("read-only /proc")
        return real_write(self, *args, **kwargs)

    monkeypatch.setattr(type(Path("/")), "write_text", refuse_clear_refs)
    with common.PeakRSS() as mem:
        pass
    assert mem.exact is False and mem.peak_mib > 0.0
    row = {"peak_rss_mib": mem.peak_mib, "peak_rss_exact": mem.exact}
    assert common.peak_rss_scope([row]) == common.PEAK_RSS_LIFETIME
    assert common.peak_rss_scope([{"peak_rss_mib": 1.0, "peak_rss_exact": True}] * 2) == common.PEAK_RSS_RESET
    mixed = common.peak_rss_scope([row, {"peak_rss_mib": 1.0, "peak_rss_exact": True}])
    assert mixed.startswith(common.PEAK_RSS_LIFETIME) and "1 of 2 rows" in mixed
    assert common.peak_rss_scope([{"peak_rss_mib": 1.0}]) == common.PEAK_RSS_LIFETIME  # unknown: not claimed reset
    assert common.peak_rss_scope([{"error": "out of memory"}]) == common.PEAK_RSS_RESET  # no memory column to qualify


def test_converged_cell_names_galprop_modes_fixed_ladder() -> None:
    assert common.converged_cell("galprop", 3, 3) == common.FIXED_LADDER == "fixed ladder, not converged"
    assert common.converged_cell("galprop", 0, 3) == common.FIXED_LADDER
    assert common.converged_cell("fast", 0, 8) == "yes"
    assert common.converged_cell("fast", 2, 8) == "no (2 of 8)"


def test_machine_records_the_load_average(tmp_path: Path) -> None:
    info = common.machine()
    assert "loadavg" in info
    if hasattr(os, "getloadavg"):
        assert len(info["loadavg"]) == 3 and all(x >= 0.0 for x in info["loadavg"])
    text = common.save_results("probe", "| c |", {}, out_dir=tmp_path, echo=False)
    assert ("load average" in text) == bool(info["loadavg"])
