"""examples/inversion_loop.py (the Python-API version of `crnet pipeline`) runs as documented, so it cannot rot."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest

EXAMPLE = Path(__file__).resolve().parents[1] / "examples" / "inversion_loop.py"


@pytest.mark.slow
def test_inversion_loop_example_runs_end_to_end(tmp_path: Path, capsys) -> None:
    spec = importlib.util.spec_from_file_location("inversion_loop", EXAMPLE)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    module.main(tmp_path / "run")
    out = capsys.readouterr().out
    assert "feedback rounds:" in out and "## Table 4" in out and "| Machine A (paper) |" in out
    chi2_min = float(out.split("chi2_min:")[1].split()[0])
    # the report's chi2_min is the least chi2_tot of every simulated model: scan, feedback and closure re-simulations
    import numpy as np

    from crnet.store import MockStore

    stores = [tmp_path / "run" / "scan.h5", *sorted((tmp_path / "run").rglob("resim.h5"))]
    assert len(stores) >= 3
    least = []
    for path in stores:
        with MockStore.open(path, "r") as st:
            c = st.read("chi2")
            least.append(float(np.min(c[np.isfinite(c)])))
    assert chi2_min == pytest.approx(min(least), rel=1e-12) and chi2_min <= least[0]
    for name in ("scan.h5", "machine_a.pt", "test_pseudo.h5", "feedback_pseudo.h5", "eval/report.md",
                 "eval/report.json"):
        assert (tmp_path / "run" / name).is_file(), name
