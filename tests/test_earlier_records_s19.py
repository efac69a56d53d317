"""Records written before session 19 still match the same run (review by helper-76/77 of session 19): scan stores,
stage markers and feedback logs holding explicit paper grid values (now spelt None), training checkpoints without
the optimiser settings, and feedback logs holding a paper machine's first-training patience."""

from __future__ import annotations

import json
from pathlib import Path

import h5py
import pytest
import torch
from helpers_store import write_synthetic_store

from crnet.feedback_state import _check_identity
from crnet.machines.checkpoint import CHECKPOINT_FORMAT, read_checkpoint
from crnet.pipeline_config import load_config
from crnet.pipeline_stages import _Stages
from crnet.scan.models import GridConfig, normalised_grid
from crnet.scan.runner import ScanConfig, _check_resume_config
from crnet.store import MockStore, StoreError

CI = Path(__file__).resolve().parents[1] / "configs" / "pipeline_ci.toml"


def test_normalised_grid_spells_paper_values_as_this_code_does():
    assert normalised_grid({"dr_kpc": 4.0, "z_stretch_factor": 1.15, "dz_max_kpc": 1.0, "half_lives": "galprop"}) \
        == {"dr_kpc": 4.0, "z_stretch_factor": None, "dz_max_kpc": None, "half_lives": None}
    assert normalised_grid({"model": "function"}) == {"model": "function"}  # no GridConfig record: as it is
    assert normalised_grid(None) is None


def test_a_scan_store_with_explicit_paper_grid_values_resumes(tmp_path):
    """`crnet scan --z-stretch-factor 1.15` (the default, written as 1.15 before) could not be resumed: 'cannot
    resume with a different configuration (grid: store {... 1.15} vs now {... None})'."""
    path = tmp_path / "s.h5"
    write_synthetic_store(path, 4)
    grid = {"dr_kpc": 4.0, "dz_kpc": 0.5, "ekin_factor": 3.0, "z_uniform_half_kpc": 2.0}
    cfg = ScanConfig(design="sobol", n_points=4, grid=GridConfig(**grid, z_stretch_factor=1.15))
    old = {**cfg.to_dict(), "grid": {**cfg.to_dict()["grid"], "z_stretch_factor": 1.15, "loss_scheme": "upwind1"}}
    with h5py.File(path, "r+") as f:
        f.attrs["config"] = json.dumps(old)
    with MockStore.open(path, "r") as store:
        _check_resume_config(store, cfg)
        with pytest.raises(StoreError, match="z_stretch_factor"):  # another value is still another configuration
            _check_resume_config(store, ScanConfig(design="sobol", n_points=4,
                                                   grid=GridConfig(**grid, z_stretch_factor=1.3)))


def test_a_stage_marker_with_explicit_paper_grid_values_is_done(tmp_path):
    st = _Stages(tmp_path, load_config(CI, str(tmp_path)), code={"crnet": "0", "source_sha256": "1" * 64})
    st.run("scan", lambda resume: "scan.h5")
    marker = tmp_path / "stages/scan.json"
    info = json.loads(marker.read_text())
    assert info["settings"]["scan.grid.z_stretch_factor"] is None
    old = {**info["settings"], "scan.grid.z_stretch_factor": 1.15, "scan.grid.dz_max_kpc": 1.0,
           "scan.grid.loss_scheme": "upwind1"}
    marker.write_text(json.dumps({**info, "settings": old}))
    again = _Stages(tmp_path, load_config(CI, str(tmp_path)), code={"crnet": "0", "source_sha256": "1" * 64})
    assert again.run("scan", lambda resume: pytest.fail("re-ran")) == "scan.h5"
    marker.write_text(json.dumps({**info, "settings": {**old, "scan.grid.dz_max_kpc": 2.0}}))
    with pytest.raises(ValueError, match=r"other settings \(scan.grid.dz_max_kpc differ\)"):
        _Stages(tmp_path, load_config(CI, str(tmp_path)), code={"crnet": "0", "source_sha256": "1" * 64}).check("scan")


def _identity(grid: dict, patience: int, epochs: int = 3) -> dict:
    return {"model_sha256": "m", "test_store_sha256": "t", "train_store_sha256": "s",
            "feedback": {"sim": {"grid": grid, "mode": "fast"}, "n_test": 3, "seed": 0},
            "retraining": {"machine": "A", "arch": "paper", "epochs": epochs, "batch_size": 8,
                           "learning_rate": 8e-5, "weight_decay": 0.0, "patience": patience}}


def test_a_feedback_log_of_earlier_code_is_the_same_loop(tmp_path):
    """Earlier logs hold explicit paper grid values and, from `crnet feedback`, the paper machine's first-training
    epochs as its patience (5 >= 3 retraining epochs: no early stopping either way)."""
    log = tmp_path / "feedback_log.json"
    ours = _identity({"dr_kpc": 4.0}, patience=3)
    _check_identity(log, _identity({"dr_kpc": 4.0, "z_stretch_factor": 1.15, "loss_scheme": "upwind1"}, 5), ours)
    with pytest.raises(ValueError, match=r"differs in retraining.patience\)"):  # 2 < 3 epochs: it could stop early
        _check_identity(log, _identity({"dr_kpc": 4.0}, 2), ours)
    with pytest.raises(ValueError, match=r"differs in feedback.sim\)"):  # nested one level: the whole sim
        _check_identity(log, _identity({"dr_kpc": 4.0, "z_stretch_factor": 1.3}, 3), ours)


def test_a_checkpoint_without_the_optimiser_settings_resumes(tmp_path):
    """Checkpoints written before the learning rate and weight decay were part of the identity were refused as
    'differs in --lr, --weight-decay' though neither was changed."""
    path = tmp_path / "m.pt.ckpt"
    identity = {"machine": "A", "seed": 0, "learning_rate": 8e-5, "weight_decay": 0.0}
    old = {k: v for k, v in identity.items() if k not in ("learning_rate", "weight_decay")}
    torch.save({"format": CHECKPOINT_FORMAT, "identity_json": json.dumps(old), "state_json": "{}"}, path)
    assert read_checkpoint(path, identity)["format"] == CHECKPOINT_FORMAT
    torch.save({"format": CHECKPOINT_FORMAT, "identity_json": json.dumps(identity), "state_json": "{}"}, path)
    with pytest.raises(ValueError, match=r"differs in learning_rate\)"):
        read_checkpoint(path, {**identity, "learning_rate": 1e-3})
    with pytest.raises(ValueError, match=r"differs in seed\)"):  # what the old identity holds is still compared
        torch.save({"format": CHECKPOINT_FORMAT, "identity_json": json.dumps(old), "state_json": "{}"}, path)
        read_checkpoint(path, {**identity, "seed": 1})


def test_a_paper_loop_with_patience_above_its_epochs_matches_its_own_log(tmp_path):
    """A paper machine trained with --patience 40, retrained for 20 epochs: its identity recorded patience 40, the
    log read back said 20, and the loop could not resume itself (review by helper-78). Both spell it 20 now."""
    from dataclasses import replace

    from crnet.closure import FeedbackConfig
    from crnet.feedback import loop_identity
    from crnet.machines.training import TrainConfig

    for name in ("m.pt", "s.h5", "t.h5"):
        (tmp_path / name).write_bytes(name.encode())
    cfg = FeedbackConfig(retrain_epochs=20)
    tcfg = replace(TrainConfig(machine="A", patience=40, epochs=200).resolved(), epochs=cfg.retrain_epochs)
    ident = loop_identity(tmp_path / "m.pt", tmp_path / "s.h5", tmp_path / "t.h5", cfg, tcfg)
    assert ident["retraining"]["patience"] == 20
    _check_identity(tmp_path / "feedback_log.json", json.loads(json.dumps(ident)), ident)
    crnet_a = loop_identity(tmp_path / "m.pt", tmp_path / "s.h5", tmp_path / "t.h5", cfg,
                            replace(tcfg, arch="crnet"))
    assert crnet_a["retraining"]["patience"] == 40  # early stopping is the crnet network's: kept as given
