"""Model files: save -> load -> identical predictions, metadata, refusal of foreign files / grids / NaN."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from helpers_modelfile import make_model

from crnet.features import TargetTransform, paper_energy_grid
from crnet.machines.modelfile import Predictor, load_model, save_model

torch.set_num_threads(1)


@pytest.mark.parametrize("network", ["paper-A", "paper-B", "crnet"])
def test_save_load_identical_predictions(tmp_path, network: str) -> None:
    model = make_model(network)
    path = tmp_path / "m.pt"
    save_model(path, model)
    loaded = load_model(path)
    assert loaded.network == network and loaded.architecture == model.architecture
    assert np.array_equal(loaded.energies, model.energies)
    assert np.array_equal(loaded.scaler.mean, model.scaler.mean) and np.array_equal(loaded.scaler.std, model.scaler.std)
    assert loaded.transform == model.transform
    meta = loaded.metadata
    assert meta["species"] == ["Li", "Be", "B", "C", "O"] and len(meta["channels"]) == 8
    assert meta["prior_box"]["r_break2_mv"] == pytest.approx([1e5, 1e7])
    assert meta["training_store"]["sha256"] == "ab" * 32 and meta["code_version"]["crnet"] == "0.1.0"
    x = np.random.default_rng(1).normal(0, 1, (33, 8, 84))
    p1 = Predictor(model).predict(x, paper_energy_grid())
    p2 = Predictor.load(path).predict(x, paper_energy_grid())
    assert p1.shape == (33, 10) and np.array_equal(p1, p2)
    # outputs are the inverse target transform of the network's scaled outputs
    scaled = Predictor(model).scaled_outputs(x, paper_energy_grid())
    assert np.allclose(p1, model.transform.inverse(scaled, clip_to_box=network == "crnet"), rtol=1e-12)


def test_check_model_round_trip(tmp_path) -> None:
    model = make_model("check")
    save_model(tmp_path / "c.pt", model)
    params = TargetTransform().inverse(np.random.default_rng(2).random((9, 10)))
    a = Predictor(model).classify(params)
    b = Predictor.load(tmp_path / "c.pt").classify(params)
    assert np.array_equal(a, b) and np.all((a > 0) & (a < 1))
    with pytest.raises(ValueError, match="Check Machine"):
        Predictor(model).predict(np.zeros((1, 8, 84)), paper_energy_grid())


def test_predictor_refuses_other_grid_and_nan(tmp_path) -> None:
    pred = Predictor(make_model("crnet"))
    x = np.zeros((4, 8, 84))
    with pytest.raises(ValueError, match="energy grid"):
        pred.predict(x, paper_energy_grid() * 1.01)
    with pytest.raises(ValueError, match="energy grid"):
        pred.predict(x[:, :, :42], paper_energy_grid()[:42])
    x[2, 3, 5] = np.nan
    with pytest.raises(ValueError, match="NaN or inf.*model 2"):
        pred.predict(x, paper_energy_grid())


class Payload:
    """A pickled object: weights_only loading must refuse it."""

    def __reduce__(self):
        return (print, ("this must never run",))


def test_load_refuses_pickles_and_foreign_files(tmp_path) -> None:
    evil = tmp_path / "evil.pt"
    torch.save({"format": "crnet-model", "obj": Payload()}, evil)
    with pytest.raises(ValueError, match="not a crnet model file"):
        load_model(evil)
    other = tmp_path / "other.pt"
    torch.save({"weights": torch.zeros(3)}, other)
    with pytest.raises(ValueError, match="format tag"):
        load_model(other)
    with pytest.raises(ValueError, match="no such model file"):
        load_model(tmp_path / "missing.pt")


def test_load_refuses_another_parameter_order_or_feature_layout(tmp_path) -> None:
    import json

    path = tmp_path / "m.pt"
    save_model(path, make_model("crnet"))
    payload = torch.load(path, weights_only=True)
    edits = {
        "target_transform.names": lambda m: m["target_transform"].update(
            names=[m["target_transform"]["names"][i] for i in (0, 1, 4, 3, 2, 5, 6, 7, 8, 9)]),  # CR-ML's order
        "species": lambda m: m.update(species=["Li", "Be", "B", "O", "C"]),
        "channels": lambda m: m.update(channels=m["channels"][::-1]),
    }
    for key, edit in edits.items():
        meta = json.loads(payload["metadata_json"])
        edit(meta)
        bad = tmp_path / f"bad_{key}.pt"
        torch.save({**payload, "metadata_json": json.dumps(meta)}, bad)
        with pytest.raises(ValueError, match=f"{key} is"):
            load_model(bad)
    assert load_model(path).transform == TargetTransform()


def test_loaded_model_built_once_and_predictors_do_not_share(tmp_path, monkeypatch) -> None:
    """load_model builds each network once to check its weights; the first Predictor takes those, a second
    Predictor of the same ModelFile gets its own (moving one to a device must not move the other)."""
    import crnet.machines.modelfile as modelfile

    save_model(tmp_path / "m.pt", make_model("paper-A"))
    calls = []
    real_build = modelfile.build_network
    monkeypatch.setattr(modelfile, "build_network", lambda *a: calls.append(a) or real_build(*a))
    loaded = load_model(tmp_path / "m.pt")
    assert len(calls) == 1
    first = Predictor(loaded)
    assert len(calls) == 1
    second = Predictor(loaded)
    assert len(calls) == 2 and second.net is not first.net
    x = np.random.default_rng(3).normal(0, 1, (5, 8, 84))
    assert np.array_equal(first.predict(x, paper_energy_grid()), second.predict(x, paper_energy_grid()))


def test_file_sha256_follows_rewrites_of_large_files(tmp_path, monkeypatch) -> None:
    import hashlib
    import os

    import crnet.machines.modelfile as mf

    monkeypatch.setattr(mf, "HASH_CACHE_MIN_BYTES", 1000)
    big, small = tmp_path / "big.h5", tmp_path / "small.h5"
    big.write_bytes(b"a" * 2000)
    small.write_bytes(b"a" * 10)
    first = mf.file_sha256(big)
    hits = mf._sha256_of.cache_info().hits
    assert first == hashlib.sha256(b"a" * 2000).hexdigest() == mf.file_sha256(big)
    assert mf._sha256_of.cache_info().hits == hits + 1  # the unchanged large file is not read again
    with open(big, "r+b") as f:  # same size, same inode: the new modification time makes it read again
        f.write(b"b")
    st = big.stat()
    os.utime(big, ns=(st.st_atime_ns, st.st_mtime_ns + 1))
    assert mf.file_sha256(big) == hashlib.sha256(b"b" + b"a" * 1999).hexdigest()
    tmp = tmp_path / "new.tmp"
    tmp.write_bytes(b"c" * 2000)
    os.replace(tmp, big)  # an atomic replace: new inode
    assert mf.file_sha256(big) == hashlib.sha256(b"c" * 2000).hexdigest()
    before = mf._sha256_of.cache_info()  # below the limit: read every time, never remembered
    assert mf.file_sha256(small) == mf.file_sha256(small) == hashlib.sha256(b"a" * 10).hexdigest()
    after = mf._sha256_of.cache_info()
    assert (after.hits, after.misses, after.currsize) == (before.hits, before.misses, before.currsize)
