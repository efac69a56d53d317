"""`crnet predict` inputs refused or left out (walk-through by helper-87, session 21): non-converged models of a
spectra file, model files with NaN / inf weights, a pickle inside a torch archive (one line, no advice to load it),
and a --skip-invalid run that leaves out every record (exit 1, nothing written)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from helpers_store import write_synthetic_store
from typer.testing import CliRunner

from crnet.cli import app
from crnet.features import FeatureScaler, TargetTransform, paper_energy_grid
from crnet.machines import build_network, default_architecture
from crnet.machines.checkpoint import read_checkpoint
from crnet.machines.data import StoreReader
from crnet.machines.inference import predict_file
from crnet.machines.modelfile import ModelFile, Predictor, load_model, save_model
from crnet.spectra_io import write_spectra_h5
from crnet.store_read import spectra_from_flux
from crprop.params import PARAM_NAMES

torch.set_num_threads(1)

N_STORE = 12
"""Records of the tiny synthetic store the spectra files are cut from."""


def tiny_model(seed: int = 0, members: int = 0) -> ModelFile:
    """An untrained crnet-variant regressor on the paper grid (weights finite), with ``members`` extra members."""
    e = paper_energy_grid()
    arch = default_architecture("crnet", e.size)
    rng = np.random.default_rng(seed)

    def member(k: int) -> tuple[dict[str, torch.Tensor], FeatureScaler]:
        torch.manual_seed(seed + k)
        sd = build_network("crnet", arch).state_dict()
        return sd, FeatureScaler(rng.normal(0, 1, (8, e.size)), rng.uniform(0.5, 2, (8, e.size)))

    sd, scaler = member(0)
    return ModelFile("crnet", arch, "A", sd, TargetTransform(), scaler, e, {},
                     [member(k) for k in range(1, members + 1)])


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    """A tiny store, a model, and spectra files of 3 models cut from the store: all converged, model 0 not
    converged (residual 0.5), and none converged."""
    d = tmp_path_factory.mktemp("predict_s21")
    write_synthetic_store(d / "store.h5", N_STORE, seed=3)
    save_model(d / "m.pt", tiny_model())
    idx = np.array([0, 1, 2])
    with StoreReader(d / "store.h5") as reader:
        params = reader.params()[idx]
        flux = reader.take("flux", idx)
        species, energies = reader.info.species, reader.info.energies
    out = {"dir": d, "store": d / "store.h5", "model": d / "m.pt"}
    for name, unconverged in (("ok", []), ("one_bad", [0]), ("all_bad", [0, 1, 2])):
        spectra = spectra_from_flux(flux, species, energies)
        spectra.converged[unconverged] = False
        spectra.residual[unconverged] = 0.5
        out[name] = d / f"spectra_{name}.h5"
        write_spectra_h5(out[name], spectra, params, list(PARAM_NAMES))
    return out


def predict(*args: str):
    return CliRunner().invoke(app, ["predict", *args])


# --- 1. a spectra file's non-converged models -------------------------------------------------------------------------

def test_non_converged_spectra_are_refused_unless_skip_invalid(files) -> None:
    predictor = Predictor.load(files["model"])
    full = predict_file(predictor, files["ok"])
    assert np.array_equal(full.index, [0, 1, 2]) and full.skipped.size == 0
    with pytest.raises(ValueError, match=r"spectra_one_bad\.h5: 1 records with solves that did not converge "
                                         r"\(dataset 'converged' false, largest residual 0\.5\).*record 0.*"
                                         r"--skip-invalid"):
        predict_file(predictor, files["one_bad"])
    pred = predict_file(predictor, files["one_bad"], skip_invalid=True)
    assert np.array_equal(pred.index, [1, 2]) and np.array_equal(pred.skipped, [0])
    assert np.array_equal(pred.params, full.params[1:])  # the others are predicted as before
    assert np.array_equal(pred.truth, full.truth[1:])


def test_cli_predict_refuses_non_converged_spectra(files) -> None:
    res = predict("--model", str(files["model"]), "--spectra", str(files["one_bad"]))
    assert res.exit_code == 2, res.output
    assert "error:" in res.output and "did not converge" in res.output and "--skip-invalid" in res.output
    res = predict("--model", str(files["model"]), "--spectra", str(files["one_bad"]), "--skip-invalid")
    assert res.exit_code == 0, res.output
    assert "2 records predicted, 1 skipped" in res.output


# --- 2. NaN / inf network weights ---------------------------------------------------------------------------------

def _poison(sd: dict[str, torch.Tensor], value: float) -> tuple[dict[str, torch.Tensor], str]:
    """A copy of ``sd`` whose first floating tensor holds ``value`` at one place; and that tensor's name."""
    out = {k: v.clone() for k, v in sd.items()}
    name = next(k for k, v in out.items() if v.is_floating_point())
    out[name].view(-1)[out[name].numel() // 2] = value
    return out, name


@pytest.mark.parametrize("value", [float("nan"), float("inf")])
def test_load_refuses_non_finite_weights(tmp_path, value: float) -> None:
    model = tiny_model()
    model.state_dict, name = _poison(model.state_dict, value)
    path = tmp_path / "bad.pt"
    save_model(path, model)
    with pytest.raises(ValueError, match=rf"bad\.pt: state_dict tensor '{name}' holds 1 NaN or inf value"):
        load_model(path)


def test_load_refuses_non_finite_weights_of_an_ensemble_member(tmp_path) -> None:
    model = tiny_model(members=2)
    sd, scaler = model.members[1]
    poisoned, name = _poison(sd, float("nan"))
    model.members[1] = (poisoned, scaler)
    save_model(tmp_path / "ens.pt", model)
    with pytest.raises(ValueError, match=rf"ens\.pt: ensemble member 2's state_dict tensor '{name}' holds 1 NaN"):
        load_model(tmp_path / "ens.pt")
    model.members[1] = (sd, scaler)  # the same file with finite weights loads
    save_model(tmp_path / "ens.pt", model)
    assert load_model(tmp_path / "ens.pt").n_members == 3


def test_cli_predict_refuses_a_model_with_nan_weights(files, tmp_path) -> None:
    model = tiny_model()
    model.state_dict, name = _poison(model.state_dict, float("nan"))
    save_model(tmp_path / "nan.pt", model)
    out = tmp_path / "pred.csv"
    res = predict("--model", str(tmp_path / "nan.pt"), "--spectra", str(files["store"]), "--out", str(out))
    assert res.exit_code == 2, res.output
    assert res.output.startswith("error: ") and "nan.pt" in res.output and name in res.output
    assert not out.exists()


# --- 3. a pickle inside a torch archive ------------------------------------------------------------------------------

class Payload:
    """A pickled object: weights-only loading must refuse it, and never run it."""

    def __reduce__(self):
        return (print, ("this must never run",))


def test_pickle_refusal_is_one_line_without_advice_to_load_it(files, tmp_path) -> None:
    evil = tmp_path / "evil.pt"
    torch.save({"format": "crnet-model", "obj": Payload()}, evil)
    with pytest.raises(ValueError) as err:
        load_model(evil)
    msg = str(err.value)
    assert msg.startswith(f"{evil}: not a crnet model file: it holds pickled objects") and "never loads" in msg
    assert "\n" not in msg and "weights_only" not in msg and "Re-running" not in msg, msg
    res = predict("--model", str(evil), "--spectra", str(files["store"]))
    assert res.exit_code == 2 and res.output.count("\n") == 1 and "weights_only" not in res.output, res.output
    assert "this must never run" not in res.output


def test_a_damaged_pickle_stream_is_called_corrupt_not_pickled_objects(tmp_path) -> None:
    """torch raises the same UnpicklingError for a damaged data.pkl (review by helper-92, session 21)."""
    import zipfile

    good = tmp_path / "good.pt"
    torch.save({"format": "crnet-model", "x": torch.zeros(3)}, good)
    bad = tmp_path / "corrupt.pt"
    with zipfile.ZipFile(good) as src, zipfile.ZipFile(bad, "w") as dst:
        for item in src.infolist():
            data = src.read(item)
            if item.filename.endswith("data.pkl"):
                data = b"\xff\xff" + data[2:]
            dst.writestr(item, data)
    with pytest.raises(ValueError, match=r"corrupt\.pt: corrupt model file: its weights cannot be read \(") as err:
        load_model(bad)
    assert "pickled objects" not in str(err.value) and "\n" not in str(err.value)


def test_checkpoint_pickle_refusal_gives_no_advice_to_load_it(tmp_path) -> None:
    """read_checkpoint names only the exception type (checked by experiment, session 21): kept that way."""
    evil = tmp_path / "m.pt.ckpt"
    torch.save({"format": "crnet-checkpoint", "obj": Payload()}, evil)
    with pytest.raises(ValueError) as err:
        read_checkpoint(evil, {})
    msg = str(err.value)
    assert str(evil) in msg and "\n" not in msg and "weights_only" not in msg, msg


# --- 4. --skip-invalid leaving out every record ---------------------------------------------------------------------

@pytest.mark.parametrize("suffix", [".csv", ".h5"])
def test_skip_invalid_that_leaves_out_every_record_fails(files, tmp_path, suffix: str) -> None:
    out = tmp_path / f"pred{suffix}"
    res = predict("--model", str(files["model"]), "--spectra", str(files["all_bad"]), "--skip-invalid", "--out",
                  str(out))
    assert res.exit_code == 1, res.output
    assert res.output.startswith("error: ") and "all 3 records were skipped" in res.output, res.output
    assert not out.exists()
    assert list(tmp_path.iterdir()) == []  # no temporary file left either


def test_store_of_only_unconverged_records_fails(tmp_path) -> None:
    """A store's non-converged records are always left out: one with no other record predicts nothing."""
    store = tmp_path / "store.h5"
    write_synthetic_store(store, 4, seed=5, n_unconverged=4)
    save_model(tmp_path / "m.pt", tiny_model())
    res = predict("--model", str(tmp_path / "m.pt"), "--spectra", str(store), "--json")
    assert res.exit_code == 1 and "all 4 records were skipped" in res.output, res.output
