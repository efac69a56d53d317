"""Session-19 walk-through of the CLI's messages: an unknown --dataset refused before any work, a resume that
changes the optimiser's settings refused, and every refused value named by its option (not the library's field),
with the allowed range and the value given. Nothing here propagates or trains for more than a few epochs on a tiny
synthetic store."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from helpers_cli import assert_usage_error, write_test_spectra
from helpers_store import write_synthetic_store
from typer.testing import CliRunner

from crnet.cli import app
from crnet.commands.io_checks import check_dataset_option, flag_message
from crnet.machines.paper import PAPER_LEARNING_RATE

runner = CliRunner()

GRID = ["--dr", "4", "--dz", "1.3", "--ekin-factor", "3", "--backend", "numpy", "--no-progress"]
UNKNOWN = "--dataset: unknown data set 'foo'; known: paper, ams02-2021, ams02-2021-ace2009"


@pytest.fixture
def store(tmp_path: Path) -> Path:
    path = tmp_path / "mocks.h5"
    write_synthetic_store(path, 48)
    return path


@pytest.fixture
def spectra_file(tmp_path: Path) -> Path:
    """Three models on the CR-ML grid; model 1 did not converge (residual 5.05e-8)."""
    return write_test_spectra(tmp_path / "s.h5")


def _no_work(*args, **kwargs):
    raise AssertionError("the command started its work before refusing --dataset")


# ---------------------------------------------------------------------------------------------- helpers
def test_flag_message_names_the_option_of_the_leading_field() -> None:
    flags = {"n_sigma": "--pseudo-sigma", "max_evaluations": "--max-evaluations", "dataset": "--dataset"}
    assert flag_message("n_sigma must be > 0, got -1.0", flags) == "--pseudo-sigma must be > 0, got -1.0"
    assert (flag_message("FitConfig.max_evaluations must be >= 1, got 0", flags)
            == "--max-evaluations must be >= 1, got 0")
    assert flag_message("dataset: unknown data set 'x'", flags) == "--dataset: unknown data set 'x'"
    # only the leading field, whole words: other messages are unchanged
    assert flag_message("the n_sigma of the store", flags) == "the n_sigma of the store"
    assert flag_message("n_sigma_x must be > 0", flags) == "n_sigma_x must be > 0"
    assert check_dataset_option(None) is None and check_dataset_option("paper") == "paper"
    with pytest.raises(ValueError, match="^--phi-set: unknown data set 'foo'; known: paper, "):
        check_dataset_option("foo", "--phi-set")


# ---------------------------------------------------------------------------------------------- defect 1: --dataset
def test_fit_refuses_an_unknown_dataset_before_propagating(tmp_path: Path, monkeypatch) -> None:
    """crnet fit -d foo propagated for ~50 s before saying 'unknown data set'."""
    import crnet.scan.fit
    import crnet.scan.models

    monkeypatch.setattr(crnet.scan.models, "PropagateModel", _no_work)
    monkeypatch.setattr(crnet.scan.fit, "fit_best", _no_work)
    out = tmp_path / "f.json"
    res = runner.invoke(app, ["fit", "--out", str(out), "-d", "foo", "--max-evaluations", "2", *GRID])
    assert_usage_error(res, UNKNOWN)
    assert not out.exists()


def test_chi2_refuses_an_unknown_dataset_before_reading_the_spectra(spectra_file: Path, monkeypatch) -> None:
    import crnet.commands.chi2

    monkeypatch.setattr(crnet.commands.chi2, "read_spectra_h5", _no_work)
    assert_usage_error(runner.invoke(app, ["chi2", str(spectra_file), "-d", "foo"]), UNKNOWN)


@pytest.mark.parametrize("command", [
    ["scan", "--out", "{tmp}/s.h5", "--design", "sobol", "--points", "2", *GRID],
    ["pseudodata", "--store", "{tmp}/missing.h5", "--out", "{tmp}/p.h5"],
    ["train", "--store", "{tmp}/missing.h5", "--out", "{tmp}/m.pt", "--no-progress"],
    ["feedback", "--model", "{tmp}/missing.pt", "--store", "{tmp}/missing.h5", "--test", "{tmp}/t.h5", "--out",
     "{tmp}/fb", "--no-progress"],
])
def test_unknown_dataset_is_named_by_its_option_before_any_file_is_read(tmp_path: Path, command) -> None:
    """scan, pseudodata and train said 'dataset: unknown data set' (the field); feedback and pseudodata read their
    input files first."""
    args = [a.replace("{tmp}", str(tmp_path)) for a in command]
    res = runner.invoke(app, [*args, "--dataset", "foo"])
    assert_usage_error(res, UNKNOWN)
    assert sorted(p.name for p in tmp_path.iterdir()) == []  # nothing written


# ---------------------------------------------------------------------------------------------- defect 2: resume
def test_train_resume_refuses_a_changed_learning_rate_or_weight_decay(tmp_path: Path, store: Path) -> None:
    """--lr 0.5 --resume continued with the checkpoint's optimiser (the default rate), bit-identical to it."""
    out = tmp_path / "m.pt"
    base = ["train", "--store", str(store), "--out", str(out), "--batch-size", "16", "--no-progress", "--json"]
    res = runner.invoke(app, [*base, "--epochs", "1"])
    assert res.exit_code == 0, res.output
    ckpt = out.with_name("m.pt.ckpt")
    before = ckpt.read_bytes()
    for extra, option in ((["--lr", "0.5"], "--lr"), (["--weight-decay", "0.01"], "--weight-decay")):
        res = runner.invoke(app, [*base, "--epochs", "2", "--resume", *extra])
        assert_usage_error(res, f"{ckpt}: checkpoint was written by a different run (differs in {option})")
        assert ckpt.read_bytes() == before  # nothing trained
    res = runner.invoke(app, [*base, "--epochs", "2", "--resume", "--lr", "0.5", "--batch-size", "8"])
    assert_usage_error(res, "(differs in --batch-size, --lr)")
    # the same settings, given explicitly (the paper network's defaults: no weight decay), resume
    res = runner.invoke(app, [*base, "--epochs", "2", "--resume", "--lr", repr(PAPER_LEARNING_RATE),
                              "--weight-decay", "0"])
    assert res.exit_code == 0, res.output
    assert json.loads(res.output)["epochs_run"] == 2


def test_checkpoint_identity_holds_the_optimiser_settings(tmp_path: Path, store: Path) -> None:
    from crnet.machines.training import TrainConfig, train

    cfg = TrainConfig(epochs=1, batch_size=16, progress=False)
    train(store, tmp_path / "m.pt", cfg)
    with pytest.raises(ValueError, match=r"differs in learning_rate, weight_decay\)"):
        train(store, tmp_path / "m.pt", TrainConfig(epochs=2, batch_size=16, progress=False, learning_rate=0.01,
                                                    weight_decay=0.1), resume=True)


# ---------------------------------------------------------------------------------------------- defects 3, 4: train
@pytest.mark.parametrize(("args", "message"), [
    (["--max-sigma", "nan"], "--max-sigma must be finite and > 0 (confidence level in sigma), got nan"),
    (["--max-sigma", "-1"], "--max-sigma must be finite and > 0 (confidence level in sigma), got -1.0"),
    (["--max-sigma", "0"], "--max-sigma must be finite and > 0 (confidence level in sigma), got 0.0"),
    (["--epochs", "0"], "--epochs must be >= 1, got 0"),
    (["--batch-size", "0"], "--batch-size must be >= 1 (records per mini-batch), got 0"),
    (["--weight-decay", "-1"], "--weight-decay must be finite and >= 0, got -1.0"),
    (["--lr", "nan"], "--lr must be finite and > 0, got nan"),
    (["--val-fraction", "1"], "--val-fraction must lie in (0, 1) (share of records held out), got 1.0"),
    (["--patience", "0"], "--patience must be >= 1 (epochs), got 0"),
    (["--pseudo-sigma", "-1"], "--pseudo-sigma must be finite and > 0 (confidence level in sigma), got -1.0"),
    (["--n-pseudo", "0"], "--n-pseudo must be >= 1 (pseudo-spectra), got 0"),
    (["--threads", "0"], "--threads must be >= 1 (CPU threads), got 0"),
    (["--device", "foo"], "--device 'foo' is not a torch device"),
])
def test_train_names_the_option_and_the_value(tmp_path: Path, store: Path, args, message) -> None:
    """--max-sigma nan said 'only 0 usable records (0 distinct): too few to split'; --epochs 0 said 'epochs and
    batch_size must be >= 1, learning_rate > 0, weight_decay >= 0' (no option, no value)."""
    res = runner.invoke(app, ["train", "--store", str(store), "--out", str(tmp_path / "m.pt"), "--no-progress",
                              *args])
    assert_usage_error(res, f"error: {message}")
    assert not (tmp_path / "m.pt").exists() and not (tmp_path / "m.pt.ckpt").exists()


# ---------------------------------------------------------------------------------------------- feedback
@pytest.mark.parametrize(("args", "message"), [
    (["--epochs", "0"], "--epochs must be >= 1 (epochs per retraining), got 0"),
    (["--max-rounds", "0"], "--max-rounds must be >= 1 (rounds), got 0"),
    (["--tau", "-1"], "--tau must be finite and > 0 (mean |tau|), got -1.0"),
    (["--tau", "nan"], "--tau must be finite and > 0 (mean |tau|), got nan"),
    (["--share", "2"], "--share must lie in (0, 1] (share of passing predictions), got 2.0"),
    (["--n-test", "0"], "--n-test must be >= 1 (pseudo-spectra; leave it out for all of --test), got 0"),
])
def test_feedback_names_the_option_and_the_value(tmp_path: Path, args, message) -> None:
    """Said 'max_rounds and retrain_epochs must be >= 1, got 3 and 0' and 'tau_threshold must be finite and > 0 and
    target_share in (0, 1]' (both fields, neither option); checked before the model and stores are read."""
    res = runner.invoke(app, ["feedback", "--model", str(tmp_path / "missing.pt"), "--store",
                              str(tmp_path / "missing.h5"), "--test", str(tmp_path / "t.h5"), "--out",
                              str(tmp_path / "fb"), "--no-progress", *args])
    assert_usage_error(res, f"error: {message}")
    assert "tau_threshold" not in res.output and "retrain_epochs" not in res.output


def test_feedback_config_messages_name_one_field() -> None:
    from crnet.feedback import FeedbackConfig

    for kwargs, message in (({"tau_threshold": -1.0}, "tau_threshold must be finite and > 0 (mean |tau|), got -1.0"),
                            ({"target_share": 0.0}, "target_share must lie in (0, 1]"),
                            ({"max_rounds": 0}, "max_rounds must be >= 1 (rounds), got 0"),
                            ({"retrain_epochs": 0}, "retrain_epochs must be >= 1 (epochs per retraining), got 0")):
        with pytest.raises(ValueError) as info:
            FeedbackConfig(**kwargs)
        assert str(info.value).startswith(message), str(info.value)


# ---------------------------------------------------------------------------------------------- fit, pseudodata
@pytest.mark.parametrize(("args", "message"), [
    (["--max-evaluations", "0"], "--max-evaluations must be >= 1 (residual evaluations), got 0"),
    (["--tol", "-1"], "--tol must be in (0, 0.01] (solver relative residual), got -1.0"),
    (["--backend", "foo"], "--backend must be one of ('auto', 'numpy', 'numba', 'cupy'), got 'foo'"),
])
def test_fit_names_the_option_and_the_value(tmp_path: Path, monkeypatch, args, message) -> None:
    import crnet.scan.fit

    monkeypatch.setattr(crnet.scan.fit, "fit_best", _no_work)  # --tol: crprop refused it in the first solve
    res = runner.invoke(app, ["fit", "--out", str(tmp_path / "f.json"), "--dr", "4", "--dz", "1.3", "--ekin-factor",
                              "3", "--no-progress", *args])
    assert_usage_error(res, f"error: {message}")
    assert "FitConfig" not in res.output


@pytest.mark.parametrize(("value", "shown"), [("-1", "-1.0"), ("nan", "nan"), ("0", "0.0")])
def test_pseudodata_names_pseudo_sigma(tmp_path: Path, store: Path, value: str, shown: str) -> None:
    """Said 'n_sigma must be > 0, got -1.0'; nan was accepted."""
    out = tmp_path / "p.h5"
    res = runner.invoke(app, ["pseudodata", "--store", str(store), "--out", str(out), "--pseudo-sigma", value])
    assert_usage_error(res, f"error: --pseudo-sigma must be finite and > 0 (confidence level in sigma), got {shown}")
    assert not out.exists()


# ---------------------------------------------------------------------------------------------- scan
def test_scan_from_fit_needs_the_mcmc_design(tmp_path: Path) -> None:
    """Said "start_cov needs design 'mcmc' and a start" (library fields) after reading the fit file."""
    res = runner.invoke(app, ["scan", "--out", str(tmp_path / "s.h5"), "--from-fit", str(tmp_path / "fit.json"),
                              "--design", "sobol", "--points", "4", *GRID])
    assert_usage_error(res, "error: --from-fit needs --design mcmc (it starts the MCMC chains), got --design sobol")
    assert "start_cov" not in res.output


@pytest.mark.parametrize(("args", "message"), [
    (["--chains", "0"], "--chains must be >= 1, got 0"),
    (["--design", "mcmc", "--steps", "-1"], "--steps must be >= 0, got -1"),
    (["--spread", "0"], "--spread must be finite and > 0 (fraction of each box width), got 0.0"),
    (["--tol", "-1"], "--tol must be in (0, 0.01] (solver relative residual), got -1.0"),
])
def test_scan_names_the_option_and_the_value(tmp_path: Path, args, message) -> None:
    res = runner.invoke(app, ["scan", "--out", str(tmp_path / "s.h5"), *GRID, *args])
    assert_usage_error(res, f"error: {message}")
    assert not (tmp_path / "s.h5").exists()  # --tol was refused by crprop after the store was created


def test_scan_config_messages_name_one_field() -> None:
    from crnet.scan.runner import ScanConfig

    with pytest.raises(ValueError, match=r"^n_points must be >= 0, got -2$"):
        ScanConfig(n_points=-2)
    with pytest.raises(ValueError, match=r"^start_cov needs design 'mcmc' \(it spreads the chains' starts\), got "
                                         r"design 'sobol'$"):
        ScanConfig(design="sobol", n_points=4, start=[4, 0.45, -1, 20, 4.55, 1, 2.3, 2.4, 1000, 3e5],
                   start_cov=np.eye(10).tolist())


# ---------------------------------------------------------------------------------------------- chi2 --phi
def test_chi2_phi_of_several_periods_shows_the_cli_form(spectra_file: Path) -> None:
    """Said 'fix them with {period: MV}, not one number' (Python) for --phi 650 on a data set of two periods."""
    res = runner.invoke(app, ["chi2", str(spectra_file), "-d", "ams02-2021-ace2009", "--phi", "650"])
    assert_usage_error(res, "error: --phi 650: the data set has 2 modulation periods",
                       "fix each with N=MV (N = its number, from 1): --phi 1=MV --phi 2=MV")
    assert "{period: MV}" not in res.output and "phi_mv" not in res.output


@pytest.mark.parametrize(("dataset", "phi", "message"), [
    ("ams02-2021", "-100", "error: --phi must be finite and >= 0 (MV), got '-100'"),
    ("ams02-2021", "inf", "error: --phi must be finite and >= 0 (MV), got 'inf'"),
    ("ams02-2021-ace2009", "2=-5", "error: --phi must be finite and >= 0 (MV), got '2=-5'"),
    ("paper", "600", "error: --phi 600: the data set has no top-of-atmosphere block to modulate"),
])
def test_chi2_phi_values_are_named_by_the_option(spectra_file: Path, dataset: str, phi: str, message: str) -> None:
    """Said "phi_mv must be finite and >= 0 MV, got -100.0 for period ''"."""
    res = runner.invoke(app, ["chi2", str(spectra_file), "-d", dataset, "--phi", phi])
    assert_usage_error(res, message)
    assert "phi_mv" not in res.output


def test_phi_override_omits_the_unnamed_period() -> None:
    from crnet.likelihood.modulation import phi_override

    with pytest.raises(ValueError, match=r"^phi_mv must be finite and in \[0, 2000\] MV \(PHI_MAX_MV\), got -1.0$"):
        phi_override(-1.0, {"": object()})
    with pytest.raises(ValueError, match=r"got -1.0 for period 'p1'$"):
        phi_override({"p1": -1.0}, {"p1": object(), "p2": object()})


# ---------------------------------------------------------------------------------------------- store merge
def test_store_merge_names_overwrite_option_and_file(tmp_path: Path, store: Path) -> None:
    """Said 'file exists (pass overwrite=True / --overwrite)' (a Python argument), also for OUT given as input."""
    before = store.read_bytes()
    res = runner.invoke(app, ["store", "merge", str(store), str(store)])
    assert_usage_error(res, f"error: OUT {store} is also one of the INPUTS: writing it would destroy that input")
    other = tmp_path / "other.h5"
    write_synthetic_store(other, 4, seed=1)
    res = runner.invoke(app, ["store", "merge", str(store), str(other)])
    assert_usage_error(res, f"error: OUT {store}: file exists; pass --overwrite to replace it")
    assert "overwrite=True" not in res.output
    res = runner.invoke(app, ["store", "merge", str(store), str(store), "--overwrite"])
    assert_usage_error(res, "is also one of the INPUTS")
    assert store.read_bytes() == before


def test_merge_stores_message_names_the_python_argument(tmp_path: Path, store: Path) -> None:
    from crnet.store import StoreError
    from crnet.store_read import merge_stores

    out = tmp_path / "out.h5"
    out.write_bytes(b"x")
    with pytest.raises(StoreError, match=r"out.h5: file exists \(pass overwrite=True to replace it\)$"):
        merge_stores([store], out)


def test_a_store_with_an_unknown_data_set_is_named_not_the_option(tmp_path: Path, store: Path) -> None:
    """The data set a store records is the --dataset default: a name this crnet does not know was blamed on
    --dataset, which the user had not given (review by helper-77)."""
    import h5py

    with h5py.File(store, "r+") as f:
        f.attrs["dataset"] = "ams02-2019-old"
    for cmd in (["train", "--store", str(store), "--out", str(tmp_path / "m.pt"), "--no-progress"],
                ["pseudodata", "--store", str(store), "--out", str(tmp_path / "p.h5")]):
        res = runner.invoke(app, cmd)
        assert_usage_error(res, f"--store {store} records the data set 'ams02-2019-old', which this crnet does not "
                                "know (known: paper, ams02-2021, ams02-2021-ace2009); pass --dataset")


@pytest.mark.parametrize(("args", "message"), [
    (["--max-steps", "0"], "--max-steps must be an integer >= 1 (solver iterations per species), got 0"),
    (["--mode", "foo"], "--mode must be one of ('fast', 'galprop', 'exact'), got 'foo'"),
    (["--backend", "foo"], "--backend must be one of ('auto', 'numpy', 'numba', 'cupy'), got 'foo'"),
])
def test_scan_solver_settings_are_refused_before_the_store_is_made(tmp_path: Path, args, message) -> None:
    """--max-steps 0 left an empty 2.3 MB store behind and named max_steps (review by helper-77)."""
    out = tmp_path / "sc.h5"
    res = runner.invoke(app, ["scan", "--out", str(out), "--design", "sobol", "--points", "2", "--dr", "4", "--dz",
                              "1.3", "--ekin-factor", "3", "--no-progress", *args])
    assert_usage_error(res, message)
    assert not out.exists()


@pytest.mark.parametrize(("args", "message"), [
    (["--loss-scheme", "foo"], "--loss-scheme must be one of ('upwind1', 'upwind2') (momentum-loss stencil"),
    (["--z-uniform-half", "0.5"], "--z-uniform-half must be >= --dz (1.3 kpc), got 0.5"),
    (["--dz-max", "0.5", "--z-uniform-half", "2"], "--dz-max must be >= --dz (1.3 kpc), got 0.5"),
    # only the leading field is a flag: the refused value is the user's, even when it spells a field
    (["--half-lives", "dr_kpc"], "--half-lives must be one of ('galprop', 'measured') (default 'galprop'), got "
                                 "'dr_kpc'"),
])
def test_grid_options_are_named_by_flag_before_any_work(tmp_path: Path, args, message) -> None:
    """--loss-scheme foo said 'GalaxySetup.loss_scheme ...' and --z-uniform-half 0.5 'z_uniform_half_kpc must be >=
    dz' from crprop; --half-lives dr_kpc came back as "got '--dr'" (review by helper-77)."""
    for cmd in (["fit", "--out", str(tmp_path / "f.json")], ["scan", "--out", str(tmp_path / "s.h5")]):
        assert_usage_error(runner.invoke(app, [*cmd, "--dr", "4", "--dz", "1.3", "--ekin-factor", "3", *args]),
                           message)
    assert not (tmp_path / "s.h5").exists()


def test_refused_loop_names_each_option_once_also_when_the_list_is_cut() -> None:
    from crnet.commands.feedback import _identity_options

    cut = "x: belongs to another run (differs in a, b, c, d, e, f, g, feedback.seed ...); use another"
    assert _identity_options(cut) == "x: belongs to another run (differs in a, b, c, d, e, f, g, --seed " \
                                     "(feedback.seed) ...); use another"
    both = "x: belongs to another run (differs in feedback.retrain_epochs, retraining.epochs, model_sha256); use"
    assert _identity_options(both) == "x: belongs to another run (differs in --epochs (feedback.retrain_epochs), " \
                                      "--model (model_sha256)); use"


def test_simulate_leaves_the_stretched_halo_to_its_galdefs_dz(tmp_path: Path) -> None:
    """`crnet simulate --galdef G --z-uniform-half 0.15` was refused against the paper galdef's 0.2 kpc dz, though
    G's dz may be 0.1 (review by helper-78): the options are checked one by one, the halo where the galdef is known."""
    res = runner.invoke(app, ["simulate", "--params", str(tmp_path / "missing.toml"), "--out", str(tmp_path / "x.h5"),
                              "--z-uniform-half", "0.15"])
    assert_usage_error(res, "missing.toml")
    assert "--z-uniform-half" not in res.output
    res = runner.invoke(app, ["simulate", "--params", str(tmp_path / "missing.toml"), "--out", str(tmp_path / "x.h5"),
                              "--z-uniform-half", "-1"])  # a value wrong whatever the galdef: refused up front
    assert_usage_error(res, "--z-uniform-half must be a finite positive number, got -1.0")
