"""`crnet pseudodata`: the --test file of `crnet feedback` / `crnet evaluate`, and its refusals."""

from __future__ import annotations

import json

import numpy as np
import pytest
from helpers_store import write_synthetic_store
from typer.testing import CliRunner

from crnet.cli import app
from crnet.feedback_inputs import read_store_setup
from crnet.machines.data import StoreReader, read_store_info
from crnet.pseudodata import holdout_mask

runner = CliRunner()

FIELDS = ("params", "norms", "flux", "chi2", "step")


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    path = tmp_path_factory.mktemp("pseudo") / "mocks.h5"
    write_synthetic_store(path, 60, seed=3)
    return path


def _make(store, out, *extra):
    return runner.invoke(app, ["pseudodata", "--store", str(store), "--out", str(out), *extra])


def _arrays(path):
    with StoreReader(path) as r:
        idx = np.arange(r.info.n_records)
        return {k: r.take(k, idx) for k in FIELDS}


def _error_line(res) -> str:
    assert res.exit_code == 2, res.output
    lines = [ln for ln in res.output.splitlines() if ln.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: "), res.output
    return lines[0]


def test_writes_a_test_store_that_feedback_and_evaluate_read(store, tmp_path):
    out = tmp_path / "test.h5"
    res = _make(store, out, "--n-pseudo", "7", "--seed", "11", "--json")
    assert res.exit_code == 0, res.output
    info = json.loads(res.output)
    assert info["n_pseudo"] == 7 and info["out"] == str(out) and info["store"] == str(store)
    assert info["centres"] == "all" and info["seed"] == 11 and info["dataset"] == "paper"
    assert 0 < info["max_abs_relative_fluctuation"] <= 0.05
    setup = read_store_setup(out, "test_store")  # the check crnet feedback / crnet evaluate run on --test
    assert setup.n_complete == 7
    attrs = read_store_info(out).attrs
    assert attrs["design"] == "pseudo" and attrs["pseudo_data"]
    assert attrs["config"]["n_pseudo"] == 7 and attrs["config"]["seed"] == 11
    with StoreReader(out) as r:
        assert r.info.is_pseudo  # what crnet train / predict read it as
    a = _arrays(out)
    assert a["flux"].shape[0] == 7 and np.isfinite(a["chi2"]).all()


def test_text_summary(store, tmp_path):
    res = _make(store, tmp_path / "t.h5", "--n-pseudo", "3")
    assert res.exit_code == 0, res.output
    assert res.output.startswith(f"3 pseudo-spectra in {tmp_path / 't.h5'} from ")
    assert "centres all" in res.output and "fluctuations |N'/N - 1|" in res.output


def test_same_seed_same_arrays_other_seed_other(store, tmp_path):
    paths = {name: tmp_path / f"{name}.h5" for name in ("a", "b", "c")}
    for name, seed in (("a", "4"), ("b", "4"), ("c", "5")):
        assert _make(store, paths[name], "--n-pseudo", "6", "--seed", seed).exit_code == 0
    a, b, c = (_arrays(paths[n]) for n in ("a", "b", "c"))
    for k in FIELDS:
        np.testing.assert_array_equal(a[k], b[k])
    assert not np.array_equal(a["flux"], c["flux"])


def test_holdout_fraction_draws_test_centres_by_default(store, tmp_path):
    out = tmp_path / "held.h5"
    res = _make(store, out, "--n-pseudo", "8", "--holdout-fraction", "0.3", "--json")
    assert res.exit_code == 0, res.output
    assert json.loads(res.output)["centres"] == "test"
    # the default seed is the pipeline's test seed for run seed 0, not crnet train's default 0 (Machine B's own draws)
    from crnet.pipeline_config import TEST_SEED_OFFSET

    assert json.loads(res.output)["seed"] == TEST_SEED_OFFSET != 0
    assert holdout_mask(_arrays(out)["step"], 0.3).all()  # every central value is a held-out record
    res = _make(store, tmp_path / "train.h5", "--n-pseudo", "8", "--holdout-fraction", "0.3", "--centres", "train")
    assert res.exit_code == 0, res.output
    assert not holdout_mask(_arrays(tmp_path / "train.h5")["step"], 0.3).any()


def test_refusals(store, tmp_path):
    missing = tmp_path / "nope.h5"
    assert _error_line(_make(missing, tmp_path / "x.h5")) == f"error: {missing}: no such store file"
    assert not (tmp_path / "x.h5").exists()
    assert _error_line(_make(store, store)) == (f"error: --out {store} is the input --store: writing it would "
                                                "destroy that input; give another file name")
    existing = tmp_path / "existing.h5"
    existing.write_bytes(b"keep")
    assert _error_line(_make(store, existing)) == (f"error: --out {existing}: file exists; pass --overwrite to "
                                                   "replace it")
    assert existing.read_bytes() == b"keep"
    res = _make(store, existing, "--n-pseudo", "2", "--overwrite")
    assert res.exit_code == 0, res.output
    assert read_store_setup(existing, "test_store").n_complete == 2
    for n in ("0", "-3"):
        out = tmp_path / f"n{n}.h5"
        assert _error_line(_make(store, out, "--n-pseudo", n)) == (f"error: --n-pseudo must be >= 1 (pseudo-spectra), "
                                                                   f"got {n}")
        assert not out.exists()
    assert _error_line(_make(store, tmp_path / "c.h5", "--centres", "test")) == (
        "error: --centres test needs --holdout-fraction > 0 (the share of records held out as test centres)")
    assert _error_line(_make(store, tmp_path / "c.h5", "--centres", "some")) == (
        "error: --centres must be one of all, train, test, got 'some'")
    assert _error_line(_make(store, tmp_path / "c.h5", "--holdout-fraction", "1")) == (
        "error: --holdout-fraction must lie in [0, 1), got 1.0")


def test_train_holds_out_what_pseudodata_then_tests_on(store, tmp_path):
    """`crnet train --holdout-fraction F` (as the pipeline's [train] holdout_fraction): the model records it with
    centres 'train', so `crnet pseudodata --holdout-fraction F` tests on records no machine trained on."""
    from crnet.machines.modelfile import load_model

    model = tmp_path / "a.pt"
    res = runner.invoke(app, ["train", "--store", str(store), "--out", str(model), "--machine", "A", "--epochs", "1",
                              "--holdout-fraction", "0.3", "--no-progress"])
    assert res.exit_code == 0, res.output
    pseudo = load_model(model).metadata["train_config"]["pseudo"]
    assert (pseudo["holdout_fraction"], pseudo["centres"]) == (0.3, "train")
    res = runner.invoke(app, ["train", "--store", str(store), "--out", str(tmp_path / "b.pt"), "--epochs", "1",
                              "--holdout-fraction", "1", "--no-progress"])
    assert res.exit_code == 2 and res.output.strip() == "error: --holdout-fraction must lie in [0, 1), got 1.0"
