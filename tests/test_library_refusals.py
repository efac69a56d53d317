"""Refusals that used to live only in the CLI commands, now in the library functions they call: a Python-API caller
gets the same one-line ValueError (training over its own store, a mock store read as a spectra file, a store or a
text file loaded as a model). Every file here is tiny and every refusal comes before any training or prediction."""

from __future__ import annotations

import os
import re
from pathlib import Path

import h5py
import numpy as np
import pytest
from helpers_store import write_synthetic_store

from crnet.commands.io_checks import check_model_archive
from crnet.machines import ensemble_training, training
from crnet.machines.checkpoint import checkpoint_path
from crnet.machines.inference import (
    PREDICTION_SUFFIXES,
    Predictions,
    predict_file,
    prediction_suffix,
    write_predictions,
)
from crnet.machines.modelfile import HDF5_SIGNATURE, ZIP_SIGNATURE, Predictor, load_model, save_model
from crnet.machines.train_files import member_path, written_files
from crnet.machines.training import TrainConfig, train
from crnet.spectra_io import read_spectra_h5
from crnet.store import FORMAT as STORE_FORMAT


def _e(path: Path | str) -> str:
    """``path`` as a regular expression matching it literally."""
    return re.escape(str(path))


@pytest.fixture
def store(tmp_path: Path) -> Path:
    """A mock store of 8 records (crnet.store schema)."""
    path = tmp_path / "mocks.h5"
    write_synthetic_store(path, 8)
    return path


@pytest.fixture
def model_file(tmp_path: Path) -> Path:
    """A crnet-network model file (random weights) on the store's energy grid."""
    from helpers_modelfile import make_model

    path = tmp_path / "m.pt"
    save_model(path, make_model("crnet"))
    return path


@pytest.fixture
def no_training(monkeypatch: pytest.MonkeyPatch) -> None:
    """Fail the test if train() gets as far as reading the training data or building pseudo-data."""
    def boom(*args, **kwargs):
        raise AssertionError("train() started work before refusing its output")

    for name in ("_prepare_store", "prepare_regression_data", "prepare_check_data"):
        monkeypatch.setattr(training, name, boom)
    monkeypatch.setattr(ensemble_training, "_train_ensemble", boom)


# ------------------------------------------------------------------------------------------------ 1. train()
def test_train_refuses_out_equal_to_store(tmp_path: Path, store: Path, no_training: None) -> None:
    before = store.read_bytes()
    with pytest.raises(ValueError) as err:
        train(store, store, TrainConfig(epochs=1, progress=False))
    assert str(err.value) == (f"train: out {store} is the input store {store}: writing it would destroy that input; "
                              "give another out")
    # the same file under another name: a relative path and a symbolic link
    link = tmp_path / "link.h5"
    link.symlink_to(store)
    for out in (link, Path(os.path.relpath(store))):
        with pytest.raises(ValueError, match=rf"^train: out {_e(out)} is the input store {_e(store)}: "):
            train(store, out, TrainConfig(epochs=1, progress=False))
    assert store.read_bytes() == before


def test_train_refuses_out_equal_to_init_from(store: Path, model_file: Path, no_training: None) -> None:
    before = model_file.read_bytes()
    with pytest.raises(ValueError, match=rf"^train: out {_e(model_file)} is the input init_from {_e(model_file)}: "
                                         "writing it would destroy that input; give another out$"):
        train(store, model_file, TrainConfig(epochs=1, progress=False, init_from=str(model_file)))
    assert model_file.read_bytes() == before


def test_train_refuses_files_written_beside_out(tmp_path: Path, store: Path, no_training: None) -> None:
    """The checkpoint <out>.ckpt, or an ensemble member's file, named like the store would replace it too."""
    out = tmp_path / "mocks"
    assert checkpoint_path(out) == tmp_path / "mocks.ckpt"
    ckpt_store = tmp_path / "mocks.ckpt"
    store.rename(ckpt_store)
    with pytest.raises(ValueError, match=rf"^train: {_e(ckpt_store)} \(written beside out {_e(out)}\) is the input "
                                         rf"store {_e(ckpt_store)}: writing it would destroy"):
        train(ckpt_store, out, TrainConfig(epochs=1, progress=False))
    member = member_path(out, 1)
    ckpt_store.rename(member)
    with pytest.raises(ValueError, match=rf"^train: {_e(member)} \(written beside out {_e(out)}\) is the input "
                                         rf"store {_e(member)}: "):
        train(member, out, TrainConfig(epochs=1, progress=False, ensemble=2))
    # a single machine writes no member files: only out and its checkpoint
    assert written_files(out) == [out, checkpoint_path(out)]
    assert member in written_files(out, 2) and member not in written_files(out, 1)


def test_train_other_out_passes_the_check(tmp_path: Path, store: Path, no_training: None) -> None:
    """The refusal is of the same file only: another out goes on to the work (stubbed here)."""
    with pytest.raises(AssertionError, match="started work"):
        train(store, tmp_path / "model.pt", TrainConfig(epochs=1, progress=False))


# ------------------------------------------------------------------------------------- 2. read_spectra_h5()
def test_read_spectra_h5_refuses_a_mock_store(store: Path) -> None:
    with h5py.File(store, "r") as f:
        assert f.attrs["format"] == STORE_FORMAT
    with pytest.raises(ValueError) as err:
        read_spectra_h5(store)
    assert str(err.value) == (f"{store}: a mock store (crnet scan), not a spectra file written by `crnet simulate`; "
                              "its chi2_tot per record is stored in it (`crnet store info`)")


def test_read_spectra_h5_refuses_a_store_tag_stored_as_bytes(tmp_path: Path) -> None:
    """The format attribute as fixed-length bytes (another HDF5 writer) is the same store tag."""
    path = tmp_path / "bytes_tag.h5"
    with h5py.File(path, "w") as f:
        f.attrs["format"] = np.bytes_(STORE_FORMAT.encode())
    with pytest.raises(ValueError, match="a mock store \\(crnet scan\\), not a spectra file"):
        read_spectra_h5(path)
    with h5py.File(path, "w") as f:  # another tag: not a store, so the reader's own check speaks
        f.attrs["format"] = "something-else"
    with pytest.raises(ValueError, match="missing dataset"):
        read_spectra_h5(path)


def test_predict_file_still_reads_mock_stores(store: Path, model_file: Path) -> None:
    """predict_file dispatches on the format before read_spectra_h5, so mock stores stay valid inputs."""
    pred = predict_file(Predictor.load(model_file), store)
    assert pred.params is not None and pred.params.shape == (pred.index.size, 10)
    assert pred.index.size + pred.skipped.size == 8 and pred.truth is not None


# ------------------------------------------------------------------------------------------- 3. load_model()
def test_load_model_refuses_an_hdf5_file(store: Path) -> None:
    assert store.read_bytes().startswith(HDF5_SIGNATURE)
    for load in (load_model, Predictor.load):
        with pytest.raises(ValueError) as err:
            load(store)
        assert str(err.value) == (f"{store}: is an HDF5 file (a mock store, spectra or predictions?), not a model "
                                  "file written by `crnet train`")


def test_load_model_refuses_a_file_that_is_no_archive(tmp_path: Path) -> None:
    for name, content in (("model.toml", b"machine = 'A'\n"), ("empty.pt", b"")):
        path = tmp_path / name
        path.write_bytes(content)
        for load in (load_model, Predictor.load):
            with pytest.raises(ValueError) as err:
                load(path)
            assert str(err.value) == f"{path}: not a model file written by `crnet train` (not a PyTorch archive)"
            assert "weights_only" not in str(err.value) and "\n" not in str(err.value)


def test_model_archive_check_keeps_the_option_name(tmp_path: Path, store: Path, model_file: Path) -> None:
    """The CLI wrapper runs the library check and names the option; a real model file passes both."""
    assert model_file.read_bytes().startswith(ZIP_SIGNATURE)
    assert check_model_archive(model_file) == model_file
    assert load_model(model_file).network == "crnet"
    with pytest.raises(ValueError, match=rf"^--model {_e(store)}: is an HDF5 file"):
        check_model_archive(store)
    with pytest.raises(ValueError, match=rf"^--model {_e(tmp_path)}: is a directory, not a file$"):
        check_model_archive(tmp_path)


# ---------------------------------------------------------------------------------- 5. prediction suffixes
def test_prediction_suffix_is_the_writer_rule(tmp_path: Path) -> None:
    assert PREDICTION_SUFFIXES == (".csv", ".h5", ".hdf5")
    assert [prediction_suffix(tmp_path / f"p{s.upper()}") for s in PREDICTION_SUFFIXES] == list(PREDICTION_SUFFIXES)
    bad = tmp_path / "p.txt"
    with pytest.raises(ValueError, match=rf"^--out {_e(bad)}: must end in \.csv, \.h5 or \.hdf5$"):
        prediction_suffix(bad, "--out")
    empty = Predictions(np.zeros(0, dtype=np.int64), np.zeros((0, 10)), None, None, np.zeros(0, dtype=np.int64),
                        np.zeros((0, 10), dtype=bool))
    with pytest.raises(ValueError, match=rf"^output {_e(bad)}: must end in \.csv, \.h5 or \.hdf5$"):
        write_predictions(empty, bad, {})
    assert not bad.exists()
    write_predictions(empty, tmp_path / "p.CSV", {})
    assert (tmp_path / "p.CSV").read_text().startswith("# units:")
