"""A finished pipeline stage records the code that made it; a re-run on other code warns and keeps the result."""

from __future__ import annotations

import json
import warnings
from pathlib import Path

import pytest

from crnet import __version__
from crnet.pipeline_config import load_config
from crnet.pipeline_stages import StageCodeChangedWarning, _Stages, code_difference, stage_code

CI = Path(__file__).resolve().parents[1] / "configs" / "pipeline_ci.toml"
OLD = {"crnet": "0.0.1", "git_commit": "a" * 40}
NEW = {"crnet": "0.0.1", "git_commit": "b" * 40}


def _stages(out: Path, code: dict) -> _Stages:
    return _Stages(out, load_config(CI, str(out)), code=code)


def test_a_finished_marker_records_the_running_code(tmp_path):
    st = _stages(tmp_path, OLD)
    assert st.run("test_pseudodata", lambda resume: "test_pseudo.h5") == "test_pseudo.h5"
    marker = json.loads((tmp_path / "stages/test_pseudodata.json").read_text())
    assert marker["code"] == OLD
    assert stage_code()["crnet"] == __version__ and set(stage_code()) == {"crnet", "git_commit"}


def test_other_code_warns_once_and_keeps_the_result(tmp_path):
    _stages(tmp_path, OLD).run("test_pseudodata", lambda resume: "test_pseudo.h5")
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # the same code: no warning
        assert _stages(tmp_path, OLD).run("test_pseudodata", lambda resume: pytest.fail("re-ran")) == "test_pseudo.h5"
    st = _stages(tmp_path, NEW)
    with pytest.warns(StageCodeChangedWarning) as record:
        st.check("test_pseudodata")
        assert st.run("test_pseudodata", lambda resume: pytest.fail("re-ran")) == "test_pseudo.h5"
    assert len(record) == 1  # once per stage and run, though checked twice
    marker = tmp_path / "stages/test_pseudodata.json"
    assert str(record[0].message) == (
        f"{marker}: stage 'test_pseudodata' was finished by other code (crnet 0.0.1 (commit aaaaaaaaaaaa) -> crnet "
        "0.0.1 (commit bbbbbbbbbbbb)); its result is kept, as its settings are unchanged. Delete this marker and "
        "those of the later stages to redo them with this code")
    assert json.loads(marker.read_text())["code"] == OLD  # the kept result still names the code that made it


@pytest.mark.parametrize(("recorded", "current", "expected"), [
    (None, NEW, None),  # a marker from before code was recorded: nothing to compare
    (OLD, {**OLD}, None),
    ({"crnet": "0.0.1", "git_commit": None}, NEW, None),  # not a git checkout then: the versions agree
    ({"crnet": "0.0.1", "git_commit": None}, {"crnet": "0.0.2", "git_commit": None}, "crnet 0.0.1 -> crnet 0.0.2"),
    (OLD, {"crnet": "0.0.2", "git_commit": None}, "crnet 0.0.1 (commit aaaaaaaaaaaa) -> crnet 0.0.2"),
])
def test_code_difference(recorded, current, expected):
    assert code_difference(recorded, current) == expected
