"""Training on synthetic stores: accuracy on a known inverse, box confinement, resume, streaming, CLI."""

from __future__ import annotations

import csv
from dataclasses import replace

import h5py
import numpy as np
import pytest
import torch
from helpers_store import write_synthetic_store
from typer.testing import CliRunner

from crnet.cli import app
from crnet.features import FEATURE_SPECIES, TargetTransform, features_from_raw, paper_energy_grid
from crnet.likelihood import chi2
from crnet.machines.checkpoint import checkpoint_path
from crnet.machines.data import StoreReader, prepare_regression_data
from crnet.machines.inference import predict_file
from crnet.machines.modelfile import Predictor, load_model
from crnet.machines.training import TrainConfig, train
from crnet.spectra_io import write_spectra_h5
from crnet.store_read import spectra_from_flux
from crprop.params import PARAM_NAMES

torch.set_num_threads(1)

SYNTHETIC_R2 = 0.99
"""Required R^2 per parameter (breaks in log10) of the crnet variant on the synthetic problem's validation
split. Measured: worst parameter 0.995 with the settings of the test (0.992-0.994 for other seeds); the
paper's Machine A with its own settings (Adam 8e-5, batch 32) reaches 0.983 after 40 epochs on the same
problem, with 11 % of its validation predictions outside the prior box."""

SMALL_CRNET = {"n_bins": 84, "n_channels": 8, "n_outputs": 10, "conv_channels": [8, 8], "kernel_size": 3,
               "dense_units": [16], "dropout": 0.1}
"""A tiny crnet network for the machinery tests (dropout on, so that resume must restore the RNG)."""


@pytest.fixture(scope="module")
def synthetic_store(tmp_path_factory):
    path = tmp_path_factory.mktemp("synthetic") / "mocks.h5"
    write_synthetic_store(path, 4000, seed=1)
    return path


@pytest.fixture(scope="module")
def small_store(tmp_path_factory):
    path = tmp_path_factory.mktemp("small") / "mocks.h5"
    params = TargetTransform().inverse(np.random.default_rng(3).random((600, 10)))
    params[5, 0] = 20.0  # D0 outside the prior box: dropped
    write_synthetic_store(path, 600, seed=3, params=params, n_unconverged=7)
    return path


def test_crnet_variant_learns_the_synthetic_inverse(synthetic_store, tmp_path) -> None:
    cfg = TrainConfig(machine="A", arch="crnet", epochs=25, learning_rate=5e-3, batch_size=64, lr_schedule="cosine",
                      seed=1, progress=False)
    result = train(synthetic_store, tmp_path / "crnet.pt", cfg)
    per = result.metrics["per_parameter"]
    r2 = {name: m["r2"] for name, m in per.items()}
    assert min(r2.values()) > SYNTHETIC_R2, r2
    assert result.metrics["frac_predictions_outside_box"] == 0.0
    # the sigmoid keeps every prediction in the box, even for inputs far outside the training data
    pred = Predictor.load(tmp_path / "crnet.pt")
    wild = np.random.default_rng(0).normal(0.0, 50.0, (500, 8, 84))
    out = pred.predict(wild, paper_energy_grid())
    assert not TargetTransform().outside_box(out).any()
    meta = load_model(tmp_path / "crnet.pt").metadata
    n_train, n_val = meta["training_store"]["n_train"], meta["training_store"]["n_val"]
    assert n_train + n_val == 4000 and 334 <= n_val <= 466  # hashed 10 % split: binomial sd 19, +-3.5 sd
    assert len(meta["training_store"]["sha256"]) == 64 and meta["metrics"]["min_r2"] > SYNTHETIC_R2


def test_paper_variant_reports_its_share_outside_the_box(small_store, tmp_path) -> None:
    cfg = TrainConfig(machine="A", arch="paper", epochs=2, batch_size=128, learning_rate=1e-3, progress=False)
    result = train(small_store, tmp_path / "a.pt", cfg)
    metrics = result.metrics
    share = metrics["frac_predictions_outside_box"]
    assert 0.0 <= share <= 1.0 and set(metrics["per_parameter"]["nu1"]) >= {"r2", "frac_outside_box"}
    # the reported share is that of the stored model on the validation split, nothing clipped
    data = prepare_regression_data(small_store, TargetTransform(), seed=cfg.seed)
    x, _ = data.arrays("val")
    pred = Predictor.load(tmp_path / "a.pt")
    raw = pred.model.transform.inverse(pred.network_outputs(x.astype(np.float64)))
    assert share == pytest.approx(TargetTransform().outside_box(raw).any(axis=1).mean())


def test_paper_machines_train_with_the_paper_protocol(small_store, tmp_path) -> None:
    # CR-ML's ML_Training: Adam 8e-5, batch 32, 100 epochs at a constant rate, best validation epoch kept
    paper = TrainConfig(machine="B", arch="paper").resolved()
    assert (paper.lr_schedule, paper.patience, paper.epochs, paper.learning_rate, paper.batch_size) == (
        "constant", 100, 100, 8e-5, 32)
    crnet = TrainConfig(machine="A", arch="crnet").resolved()
    assert (crnet.lr_schedule, crnet.patience) == ("plateau", 20)
    mine = TrainConfig(machine="A", arch="paper", epochs=7, patience=3, lr_schedule="cosine").resolved()
    assert (mine.lr_schedule, mine.patience) == ("cosine", 3)
    assert TrainConfig(machine="A", arch="paper", epochs=7).resolved().patience == 7
    # a rate too small to improve the validation loss by min_delta (1e-9: 6e-6 relative per epoch, measured):
    # early stopping with patience 2 ends a plateau run after its third epoch; the paper protocol trains every epoch
    # at the same rate (the resolved() asserts above pin the schedule; a plateau cut of 1e-9 would fall below
    # ReduceLROnPlateau's eps of 1e-8, so the rates alone cannot tell plateau from constant here)
    stall = TrainConfig(machine="A", arch="paper", epochs=4, batch_size=128, learning_rate=1e-9, progress=False)
    plateau = train(small_store, tmp_path / "q.pt", replace(stall, lr_schedule="plateau", patience=2))
    assert len(plateau.history) == 3 and plateau.stopped_early
    result = train(small_store, tmp_path / "p.pt", stall)
    assert [h["lr"] for h in result.history] == [1e-9] * 4 and not result.stopped_early


def test_split_filters_and_seed(small_store) -> None:
    t = TargetTransform()
    a = prepare_regression_data(small_store, t, seed=4)
    b = prepare_regression_data(small_store, t, seed=4)
    c = prepare_regression_data(small_store, t, seed=5)
    assert np.array_equal(a.train_idx, b.train_idx) and not np.array_equal(a.train_idx, c.train_idx)
    assert a.dropped["not_converged"] == 7 and a.dropped["outside_prior_box"] == 1
    used = np.concatenate([a.train_idx, a.val_idx])
    assert np.unique(used).size == used.size == 600 - 8 and 5 not in used and 599 not in used
    assert 36 <= a.val_idx.size <= 83  # hashed 10 % of 592: binomial mean 59.2, sd 7.3, +-3.2 sd


def test_streaming_matches_memory(small_store) -> None:
    t = TargetTransform()
    mem = prepare_regression_data(small_store, t, seed=0)
    stream = prepare_regression_data(small_store, t, seed=0, memory_limit_bytes=0, block_size=64)
    assert mem.in_memory and not stream.in_memory
    assert np.allclose(stream.scaler.mean, mem.scaler.mean) and np.allclose(stream.scaler.std, mem.scaler.std)
    for split in ("train", "val"):
        xm, ym = mem.arrays(split)
        xs, ys = stream.arrays(split)
        assert np.allclose(xs, xm, atol=1e-6) and np.array_equal(ys, ym)
    seen = np.concatenate([y for _, y in stream.batches("train", 50, np.random.default_rng(0))])
    _, ym = mem.arrays("train")
    assert seen.shape == ym.shape
    assert np.array_equal(np.sort(seen, axis=0), np.sort(ym, axis=0))


def test_resume_reproduces_uninterrupted_training(small_store, tmp_path) -> None:
    def cfg(epochs: int) -> TrainConfig:
        return TrainConfig(machine="A", arch="crnet", epochs=epochs, batch_size=32, seed=2, progress=False,
                           architecture=SMALL_CRNET)

    full = train(small_store, tmp_path / "full.pt", cfg(4))
    train(small_store, tmp_path / "part.pt", cfg(2))
    assert checkpoint_path(tmp_path / "part.pt").is_file()
    resumed = train(small_store, tmp_path / "part.pt", cfg(4), resume=True)
    assert [h["val_loss"] for h in resumed.history] == [h["val_loss"] for h in full.history]
    a, b = load_model(tmp_path / "full.pt"), load_model(tmp_path / "part.pt")
    assert all(torch.equal(a.state_dict[k], b.state_dict[k]) for k in a.state_dict)
    other = TrainConfig(machine="A", arch="crnet", epochs=4, batch_size=32, seed=3, progress=False,
                        architecture=SMALL_CRNET)
    with pytest.raises(ValueError, match="different run"):
        train(small_store, tmp_path / "part.pt", other, resume=True)


def test_check_machine_learns_the_region(synthetic_store, tmp_path) -> None:
    cfg = TrainConfig(machine="check", epochs=15, seed=0, progress=False)
    result = train(synthetic_store, tmp_path / "check.pt", cfg)
    m = result.metrics
    assert m["n_inside"] + m["n_outside"] == m["n"] and abs(m["n_inside"] - m["n_outside"]) < 0.2 * m["n"]
    assert m["accuracy"] > 0.85, m


def test_cli_train_predict_resume(small_store, tmp_path) -> None:
    runner = CliRunner()
    model = tmp_path / "m.pt"
    args = ["train", "--store", str(small_store), "--machine", "A", "--arch", "crnet", "--out", str(model),
            "--epochs", "2", "--no-progress", "--threads", "1"]
    res = runner.invoke(app, args)
    assert res.exit_code == 0, res.output
    assert "R2" in res.output and "outside the prior box" in res.output
    res = runner.invoke(app, args[:-4] + ["3", "--resume", "--no-progress", "--json"])
    assert res.exit_code == 0, res.output
    assert '"epochs_run": 3' in res.output
    for suffix in (".csv", ".h5"):
        out = tmp_path / f"pred{suffix}"
        res = runner.invoke(app, ["predict", "--model", str(model), "--spectra", str(small_store), "--out", str(out)])
        assert res.exit_code == 0, res.output
        assert "593 records predicted, 7 skipped" in res.output and "share of predictions outside" in res.output
    with open(tmp_path / "pred.csv") as f:
        rows = list(csv.reader(line for line in f if not line.startswith("#")))
    assert rows[0][:2] == ["record", "pred_d0_1e28_cm2_s"] and len(rows) == 594
    with h5py.File(tmp_path / "pred.h5") as f:
        assert f["params_pred"].shape == (593, 10) and f["params_true"].shape == (593, 10)
    res = runner.invoke(app, ["predict", "--model", str(tmp_path / "nope.pt"), "--spectra", str(small_store)])
    assert res.exit_code == 2 and "no such model file" in res.output


def test_cli_machine_b_and_check(small_store, tmp_path) -> None:
    runner = CliRunner()
    res = runner.invoke(app, ["train", "--store", str(small_store), "--machine", "B", "--out", str(tmp_path / "b.pt"),
                              "--epochs", "1", "--n-pseudo", "48", "--noise", "envelope", "--pseudo-sigma", "6",
                              "--batch-size", "16", "--no-progress"])
    assert res.exit_code == 0, res.output
    meta = load_model(tmp_path / "b.pt").metadata
    assert meta["training_store"]["pseudo_data"] and meta["train_config"]["pseudo"]["noise"] == "envelope"
    assert (tmp_path / "b.pt.pseudo.h5").is_file()
    res = runner.invoke(app, ["train", "--store", str(small_store), "--machine", "check", "--out",
                              str(tmp_path / "c.pt"), "--epochs", "1", "--no-progress"])
    assert res.exit_code == 0, res.output
    res = runner.invoke(app, ["predict", "--model", str(tmp_path / "c.pt"), "--spectra", str(small_store)])
    assert res.exit_code == 0 and "classified inside" in res.output
    res = runner.invoke(app, ["train", "--store", str(tmp_path / "missing.h5"), "--out", str(tmp_path / "x.pt")])
    assert res.exit_code == 2 and "no such store file" in res.output


def test_predict_from_a_spectra_file_profiles_q_c(small_store, tmp_path) -> None:
    """A crnet.spectra_io file has no normalisations: q_C is profiled against the data set first."""
    cfg = TrainConfig(machine="A", arch="crnet", epochs=1, progress=False, architecture=SMALL_CRNET)
    train(small_store, tmp_path / "m.pt", cfg)
    idx = np.array([3, 10, 42, 100])
    with StoreReader(small_store) as reader:
        spectra = spectra_from_flux(reader.take("flux", idx), reader.info.species, reader.info.energies)
        params = reader.params()[idx]
    path = tmp_path / "spectra.h5"
    write_spectra_h5(path, spectra, params, list(PARAM_NAMES))
    predictor = Predictor.load(tmp_path / "m.pt")
    pred = predict_file(predictor, path)
    raw = np.stack([spectra.flux(sp) for sp in FEATURE_SPECIES], axis=1)
    feats, _ = features_from_raw(raw, chi2(spectra, "paper").q_c, spectra.ekin_gev_per_n)
    assert np.array_equal(pred.index, np.arange(4)) and np.array_equal(pred.truth, params)
    assert np.allclose(pred.params, predictor.predict(feats, spectra.ekin_gev_per_n), rtol=1e-12)


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_training_on_gpu_with_mixed_precision(small_store, synthetic_store, tmp_path) -> None:
    """bf16 autocast, device-resident batches with input noise drawn on the GPU, and the Check Machine's
    (parameter) batches through the same device path."""
    cfg = TrainConfig(machine="A", arch="crnet", epochs=2, device="cuda", amp=True, progress=False, input_noise=0.05)
    result = train(small_store, tmp_path / "gpu.pt", cfg)
    assert load_model(tmp_path / "gpu.pt").metadata["device"].startswith("cuda")
    assert np.isfinite(result.best_val_loss)
    check = train(synthetic_store, tmp_path / "check.pt", TrainConfig(machine="check", epochs=2, device="cuda",
                                                                  progress=False))
    assert np.isfinite(check.best_val_loss)


def test_init_from_starts_at_the_given_weights(small_store, tmp_path) -> None:
    base = TrainConfig(machine="A", arch="crnet", epochs=2, batch_size=32, seed=2, progress=False,
                       architecture=SMALL_CRNET)
    first = train(small_store, tmp_path / "first.pt", base)
    # a learning rate of ~0 keeps the weights where init_from put them
    frozen = TrainConfig(machine="A", arch="crnet", epochs=1, batch_size=32, seed=2, progress=False,
                         learning_rate=1e-30, init_from=str(tmp_path / "first.pt"))
    second = train(small_store, tmp_path / "second.pt", frozen)
    a, b = load_model(tmp_path / "first.pt"), load_model(tmp_path / "second.pt")
    assert a.metadata["dataset"] == "paper"  # q_C of its inputs; predicting with another data set is refused
    from crnet.machines.inference import predict_file

    with pytest.raises(ValueError, match="normalised \\(q_C\\) against 'paper'"):
        predict_file(Predictor(a), small_store, dataset="ams02-2021")
    other = tmp_path / "ams.h5"  # a store whose q_C was profiled against another data set: refused too
    write_synthetic_store(other, 40, seed=9, dataset="ams02-2021")
    with pytest.raises(ValueError, match=r"ams.h5: its normalisations \(q_C\) were profiled against data set "
                                         r"'ams02-2021', the model's inputs against 'paper'"):
        predict_file(Predictor(a), other)
    pred = predict_file(Predictor(a), small_store)  # its last 7 records did not converge: skipped, as in training
    assert pred.skipped.tolist() == list(range(593, 600)) and pred.index.tolist() == list(range(593))
    assert b.architecture == a.architecture
    assert all(torch.allclose(a.state_dict[k], b.state_dict[k], rtol=1e-6, atol=1e-9) for k in a.state_dict)
    assert second.history[0]["val_loss"] == pytest.approx(first.best_val_loss, rel=1e-4)
    # another split (seed) would refit the standardisation; a warm start keeps the one its weights were fit to
    refit = prepare_regression_data(small_store, TargetTransform(), seed=3).scaler
    assert np.max(np.abs(refit.mean - a.scaler.mean)) > 1e-3
    train(small_store, tmp_path / "third.pt", replace(frozen, seed=3))
    third = load_model(tmp_path / "third.pt")
    kept = third.scaler
    assert np.array_equal(kept.mean, a.scaler.mean) and np.array_equal(kept.std, a.scaler.std)
    # and its validation split: seed 3 would validate on records the seed-2 weights were trained on
    assert a.metadata["split_seed"] == 2 and third.metadata["split_seed"] == 2
    assert third.metadata["training_store"]["n_val"] == a.metadata["training_store"]["n_val"]
    # resuming that run without init_from would refit the scaler (seed 3's split) for its later epochs: refused
    with pytest.raises(ValueError, match=r"third.pt.ckpt: checkpoint was written by a different run \(differs in "
                                         r"init_scaler_sha256, split_seed\)"):
        train(small_store, tmp_path / "third.pt", replace(frozen, seed=3, init_from=None, epochs=2,
                                                          architecture=SMALL_CRNET), resume=True)
    with pytest.raises(ValueError, match="cannot start"):
        train(small_store, tmp_path / "x.pt", TrainConfig(machine="A", arch="paper", epochs=1, progress=False,
                                                          init_from=str(tmp_path / "first.pt")))


def test_device_resident_batches_match_the_host_path(small_store) -> None:
    """The CUDA path (_DeviceSplits: splits uploaded once, batches gathered on the device, input noise drawn
    there) gives the host path's batches, and its noise is the same linear map of the same kind of draws. Run here
    on the CPU device; on a GPU the same code runs on CUDA."""
    from crnet.machines import build_network, default_architecture
    from crnet.machines.augment import InputNoise
    from crnet.machines.training import _DeviceSplits, _run_epoch, log_cosh_loss

    data = prepare_regression_data(small_store, TargetTransform(), val_fraction=0.2, seed=4)
    cpu = torch.device("cpu")
    host = list(data.batches("train", 16, np.random.default_rng(9)))
    dev = list(_DeviceSplits(data, cpu).batches("train", 16, np.random.default_rng(9)))
    assert len(host) == len(dev)
    for h, d in zip(host, dev, strict=True):
        assert np.array_equal(h[0], d[0].numpy()) and np.array_equal(h[1], d[1].numpy())
    noise = InputNoise(0.05, data.scaler, data.info.energies)
    eps = np.random.default_rng(1).uniform(-0.05, 0.05, (6, 5, data.info.energies.size))
    from crnet.features import channel_log_shift

    want = channel_log_shift(np.log10(1.0 + eps), data.info.energies) / data.scaler.std[None]
    got = noise.shift_torch(torch.as_tensor(eps), torch.as_tensor(data.scaler.std)).numpy()
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-6)  # float32 result
    g = torch.Generator(device="cpu")
    g.manual_seed(0)
    draws = noise.draw_torch(4000, g, torch.as_tensor(data.scaler.std)).numpy()
    ref = noise.shift(4000, np.random.default_rng(0))
    np.testing.assert_allclose(draws.std(axis=0), ref.std(axis=0), rtol=0.1)  # same distribution, 4000 draws
    torch.manual_seed(0)
    net = build_network("crnet", default_architecture("crnet", data.info.energies.size))
    def val_loss(on_device, noise_seed=None):
        kw = {} if noise_seed is None else {"noise": noise, "noise_rng": np.random.default_rng(noise_seed)}
        return _run_epoch(net, data, "val", 16, log_cosh_loss, cpu, False, on_device=on_device, **kw)

    assert val_loss(_DeviceSplits(data, cpu)) == pytest.approx(val_loss(None), rel=1e-12)  # same batches, no noise
    noisy = [val_loss(_DeviceSplits(data, cpu), seed) for seed in (3, 3, 4)]
    assert noisy[0] == noisy[1] != noisy[2] and noisy[0] != val_loss(None)  # seeded device noise, applied


def test_a_diverging_run_raises_instead_of_saving_untrained_weights(small_store, tmp_path) -> None:
    cfg = TrainConfig(machine="A", arch="crnet", epochs=3, batch_size=32, seed=2, progress=False,
                      architecture=SMALL_CRNET, learning_rate=1e12)
    with pytest.raises(ValueError, match="non-finite loss"):
        train(small_store, tmp_path / "nan.pt", cfg)
    assert not (tmp_path / "nan.pt").exists()


def test_resume_uses_this_runs_schedule_and_split_settings(small_store, tmp_path) -> None:
    def cfg(epochs: int, holdout: float = 0.3) -> TrainConfig:
        from crnet.pseudodata import PseudoDataConfig

        return TrainConfig(machine="A", arch="crnet", epochs=epochs, batch_size=64, seed=2, progress=False,
                           architecture=SMALL_CRNET, lr_schedule="cosine", patience=100,
                           pseudo=PseudoDataConfig(centres="train", holdout_fraction=holdout))

    train(small_store, tmp_path / "cos.pt", cfg(2))
    res = train(small_store, tmp_path / "cos.pt", cfg(6), resume=True)
    lrs = [h["lr"] for h in res.history]
    assert len(lrs) == 6 and all(b <= a for a, b in zip(lrs, lrs[1:], strict=False))  # no climb back after T_max
    # a different hold-out would train Machine A on records reserved for the test centres: refused
    with pytest.raises(ValueError, match="pseudo"):
        train(small_store, tmp_path / "cos.pt", cfg(8, holdout=0.1), resume=True)


def test_machine_b_validates_on_centres_it_does_not_train_on(small_store, tmp_path) -> None:
    from crnet.pseudodata import PseudoDataConfig, make_pseudodata

    pseudo = tmp_path / "pseudo.h5"
    make_pseudodata(small_store, pseudo, PseudoDataConfig(n_pseudo=400, n_sigma=1e6, seed=1))
    data = prepare_regression_data(pseudo, TargetTransform(), seed=0)
    with StoreReader(pseudo) as reader:
        train_src = set(reader.take("step", data.train_idx).tolist())
        val_src = set(reader.take("step", data.val_idx).tolist())
    assert train_src and val_src and not train_src & val_src
    assert 0.05 < data.val_idx.size / (data.train_idx.size + data.val_idx.size) < 0.2


def test_grouped_split_needs_enough_centres() -> None:
    from crnet.machines.data import split_indices

    cand = np.arange(400)
    many = cand % 20  # 20 centres: whole centres held out (about 10 % of them)
    train_idx, val_idx = split_indices(cand, 0.1, 0, groups=many)
    assert 1 <= np.unique(many[val_idx]).size <= 5 and not set(many[val_idx]) & set(many[train_idx])
    few = cand % 4  # one centre would be 25 % > val_fraction: record split, with a warning
    with pytest.warns(RuntimeWarning, match="4 central spectra"):
        train_idx, val_idx = split_indices(cand, 0.1, 0, groups=few)
    assert 20 <= val_idx.size <= 60 and set(few[val_idx]) & set(few[train_idx])


def test_split_keeps_every_record_on_its_side_when_the_store_grows() -> None:
    """The feedback loop appends re-simulations and retrains from the previous weights: a record trained on in
    round k must not validate round k + 1 (review of session 13: a seeded permutation moved 66 % of round 1's
    validation records out of round 0's training set)."""
    from crnet.machines.data import split_indices

    old_train, old_val = split_indices(np.arange(20_000), 0.1, 3)
    new_train, new_val = split_indices(np.arange(23_000), 0.1, 3)
    assert np.array_equal(new_val[new_val < 20_000], old_val) and np.array_equal(new_train[new_train < 20_000],
                                                                                  old_train)
    assert abs(old_val.size / 20_000 - 0.1) < 0.01  # binomial: sd 0.002
    other_seed = split_indices(np.arange(20_000), 0.1, 4)[1]
    assert np.intersect1d(other_seed, old_val).size < 0.2 * old_val.size  # seeds give independent splits (~10 %)
    centres = np.arange(23_000) // 50  # pseudo-data: centres keep their side too
    grown = split_indices(np.arange(23_000), 0.1, 3, groups=centres)[1]
    first = split_indices(np.arange(20_000), 0.1, 3, groups=centres[:20_000])[1]
    assert np.array_equal(grown[grown < 20_000], first)
