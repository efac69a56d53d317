"""`crnet pipeline` after the review by helper-119 (session 23): [fit] enabled checked before the fit runs (F1),
[scan] batch_size not a result setting (F2), a machine's [train] values do not outdate the other machines (F3),
[scan] shard / n_shards / chain_offset refused (F4), resolved_config.json records each run's own settings (F5).
CI-sized: one finished configs/pipeline_ci.toml run (no measured stage) shared by the tests, copied before changes;
the rest works on markers and configs without running stages."""

from __future__ import annotations

import dataclasses
import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from helpers_pipeline import CI, ci_text, finished_run, run_ci

from crnet.pipeline import _check_stages, run_pipeline
from crnet.pipeline_config import load_config
from crnet.pipeline_stages import MARKER_PATHS, _Stages, stage_code, stage_settings

torch.set_num_threads(1)
MCMC = CI.read_text().replace('design = "sobol"', 'design = "mcmc"\nn_chains = 4\nn_steps = 1')


def _load(tmp_path: Path, text: str, name: str = "c.toml"):
    path = tmp_path / name
    path.write_text(text)
    return load_config(path, str(tmp_path / "run"))


@pytest.fixture(scope="module")
def finished(tmp_path_factory) -> tuple[Path, Path]:
    """(config, output directory) of a finished CI run; copy the directory before changing it."""
    return finished_run(tmp_path_factory.mktemp("finished"))


def _files(out: Path) -> dict[str, float]:
    return {p.relative_to(out).as_posix(): p.stat().st_mtime_ns for p in out.rglob("*")
            if p.is_file() and p.name != ".lock"}


# F1 ------------------------------------------------------------------------------------------------------------

def test_fit_with_a_design_scan_or_a_bad_start_refused_when_read(tmp_path):
    """Accepted before: the fit ran (18 s tiny grid, 1,135 s paper grid CPU), then 'start_cov needs design mcmc'
    without a section, or a short [fit] start failed at run time leaving fit.started.json behind."""
    with pytest.raises(ValueError, match=r'\[fit\] enabled needs \[scan\] design = "mcmc" .*got design \'sobol\'; '
                                         r'set \[scan\] design = "mcmc" or \[fit\] enabled = false'):
        _load(tmp_path, ci_text() + "\n[fit]\nenabled = true\n")
    with pytest.raises(ValueError, match=r"\[fit\] start: start must hold the 10 PARAM_NAMES values, got 2"):
        _load(tmp_path, MCMC + "\n[fit]\nenabled = true\nstart = [1.0, 2.0]\n")
    with pytest.raises(ValueError, match=r"\[fit\] start: \['d0_1e28_cm2_s'.*strictly inside the prior box"):
        _load(tmp_path, MCMC + "\n[fit]\nenabled = true\nstart = [1.0, 2.0, 3, 4, 5, 6, 7, 8, 9, 10]\n")
    assert _load(tmp_path, MCMC + "\n[fit]\nenabled = true\n").fit.enabled  # crml_base start
    assert not (tmp_path / "run").exists()



def test_fit_start_checked_by_one_function(tmp_path):
    """crnet.scan.fit.check_fit_start: the check fit_best ran (and the pipeline's [fit] check repeated), each
    caller's message naming its start."""
    from crnet.scan.designs import to_log
    from crnet.scan.fit import FitConfig, check_fit_start, fit_best
    from crprop.params import CRML_BASE

    base = CRML_BASE.as_vector()
    assert np.array_equal(check_fit_start(base), to_log(np.asarray(base, dtype=np.float64)[None])[0])
    bad = [float(v) for v in base]
    bad[5] = float("nan")
    with pytest.raises(ValueError, match=r"^\[x\] start: must be 10 finite values; not finite: \['nu1'\], got "
                                         r"\[.*nan.*\]$"):
        check_fit_start(bad, "[x] start")
    bad[5], bad[8], bad[9] = base[5], 1e9, 0.0  # r_break1 above the box, r_break2 not positive
    with pytest.raises(ValueError, match=r"^\[x\] start: \['r_break1_mv', 'r_break2_mv'\] must lie strictly inside "
                                         r"the prior box \(crprop\.params\.PRIOR_BOX; breaks in MV\), got \[.*\]$"):
        check_fit_start(bad, "[x] start")
    with pytest.raises(ValueError, match=r"^fit start: must hold the 10 values \['d0_1e28_cm2_s'.*got \[1\.0\]$"):
        check_fit_start([1.0])

    class NoModel:
        def evaluate(self, *args, **kwargs):
            raise AssertionError("a bad start was evaluated")

    with pytest.raises(ValueError, match=r"^fit start: \['r_break1_mv', 'r_break2_mv'\] must lie strictly inside"):
        fit_best(NoModel(), FitConfig(start=bad), progress=False)
    text = MCMC + "\n[fit]\nenabled = true\nstart = [" + ", ".join(str(v) for v in bad) + "]\n"
    with pytest.raises(ValueError, match=r"c\.toml: \[fit\] start: \['r_break1_mv', 'r_break2_mv'\] must lie"):
        _load(tmp_path, text)

def _fake_finished(out: Path, cfg, names: list[str]) -> None:
    """Finished markers of ``names`` under ``cfg`` (as a finished run writes them)."""
    (out / "stages").mkdir(parents=True, exist_ok=True)
    for name in names:
        (out / "stages" / f"{name}.json").write_text(json.dumps({
            "stage": name, "wall_s": 1.0, "result": 0, "settings": stage_settings(cfg, name), "paths": MARKER_PATHS,
            "code": stage_code()}))


def test_fit_turned_on_for_a_finished_run_refused_before_the_fit(tmp_path, monkeypatch):
    """The fit ran first, then the scan marker refused fit.enabled, leaving fit.json and stages/fit.json; its hint
    said that an MCMC scan resumes and extends its store (the store refuses another start / start_cov)."""
    import crnet.pipeline as pipeline

    plain = _load(tmp_path, MCMC)
    out = plain.out
    _fake_finished(out, plain, ["scan", "train_A-paper"])
    before = _files(out)

    def no_fit(cfg):
        raise AssertionError("the fit ran before the markers were checked")

    monkeypatch.setattr(pipeline, "_run_fit", no_fit)
    # the fit's own settings are listed too: a marker written with the fit off records none of them
    with pytest.raises(ValueError, match=r"scan\.json: stage 'scan' was finished under other settings \(fit\.enabled"
                                         r"(, fit\.\w+)* differ\).*scan store cannot be resumed under another "
                                         r"fit\.enabled(, fit\.\w+)*: use another \[run\] out") as exc:
        run_pipeline(_load(tmp_path, MCMC + "\n[fit]\nenabled = true\n", "fit.toml"))
    assert "extends its store" not in str(exc.value)
    assert _files(out) == before  # a refused run writes nothing


def test_markers_of_a_fit_run_pass_the_check_before_the_fit(tmp_path):
    """Before the fit, the start / start_cov it sets are left out of the check; after it, they are compared."""
    cfg = _load(tmp_path, MCMC + "\n[fit]\nenabled = true\n")
    from crprop.params import CRML_BASE

    start = [float(v) for v in CRML_BASE.as_vector()]
    fitted = dataclasses.replace(cfg, scan=dataclasses.replace(
        cfg.scan, start=start, start_cov=(0.01 * np.eye(10)).tolist()))
    _fake_finished(cfg.out, cfg, ["fit"])  # the fit's marker holds the scan's start as given (here none)
    _fake_finished(cfg.out, fitted, ["scan", "train_A-paper"])
    st = _Stages(cfg.out, cfg)
    _check_stages(st, cfg, cfg.out / "scan.h5", before_fit=True)  # no refusal
    given = cfg.scan
    cfg.scan = fitted.scan  # as the pipeline sets it after the fit
    _check_stages(st, cfg, cfg.out / "scan.h5")  # the fit's start (the fit's marker is not checked again)
    cfg.scan = given
    with pytest.raises(ValueError, match=r"scan\.json: stage 'scan' was finished under other settings \(scan\.start, "
                                         r"scan\.start_cov differ\).*cannot be resumed under another scan\.start, "
                                         r"scan\.start_cov: use another \[run\] out"):
        _check_stages(st, cfg, cfg.out / "scan.h5")



def test_refusal_the_scan_store_cannot_take_says_to_delete_it(tmp_path, finished):
    """A changed Sobol n_points was refused with 'or delete this marker and those of the later stages to redo them'
    and then that the scan store cannot be resumed: doing so was refused by the store. Now: the markers and the store
    (or another [run] out); a change the store can take still names the markers only."""
    out = shutil.copytree(finished[1], tmp_path / "run")
    wider = _load(tmp_path, ci_text().replace("n_points = 16", "n_points = 24"), "wider.toml")
    with pytest.raises(ValueError) as exc:
        _check_stages(_Stages(out, wider), wider, out / "scan.h5")
    assert str(exc.value) == (
        f"{out / 'stages/scan.json'}: stage 'scan' was finished under other settings (scan.n_points differ), and the "
        "scan store cannot be resumed under another scan.n_points: use another [run] out, or delete this marker, "
        f"those of the later stages and the scan store {out / 'scan.h5'} to redo them (only an MCMC scan's [scan] "
        "n_steps can grow in place)")
    for marker in (out / "stages").glob("*.json"):  # as it says
        marker.unlink()
    (out / "scan.h5").unlink()
    _check_stages(_Stages(out, wider), wider, out / "scan.h5")  # no refusal
    longer = _load(tmp_path, ci_text().replace("epochs = 2", "epochs = 3"), "longer.toml")
    _fake_finished(out, load_config(finished[0]), ["train_A-paper"])
    with pytest.raises(ValueError) as exc:
        _Stages(out, longer).check("train_A-paper")
    assert str(exc.value) == (
        f"{out / 'stages/train_A-paper.json'}: stage 'train_A-paper' was finished under other settings (train.epochs "
        "differ). Use another [run] out, or delete this marker and those of the later stages to redo them")

# F2 ------------------------------------------------------------------------------------------------------------

def test_sobol_scan_resumed_with_another_batch_size_gives_the_same_records(tmp_path):
    """The design points are cut by the store's cursor: a scan killed at batch size 4 and resumed at 3 holds the
    uninterrupted batch-16 scan's records (fluxes bitwise, chi2 to rounding); refused before (batch_size)."""
    from crnet.scan.runner import run_scan
    from crnet.store import MockStore

    scan = load_config(CI).scan
    run_scan(tmp_path / "full.h5", scan, progress=False)

    class Kill(Exception):
        pass

    def kill(batch: int, n_complete: int) -> None:
        if n_complete >= 8:
            raise Kill

    with pytest.raises(Kill):
        run_scan(tmp_path / "resumed.h5", dataclasses.replace(scan, batch_size=4), progress=False, on_batch=kill)
    run_scan(tmp_path / "resumed.h5", dataclasses.replace(scan, batch_size=3), resume=True, progress=False)
    with MockStore.open(tmp_path / "full.h5", "r") as a, MockStore.open(tmp_path / "resumed.h5", "r") as b:
        assert a.n_complete == b.n_complete == 16
        for key in ("params", "step", "flux", "converged"):
            assert np.array_equal(a.read(key), b.read(key)), key
        assert np.allclose(a.read("chi2"), b.read("chi2"), rtol=1e-12, atol=0)


def test_batch_size_does_not_outdate_a_finished_run(tmp_path, finished):
    """[scan] batch_size (lowered after a GPU out-of-memory) outdated every stage and the store refused it."""
    cfg = _load(tmp_path, finished[0].read_text().replace("batch_size = 16", "batch_size = 4"))
    assert cfg.scan.batch_size == 4 and cfg.feedback.settings.sim.batch_size == 4
    base = load_config(finished[0])
    for name in ["scan", "train_A-paper", "feedback_A-paper", "evaluate"]:
        assert stage_settings(cfg, name) == stage_settings(base, name), name
    _check_stages(_Stages(finished[1], cfg), cfg, finished[1] / "scan.h5")  # no refusal (markers and store)


def test_settings_of_a_fit_that_does_not_run_outdate_nothing(tmp_path):
    """[fit] max_evaluations with the fit off was recorded for every stage: changing it redid the whole run."""
    base = _load(tmp_path, ci_text())
    assert not base.fit.enabled
    changed = dataclasses.replace(base, fit=dataclasses.replace(base.fit, max_evaluations=base.fit.max_evaluations + 7))
    for name in ["scan", "train_A-paper", "evaluate"]:
        assert stage_settings(changed, name) == stage_settings(base, name), name
        assert stage_settings(base, name)["fit.enabled"] is False


# F3 ------------------------------------------------------------------------------------------------------------

def test_a_machines_train_values_do_not_outdate_the_others(tmp_path, finished):
    """input_noise / ensemble (A-paper's here) outdated train_B-paper and train_check; n_pseudo (Machine B's
    pseudo-data) outdated Machine A and the Check Machine."""
    base = load_config(finished[0])
    text = finished[0].read_text()
    for old, new, changed in [("input_noise = 0.05", "input_noise = 0.1", {"train_A-paper", "feedback_A-paper"}),
                              ("ensemble = 2", "ensemble = 3", {"train_A-paper", "feedback_A-paper"}),
                              ("n_pseudo = 32", "n_pseudo = 40", {"train_B-paper"})]:
        cfg = _load(tmp_path, text.replace(old, new))
        for name in ["train_A-paper", "train_B-paper", "train_check", "test_pseudodata", "feedback_pseudodata",
                     "feedback_A-paper"]:
            assert (stage_settings(cfg, name) != stage_settings(base, name)) == (name in changed), (old, name)
        assert stage_settings(cfg, "evaluate") != stage_settings(base, "evaluate")
    # the finished run's markers: only A-paper's stages (and those of every machine) are outdated by its noise
    cfg = _load(tmp_path, text.replace("input_noise = 0.05", "input_noise = 0.1"))
    out = shutil.copytree(finished[1], tmp_path / "noise")
    for name in ("train_A-paper", "feedback_A-paper", "evaluate"):
        (out / "stages" / f"{name}.json").unlink()
    _check_stages(_Stages(out, cfg), cfg, out / "scan.h5")  # no refusal


def test_markers_of_earlier_code_still_match(tmp_path, finished):
    """Markers written before this change hold the dropped values (train.input_noise for B-paper, n_pseudo for A,
    scan.batch_size, [fit] values with the fit off): values this code no longer records are not compared, so a
    finished run is not redone. The injected values differ from the config's: a dropped key compared again would
    refuse the run (the same values, injected before, would not have caught it)."""
    cfg = load_config(finished[0])
    out = shutil.copytree(finished[1], tmp_path / "old")
    t = cfg.train
    every = {"scan.batch_size": 4, "feedback.settings.sim.batch_size": 4,  # how it runs (F2)
             "fit.max_evaluations": cfg.fit.max_evaluations + 7, "fit.tol": 1e-3}  # the fit is off
    assert not cfg.fit.enabled and cfg.scan.batch_size == 16 and t.input_noise != 0.3
    others = {"train.input_noise": 0.3, "train.ensemble": t.ensemble + 3}  # A-paper's values (F3)
    pseudo = {"train.n_pseudo": t.n_pseudo + 8}  # Machine B's pseudo-data (F3)
    dropped = {"scan": {**others, **pseudo}, "train_A-paper": pseudo, "train_B-paper": others,
               "train_check": {**others, **pseudo}, "test_pseudodata": {**others, **pseudo},
               "feedback_pseudodata": {**others, **pseudo}, "feedback_A-paper": pseudo, "evaluate": {}}
    for marker in (out / "stages").glob("*.json"):
        info = json.loads(marker.read_text())
        info["settings"] = {**info["settings"], **every, **dropped.pop(info["stage"])}
        marker.write_text(json.dumps(info))
    assert not dropped  # every stage's marker was there
    res = run_ci(finished[0], out)
    assert res["timings"] and set(res["skipped"]) == set(res["timings"])  # every stage skipped


def test_re_simulation_solver_defaults_of_earlier_markers_match(tmp_path):
    """crnet.closure.SimConfig records crprop's default tol (1e-6) and max_steps (600) as None: a marker written
    before, with [scan] tol = 1e-6 / max_steps = 600 given, held them as numbers and was refused ('feedback.settings
    .sim.tol differ'). They are read as None (as crnet.feedback_state reads a feedback log); other values differ."""
    from crprop.solvers import DEFAULT_MAX_STEPS, DEFAULT_TOL

    text = ci_text().replace("batch_size = 16\n", f"batch_size = 16\ntol = {DEFAULT_TOL}\nmax_steps = "
                                                   f"{DEFAULT_MAX_STEPS}\n", 1)
    cfg = _load(tmp_path, text)
    assert cfg.scan.tol == DEFAULT_TOL and cfg.scan.max_steps == DEFAULT_MAX_STEPS
    assert cfg.feedback.settings.sim.tol is None and cfg.feedback.settings.sim.max_steps is None
    names = ["feedback_A-paper", "evaluate"]
    _fake_finished(cfg.out, cfg, names)

    def mark(tol: float, max_steps: int) -> None:
        for name in names:
            marker = cfg.out / "stages" / f"{name}.json"
            info = json.loads(marker.read_text())
            info["settings"].update({"feedback.settings.sim.tol": tol, "feedback.settings.sim.max_steps": max_steps})
            marker.write_text(json.dumps(info))

    mark(1e-06, 600)
    st = _Stages(cfg.out, cfg)
    assert all(st.check(name) is not None for name in names)  # no refusal: finished
    mark(1e-07, 600)
    with pytest.raises(ValueError, match=r"feedback_A-paper\.json: stage 'feedback_A-paper' was finished under "
                                         r"other settings \(feedback\.settings\.sim\.tol differ\)"):
        st.check("feedback_A-paper")
    mark(1e-06, 700)
    with pytest.raises(ValueError, match=r"\(feedback\.settings\.sim\.max_steps differ\)"):
        st.check("evaluate")


# F4 ------------------------------------------------------------------------------------------------------------

@pytest.mark.parametrize(("line", "key"), [("n_shards = 2\nshard = 1", "shard"), ("n_shards = 2", "n_shards"),
                                         ("chain_offset = 3", "chain_offset")])
def test_part_of_a_distributed_scan_refused(tmp_path, line, key):
    """Accepted before: half the design was scanned and everything went on silently."""
    with pytest.raises(ValueError, match=rf"\[scan\] {key} is not a pipeline setting: crnet pipeline scans the whole "
                                         r"design into one store; remove it"):
        _load(tmp_path, ci_text().replace("n_points = 16", f"n_points = 16\n{line}"))


# F5 ------------------------------------------------------------------------------------------------------------

def test_resolved_config_records_each_runs_settings_and_stages(tmp_path, finished):
    """Each run overwrote `config` with its own [run] threads, and invocation entries held started / versions only:
    after a resume with threads 2 the file said 2 while the stages ran with 1."""
    out = shutil.copytree(finished[1], tmp_path / "thr")
    first = json.loads((out / "resolved_config.json").read_text())
    assert set(first) >= {"config", "seeds", "versions", "invocations"}
    versions = first["versions"]
    assert {"numba", "h5py", "scipy", "cupy", "source_sha256", "torch", "numpy", "crnet"} <= set(versions)
    assert versions["source_sha256"] == stage_code()["source_sha256"]
    cfg = load_config(finished[0])
    from crnet.evaluate.report import ORACLE_SEED_OFFSET

    assert first["seeds"]["oracle"] == cfg.feedback.settings.seed + ORACLE_SEED_OFFSET
    (entry,) = first["invocations"]
    assert entry["run_settings"]["run.threads"] == 1 and entry["run_settings"]["scan.batch_size"] == 16
    assert entry["run_settings"]["train.device"] == "cpu" and entry["run_settings"]["scan.backend"] == "numba"
    assert entry["stages_run"] == ["scan", "train_A-paper", "train_B-paper", "train_check", "test_pseudodata",
                                   "feedback_pseudodata", "feedback_A-paper", "evaluate"]
    (out / "stages/evaluate.json").unlink()
    two = tmp_path / "thr2.toml"
    two.write_text(finished[0].read_text().replace("threads = 1", "threads = 2"))
    run_ci(two, out)
    resolved = json.loads((out / "resolved_config.json").read_text())
    assert resolved["config"]["run"]["threads"] == 2  # the latest run's config, as before
    assert resolved["invocations"][0] == entry  # the first run's entry is kept as it was
    second = resolved["invocations"][1]
    assert second["run_settings"]["run.threads"] == 2 and second["stages_run"] == ["evaluate"]
