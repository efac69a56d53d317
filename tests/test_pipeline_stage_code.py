"""A finished pipeline stage records the code that made it (a digest of the package sources); a re-run on other
sources warns and keeps the result."""

from __future__ import annotations

import json
import os
import warnings
from pathlib import Path

import pytest

from crnet import __version__
from crnet.pipeline_config import load_config
from crnet.pipeline_stages import StageCodeChangedWarning, _Stages, code_difference, stage_code
from crnet.provenance import source_sha256

CI = Path(__file__).resolve().parents[1] / "configs" / "pipeline_ci.toml"
OLD = {"crnet": "0.0.1", "source_sha256": "1" * 64, "git_commit": "a" * 40}
NEW = {"crnet": "0.0.1", "source_sha256": "2" * 64, "git_commit": "b" * 40}


def _stages(out: Path, code: dict) -> _Stages:
    return _Stages(out, load_config(CI, str(out)), code=code)


def test_a_finished_marker_records_the_running_code(tmp_path):
    st = _stages(tmp_path, OLD)
    assert st.run("test_pseudodata", lambda resume: "test_pseudo.h5") == "test_pseudo.h5"
    marker = json.loads((tmp_path / "stages/test_pseudodata.json").read_text())
    assert marker["code"] == OLD
    code = stage_code()
    assert code["crnet"] == __version__ and set(code) == {"crnet", "source_sha256", "git_commit"}
    assert code["source_sha256"] == source_sha256() and len(code["source_sha256"]) == 64


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
        f"{marker}: stage 'test_pseudodata' was finished by other code (crnet 0.0.1 (commit aaaaaaaaaaaa, sources "
        "111111111111) -> crnet 0.0.1 (commit bbbbbbbbbbbb, sources 222222222222)); its result is kept, as its "
        "settings are unchanged. Delete this marker and those of the later stages to redo them with this code")
    assert json.loads(marker.read_text())["code"] == OLD  # the kept result still names the code that made it


@pytest.mark.parametrize(("recorded", "current", "expected"), [
    (None, NEW, None),  # a marker from before code was recorded: nothing to compare
    ({"crnet": "0.0.1", "git_commit": "a" * 40}, NEW, None),  # recorded before the sources were digested
    (OLD, {**OLD}, None),
    ({**OLD, "git_commit": "c" * 40}, OLD, None),  # another commit, the same package files (tests or docs changed)
    ({**OLD, "git_commit": None}, NEW, "crnet 0.0.1 (sources 111111111111) -> crnet 0.0.1 (commit bbbbbbbbbbbb, "
                                       "sources 222222222222)"),  # not a checkout then: the sources still decide
])
def test_code_difference(recorded, current, expected):
    assert code_difference(recorded, current) == expected


def test_the_source_digest_follows_the_package_files(tmp_path, monkeypatch):
    """source_sha256 reads the files of crnet and crprop under PACKAGE_ROOT: an edited, added or renamed file
    changes it, a compiled cache does not."""
    import crnet.provenance as provenance

    for name in provenance.SOURCE_PACKAGES:
        (tmp_path / name / "__pycache__").mkdir(parents=True)
        (tmp_path / name / "__init__.py").write_text("x = 1\n")
    monkeypatch.setattr(provenance, "PACKAGE_ROOT", tmp_path)
    first = provenance.source_sha256()
    (tmp_path / "crnet" / "__pycache__" / "__init__.cpython-311.pyc").write_bytes(b"cache")
    (tmp_path / "crnet" / ".__init__.py.swp").write_bytes(b"editor")  # hidden files: swap files, .DS_Store
    (tmp_path / "crprop" / ".ipynb_checkpoints").mkdir()
    (tmp_path / "crprop" / ".ipynb_checkpoints" / "x.py").write_text("y = 0\n")
    assert provenance.source_sha256() == first
    (tmp_path / "crprop" / "__init__.py").write_text("x = 2\n")
    edited = provenance.source_sha256()
    assert edited != first
    (tmp_path / "crprop" / "__init__.py").rename(tmp_path / "crprop" / "other.py")
    assert provenance.source_sha256() not in (first, edited)


def test_a_commit_of_another_repository_is_not_crnets(tmp_path, monkeypatch):
    """crnet installed into a virtual environment inside the user's own git repository: git finds that repository
    upward, whose HEAD is not crnet's commit (review, helper-68)."""
    import subprocess

    import crnet.provenance as provenance

    if subprocess.run(["git", "--version"], capture_output=True).returncode != 0:
        pytest.skip("git is not installed")
    # without the caller's GIT_* variables (a git hook sets GIT_DIR: the commit would land in that repository)
    env = {**{k: v for k, v in os.environ.items() if not k.startswith("GIT_")}, "GIT_AUTHOR_NAME": "t",
           "GIT_AUTHOR_EMAIL": "t@t", "GIT_COMMITTER_NAME": "t", "GIT_COMMITTER_EMAIL": "t@t"}
    subprocess.run(["git", "init", "-q", str(tmp_path)], check=True, env=env)
    subprocess.run(["git", "-C", str(tmp_path), "commit", "-q", "--allow-empty", "-m", "x"], check=True, env=env)
    site = tmp_path / ".venv" / "site"
    site.mkdir(parents=True)
    monkeypatch.setattr(provenance, "PACKAGE_ROOT", site)
    assert provenance.git_commit() is None
    assert provenance.code_version()["git_commit"] is None
    monkeypatch.setattr(provenance, "PACKAGE_ROOT", tmp_path.resolve())  # the repository's own root: its HEAD
    assert provenance.git_commit() is not None and len(provenance.git_commit()) == 40
    # a GIT_DIR of another repository in the environment (a hook) does not redirect it
    monkeypatch.setenv("GIT_DIR", str(Path(__file__).resolve().parents[1] / ".git"))
    monkeypatch.setattr(provenance, "PACKAGE_ROOT", site)
    assert provenance.git_commit() is None


def test_a_checkout_path_with_spaces_keeps_its_commit(tmp_path, monkeypatch):
    import subprocess

    import crnet.provenance as provenance

    if subprocess.run(["git", "--version"], capture_output=True).returncode != 0:
        pytest.skip("git is not installed")
    root = tmp_path / "my proj"
    env = {**{k: v for k, v in os.environ.items() if not k.startswith("GIT_")}, "GIT_AUTHOR_NAME": "t",
           "GIT_AUTHOR_EMAIL": "t@t", "GIT_COMMITTER_NAME": "t", "GIT_COMMITTER_EMAIL": "t@t"}
    subprocess.run(["git", "init", "-q", str(root)], check=True, env=env)
    subprocess.run(["git", "-C", str(root), "commit", "-q", "--allow-empty", "-m", "x"], check=True, env=env)
    head = subprocess.run(["git", "-C", str(root), "rev-parse", "HEAD"], capture_output=True, text=True, check=True,
                          env=env).stdout.strip()
    monkeypatch.setattr(provenance, "PACKAGE_ROOT", root.resolve())
    assert provenance.git_commit() == head


def test_a_setting_the_code_no_longer_records_is_no_change(tmp_path):
    """A run directory of older code whose train marker records train.patience (dropped for the paper machines in
    session 18) was refused as 'finished under other settings (train.patience differ)' though the config never
    named it (walk-through, session 19); a setting this code records still counts."""
    st = _stages(tmp_path, OLD)
    st.run("train_A-paper", lambda resume: {"model": "A-paper.pt"})
    marker = tmp_path / "stages/train_A-paper.json"
    info = json.loads(marker.read_text())
    assert "train.patience" not in info["settings"]
    marker.write_text(json.dumps({**info, "settings": {**info["settings"], "train.patience": 20}}))
    assert _stages(tmp_path, OLD).run("train_A-paper", lambda resume: pytest.fail("re-ran")) == {"model": "A-paper.pt"}
    marker.write_text(json.dumps({**info, "settings": {**info["settings"], "train.epochs": 99}}))
    with pytest.raises(ValueError, match=r"finished under other settings \(train.epochs differ\)"):
        _stages(tmp_path, OLD).check("train_A-paper")


def test_a_stage_resumed_after_a_kill_is_named_with_its_timing(tmp_path):
    """A resumed stage's marker records that it was resumed, and every later run lists it as such (a scan of ~35 s
    read 17.7 s, walk-through, session 19). A started marker written before session 20 holds no time: its killed
    run counts as one of unknown time (tests/test_stage_clock.py has the timed kills)."""
    st = _stages(tmp_path, OLD)
    (tmp_path / "stages").mkdir(exist_ok=True)
    st.run("test_pseudodata", lambda resume: "test_pseudo.h5")  # ran in one go
    settings = json.loads((tmp_path / "stages/test_pseudodata.json").read_text())["settings"]
    (tmp_path / "stages/feedback_pseudodata.started.json").write_text(  # killed while running
        json.dumps({"stage": "feedback_pseudodata", "settings": {**settings}}))
    st = _stages(tmp_path, OLD)
    seen = []
    st.run("feedback_pseudodata", lambda resume: (seen.append(resume), "feedback_pseudo.h5")[1])
    assert seen == [True] and st.resumed == ["feedback_pseudodata"]
    assert json.loads((tmp_path / "stages/feedback_pseudodata.json").read_text())["resumed"] is True
    again = _stages(tmp_path, OLD)
    for name in ("test_pseudodata", "feedback_pseudodata"):
        again.run(name, lambda resume: pytest.fail("re-ran"))
    assert again.resumed == ["feedback_pseudodata"] and again.skipped == ["test_pseudodata", "feedback_pseudodata"]
    assert again.killed_runs == {"feedback_pseudodata": [None]}
