"""A finished CI-scale pipeline run for the tests of its resume and refusal rules (configs/pipeline_ci.toml with the
measured-data stage off; numba, ~20 s)."""

from __future__ import annotations

from pathlib import Path

from crnet.pipeline import run_pipeline
from crnet.pipeline_config import load_config

CI = Path(__file__).resolve().parents[1] / "configs" / "pipeline_ci.toml"


def ci_text() -> str:
    """configs/pipeline_ci.toml with [measured] off."""
    text = CI.read_text().replace("[measured]\nenabled = true", "[measured]\nenabled = false")
    assert "[measured]\nenabled = false" in text
    return text


def run_ci(config: Path, out: Path) -> dict:
    """crnet pipeline ``config`` into ``out``, numba's thread count restored after it ([run] threads = 1 would hold
    for the later tests)."""
    import numba

    before = numba.get_num_threads()
    try:
        return run_pipeline(load_config(config, str(out)))
    finally:
        numba.set_num_threads(before)


def finished_run(root: Path) -> tuple[Path, Path]:
    """(config, output directory) of a finished CI run made in ``root``; copy the directory before changing it."""
    config = root / "ci.toml"
    config.write_text(ci_text())
    run_ci(config, root / "run")
    return config, root / "run"
