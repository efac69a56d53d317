"""Ensembles of Machines A/B (TrainConfig.ensemble): the file holds every member, predicts their mean, resumes
member by member, and refuses what it cannot do."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest
import torch
from helpers_store import write_synthetic_store

from crnet.machines.checkpoint import checkpoint_path
from crnet.machines.modelfile import Predictor, load_model
from crnet.machines.train_files import member_path
from crnet.machines.training import ENSEMBLE_SEED_STRIDE, TrainConfig, train
from crnet.pipeline_config import TrainSection
from crnet.pseudodata import PseudoDataConfig

torch.set_num_threads(1)

SMALL = {"n_bins": 84, "n_channels": 8, "n_outputs": 10, "conv_channels": [4], "kernel_size": 3,
         "dense_units": [8], "dropout": 0.0}


def _cfg(**kw) -> TrainConfig:
    base = dict(machine="A", arch="crnet", epochs=2, batch_size=32, progress=False, architecture=SMALL,
                input_noise=0.05, seed=3)
    return TrainConfig(**{**base, **kw})


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    root = tmp_path_factory.mktemp("ens")
    store = root / "mocks.h5"
    write_synthetic_store(store, 300, seed=5)
    result = train(store, root / "ens.pt", _cfg(ensemble=3))
    return store, root, result


def test_ensemble_predicts_the_mean_of_its_members(trained):
    store, root, result = trained
    ens = load_model(root / "ens.pt")
    assert ens.n_members == 3 and result.model_path == root / "ens.pt"
    version = lambda p: torch.load(p, weights_only=True)["format_version"]  # noqa: E731
    assert version(root / "ens.pt") == 2 and version(member_path(root / "ens.pt", 0)) == 1
    meta = ens.metadata["ensemble"]
    assert meta["member_seeds"] == [3, 3 + ENSEMBLE_SEED_STRIDE, 3 + 2 * ENSEMBLE_SEED_STRIDE]
    members = [load_model(member_path(root / "ens.pt", k)) for k in range(3)]
    assert [m.metadata["train_config"]["seed"] for m in members] == meta["member_seeds"]
    # different seeds: different weights and different validation splits (hence scalers)
    assert any(not torch.equal(w, members[1].state_dict[n]) for n, w in members[0].state_dict.items())
    assert not np.array_equal(members[0].scaler.mean, members[1].scaler.mean)
    rng = np.random.default_rng(0)
    e = ens.energies
    feats = ens.scaler.mean[None] + 0.3 * rng.normal(size=(7, 8, e.size))
    want = np.mean([Predictor(m).scaled_outputs(feats, e) for m in members], axis=0)
    got = Predictor(ens).scaled_outputs(feats, e)
    np.testing.assert_allclose(got, want, rtol=1e-12, atol=0)
    np.testing.assert_allclose(Predictor(ens).predict(feats, e), ens.transform.inverse(want), rtol=1e-12)
    # member(k) of the combined file is member k's own model
    for k in range(3):
        np.testing.assert_allclose(Predictor(ens.member(k)).scaled_outputs(feats, e),
                                   Predictor(members[k]).scaled_outputs(feats, e), rtol=0, atol=0)


def test_ensemble_resumes_member_by_member(trained):
    store, root, _ = trained
    before = load_model(root / "ens.pt")
    # a kill during member 2's second epoch: no ensemble file, member 2 has only its epoch-1 checkpoint
    m2 = member_path(root / "ens.pt", 2)
    m2.unlink()
    checkpoint_path(m2).unlink()
    (root / "ens.pt").unlink()
    train(store, m2, replace(_cfg(seed=3 + 2 * ENSEMBLE_SEED_STRIDE), epochs=1))
    m2.unlink()
    mtime0 = member_path(root / "ens.pt", 0).stat().st_mtime_ns
    train(store, root / "ens.pt", _cfg(ensemble=3), resume=True)
    after = load_model(root / "ens.pt")
    assert member_path(root / "ens.pt", 0).stat().st_mtime_ns == mtime0  # finished members are not retrained
    for k in range(3):
        for name, w in before.member(k).state_dict.items():
            assert torch.equal(w, after.member(k).state_dict[name]), (k, name)
    assert checkpoint_path(member_path(root / "ens.pt", 2)).is_file()


def test_machine_b_ensemble_reuses_its_finished_members(trained, tmp_path):
    # members train on the pseudo-data file made once for all of them, and their checkpoints say so: a resume
    # must accept them (a review found them refused for their pseudo-data settings)
    store, _, _ = trained
    cfg = _cfg(machine="B", ensemble=2, epochs=1, input_noise=0.0, pseudo=PseudoDataConfig(n_pseudo=400, seed=1))
    out = tmp_path / "b.pt"
    train(store, out, cfg)
    mtimes = [member_path(out, k).stat().st_mtime_ns for k in range(2)]
    train(store, out, cfg, resume=True)
    assert [member_path(out, k).stat().st_mtime_ns for k in range(2)] == mtimes


def test_ensemble_members_of_another_run_are_not_reused(trained, tmp_path):
    store, root, _ = trained
    other = tmp_path / "other.h5"
    write_synthetic_store(other, 300, seed=6)
    out = tmp_path / "e.pt"
    train(store, out, _cfg(ensemble=2, epochs=1))
    first = load_model(member_path(out, 0)).metadata["training_store"]["sha256"]
    with pytest.raises(ValueError, match=r"different run \(differs in store_sha256\)"):
        train(other, out, _cfg(ensemble=2, epochs=1), resume=True)
    with pytest.raises(ValueError, match=r"differs in input_noise\)"):
        train(store, out, _cfg(ensemble=2, epochs=1, input_noise=0.1), resume=True)
    # a finished member is held to the whole identity, as a single machine's resume: the architecture too
    arch = dict(load_model(member_path(out, 0)).architecture, conv_channels=[6])
    with pytest.raises(ValueError, match=r"member0.ckpt: checkpoint was written by a different run \(differs in "
                                         r"architecture\)"):
        train(store, out, _cfg(ensemble=2, epochs=1, architecture=arch), resume=True)
    checkpoint_path(member_path(out, 1)).write_bytes(b"not a checkpoint")
    with pytest.raises(ValueError, match=r"member1.ckpt: not a readable crnet training checkpoint"):
        train(store, out, _cfg(ensemble=2, epochs=1), resume=True)
    train(other, out, _cfg(ensemble=2, epochs=1))  # no resume: every member trained afresh on the new store
    ens = load_model(out)
    shas = {load_model(member_path(out, k)).metadata["training_store"]["sha256"] for k in range(2)}
    assert first not in shas and len(shas) == 1 and ens.metadata["training_store"]["sha256"] in shas
    assert "metrics" not in ens.metadata and len(ens.metadata["ensemble"]["member_metrics"]) == 2
    with pytest.raises(ValueError, match="no checkpoint of ensemble member 0"):
        train(store, tmp_path / "never.pt", _cfg(ensemble=2), resume=True)


def test_ensemble_warm_start_and_errors(trained, tmp_path):
    store, root, _ = trained
    train(store, tmp_path / "warm.pt", _cfg(ensemble=3, init_from=str(root / "ens.pt"), epochs=1, seed=4))
    warm, ens = load_model(tmp_path / "warm.pt"), load_model(root / "ens.pt")
    assert warm.n_members == 3 and warm.metadata["ensemble"]["member_seeds"] == [4, 1004, 2004]
    # member k validates on member k's split of the model it starts from (its seed 3 + 1000 k, not 4 + 1000 k)...
    assert warm.metadata["ensemble"]["member_split_seeds"] == ens.metadata["ensemble"]["member_split_seeds"] == [
        3, 1003, 2003]
    # ...and members started from one machine all on that machine's split, not on records it trained on
    train(store, tmp_path / "one.pt", _cfg(ensemble=2, init_from=str(member_path(root / "ens.pt", 1)), epochs=1))
    assert load_model(tmp_path / "one.pt").metadata["ensemble"]["member_split_seeds"] == [1003, 1003]
    with pytest.raises(ValueError, match="3 members cannot start one of 2"):
        train(store, tmp_path / "bad.pt", _cfg(ensemble=2, init_from=str(root / "ens.pt")))
    with pytest.raises(ValueError, match="ensemble must be >= 1"):
        train(store, tmp_path / "bad.pt", _cfg(ensemble=0))
    with pytest.raises(ValueError, match="not the Check Machine"):
        train(store, tmp_path / "bad.pt", TrainConfig(machine="check", ensemble=2, progress=False))
    with pytest.raises(ValueError, match="ensemble_machines"):
        TrainSection(ensemble_machines=["C-paper"])
    with pytest.raises(ValueError, match="ensemble must be >= 1"):
        TrainSection(ensemble=0)


def test_retraining_takes_the_model_files_own_settings(trained, tmp_path):
    """crnet feedback retrains a machine as it was trained (review of session 13: it used TrainConfig defaults,
    cutting an ensemble to one member and dropping its input noise)."""
    _, root, _ = trained
    cfg = TrainConfig.of_model(root / "ens.pt")
    assert (cfg.ensemble, cfg.input_noise, cfg.batch_size, cfg.seed, cfg.arch) == (3, 0.05, 32, 3, "crnet")
    assert cfg.architecture == SMALL and cfg.init_from is None and cfg.pseudo.n_pseudo == 1000
    member = TrainConfig.of_model(member_path(root / "ens.pt", 1))
    assert member.ensemble == 1 and member.seed == 3 + ENSEMBLE_SEED_STRIDE
    # where it ran is not copied: a model trained on a GPU retrains on a CPU-only machine
    from crnet.machines.modelfile import load_model, save_model

    model = load_model(root / "ens.pt")
    model.metadata["train_config"] = {**model.metadata["train_config"], "device": "cuda", "threads": 64}
    save_model(tmp_path / "gpu.pt", model)
    moved = TrainConfig.of_model(tmp_path / "gpu.pt")
    assert (moved.device, moved.threads, moved.ensemble) == ("auto", None, 3)
    model.metadata["train_config"]["pseudo"] = {"n_pseudo": "many"}
    save_model(tmp_path / "bad.pt", model)
    with pytest.raises(ValueError, match="train_config.pseudo"):
        TrainConfig.of_model(tmp_path / "bad.pt")
