"""Feedback loop: tau (Eq. 4.4), clipping, pseudo-features, and a tiny real loop with warm-start and resume."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from crnet.feedback import FeedbackConfig, SimConfig, clip_to_box, run_feedback, tau
from crnet.machines.training import TrainConfig, train
from crnet.scan.models import GridConfig
from crnet.scan.runner import ScanConfig, run_scan

torch.set_num_threads(1)
GRID = GridConfig(dr_kpc=4.0, dz_kpc=1.3, ekin_factor=3.0)


def test_tau_uses_log_breaks():
    a = np.array([[4.0, 0.5, -1.0, 20.0, 5.0, 1.0, 2.3, 2.4, 1000.0, 1e5]])
    b = a.copy()
    b[0, 0] = 4.4
    b[0, 8] = 10 ** 3.3
    t = tau(a, b)
    assert t[0, 0] == pytest.approx(0.1) and t[0, 8] == pytest.approx(0.1) and t[0, 1] == 0.0
    assert np.isnan(tau(a, np.full_like(a, np.nan))).all()


def test_clip_to_box_flags_nonfinite():
    p = np.array([[40.0, 0.5, -1, 20, 5, 1, 2.3, 2.4, 1e3, 1e5], [4, 0.5, -1, 20, 5, np.nan, 2.3, 2.4, 1e3, 1e5]])
    c, ok = clip_to_box(p)
    assert c[0, 0] <= 15.0 and ok.tolist() == [True, False]


def test_galprop_mode_cannot_resimulate():
    with pytest.raises(ValueError, match="mode 'galprop' cannot be used for re-simulating predictions"):
        SimConfig(mode="galprop")
    assert SimConfig(mode="exact").mode == "exact"


def test_feedback_loop_retrains_and_resumes(tmp_path):
    scan = tmp_path / "scan.h5"
    run_scan(scan, ScanConfig(design="sobol", n_points=8, batch_size=8, backend="numba", grid=GRID), progress=False)
    pseudo_cfg = dict(n_pseudo=3, seed=5)
    from crnet.pseudodata import PseudoDataConfig, make_pseudodata

    make_pseudodata(scan, tmp_path / "test.h5", PseudoDataConfig(**pseudo_cfg))
    tcfg = TrainConfig(machine="A", epochs=1, batch_size=4, progress=False, threads=1)
    train(scan, tmp_path / "a.pt", tcfg)
    cfg = FeedbackConfig(sim=SimConfig(grid=GRID, backend="numba"), target_share=1.0, max_rounds=2, n_test=2,
                         retrain_epochs=1, progress=False)
    res = run_feedback(tmp_path / "a.pt", scan, tmp_path / "test.h5", tmp_path / "fb", cfg, tcfg)
    assert len(res.rounds) == 2 and not res.converged
    assert res.model_path == tmp_path / "fb" / "round_0" / "model.pt"
    r0 = res.rounds[0]
    assert r0["n_predictions"] == 2 and 0.0 <= r0["passing_share"] <= 1.0 and "median_tau" in r0
    assert r0["n_skipped_inputs"] == 0  # the sobol scan's pseudo-spectra are all readable
    log = json.loads((tmp_path / "fb" / "feedback_log.json").read_text())
    assert [r["round"] for r in log["rounds"]] == [0, 1]
    from crnet.store import MockStore

    with MockStore.open(tmp_path / "fb" / "round_0" / "train_store.h5") as st:
        assert st.n_complete == 8 + 2  # the re-simulated points were appended
        assert st.attrs()["holdout_records"] == 8  # only the scan's records can be test centres
    # resume after completion: nothing is recomputed, same result
    mtime = (tmp_path / "fb" / "round_0" / "model.pt").stat().st_mtime
    again = run_feedback(tmp_path / "a.pt", scan, tmp_path / "test.h5", tmp_path / "fb", cfg, tcfg)
    assert again.rounds == res.rounds and (tmp_path / "fb" / "round_0" / "model.pt").stat().st_mtime == mtime
    # the stop rule: a threshold every prediction meets stops at round 0
    easy = FeedbackConfig(sim=cfg.sim, tau_threshold=1e9, max_rounds=2, n_test=2, progress=False)
    done = run_feedback(tmp_path / "a.pt", scan, tmp_path / "test.h5", tmp_path / "fb_easy", easy, tcfg)
    assert done.converged and len(done.rounds) == 1 and done.model_path == tmp_path / "a.pt"
    # a loop that has stopped resumes to a no-op, even with a higher cap (review of session 13: it ran round 1)
    more = run_feedback(tmp_path / "a.pt", scan, tmp_path / "test.h5", tmp_path / "fb_easy",
                        FeedbackConfig(**{**easy.__dict__, "max_rounds": 3}), tcfg)
    assert more.rounds == done.rounds and not (tmp_path / "fb_easy" / "round_1").exists()
    # a directory of another run is refused, naming what differs, before anything is computed
    with pytest.raises(ValueError, match=r"another run \(differs in feedback.n_test\)"):
        run_feedback(tmp_path / "a.pt", scan, tmp_path / "test.h5", tmp_path / "fb",
                     FeedbackConfig(**{**cfg.__dict__, "n_test": 3}), tcfg)
    # raising the cap of a loop that ended at it: the last round's retraining first, then a new model is tested
    longer = run_feedback(tmp_path / "a.pt", scan, tmp_path / "test.h5", tmp_path / "fb",
                          FeedbackConfig(**{**cfg.__dict__, "max_rounds": 3}), tcfg)
    assert [r["model"] for r in longer.rounds] == [str(tmp_path / "a.pt"), str(tmp_path / "fb/round_0/model.pt"),
                                                   str(tmp_path / "fb/round_1/model.pt")]
    assert longer.rounds[1]["next_model"] == str(tmp_path / "fb/round_1/model.pt")
    with MockStore.open(tmp_path / "fb" / "round_1" / "train_store.h5") as st:  # round 0's store + 2 more
        assert st.n_complete == 8 + 2 + 2 and st.attrs()["holdout_records"] == 8


def test_resimulate_batches_by_halo_and_reads_back_in_row_order(tmp_path):
    """Rows go through propagate sorted by z_h (batches share a small grid); read_in_row_order undoes it and
    every row's spectra equal a one-row re-simulation of the same parameters."""
    from crnet.feedback import read_in_row_order, resimulate
    from crnet.store import MockStore
    from crprop.params import PARAM_NAMES

    base = np.array([3.25, 0.478, -1.55, 34.9, 3.9, 0.28, 2.42, 2.12, 880.0, 4.67e5])
    params = np.repeat(base[None], 3, axis=0)
    iz = PARAM_NAMES.index("z_halo_kpc")
    params[:, iz] = [9.0, 3.0, 6.0]
    params[:, 0] = [3.0, 3.5, 4.0]
    sim = SimConfig(grid=GRID, backend="numba", batch_size=2)
    with MockStore.open(resimulate(params, tmp_path / "r.h5", sim, progress=False), "r") as st:
        assert st.read("step").tolist() == [1, 2, 0]  # z_h 3, 6, 9
        assert np.allclose(read_in_row_order(st, "params"), params)
        flux = read_in_row_order(st, "flux")
    with MockStore.open(resimulate(params[2:], tmp_path / "one.h5", sim, progress=False), "r") as st:
        one = st.read("flux")[0]
    # row 2 (z_h 6) was batched with row 1 (z_h 3) on the 6 kpc grid; alone it gets the same grid, so only the
    # solver tolerance (1e-6 relative residual) separates the two
    assert np.allclose(flux[2], one, rtol=1e-4, atol=0)
    assert not np.allclose(flux[0], flux[2], rtol=1e-2)


def test_loop_identity_records_the_resolved_schedule(tmp_path):
    # the pipeline leaves lr_schedule / patience to the network's defaults (None); the identity records what they
    # resolve to, so a feedback log written when the default was spelled out still matches, and a changed
    # default (the paper machines' constant rate) is seen
    from crnet.feedback import loop_identity

    files = []
    for name in ("model.pt", "test.h5", "train.h5"):
        (tmp_path / name).write_bytes(name.encode())
        files.append(tmp_path / name)
    model, test, store = files
    crnet_a = loop_identity(model, store, test, FeedbackConfig(), TrainConfig(machine="A", arch="crnet", patience=10))
    paper_a = loop_identity(model, store, test, FeedbackConfig(), TrainConfig(machine="A", arch="paper", epochs=7))
    assert (crnet_a["retraining"]["lr_schedule"], crnet_a["retraining"]["patience"]) == ("plateau", 10)
    assert (paper_a["retraining"]["lr_schedule"], paper_a["retraining"]["patience"]) == ("constant", 7)


def test_loop_identity_spells_training_defaults_one_way(tmp_path):
    """The pipeline leaves the learning rate and weight decay to the network (None), `crnet feedback` takes them from
    the model file (8e-5, 0.0): the same retraining, which the identity records resolved, so a hand-run loop on the
    pipeline's feedback directory is no other run (walk-through, session 19). A log written before, with None,
    still matches; another explicit rate does not."""
    from crnet.feedback import loop_identity
    from crnet.feedback_state import _check_identity
    from crnet.machines.training import PAPER_LEARNING_RATE

    files = []
    for name in ("model.pt", "test.h5", "train.h5"):
        (tmp_path / name).write_bytes(name.encode())
        files.append(tmp_path / name)
    model, test, store = files
    pipeline = loop_identity(model, store, test, FeedbackConfig(), TrainConfig(machine="A", arch="paper"))
    by_hand = loop_identity(model, store, test, FeedbackConfig(),
                            TrainConfig(machine="A", arch="paper", learning_rate=PAPER_LEARNING_RATE, weight_decay=0.0))
    assert pipeline == by_hand and pipeline["retraining"]["learning_rate"] == PAPER_LEARNING_RATE
    old_log = {**pipeline, "retraining": {**pipeline["retraining"], "learning_rate": None, "weight_decay": None,
                                          "batch_size": None}}
    _check_identity(tmp_path / "feedback_log.json", old_log, by_hand)
    other = loop_identity(model, store, test, FeedbackConfig(), TrainConfig(machine="A", arch="paper",
                                                                           learning_rate=1e-3))
    with pytest.raises(ValueError, match=r"differs in retraining.learning_rate\)"):
        _check_identity(tmp_path / "feedback_log.json", old_log, other)
