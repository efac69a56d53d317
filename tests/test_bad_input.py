"""Bad input found by the session-11 CLI review: each gets a clear error naming the file / field, not a
traceback and not silently accepted numbers."""

from __future__ import annotations

import json
import math
import shutil
from pathlib import Path

import h5py
import numpy as np
import pytest
import torch
from helpers_store import write_synthetic_store
from typer.testing import CliRunner

from crnet.cli import app
from crnet.feedback import FeedbackConfig
from crnet.pipeline_config import load_config
from crnet.scan.runner import ScanConfig
from crnet.store import MockStore, StoreError
from crprop.params import CRML_BASE, PropagationParams

runner = CliRunner()
CI_CONFIG = Path(__file__).resolve().parents[1] / "configs" / "pipeline_ci.toml"
START = [4.0, 0.45, -1.0, 20.0, 4.55, 1.0, 2.3, 2.4, 1000.0, 3e5]


@pytest.mark.parametrize(("edit", "message"), [
    (("[scan]\n", '[scan]\nn_chains = "64"\n'), r"\[scan\] n_chains: expected int"),
    (("check = true", 'check = "no"'), r"\[train\] check: expected bool"),
    (("n_test = 4", "n_test = -1"), r"\[test\] n_test must be >= 1"),
    (("epochs = 2", "epochs = -3"), r"\[train\] epochs must be >= 1"),
    (("[scan]\n", "[scan]\ntol = nan\n"), r"\[scan\] tol: expected .*finite"),
    (("grid = { dr_kpc = 4.0,", 'grid = { dr_kpc = "one",'), r"\[scan.grid\] dr_kpc: expected"),
    (("[scan]\n", "[scan]\nstart_spread = -1.0\n"), "start_spread must be finite and > 0"),
    (("[train]\n", "[trian]\n"), r"unknown sections \['trian'\]; allowed \['run', 'fit', 'scan', 'train', "),
])
def test_pipeline_config_values_are_type_and_range_checked(tmp_path, edit, message) -> None:
    text = CI_CONFIG.read_text()
    assert edit[0] in text
    bad = tmp_path / "bad.toml"
    bad.write_text(text.replace(edit[0], edit[1], 1))
    with pytest.raises(ValueError, match=message):
        load_config(bad)


def test_parameters_refuse_booleans_strings_and_nan_starts() -> None:
    for value in (True, "0.5"):
        with pytest.raises(ValueError, match="delta must be a number"):
            PropagationParams(**{**CRML_BASE.to_dict(), "delta": value})
    with pytest.raises(ValueError, match=r"start: \['d0_1e28_cm2_s'\] must be finite"):
        ScanConfig(start=[math.nan, *START[1:]])
    with pytest.raises(ValueError, match=r"start: \['z_halo_kpc'\] outside the prior box"):
        ScanConfig(start=[*START[:4], 40.0, *START[5:]])
    with pytest.raises(ValueError, match="proposal_scale must be finite"):
        ScanConfig(proposal_scale=math.nan)
    with pytest.raises(ValueError, match="unknown data set 'bogus'"):
        ScanConfig(dataset="bogus")
    with pytest.raises(ValueError, match="tau_threshold must be finite"):
        FeedbackConfig(tau_threshold=math.nan)
    with pytest.raises(ValueError, match="n_test must be >= 1"):
        FeedbackConfig(n_test=-3)


def test_damaged_stores_are_named_not_tracebacks(tmp_path) -> None:
    good = tmp_path / "good.h5"
    write_synthetic_store(good, 8)
    truncated = tmp_path / "truncated.h5"
    truncated.write_bytes(good.read_bytes()[:4000])
    with pytest.raises(StoreError, match="not a readable HDF5 file"):  # not 'open by another process'
        MockStore.open(truncated)
    scalar = tmp_path / "scalar_species.h5"
    shutil.copy(good, scalar)
    with h5py.File(scalar, "a") as f:
        del f["species"]
        f["species"] = b"C"
    with pytest.raises(StoreError, match="corrupt store"):
        MockStore.open(scalar)
    badjson = tmp_path / "badjson.h5"
    shutil.copy(good, badjson)
    with h5py.File(badjson, "a") as f:
        f.attrs["grid"] = "{not json"
    res = runner.invoke(app, ["store", "info", str(badjson)])
    assert res.exit_code == 2 and "'grid' is not valid JSON" in res.output


def test_malformed_spectra_files_name_the_dataset(tmp_path) -> None:
    from helpers_spectra import make_spectra

    from crnet.spectra_io import read_spectra_h5, write_spectra_h5

    path = tmp_path / "s.h5"
    write_spectra_h5(path, make_spectra(), params=np.arange(6.0).reshape(3, 2), param_names=["D0", "delta"])
    nan_params = tmp_path / "nan.h5"
    shutil.copy(path, nan_params)
    with h5py.File(nan_params, "a") as f:
        f["params"][1, 0] = np.nan
    with pytest.raises(ValueError, match=r"'params': model 1, 'D0' = nan is not finite"):
        read_spectra_h5(nan_params)
    group = tmp_path / "group.h5"
    shutil.copy(path, group)
    with h5py.File(group, "a") as f:
        names = f["params"].attrs["names"]
        del f["params"]
        f.create_group("params").attrs["names"] = names
    with pytest.raises(ValueError, match=r"dataset 'params': malformed"):
        read_spectra_h5(group)
    res = runner.invoke(app, ["chi2", str(path), "--phi", "500"])  # the paper data set is all LIS
    assert res.exit_code == 2 and "no top-of-atmosphere block" in res.output


def test_model_files_with_the_tag_but_bad_content(tmp_path) -> None:
    from helpers_modelfile import make_model

    from crnet.machines.modelfile import load_model, save_model

    tag_only = tmp_path / "tag.pt"
    torch.save({"format": "crnet-model", "format_version": 1}, tag_only)
    with pytest.raises(ValueError, match="malformed crnet model file"):
        load_model(tag_only)
    path = tmp_path / "m.pt"
    save_model(path, make_model("crnet"))
    payload = torch.load(path, weights_only=True)
    wrong = {k: v for k, v in payload["state_dict"].items() if not k.endswith("bias")}
    torch.save({**payload, "state_dict": wrong}, tmp_path / "wrong.pt")
    with pytest.raises(ValueError, match="weights do not fit the architecture"):
        load_model(tmp_path / "wrong.pt")
    meta = json.loads(payload["metadata_json"])
    meta["architecture"] = {"bogus": 1}
    torch.save({**payload, "metadata_json": json.dumps(meta)}, tmp_path / "arch.pt")
    with pytest.raises(ValueError, match="arch.pt"):
        load_model(tmp_path / "arch.pt")

    def damaged(name: str, **tensors) -> Path:
        out = tmp_path / name
        torch.save({**payload, "tensors": {**payload["tensors"], **tensors}}, out)
        return out

    n_e = payload["tensors"]["energies"].numel()
    # a scaler for another grid fails at load, naming the file and the fields (not at the first prediction)
    with pytest.raises(ValueError, match=rf"scaler.pt: member 0's feature_mean/feature_std have shape \(8, 80\), "
                                         rf"not \(8, {n_e}\)"):
        load_model(damaged("scaler.pt", feature_mean=torch.zeros(8, 80, dtype=torch.float64),
                           feature_std=torch.ones(8, 80, dtype=torch.float64)))
    with pytest.raises(ValueError, match=rf"grid.pt: architecture n_bins = {n_e} but the energy grid has 80 bins"):
        load_model(damaged("grid.pt", energies=torch.logspace(-1, 3, 80, dtype=torch.float64)))
    with pytest.raises(ValueError, match="order.pt: tensor energies must be a 1-D increasing grid"):
        load_model(damaged("order.pt", energies=payload["tensors"]["energies"].flip(0)))
    low = payload["tensors"]["target_low"].clone()
    low[0] = 0.0
    with pytest.raises(ValueError, match="low.pt: tensor target_low .* disagrees with the metadata"):
        load_model(damaged("low.pt", target_low=low))
    zero_std = payload["tensors"]["feature_std"].clone()
    zero_std[0, 0] = 0.0
    with pytest.raises(ValueError, match=r"std.pt: malformed crnet model file \(FeatureScaler needs finite mean"):
        load_model(damaged("std.pt", feature_std=zero_std))


def test_cli_checks_cheap_things_before_long_work(tmp_path) -> None:
    res = runner.invoke(app, ["demo", "--dataset", "bogus", "--out", str(tmp_path / "d.png")])
    assert res.exit_code == 2 and "unknown data set 'bogus'" in res.output
    res = runner.invoke(app, ["demo", "--out", str(tmp_path / "d.txt")])  # refused before the propagation
    assert res.exit_code == 2 and "a figure file must end in one of" in res.output and ".pdf" in res.output
    store = tmp_path / "mocks.h5"
    write_synthetic_store(store, 40)
    res = runner.invoke(app, ["train", "--store", str(store), "--machine", "A", "--out",
                              str(tmp_path / "missing_dir" / "m.pt"), "--epochs", "1"])
    assert res.exit_code == 2 and "does not exist" in res.output
    res = runner.invoke(app, ["train", "--store", str(store), "--machine", "A", "--out", str(tmp_path / "m.pt"),
                              "--epochs", "1", "--device", "bogus"])
    assert res.exit_code == 2 and "not a torch device" in res.output


@pytest.mark.parametrize(("toml", "message"), [
    ("model = 3\n", "'model' must be a list of tables"),
    ("[galdef]\npath = 5\n", "must be a table with one string entry 'path'"),
])
def test_simulate_refuses_mis_shaped_parameter_files(tmp_path, toml, message) -> None:
    path = tmp_path / "p.toml"
    path.write_text(toml)
    res = runner.invoke(app, ["simulate", "--params", str(path), "--out", str(tmp_path / "s.h5")])
    assert res.exit_code == 2 and message in res.output and "Traceback" not in res.output


def test_train_options_out_of_range(tmp_path) -> None:
    store = tmp_path / "mocks.h5"
    write_synthetic_store(store, 40)
    for option, value, message in (("--patience", "-3", "patience must be >= 1"),
                                   ("--memory-gb", "nan", "--memory-gb must be finite")):
        res = runner.invoke(app, ["train", "--store", str(store), "--machine", "A", "--out", str(tmp_path / "m.pt"),
                                  "--epochs", "1", option, value])
        assert res.exit_code == 2 and message in res.output, res.output


def test_galprop_compare_checks_the_energy_range(galprop_ref_dir) -> None:
    res = runner.invoke(app, ["galprop", "compare", str(galprop_ref_dir / "crml_base"), "--emin", "1000",
                              "--emax", "0.1"])
    assert res.exit_code == 2 and "need 0 < emin < emax" in res.output


def test_data_tables_refuse_non_utf8_and_non_positive_bin_edges(tmp_path) -> None:
    from helpers_csv import GOOD_ROWS, HEADER

    from crnet.data import read_table

    latin = tmp_path / "latin_B_R.csv"
    latin.write_bytes(("# x: rigidity R [GV]\n# note: caf\xe9\n" + "\n".join([HEADER, *GOOD_ROWS]) + "\n")
                      .encode("latin-1"))
    with pytest.raises(ValueError, match="not a UTF-8 text file"):
        read_table(latin)
    first = GOOD_ROWS[0].split(",")
    first[0] = "-1.0"
    neg = tmp_path / "neg_B_R.csv"
    neg.write_text("\n".join(["# x: rigidity R [GV]", HEADER, ",".join(first), *GOOD_ROWS[1:]]) + "\n")
    with pytest.raises(ValueError, match="line 3, column 'R_low_GV': non-positive bin edge"):
        read_table(neg)


def test_fit_start_must_be_finite() -> None:
    from crnet.scan.fit import FitConfig, fit_best

    with pytest.raises(ValueError, match=r"not finite: \['delta'\]"):
        fit_best(None, FitConfig(start=[START[0], math.nan, *START[2:]]), progress=False)


def test_seeds_are_checked_once_for_every_config() -> None:
    """One seed rule for scan, training, pseudo-data and feedback configs (crnet.config_fields.check_seed)."""
    import numpy as np

    from crnet.config_fields import check_seed

    check_seed(np.int64(3))
    check_seed(0)
    for bad in (-1, True, 2.0, "3"):
        with pytest.raises(ValueError, match="seed must be an integer >= 0"):
            check_seed(bad)
