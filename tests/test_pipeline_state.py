"""The state `crnet pipeline` keeps in its output directory (helper-51, session 17): one run per directory, stage
markers written only after a stage's up-front checks and holding paths relative to out, checkpoints resumed only
by the stage run that wrote them, corrupt markers named. CI-sized (configs/pipeline_ci.toml without the measured
stage; an 8-chain MCMC variant): one finished run shared by the tests, each working on its own copy."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import torch
from helpers_pipeline import ci_text, finished_run, run_ci
from typer.testing import CliRunner

from crnet.cli import app
from crnet.feedback_state import remove_rounds
from crnet.pipeline_stages import MARKER_PATHS, remove_training_files

torch.set_num_threads(1)


def _markers(out: Path) -> dict[str, dict]:
    return {p.name: json.loads(p.read_text()) for p in sorted((out / "stages").glob("*.json"))}


def _report_paths(out: Path) -> list[str]:
    cfg = json.loads((out / "evaluation/report.json").read_text())["config"]
    return [*cfg["machines"].values(), cfg["test_store"], *cfg["mock_stores"], cfg["out"], cfg["check_model"]]


@pytest.fixture(scope="module")
def finished(tmp_path_factory) -> tuple[Path, Path]:
    """(config, output directory) of a finished CI run; copy the directory before changing it."""
    return finished_run(tmp_path_factory.mktemp("finished"))


def _copy(finished: tuple[Path, Path], dest: Path) -> Path:
    shutil.copytree(finished[1], dest)
    return dest


def test_markers_hold_paths_relative_to_out(finished):
    markers = _markers(finished[1])
    assert {m["paths"] for m in markers.values()} == {MARKER_PATHS}
    assert markers["train_A-paper.json"]["result"] == "A-paper.pt"
    assert markers["train_check.json"]["result"] == "check.pt"
    assert markers["evaluate.json"]["result"] == "evaluation/report.json"
    fb = markers["feedback_A-paper.json"]["result"]
    assert fb["model"] == "A-paper.pt" and fb["rounds"][0]["model"] == "A-paper.pt"  # one round: no retraining
    assert not any(m.endswith(".started.json") for m in markers)


HOLDER = textwrap.dedent("""
    import sys, time
    from crnet.run_lock import run_lock
    with run_lock(sys.argv[1], "crnet pipeline"):
        print("locked", flush=True)
        time.sleep(120)
""")


def test_second_run_on_one_directory_refused(tmp_path, finished):
    out = tmp_path / "busy"
    proc = subprocess.Popen([sys.executable, "-c", HOLDER, str(out)], stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout.readline().strip() == "locked"
        res = CliRunner().invoke(app, ["pipeline", str(finished[0]), "--out", str(out)])
        assert res.exit_code == 2
        assert f"error: {out / '.lock'}: {out} is in use by another run (pid {proc.pid}," in res.output
        assert sorted(p.name for p in out.iterdir()) == [".lock"]  # refused before anything was read or written
    finally:
        proc.kill()
        proc.wait()


def test_corrupt_marker_named(tmp_path, finished):
    out = tmp_path / "corrupt"
    (out / "stages").mkdir(parents=True)
    marker = out / "stages/train_A-paper.json"
    marker.write_text('{\n  "stage": "train_A-paper",\n  "wall_s": 1.0,\n  "result": "A-pa')  # a truncated copy
    res = CliRunner().invoke(app, ["pipeline", str(finished[0]), "--out", str(out)])
    assert res.exit_code == 2
    assert (f"error: {marker}: corrupt stage marker (Unterminated string starting at: line 4 column 13 (char 59)); "
            "delete it to redo the stage") in res.output
    marker.unlink()
    started = out / "stages/scan.started.json"
    started.write_text("[1, 2]")
    with pytest.raises(ValueError, match=rf"{started}: corrupt stage marker \(a JSON list, not an object\)"):
        run_ci(finished[0], out)
    assert not (out / "scan.h5").exists() and not (out / "resolved_config.json").exists()


def test_sobol_change_refused_without_leaving_a_started_marker(tmp_path, finished):
    out = _copy(finished, tmp_path / "run")
    wider = tmp_path / "wider.toml"
    wider.write_text(ci_text().replace("n_points = 16", "n_points = 24"))
    # with the scan's marker there: refused by it, saying that a Sobol design cannot grow in place
    with pytest.raises(ValueError, match=r"scan\.json: stage 'scan' was finished under other settings "
                                         r"\(scan\.n_points.*the scan store cannot be resumed under "
                                         r"another scan\.n_points: use another \[run\] out"):
        run_ci(wider, out)
    # the documented extension (markers of the scan and later stages deleted): refused by the store, up front
    for marker in (out / "stages").glob("*.json"):
        marker.unlink()
    resolved = (out / "resolved_config.json").read_text()
    with pytest.raises(ValueError, match=r"scan\.h5: cannot resume with a different configuration \(n_points: store "
                                         r"16 vs now 24\); nothing was written"):
        run_ci(wider, out)
    assert list((out / "stages").iterdir()) == []  # no scan.started.json (it poisoned the old config before)
    assert (out / "resolved_config.json").read_text() == resolved
    res = run_ci(finished[0], out)  # so the old config still runs there
    assert json.loads((out / "stages/scan.json").read_text())["result"] == 0  # nothing new: the store was complete
    assert set(res["timings"]) >= {"scan", "train_A-paper", "feedback_A-paper", "evaluate"}


def _all_under(paths: list[str], out: Path) -> bool:
    return all(Path(p).resolve().is_relative_to(out.resolve()) for p in paths)


def test_moved_directory_uses_its_own_files(tmp_path, finished):
    first = _copy(finished, tmp_path / "first")
    moved = first.rename(tmp_path / "moved")  # the directory the markers were written in is gone
    (moved / "stages/evaluate.json").unlink()
    run_ci(finished[0], moved)
    paths = _report_paths(moved)
    assert len(paths) == 7 and _all_under(paths, moved), paths
    assert json.loads((moved / "stages/evaluate.json").read_text())["result"] == "evaluation/report.json"


def _make_legacy(out: Path, old: str) -> None:
    """Rewrite out's markers as crnet wrote them before they held relative paths: ``old``/<path>."""
    for marker in (out / "stages").glob("*.json"):
        data = json.loads(marker.read_text())
        del data["paths"]
        r = data["result"]
        if isinstance(r, str):
            data["result"] = f"{old}/{r}"
        elif isinstance(r, dict) and "model" in r:
            r["model"] = f"{old}/{r['model']}"
            for rd in r["rounds"]:
                rd.update({k: f"{old}/{rd[k]}" for k in ("model", "next_model", "next_store") if k in rd})
        marker.write_text(json.dumps(data))


def test_old_absolute_markers_rebased_onto_out_or_refused(tmp_path, finished):
    out = _copy(finished, tmp_path / "copy")
    old = tmp_path / "gone" / "old-run"
    old.mkdir(parents=True)
    shutil.copy(out / "check.pt", old / "check.pt")  # the old directory's file exists: it must still not be used
    _make_legacy(out, str(old))
    cwd_relative = out / "stages/train_B-paper.json"  # relative to the working directory of a run long ago
    data = json.loads(cwd_relative.read_text())
    cwd_relative.write_text(json.dumps({**data, "result": "runs/pipeline_ci/B-paper.pt"}))
    (out / "stages/evaluate.json").unlink()
    run_ci(finished[0], out)
    paths = _report_paths(out)
    assert _all_under(paths, out), paths
    assert "paths" not in json.loads((out / "stages/train_A-paper.json").read_text())  # finished markers kept as is
    # an old path whose file is under neither name: refused, naming the marker, never read from elsewhere
    marker = out / "stages/train_check.json"
    marker.write_text(json.dumps({**json.loads(marker.read_text()), "result": str(old / "check.pt.renamed")}))
    (out / "stages/evaluate.json").unlink()
    with pytest.raises(ValueError, match=rf"{marker}: {old / 'check.pt.renamed'} lies outside the output directory "
                                         rf"{out} \(a copied or moved run directory\)"):
        run_ci(finished[0], out)


def test_training_resumes_only_its_own_interrupted_run(tmp_path, finished, monkeypatch):
    from crnet.machines import training
    from crnet.machines.checkpoint import checkpoint_path
    from crnet.machines.modelfile import load_model

    out = _copy(finished, tmp_path / "run")
    model = out / "B-paper.pt"
    before = load_model(model).state_dict
    calls: list[tuple[str, bool, bool]] = []
    real_train = training.train

    def spy(store, path, config=None, resume=False):
        calls.append((Path(path).name, resume, checkpoint_path(path).exists()))
        return real_train(store, path, config, resume)

    monkeypatch.setattr(training, "train", spy)
    # killed while training (its started marker, same settings): resumes its checkpoint (there: all epochs done)
    marker = out / "stages/train_B-paper.json"
    marker.rename(out / "stages/train_B-paper.started.json")
    run_ci(finished[0], out)
    assert calls == [("B-paper.pt", True, True)]
    after = load_model(model).state_dict
    assert all(torch.equal(before[k], after[k]) for k in before)  # the same weights as the uninterrupted run
    # no started marker of its own: the checkpoint belongs to another run; removed with its files, trained afresh
    calls.clear()
    marker.unlink()
    (out / "B-paper.pt.notes").write_text("a user's file")
    run_ci(finished[0], out)
    assert calls == [("B-paper.pt", False, False)]
    assert (out / "B-paper.pt.notes").read_text() == "a user's file"
    assert checkpoint_path(model).is_file() and (out / "B-paper.pt.pseudo.h5").is_file()  # written anew


def test_remove_stage_files_touch_only_the_stage_outputs(tmp_path):
    names = ["m.pt", "m.pt.ckpt", "m.pt.ckpt.123.tmp", "m.pt.ckpt.tmp", "m.pt.pseudo.h5", "m.pt.member0",
             "m.pt.member0.ckpt", "m.pt.member11.init", "m.pt.tmp"]
    kept = ["m.pt.notes", "m.pt.member", "m.pt.bak", "m.pt2", "other.pt.ckpt", "m.pt.ckpt.old"]
    for n in names + kept:
        (tmp_path / n).write_text(n)
    removed = remove_training_files(tmp_path / "m.pt")
    assert sorted(p.name for p in removed) == sorted(names)
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(kept)
    fb = tmp_path / "feedback_X"
    for rel in ("feedback_log.json", "round_0/model.pt", "round_12/resim.h5", "notes.txt", "round_x/keep.txt"):
        (fb / rel).parent.mkdir(parents=True, exist_ok=True)
        (fb / rel).write_text(rel)
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    (elsewhere / "keep.h5").write_text("not the loop's")
    (fb / "round_3").symlink_to(elsewhere, target_is_directory=True)  # unlinked, not followed
    assert sorted(p.name for p in remove_rounds(fb)) == ["feedback_log.json", "round_0", "round_12", "round_3"]
    assert sorted(str(p.relative_to(fb)) for p in fb.rglob("*")) == ["notes.txt", "round_x", "round_x/keep.txt"]
    assert (elsewhere / "keep.h5").read_text() == "not the loop's"
    assert remove_rounds(tmp_path / "missing") == []


MCMC = """[run]
seed = 0
threads = 1
progress = false
[scan]
design = "mcmc"
n_chains = 8
n_steps = 2
batch_size = 8
backend = "numba"
grid = { dr_kpc = 4.0, dz_kpc = 1.3, ekin_factor = 3.0 }
[train]
machines = ["A-paper"]
check = false
epochs = 2
batch_size = 8
device = "cpu"
[test]
n_test = 4
[feedback]
machines = ["A-paper"]
max_rounds = 2
target_share = 1.0
n_test = 3
retrain_epochs = 1
[measured]
enabled = false
"""


def test_mcmc_scan_extends_and_later_stages_start_afresh(tmp_path):
    """README: raise n_steps, delete the markers of the scan and the later stages: the scan extends its store and
    the training and the feedback loop start afresh (they resumed the old checkpoint / rounds and were refused)."""
    from crnet.machines.modelfile import file_sha256, load_model
    from crnet.store import MockStore

    config, longer, out = tmp_path / "mc.toml", tmp_path / "mc3.toml", tmp_path / "run"
    config.write_text(MCMC)
    longer.write_text(MCMC.replace("n_steps = 2", "n_steps = 3"))
    run_ci(config, out)
    with MockStore.open(out / "scan.h5", "r") as st:
        first = st.n_complete
    log = json.loads((out / "feedback_A-paper/feedback_log.json").read_text())
    assert len(log["rounds"]) == 2 and (out / "feedback_A-paper/round_0/model.pt").is_file()
    with pytest.raises(ValueError, match=r"scan\.json: stage 'scan' was finished under other settings \(scan\.n_steps"
                                         r" differ\).*an MCMC scan then resumes and extends its store"):
        run_ci(longer, out)
    for marker in (out / "stages").glob("*.json"):
        marker.unlink()
    (out / "feedback_A-paper/notes.txt").write_text("a user's file")
    (out / "feedback_A-paper/round_0/stale.txt").write_text("the old round's")
    run_ci(longer, out)
    with MockStore.open(out / "scan.h5", "r") as st:  # extended by the third step, not redone
        assert st.n_complete > first and int(st.read("step").max()) == 3
        assert json.loads((out / "stages/scan.json").read_text())["result"] == st.n_complete - first
    scan_sha = file_sha256(out / "scan.h5")
    assert load_model(out / "A-paper.pt").metadata["training_store"]["sha256"] == scan_sha  # retrained on it
    log = json.loads((out / "feedback_A-paper/feedback_log.json").read_text())
    assert log["identity"]["model_sha256"] == file_sha256(out / "A-paper.pt")  # the loop of the new machine
    assert not (out / "feedback_A-paper/round_0/stale.txt").exists()  # the old rounds were removed ...
    assert (out / "feedback_A-paper/notes.txt").read_text() == "a user's file"  # ... nothing else
    assert _all_under(_report_paths(out)[:-1], out)  # no Check Machine in this config
