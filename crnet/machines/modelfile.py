"""Model files: weights plus everything needed to use them, in one ``torch.save`` file of tensors and text.

Layout (a dict; loaded with ``torch.load(..., weights_only=True)``, so no pickled objects are executed):

``format``            "crnet-model";  ``format_version``: 1
``state_dict``        {name: tensor} network weights (CPU)
``tensors``           {"energies": (n_E,) float64 GeV/n, "feature_mean" / "feature_std": (8, n_E) float64
                      (standardisation of the log10 features), "target_low" / "target_high": (10,) float64
                      box in the transformed space}; the Check Machine has no feature tensors
``metadata_json``     JSON text: network name and architecture dict, machine, species, channel names,
                      target transform (names, log columns), prior box in physical units, training
                      configuration, training-store path / sha256 / record count, code version (crnet
                      version and git commit), validation metrics and the loss history.

A :class:`Predictor` refuses inputs on another energy grid or containing NaN / inf.
"""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from torch import nn

from crnet import __version__
from crnet.features import (
    CHANNEL_NAMES,
    FEATURE_SPECIES,
    FeatureScaler,
    TargetTransform,
    check_same_grid,
)
from crnet.machines import build_network

MODEL_FORMAT = "crnet-model"
MODEL_FORMAT_VERSION = 1
HASH_CHUNK_BYTES = 8 * 1024 * 1024
"""Read size when hashing a training store."""

PREDICT_BATCH = 4096
"""Models per forward pass at prediction time."""


def file_sha256(path: Path | str) -> str:
    """sha256 hex digest of a file's bytes."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(HASH_CHUNK_BYTES), b""):
            h.update(chunk)
    return h.hexdigest()


def code_version() -> dict:
    """crnet version and, when the package lives in a git checkout, its commit and dirty flag."""
    out = {"crnet": __version__, "git_commit": None, "git_dirty": None}
    root = Path(__file__).resolve().parents[2]
    try:
        commit = subprocess.run(["git", "-C", str(root), "rev-parse", "HEAD"], capture_output=True, text=True,
                                timeout=10, check=True).stdout.strip()
        dirty = subprocess.run(["git", "-C", str(root), "status", "--porcelain", "--untracked-files=no"],
                               capture_output=True, text=True, timeout=30, check=True).stdout.strip()
        out["git_commit"], out["git_dirty"] = commit, bool(dirty)
    except (OSError, subprocess.SubprocessError):
        pass
    return out


@dataclass
class ModelFile:
    """Content of a model file (see the module docstring)."""

    network: str
    architecture: dict
    machine: str
    state_dict: dict[str, torch.Tensor]
    transform: TargetTransform
    scaler: FeatureScaler | None = None
    energies: np.ndarray | None = None
    metadata: dict = field(default_factory=dict)

    @property
    def is_check(self) -> bool:
        return self.network == "check"


def save_model(path: Path | str, model: ModelFile) -> None:
    """Write ``model`` to ``path`` atomically (temporary file, then rename)."""
    path = Path(path)
    if not model.is_check and (model.scaler is None or model.energies is None):
        raise ValueError("a regression model needs its feature scaler and energy grid")
    lo_phys, hi_phys = model.transform.physical_box()
    meta = {"network": model.network, "architecture": model.architecture, "machine": model.machine,
            "species": list(FEATURE_SPECIES), "channels": list(CHANNEL_NAMES),
            "target_transform": model.transform.to_dict(),
            "prior_box": {n: [float(lo), float(hi)] for n, lo, hi in zip(model.transform.names, lo_phys, hi_phys,
                                                                          strict=True)},
            **model.metadata}
    tensors = {"target_low": torch.tensor(model.transform.low, dtype=torch.float64),
               "target_high": torch.tensor(model.transform.high, dtype=torch.float64)}
    if not model.is_check:
        tensors.update({"energies": torch.as_tensor(np.asarray(model.energies, dtype=np.float64)),
                        "feature_mean": torch.as_tensor(model.scaler.mean),
                        "feature_std": torch.as_tensor(model.scaler.std)})
    payload = {"format": MODEL_FORMAT, "format_version": MODEL_FORMAT_VERSION,
               "state_dict": {k: v.detach().cpu().clone() for k, v in model.state_dict.items()},
               "tensors": tensors, "metadata_json": json.dumps(meta, default=_json_default)}
    tmp = path.with_name(path.name + ".tmp")
    torch.save(payload, tmp)
    os.replace(tmp, path)


def _json_default(obj):
    if isinstance(obj, np.ndarray):
        return obj.tolist()
    if isinstance(obj, (np.floating, np.integer, np.bool_)):
        return obj.item()
    if isinstance(obj, Path):
        return str(obj)
    raise TypeError(f"not JSON serialisable: {type(obj).__name__}")


def load_model(path: Path | str) -> ModelFile:
    """Read a model file written by :func:`save_model` (``weights_only=True``)."""
    path = Path(path)
    if not path.is_file():
        raise ValueError(f"{path}: no such model file")
    try:
        payload = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # torch raises several types for foreign / corrupt files
        raise ValueError(f"{path}: not a crnet model file ({type(exc).__name__}: {exc})") from None
    if not isinstance(payload, dict) or payload.get("format") != MODEL_FORMAT:
        raise ValueError(f"{path}: not a crnet model file (format tag missing)")
    if payload.get("format_version") != MODEL_FORMAT_VERSION:
        raise ValueError(f"{path}: model format version {payload.get('format_version')} is not supported "
                         f"(this crnet reads version {MODEL_FORMAT_VERSION})")
    meta = json.loads(payload["metadata_json"])
    tensors = payload["tensors"]
    transform = TargetTransform.from_dict(meta.pop("target_transform"))
    network, arch, machine = meta.pop("network"), meta.pop("architecture"), meta.pop("machine")
    scaler = energies = None
    if network != "check":
        scaler = FeatureScaler(tensors["feature_mean"].numpy(), tensors["feature_std"].numpy())
        energies = tensors["energies"].numpy()
    return ModelFile(network, arch, machine, payload["state_dict"], transform, scaler, energies, meta)


class Predictor:
    """A loaded model ready for inference on CPU (or ``device``)."""

    def __init__(self, model: ModelFile, device: str | torch.device = "cpu") -> None:
        self.model = model
        self.device = torch.device(device)
        self.net: nn.Module = build_network(model.network, model.architecture)
        self.net.load_state_dict(model.state_dict)
        self.net.to(self.device).eval()

    @classmethod
    def load(cls, path: Path | str, device: str | torch.device = "cpu") -> Predictor:
        return cls(load_model(path), device)

    @property
    def bounded(self) -> bool:
        return bool(getattr(self.net, "bounded_outputs", False))

    def network_outputs(self, x: np.ndarray) -> np.ndarray:
        """Raw network outputs (float64) for already standardised inputs: scaled targets (n, 10) of a
        regressor (no clipping, no inverse transform), logits (n,) of a Check Machine."""
        out = []
        with torch.no_grad():
            for lo in range(0, x.shape[0], PREDICT_BATCH):
                xb = torch.as_tensor(x[lo: lo + PREDICT_BATCH], dtype=torch.float32, device=self.device)
                out.append(self.net(xb).double().cpu().numpy())
        return np.concatenate(out) if out else np.zeros((0,) + ((self.model.transform.n_outputs,)
                                                                 if not self.model.is_check else ()))

    def scaled_outputs(self, log_features: np.ndarray, energies_gev_per_n: np.ndarray) -> np.ndarray:
        """Network outputs in the scaled target space for log10 features (n, 8, n_E) on ``energies``."""
        if self.model.is_check:
            raise ValueError("this is a Check Machine: use classify(params)")
        check_same_grid(self.model.energies, energies_gev_per_n)
        x = np.asarray(log_features, dtype=np.float64)
        _refuse_nonfinite(x, "features")
        return self.network_outputs(self.model.scaler.transform(x))

    def predict(self, log_features: np.ndarray, energies_gev_per_n: np.ndarray) -> np.ndarray:
        """Physical parameters (n, 10) in :data:`crprop.params.PARAM_NAMES` units (D0 in 1e28 cm^2/s,
        v_A in km/s, z_h in kpc, breaks in MV) from log10 features (n, 8, n_E) on ``energies`` (GeV/n)."""
        scaled = self.scaled_outputs(log_features, energies_gev_per_n)
        return self.model.transform.inverse(scaled, clip_to_box=self.bounded)

    def classify(self, params: np.ndarray) -> np.ndarray:
        """Check Machine: probability (n,) that each parameter point (n, 10, physical units) is inside the
        region it was trained on."""
        if not self.model.is_check:
            raise ValueError("classify() needs a Check Machine model")
        p = np.asarray(params, dtype=np.float64)
        _refuse_nonfinite(p, "parameters")
        logits = self.network_outputs(self.model.transform.forward(p))
        return 1.0 / (1.0 + np.exp(-logits))


def _refuse_nonfinite(x: np.ndarray, what: str) -> None:
    bad = ~np.isfinite(x)
    if bad.any():
        row = int(np.argwhere(bad)[0][0])
        raise ValueError(f"{what} contain NaN or inf ({int(bad.any(axis=tuple(range(1, x.ndim))).sum())} models, "
                         f"first: model {row}); the model refuses such inputs")
