"""How often the feedback loop and the evaluation read their inputs: one run_feedback hashes the training store once
and opens it once for its checks (a Machine B's scan once more, for the records its pseudo-data name); every model
file is loaded once per run_feedback / evaluate (counting wrappers around the hash, the store opening and the model
loader; tiny grid, numba)."""

from __future__ import annotations

import shutil
from collections import Counter
from pathlib import Path

import pytest
import torch
from helpers_loop import GRID, TOL, build_loop_world

import crnet.feedback as feedback_mod
import crnet.machines.modelfile as modelfile
import crnet.store as store_mod
from crnet.evaluate.report import EvalConfig, check_evaluation_settings, evaluate
from crnet.feedback import FeedbackConfig, SimConfig, loop_identity, run_feedback
from crnet.feedback_inputs import check_feedback_inputs
from crnet.machines.training import TrainConfig, train
from crnet.pseudodata import PseudoDataConfig
from crnet.store import MockStore

torch.set_num_threads(1)


class Stop(Exception):
    """Raised by the stand-in for round 0's closure test: what came before it is the loop's start."""


@pytest.fixture(scope="module")
def world(tmp_path_factory) -> dict[str, Path]:
    """:func:`build_loop_world` and a copy of its Machine A (a second machine for the evaluation)."""
    paths = build_loop_world(tmp_path_factory.mktemp("reads_world"))
    shutil.copy(paths["a"], paths["a"].with_name("a2.pt"))
    return paths | {"a2": paths["a"].with_name("a2.pt")}


@pytest.fixture
def counts(monkeypatch) -> dict[str, Counter]:
    """Counters by file name: 'hashed' (bytes read for a sha256), 'opened' (stores opened), 'loaded' (model files
    loaded in full, :func:`crnet.machines.modelfile.load_model`, which Predictor.load calls too)."""
    seen = {"hashed": Counter(), "opened": Counter(), "loaded": Counter()}
    read_sha, open_h5, load = modelfile._read_sha256, store_mod._open_h5, modelfile.load_model

    def counting_read_sha(path):
        seen["hashed"][Path(path).name] += 1
        return read_sha(path)

    def counting_open(path, mode):
        seen["opened"][Path(path).name] += 1
        return open_h5(path, mode)

    def counting_load(path):
        seen["loaded"][Path(path).name] += 1
        return load(path)

    monkeypatch.setattr(modelfile, "_read_sha256", counting_read_sha)
    monkeypatch.setattr(store_mod, "_open_h5", counting_open)
    monkeypatch.setattr(modelfile, "load_model", counting_load)
    return seen


def _sim() -> SimConfig:
    return SimConfig(grid=GRID, tol=TOL, backend="numba")


def _stop_at_round_0(monkeypatch) -> None:
    def stop(*args, **kw):
        raise Stop

    monkeypatch.setattr(feedback_mod, "closure_test", stop)


# ---------------------------------------------------------------------------------------------- feedback loop
def test_one_run_hashes_the_training_store_once_and_loads_the_model_once(world, tmp_path, counts):
    """Round 0 for real (one prediction re-simulated): the checks' digest keys the loop (it was hashed twice, once
    in check_training_store and once in loop_identity), each store is opened once by the checks (the training store
    was opened twice), and round 0 predicts with the model the checks loaded (it was loaded twice)."""
    cfg = FeedbackConfig(sim=_sim(), max_rounds=1, n_test=1, progress=False)
    res = run_feedback(world["a"], world["scan"], world["test"], tmp_path / "fb", cfg)
    assert [r["round"] for r in res.rounds] == [0]
    assert counts["hashed"]["scan.h5"] == 1
    assert counts["opened"]["scan.h5"] == 1  # the checks; round 0 reads only the test store and its re-simulations
    assert counts["loaded"] == {"a.pt": 1}
    # a resumed run hashes and opens it once more, and loads nothing (round 0's closure test is cached)
    for counter in counts.values():
        counter.clear()
    again = run_feedback(world["a"], world["scan"], world["test"], tmp_path / "fb", cfg)
    assert again.rounds == res.rounds
    assert (counts["hashed"]["scan.h5"], counts["opened"]["scan.h5"], counts["loaded"]["a.pt"]) == (1, 1, 1)


def test_the_checks_open_each_store_once(world, tmp_path, counts, monkeypatch):
    _stop_at_round_0(monkeypatch)
    with pytest.raises(Stop):
        run_feedback(world["a"], world["scan"], world["test"], tmp_path / "fb", FeedbackConfig(sim=_sim()))
    assert counts["opened"] == {"scan.h5": 1, "test.h5": 1}
    assert counts["hashed"]["scan.h5"] == 1
    checked = check_feedback_inputs(world["a"], modelfile.load_model(world["a"]), world["scan"], world["test"], _sim())
    assert checked.train_store_sha256 == modelfile.file_sha256(world["scan"])
    for setup, path in ((checked.train, world["scan"]), (checked.test, world["test"])):
        with MockStore.open(path) as st:
            assert (setup.n_complete, setup.species, setup.attrs) == (st.n_complete, list(st.species), st.attrs())


@pytest.mark.filterwarnings("ignore:the 12 pseudo-spectra come from:RuntimeWarning")  # a tiny scan: few centres
def test_machine_b_checks_open_its_scan_twice_and_its_pseudo_data_once(world, tmp_path, counts, monkeypatch):
    """Machine B's scan: its setup, then the records its pseudo-data name (it was opened four times, the pseudo-data
    three times)."""
    run = tmp_path / "run"
    run.mkdir()
    shutil.copy(world["scan"], run / "scan.h5")
    train(run / "scan.h5", run / "b.pt", TrainConfig(machine="B", epochs=1, batch_size=4, progress=False, threads=1,
                                                     pseudo=PseudoDataConfig(n_pseudo=12, seed=1)))
    _stop_at_round_0(monkeypatch)
    for counter in counts.values():
        counter.clear()
    with pytest.raises(Stop):
        run_feedback(run / "b.pt", run / "scan.h5", world["test"], tmp_path / "fb", FeedbackConfig(sim=_sim()))
    assert counts["opened"] == {"scan.h5": 2, "b.pt.pseudo.h5": 1, "test.h5": 1}
    assert counts["hashed"]["scan.h5"] == 1
    assert counts["loaded"] == {"b.pt": 1}


def test_loop_identity_takes_the_digest_it_is_given(world, counts):
    tcfg = TrainConfig(machine="A")
    computed = loop_identity(world["a"], world["scan"], world["test"], FeedbackConfig(), tcfg)
    assert counts["hashed"]["scan.h5"] == 1
    given = loop_identity(world["a"], world["scan"], world["test"], FeedbackConfig(), tcfg,
                          computed["train_store_sha256"])
    assert given == computed and counts["hashed"]["scan.h5"] == 1


def test_the_digest_memo_covers_large_files_only(world, counts, monkeypatch):
    """What loop_identity's docstring said before: file_sha256 remembers digests, keyed by the resolved path and the
    file's (device, inode, size, mtime, ctime), of files of HASH_CACHE_MIN_BYTES (256 MiB) or more only; a smaller
    store was read twice per run_feedback."""
    modelfile.file_sha256(world["scan"])
    modelfile.file_sha256(world["scan"])
    assert counts["hashed"]["scan.h5"] == 2  # a small file: read every time
    monkeypatch.setattr(modelfile, "HASH_CACHE_MIN_BYTES", 0)
    modelfile._sha256_of.cache_clear()
    first = modelfile.file_sha256(world["scan"])
    assert modelfile.file_sha256(world["scan"]) == first and counts["hashed"]["scan.h5"] == 3  # remembered
    modelfile._sha256_of.cache_clear()


# ---------------------------------------------------------------------------------------------- evaluation
def test_evaluate_loads_every_model_once(world, tmp_path, counts):
    """check_evaluation_settings loaded every model in full for its metadata and the closure test loaded it again;
    now the closure tests predict with the models the check loaded. The first mock store is opened once by the
    check (it was opened three times)."""
    fb = FeedbackConfig(sim=_sim(), n_test=1, progress=False)
    cfg = EvalConfig({"Machine A": str(world["a"]), "Machine A2": str(world["a2"])}, str(world["test"]),
                     [str(world["scan"])], str(tmp_path / "ev"), feedback=fb, tau_floor=False)
    models, _ = check_evaluation_settings(cfg)
    assert set(models) == {"Machine A", "Machine A2"} and counts["opened"]["scan.h5"] == 1
    counts["loaded"].clear()
    report = evaluate(cfg)
    assert counts["loaded"] == {"a.pt": 1, "a2.pt": 1}
    assert set(report["closure_counts"]) == {"Machine A", "Machine A2"}
    counts["loaded"].clear()
    assert evaluate(cfg)["closure_counts"] == report["closure_counts"]  # resumed from the cached closures
    assert counts["loaded"] == {"a.pt": 1, "a2.pt": 1}


def test_a_loaded_model_keys_the_closure_cache_by_the_bytes_it_came_from(world, tmp_path):
    """The evaluation loads every model before its first closure test; a file rewritten in between must not key the
    old model's predictions as the new file's: the key is the digest of the bytes loaded (ModelFile.source_sha256)."""
    from dataclasses import replace

    from crnet.feedback import closure_key, closure_test
    from crnet.feedback_state import load_keyed
    from crnet.machines.modelfile import file_sha256, load_model, save_model

    path = tmp_path / "model.pt"
    shutil.copy(world["a"], path)
    loaded = load_model(path)
    assert loaded.source_sha256 == file_sha256(path) == file_sha256(world["a"])
    assert loaded.member(0).source_sha256 is None  # a member is not the file's content
    save_model(path, replace(loaded, metadata={**loaded.metadata, "note": "rewritten"}))
    assert file_sha256(path) != loaded.source_sha256
    cfg = FeedbackConfig(sim=_sim(), n_test=1, progress=False)
    closure_test(path, world["test"], tmp_path / "closure", cfg, model=loaded)
    cache = tmp_path / "closure" / "closure.npz"
    assert load_keyed(cache, closure_key(path, world["test"], cfg, model_sha256=loaded.source_sha256)) is not None
    assert load_keyed(cache, closure_key(path, world["test"], cfg)) is None  # not filed under the new bytes


def test_the_loop_identity_names_the_bytes_round_0_predicts_with(world, tmp_path, monkeypatch):
    """The model is loaded before the checks, which hash the whole training store; a model file rewritten in that
    window must not give the log the new bytes' digest while round 0 predicts with the old model (review,
    helper-68): the identity takes the loaded model's source_sha256."""
    from dataclasses import replace

    from crnet.machines.modelfile import file_sha256, load_model, save_model

    path = tmp_path / "model.pt"
    shutil.copy(world["a"], path)
    original = file_sha256(path)
    checks, identities = feedback_mod.check_feedback_inputs, []

    def checks_then_rewrite(*args, **kw):
        result = checks(*args, **kw)
        old = load_model(path)
        save_model(path, replace(old, metadata={**old.metadata, "note": "rewritten"}))
        return result

    def recording_identity(*args, **kw):
        identities.append(loop_identity(*args, **kw))
        return identities[-1]

    monkeypatch.setattr(feedback_mod, "check_feedback_inputs", checks_then_rewrite)
    monkeypatch.setattr(feedback_mod, "loop_identity", recording_identity)
    _stop_at_round_0(monkeypatch)
    with pytest.raises(Stop):
        run_feedback(path, world["scan"], world["test"], tmp_path / "fb", FeedbackConfig(sim=_sim()))
    assert file_sha256(path) != original
    assert [i["model_sha256"] for i in identities] == [original]


def test_a_replaced_or_member_model_is_not_taken_for_the_file(world, tmp_path):
    """dataclasses.replace and member() make models that are not the file's bytes: they carry no source digest and
    no networks of the original, and closure_test refuses them as ``model=`` (they would be cached under the
    file's digest)."""
    from dataclasses import replace

    from crnet.feedback import closure_test
    from crnet.machines.modelfile import load_model

    loaded = load_model(world["a"])
    other = replace(loaded, state_dict={k: v + 1 for k, v in loaded.state_dict.items()})
    assert loaded.source_sha256 is not None and other.source_sha256 is None
    assert other._checked == {} and loaded._checked  # the check's networks hold the file's weights, not other's
    cfg = FeedbackConfig(sim=_sim(), n_test=1, progress=False)
    for model in (other, loaded.member(0)):
        with pytest.raises(ValueError, match=r"^closure_test: model= must be .* as load_model read it"):
            closure_test(world["a"], world["test"], tmp_path / "closure", cfg, model=model)
    assert not (tmp_path / "closure").exists()  # refused before anything was written
