"""Feedback loop inputs checked before any re-simulation (review by helper-51, session 17): re-simulation settings
from and against the store, the store against the model's training store, empty stores, corrupt state files, one
loop per directory, a moved directory (tiny grid, numba)."""

from __future__ import annotations

import json
import shutil
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch
from helpers_loop import GRID, OPTIONS_AGAINST_THE_STORE, TOL, build_loop_world
from helpers_store import write_synthetic_store
from typer.testing import CliRunner

import crnet.closure as closure_mod
import crnet.feedback as feedback_mod
import crnet.machines.inference as inference
from crnet.cli import app
from crnet.feedback import (
    FeedbackConfig,
    SimConfig,
    closure_key,
    closure_test,
    loop_identity,
    run_feedback,
)
from crnet.feedback_inputs import (
    FeedbackInputError,
    check_feedback_inputs,
    check_resimulation_settings,
    check_training_store,
    sim_from_store,
)
from crnet.feedback_state import ReplacedRoundsWarning, load_keyed, savez_keyed
from crnet.machines.modelfile import Predictor, load_model
from crnet.machines.train_files import pseudo_path
from crnet.machines.training import TrainConfig, train
from crnet.pseudodata import PseudoDataConfig, make_pseudodata
from crnet.scan.models import GridConfig
from crnet.scan.runner import ScanConfig, run_scan
from crnet.store import MockStore, StoreMeta

torch.set_num_threads(1)
runner = CliRunner()


class Resimulated(AssertionError):
    """Raised by the stand-in for work that must not start."""


@pytest.fixture(scope="module")
def world(tmp_path_factory) -> dict[str, Path]:
    """A scan at tol 1e-4 (8 models), its pseudo-data, Machine A trained on it, another scan, an empty store."""
    d = tmp_path_factory.mktemp("world")
    paths = build_loop_world(d)
    run_scan(d / "other.h5", ScanConfig(design="sobol", n_points=4, seed=3, batch_size=8, backend="numba", grid=GRID,
                                        tol=TOL), progress=False)
    with MockStore.open(d / "scan.h5") as st:
        a = st.attrs()
        meta = StoreMeta(species=st.species, ekin_gev_per_n=st.ekin_gev_per_n, grid=a["grid"],
                         cross_sections=a["cross_sections"], solver_mode=a["solver_mode"], backend=a["backend"],
                         design="sobol", dataset=a["dataset"], temperature=1.0, seed=0)
    MockStore.create(d / "empty.h5", meta).close()
    return paths | {"other": d / "other.h5", "empty": d / "empty.h5"}


@pytest.fixture
def no_work(monkeypatch) -> None:
    """Predicting and re-simulating raise: a refusal must come before both."""
    def refuse(*args, **kw):
        raise Resimulated("work started before the inputs were checked")

    monkeypatch.setattr(closure_mod, "resimulate", refuse)
    monkeypatch.setattr(inference, "predict_file", refuse)


def _sim(**kw) -> SimConfig:
    return SimConfig(**{"grid": GRID, "tol": TOL, "backend": "numba", **kw})


# ---------------------------------------------------------------------------------------------- settings
def test_sim_from_store_repeats_the_scan(world):
    sim = sim_from_store(world["scan"], backend="numba")
    assert sim.grid.settings() == GRID.settings()  # only the scan's changes, as the scan was given them
    assert (sim.tol, sim.max_steps, sim.mode, sim.dataset, sim.backend) == (TOL, None, "fast", "paper", "numba")
    with MockStore.open(world["scan"]) as st:
        assert sim.model().store_fields()["grid"] == st.attrs()["grid"]
    check_resimulation_settings(sim, world["scan"])  # no refusal
    assert sim_from_store(world["test"]).grid == sim.grid  # pseudo-data keep their scan's settings
    # the command line's settings and the pipeline's (its scan config) key the same closure tests and loop
    tcfg = TrainConfig(machine="A")
    ours, pipeline = FeedbackConfig(sim=sim), FeedbackConfig(sim=_sim())
    assert closure_key(world["a"], world["test"], ours) == closure_key(world["a"], world["test"], pipeline)
    assert (loop_identity(world["a"], world["scan"], world["test"], ours, tcfg)
            == loop_identity(world["a"], world["scan"], world["test"], pipeline, tcfg))


def test_sim_from_store_refuses_a_store_of_no_crprop_scan(tmp_path):
    write_synthetic_store(tmp_path / "syn.h5", 4)
    with pytest.raises(FeedbackInputError, match=r"^train_store .*syn\.h5: its attribute 'grid' = \{'synthetic': "
                       r"True\} is not a crprop propagation grid"):
        sim_from_store(tmp_path / "syn.h5")


@pytest.mark.parametrize(("sim", "argument", "message"), [
    (_sim(grid=GridConfig(dr_kpc=4.0, dz_kpc=1.0, ekin_factor=3.0)), "sim.grid.dz_kpc",
     "sim.grid.dz_kpc 1.0 differs from the store's 1.3"),
    (_sim(tol=None), "sim.tol", "sim.tol 1e-06 differs from the store's 0.0001"),
    (_sim(max_steps=50), "sim.max_steps", "sim.max_steps 50 differs from the store's 600"),
    (_sim(mode="exact"), "sim.mode", "sim.mode 'exact' differs from the store's 'fast'"),
    (_sim(grid=GridConfig(dr_kpc=4.0, dz_kpc=1.3, ekin_factor=3.0, half_lives="measured")), "sim.grid.half_lives",
     "sim.grid.half_lives 'measured' differs from the store's 'galprop'"),
    # the default (paper) grid against a scan on the tiny one: the first grid option is named, the rest listed
    (SimConfig(tol=TOL, backend="numba"), "sim.grid.dr_kpc", "sim.grid.dr_kpc 1.0 differs from the store's 4.0"),
])
def test_wrong_resimulation_settings_fail_before_any_work(world, tmp_path, no_work, sim, argument, message):
    out = tmp_path / "fb"
    with pytest.raises(FeedbackInputError, match="differs from the store's") as err:
        run_feedback(world["a"], world["scan"], world["test"], out, FeedbackConfig(sim=sim, progress=False))
    assert err.value.argument == argument and str(err.value).startswith(message), str(err.value)
    assert f"({world['scan']} records grid." in str(err.value) or argument in ("sim.mode",)
    assert "\n" not in str(err.value)
    assert not out.exists()  # nothing written either


def test_paper_grid_lists_every_other_difference(world):
    with pytest.raises(FeedbackInputError) as err:
        check_resimulation_settings(SimConfig(tol=TOL), world["scan"])
    assert "also differ: grid.dz_kpc, grid.ekin_factor, grid.shape_at_zh_max" in str(err.value)


def test_a_check_machine_or_a_test_store_on_other_energies_is_refused(world, tmp_path, no_work):
    train(world["scan"], tmp_path / "check.pt", TrainConfig(machine="check", epochs=1, progress=False, threads=1))
    with pytest.raises(FeedbackInputError, match=r"^model .*check\.pt: is a Check Machine; the feedback loop needs a "
                       r"regressor \(Machine A or B\)$"):
        run_feedback(tmp_path / "check.pt", world["scan"], world["test"], tmp_path / "fb", FeedbackConfig(sim=_sim()))
    coarse = GridConfig(dr_kpc=4.0, dz_kpc=1.3, ekin_factor=5.0)
    run_scan(tmp_path / "coarse.h5", ScanConfig(design="sobol", n_points=4, batch_size=4, backend="numba", grid=coarse,
                                                tol=TOL), progress=False)
    make_pseudodata(tmp_path / "coarse.h5", tmp_path / "coarse_test.h5", PseudoDataConfig(n_pseudo=2, seed=5))
    with pytest.raises(FeedbackInputError, match=r"^test_store .*coarse_test\.h5: its energy grid \(13 bins, .*\) "
                       r"differs from the model's grid \(18 bins, "):
        run_feedback(world["a"], world["scan"], tmp_path / "coarse_test.h5", tmp_path / "fb",
                     FeedbackConfig(sim=_sim()))
    assert not (tmp_path / "fb").exists()


def test_matching_settings_pass(world):
    model = load_model(world["a"])
    check_feedback_inputs(world["a"], model, world["scan"], world["test"], _sim())
    check_feedback_inputs(world["a"], model, world["scan"], world["test"], sim_from_store(world["scan"]))


# ---------------------------------------------------------------------------------------------- training store
def test_another_store_than_the_models_is_refused(world, tmp_path, no_work):
    with pytest.raises(FeedbackInputError, match=r"^train_store .*other\.h5: not the store the model .*a\.pt was "
                       r"trained on \(.*scan\.h5, sha256 [0-9a-f]{12}; this file's is [0-9a-f]{12}\)"):
        run_feedback(world["a"], world["other"], world["test"], tmp_path / "fb", FeedbackConfig(sim=_sim()))
    assert not (tmp_path / "fb").exists()
    # a copy of the training store (another path, the same bytes) is that store
    shutil.copy(world["scan"], tmp_path / "copy.h5")
    check_training_store(world["a"], load_model(world["a"]).metadata, tmp_path / "copy.h5")


@pytest.mark.filterwarnings("ignore:the 12 pseudo-spectra come from:RuntimeWarning")  # a tiny scan: few centres
def test_machine_b_needs_the_scan_of_its_pseudo_data(world, tmp_path):
    run = tmp_path / "run"
    run.mkdir()
    shutil.copy(world["scan"], run / "scan.h5")
    train(run / "scan.h5", run / "b.pt", TrainConfig(machine="B", epochs=1, batch_size=4, progress=False, threads=1,
                                                     pseudo=PseudoDataConfig(n_pseudo=12, seed=1)))
    meta = load_model(run / "b.pt").metadata
    assert meta["training_store"]["pseudo_data"] and Path(meta["training_store"]["path"]) == pseudo_path(run / "b.pt")
    check_training_store(run / "b.pt", meta, run / "scan.h5")
    with pytest.raises(FeedbackInputError, match=r"b\.pt\.pseudo\.h5: is the pseudo-data Machine B .*b\.pt was "
                       r"trained on, not the scan they were made from \(.*run/scan\.h5\); pass the scan"):
        check_training_store(run / "b.pt", meta, pseudo_path(run / "b.pt"))
    with pytest.raises(FeedbackInputError, match=r"other\.h5: not the scan Machine B .*b\.pt was trained on: its "
                       r"pseudo-data .*b\.pt\.pseudo\.h5 were made from other records"):
        check_training_store(run / "b.pt", meta, world["other"])
    # the same design simulated otherwise: the pseudo-data's centres are its records, but not its spectra
    run_scan(tmp_path / "tol3.h5", ScanConfig(design="sobol", n_points=8, batch_size=8, backend="numba", grid=GRID,
                                              tol=1e-3), progress=False)
    with pytest.raises(FeedbackInputError, match=r"tol3\.h5: not the scan Machine B .*b\.pt was trained on: its "
                       r"pseudo-data .*b\.pt\.pseudo\.h5 were simulated otherwise \(grid\.tol differ\)"):
        check_training_store(run / "b.pt", meta, tmp_path / "tol3.h5", machine="B")
    # a moved run directory: the pseudo-data beside the model link it to the moved scan by content
    moved = tmp_path / "moved"
    run.rename(moved)
    check_training_store(moved / "b.pt", meta, moved / "scan.h5")
    with pytest.raises(FeedbackInputError, match="were made from other records"):
        check_training_store(moved / "b.pt", meta, world["other"])
    # without the pseudo-data only the recorded scan path is accepted
    pseudo_path(moved / "b.pt").unlink()
    with pytest.raises(FeedbackInputError, match=r"scan\.h5: cannot be matched to Machine B .*b\.pt: its pseudo-data "
                       r".*b\.pt\.pseudo\.h5 are gone and it records the scan .*run/scan\.h5"):
        check_training_store(moved / "b.pt", meta, moved / "scan.h5")
    moved.rename(run)
    check_training_store(run / "b.pt", meta, run / "scan.h5", machine="B")


def test_a_model_of_another_data_set_is_refused_before_any_work(world, tmp_path, no_work):
    """A model's inputs are normalised (q_C) to the data set it was trained against; predicting with another failed
    only in predict_file, and a Machine B on pseudo-data scored against another data set was refused as if its
    scan were another (review by helper-58)."""
    model = load_model(world["a"])
    with pytest.raises(FeedbackInputError, match=r"^sim\.dataset 'ams02-2021': .*a\.pt's inputs were normalised "
                       r"\(q_C\) "
                       r"against 'paper'; use 'paper', or a model trained against 'ams02-2021'$") as err:
        check_feedback_inputs(world["a"], model, world["scan"], world["test"], _sim(dataset="ams02-2021"))
    assert err.value.argument == "sim.dataset"
    run = tmp_path / "run"
    run.mkdir()
    shutil.copy(world["scan"], run / "scan.h5")
    train(run / "scan.h5", run / "b.pt", TrainConfig(machine="B", epochs=1, batch_size=4, progress=False, threads=1,
                                                     pseudo=PseudoDataConfig(n_pseudo=12, seed=1, dataset="ams02-2021",
                                                                             update_chi2=True)))
    b = load_model(run / "b.pt")
    check_training_store(run / "b.pt", b.metadata, run / "scan.h5", b.machine)  # its scan, whatever the data set
    with pytest.raises(FeedbackInputError, match=r"^sim\.dataset 'paper': .*b\.pt's inputs were normalised \(q_C\) "
                       r"against 'ams02-2021'"):
        check_feedback_inputs(run / "b.pt", b, run / "scan.h5", world["test"], _sim())


def test_machine_a_trained_on_pseudo_data_needs_that_file(world, tmp_path):
    """The Machine A / B rule follows the machine, not the kind of store it learnt from (review by helper-57: a
    Machine A trained on pseudo-data was checked as a Machine B and accepted their scan)."""
    train(world["test"], tmp_path / "a_pseudo.pt", TrainConfig(machine="A", epochs=1, batch_size=4, progress=False,
                                                                threads=1))
    model = load_model(tmp_path / "a_pseudo.pt")
    assert model.metadata["training_store"]["pseudo_data"]
    check_training_store(tmp_path / "a_pseudo.pt", model.metadata, world["test"], model.machine)
    with pytest.raises(FeedbackInputError, match=r"scan\.h5: not the store the model .*a_pseudo\.pt was trained on"):
        check_training_store(tmp_path / "a_pseudo.pt", model.metadata, world["scan"], model.machine)


def test_a_model_without_the_record_is_not_checked(world):
    with pytest.warns(UserWarning, match="records no training store"):
        check_training_store(world["a"], {}, world["other"])


# ---------------------------------------------------------------------------------------------- empty stores
@pytest.mark.parametrize("argument", ["train_store", "test_store"])
def test_empty_stores_are_refused_before_round_0(world, tmp_path, no_work, argument):
    stores = {"train_store": world["scan"], "test_store": world["test"], argument: world["empty"]}
    with pytest.raises(FeedbackInputError, match=rf"^{argument} .*empty\.h5: holds no committed records$"):
        run_feedback(world["a"], stores["train_store"], stores["test_store"], tmp_path / "fb",
                     FeedbackConfig(sim=_sim()))
    assert not (tmp_path / "fb").exists()


def test_predict_file_refuses_an_empty_store(world):
    with pytest.raises(ValueError, match=r"empty\.h5: holds no committed records to predict from$"):
        inference.predict_file(Predictor.load(world["a"]), world["empty"])


# ---------------------------------------------------------------------------------------------- corrupt state
@pytest.mark.parametrize(("text", "reason"), [
    ('{"config": {"sim": {"grid": "unterminated', r"corrupt feedback log \(Unterminated string"),
    ("[]", r"corrupt feedback log \(a JSON list, not an object\)"),
    ('{"config": {}}', r"corrupt feedback log \(no list 'rounds'\)"),
])
def test_a_corrupt_log_is_named(world, tmp_path, no_work, text, reason):
    out = tmp_path / "fb"
    out.mkdir()
    (out / "feedback_log.json").write_text(text)
    with pytest.raises(ValueError, match=rf"^{out / 'feedback_log.json'}: {reason}.*; delete it to redo the loop"):
        run_feedback(world["a"], world["scan"], world["test"], out, FeedbackConfig(sim=_sim(), progress=False))


def test_unreadable_npz_caches_are_stale(tmp_path):
    path = tmp_path / "c.npz"
    savez_keyed(path, "k", theta=np.arange(3.0))
    assert load_keyed(path, "k")["theta"].tolist() == [0.0, 1.0, 2.0] and load_keyed(path, "other") is None
    assert load_keyed(path, "other") is None
    path.write_bytes(path.read_bytes()[:100])  # truncated: zipfile.BadZipFile before
    assert load_keyed(path, "k") is None
    path.write_text("not a zip")
    assert load_keyed(path, "k") is None


def test_closure_test_recomputes_truncated_caches(world, tmp_path, monkeypatch):
    cfg = FeedbackConfig(sim=_sim(), n_test=1, progress=False)
    work = tmp_path / "round"
    first = closure_test(world["a"], world["test"], work, cfg)
    calls: list[int] = []
    real = inference.predict_file

    def counted(*args, **kw):
        calls.append(1)
        return real(*args, **kw)

    monkeypatch.setattr(inference, "predict_file", counted)
    closure = work / "closure.npz"
    closure.write_bytes(closure.read_bytes()[:200])
    again = closure_test(world["a"], world["test"], work, cfg)  # from prediction.npz and the complete resim.h5
    assert calls == [] and np.array_equal(again.theta_prime, first.theta_prime, equal_nan=True)
    assert load_keyed(closure, feedback_mod.closure_key(world["a"], world["test"], cfg)) is not None  # rewritten
    pred = work / "prediction.npz"
    for path in (closure, pred):
        path.write_bytes(path.read_bytes()[:200])
    third = closure_test(world["a"], world["test"], work, cfg)  # predicted and re-simulated again
    assert calls == [1] and np.allclose(third.theta, first.theta)
    assert np.allclose(third.chi2_resim, first.chi2_resim)


# ---------------------------------------------------------------------------------------------- command line
def _cli(world: dict[str, Path], out: Path, *extra: str, store: str = "scan", test: str = "test"):
    return runner.invoke(app, ["feedback", "--model", str(world["a"]), "--store", str(world[store]), "--test",
                               str(world[test]), "--out", str(out), "--backend", "numba", "--no-progress", *extra])


def _usage_error(res, fragment: str) -> None:
    assert res.exit_code == 2, res.output
    assert isinstance(res.exception, SystemExit) and "Traceback" not in res.output
    assert fragment in res.output, res.output
    assert res.output.count("error:") == 1 and res.output.strip().count("\n") == 0, res.output


def test_cli_takes_the_stores_settings(world, tmp_path):
    """Review 51: with no grid options the loop re-simulated on the paper grid; a store scanned at tol 1e-4 failed
    at the retraining merge after round 0. Now two full rounds run, on the scan's settings."""
    out = tmp_path / "fb"
    res = _cli(world, out, "--max-rounds", "2", "--n-test", "1", "--epochs", "1")
    assert res.exit_code == 0, res.output
    rounds = json.loads(res.output)["rounds"]
    assert [r["round"] for r in rounds] == [0, 1]
    with MockStore.open(out / "round_0" / "resim.h5") as st, MockStore.open(world["scan"]) as scan:
        assert st.attrs()["grid"] == scan.attrs()["grid"] and st.attrs()["grid"]["tol"] == TOL
    with MockStore.open(out / "round_0" / "train_store.h5") as st:
        assert st.n_complete == 8 + 1


@pytest.mark.parametrize(("options", "message"), OPTIONS_AGAINST_THE_STORE)
def test_cli_names_the_option_that_disagrees_with_the_store(world, tmp_path, no_work, options, message):
    res = _cli(world, tmp_path / "fb", *options)
    _usage_error(res, f"error: {message} ({world['scan']} records ")
    assert not (tmp_path / "fb").exists()


def test_cli_accepts_options_that_agree_with_the_store(world, tmp_path, monkeypatch):
    seen: list[FeedbackConfig] = []

    def capture(model, store, test, out, cfg, tcfg):
        check_feedback_inputs(model, load_model(model), store, test, cfg.sim)
        seen.append(cfg)
        return feedback_mod.FeedbackResult(Path(model), True, [])

    monkeypatch.setattr(feedback_mod, "run_feedback", capture)
    res = _cli(world, tmp_path / "fb", "--dz", "1.3", "--tol", "1e-4", "--mode", "fast", "--dataset", "paper")
    assert res.exit_code == 0, res.output
    assert seen[0].sim.grid.settings() == GRID.settings() and seen[0].sim.tol == TOL


@pytest.mark.parametrize(("args", "message"), [
    (dict(store="empty"), "--store {empty}: holds no committed records"),
    (dict(test="empty"), "--test {empty}: holds no committed records"),
    (dict(store="other"), "--store {other}: not the store the model {a} was trained on"),
])
def test_cli_names_the_store_option(world, tmp_path, no_work, args, message):
    res = _cli(world, tmp_path / "fb", **args)
    _usage_error(res, "error: " + message.format(**{k: str(v) for k, v in world.items()}))


# ---------------------------------------------------------------------------------------------- directory state
def test_a_directory_in_use_is_refused(world, tmp_path, no_work):
    from crnet.run_lock import run_lock

    out = tmp_path / "fb"
    with run_lock(out, "another loop"), pytest.raises(ValueError, match=r"fb/\.lock: .* is in use by another run"):
        run_feedback(world["a"], world["scan"], world["test"], out, FeedbackConfig(sim=_sim(), progress=False))
    assert sorted(p.name for p in out.iterdir()) == [".lock"]  # no log, no round


def test_a_moved_directory_resumes_with_its_own_files(world, tmp_path):
    """The log names round files relative to its directory, identifies the stores and the model by content and
    replays from the model given, so a run directory copied with its model goes on from its own rounds (before:
    absolute paths, the store's resolved path in the identity and the log's round-0 model path)."""
    tcfg = TrainConfig(machine="A", epochs=1, batch_size=4, progress=False, threads=1)
    cfg = FeedbackConfig(sim=_sim(), target_share=1.0, max_rounds=2, n_test=2, retrain_epochs=1, progress=False)
    run = tmp_path / "run"
    run.mkdir()
    shutil.copy(world["a"], run / "a.pt")
    first = run_feedback(run / "a.pt", world["scan"], world["test"], run / "fb", cfg, tcfg)
    assert [r["round"] for r in first.rounds] == [0, 1] and "next_model" not in first.rounds[1]
    on_disk = json.loads((run / "fb" / "feedback_log.json").read_text())
    assert on_disk["rounds"][0]["next_model"] == "round_0/model.pt"
    assert on_disk["rounds"][0]["model"] == str(run / "a.pt")  # outside the directory: kept as given
    moved = tmp_path / "moved"
    shutil.copytree(run, moved)
    shutil.rmtree(run)
    more = run_feedback(moved / "a.pt", world["scan"], world["test"], moved / "fb",
                        FeedbackConfig(**{**cfg.__dict__, "max_rounds": 3}), tcfg)
    assert [r["model"] for r in more.rounds] == [str(moved / "a.pt"), str(moved / "fb/round_0/model.pt"),
                                                 str(moved / "fb/round_1/model.pt")]
    assert more.rounds[1]["next_store"] == str(moved / "fb/round_1/train_store.h5")
    assert more.model_path == moved / "fb/round_1/model.pt" and not run.exists()
    # a loop that stopped at its cap resumes to the model given, where it is now
    again = run_feedback(moved / "a.pt", world["scan"], world["test"], moved / "fb",
                         FeedbackConfig(**{**cfg.__dict__, "max_rounds": 3}), tcfg)
    assert again.rounds == more.rounds and again.model_path == more.model_path
    # a lower cap: the cap's last round and the model it tested, not round 0's retrained model (review by helper-58)
    fewer = run_feedback(moved / "a.pt", world["scan"], world["test"], moved / "fb",
                         FeedbackConfig(**{**cfg.__dict__, "max_rounds": 1}), tcfg)
    assert fewer.rounds == more.rounds[:1] and fewer.model_path == moved / "a.pt" and not fewer.converged


def test_another_loops_rounds_are_replaced_only_when_asked(world, tmp_path):
    """crnet pipeline (replace_other_run) replaces rounds of another loop once the directory is locked, and resumes
    its own, also after a raised max_rounds (review by helper-57: deleting a marker made it redo every round)."""
    tcfg = TrainConfig(machine="A", epochs=1, batch_size=4, progress=False, threads=1)
    cfg = FeedbackConfig(sim=_sim(), target_share=1.0, max_rounds=1, n_test=2, retrain_epochs=1, progress=False)
    out = tmp_path / "fb"
    run_feedback(world["a"], world["scan"], world["test"], out, cfg, tcfg)
    closure = out / "round_0" / "closure.npz"
    stamp = closure.stat().st_mtime_ns
    with warnings.catch_warnings():
        warnings.simplefilter("error", ReplacedRoundsWarning)  # its own rounds are resumed, silently
        longer = run_feedback(world["a"], world["scan"], world["test"], out,
                              FeedbackConfig(**{**cfg.__dict__, "max_rounds": 2}), tcfg, replace_other_run=True)
    assert [r["round"] for r in longer.rounds] == [0, 1] and closure.stat().st_mtime_ns == stamp  # round 0 kept
    other = FeedbackConfig(**{**cfg.__dict__, "n_test": 1})  # another loop: its identity differs
    with pytest.raises(ValueError, match=r"another run \(differs in feedback.n_test\)"):
        run_feedback(world["a"], world["scan"], world["test"], out, other, tcfg)
    (out / "notes.txt").write_text("mine")
    with pytest.warns(ReplacedRoundsWarning, match=r"fb: replaced the rounds of another feedback loop \(differs in "
                      r"feedback\.n_test\): removed round_0, round_1, feedback_log\.json"):
        replaced = run_feedback(world["a"], world["scan"], world["test"], out, other, tcfg, replace_other_run=True)
    assert [r["n_predictions"] for r in replaced.rounds] == [1] and not (out / "round_1").exists()
    assert (out / "notes.txt").read_text() == "mine"
    # a log of an earlier crnet without an identity, or one that cannot be read, is no log of this loop either
    log = json.loads((out / "feedback_log.json").read_text())
    del log["identity"]
    (out / "feedback_log.json").write_text(json.dumps(log))
    with pytest.warns(ReplacedRoundsWarning, match="its log records no identity"):
        run_feedback(world["a"], world["scan"], world["test"], out, other, tcfg, replace_other_run=True)
    (out / "feedback_log.json").write_text('{"rounds": [')
    with pytest.warns(ReplacedRoundsWarning, match=r"feedback_log\.json: corrupt"):
        run_feedback(world["a"], world["scan"], world["test"], out, other, tcfg, replace_other_run=True)
    # round directories without a log belong to no loop of this identity either (a removal killed half-way)
    (out / "feedback_log.json").unlink()
    (out / "round_7").mkdir()
    with pytest.warns(ReplacedRoundsWarning, match=r"\(round_0, round_7 without a log\)"):
        fresh = run_feedback(world["a"], world["scan"], world["test"], out, other, tcfg, replace_other_run=True)
    assert len(fresh.rounds) == 1 and not (out / "round_7").exists()


def test_cli_stretched_halo_is_checked_against_the_stores_dz(world, tmp_path, no_work):
    """--z-uniform-half was checked against the paper galdef's 0.2 kpc dz before the store was read (a galdef or
    store of smaller dz was refused, one of larger dz passed to a message in field names); it is checked against
    the store's 1.3 kpc, by flag (review by helper-78)."""
    res = _cli(world, tmp_path / "fb", "--z-uniform-half", "1.0")
    _usage_error(res, f"error: --z-uniform-half must be >= --dz (1.3 kpc), got 1.0 (the grid of {world['scan']} with "
                      "the options given)")
    assert not (tmp_path / "fb").exists()
