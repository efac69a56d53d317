"""Model files: weights plus everything needed to use them, in one ``torch.save`` file of tensors and text.

Layout (a dict; loaded with ``torch.load(..., weights_only=True)``, so no pickled objects are executed):

``format``            "crnet-model";  ``format_version``: 1 (single machine) or 2 (ensemble, below)
``state_dict``        {name: tensor} network weights (CPU)
``tensors``           {"energies": (n_E,) float64 GeV/n, "feature_mean" / "feature_std": (8, n_E) float64
                      (standardisation of the log10 features), "target_low" / "target_high": (10,) float64
                      box in the transformed space}; the Check Machine has no feature tensors
``metadata_json``     JSON text: network name and architecture dict, machine, species, channel names,
                      target transform (names, log columns), prior box in physical units, training
                      configuration, training-store path / sha256 / record count, code version (crnet
                      version and git commit), validation metrics and the loss history.
``members``           optional (ensembles, :func:`crnet.machines.training.train` with ``ensemble > 1``): a list
                      of {"state_dict", "feature_mean", "feature_std"} of the members after the first (same
                      network, architecture, energies and target transform; each member keeps the feature
                      standardisation of its own training split). Files without it are single machines.

A :class:`Predictor` refuses inputs on another energy grid or containing NaN / inf. An ensemble's prediction
is the mean of its members' outputs in the scaled target space (box-scaled, breaks as log10 R).
"""

from __future__ import annotations

import functools
import hashlib
import io
import json
import re
from dataclasses import dataclass, field
from pathlib import Path
from pickle import UnpicklingError  # the class of torch's weights-only refusal; nothing is unpickled

import numpy as np
import torch
from torch import nn

from crnet.features import (
    CHANNEL_NAMES,
    FEATURE_SPECIES,
    N_CHANNELS,
    FeatureScaler,
    TargetTransform,
    check_same_grid,
)
from crnet.machines import build_network
from crnet.paths import atomic_write
from crnet.provenance import code_version  # noqa: F401 - re-exported: model metadata records it
from crprop.params import PARAM_NAMES

MODEL_FORMAT = "crnet-model"
MODEL_FORMAT_VERSION = 2
"""Version written for ensembles (the ``members`` key); single machines are still written as version 1, so
older crnet versions keep reading them, and refuse an ensemble instead of silently using its first member."""
SINGLE_MODEL_FORMAT_VERSION = 1
SUPPORTED_FORMAT_VERSIONS: tuple[int, ...] = (SINGLE_MODEL_FORMAT_VERSION, MODEL_FORMAT_VERSION)
HASH_CHUNK_BYTES = 8 * 1024 * 1024
"""Read size when hashing a training store."""

HASH_CACHE_MIN_BYTES = 256 * 2**20
"""Files this large have their sha256 remembered (:func:`file_sha256`): rewriting 256 MiB takes 0.1-0.3 s (measured
on the 2-core CPU in review), far longer than a file-time tick, so a rewrite always shows in the key; hashing it
takes ~0.2 s, repeated every round."""

PREDICT_BATCH = 4096
"""Models per forward pass at prediction time."""

HDF5_SIGNATURE = b"\x89HDF\r\n\x1a\n"
"""First bytes of an HDF5 file (stores, spectra and prediction files)."""
ZIP_SIGNATURE = b"PK\x03\x04"
"""First bytes of a zip archive: the container of every ``torch.save`` file (crnet model files)."""


def check_model_signature(path: Path | str, what: str | None = None) -> Path:
    """``path`` as a Path; ValueError naming ``what`` (e.g. '--model', else nothing) and the file when it exists but
    cannot be a model file written by :func:`save_model`: an HDF5 file (store, spectra, predictions) or any other
    file that is not a zip archive. Read before ``torch.load``, whose refusal of such files runs to many lines. A
    missing file or a directory is left to the caller (:func:`load_model`: 'no such model file')."""
    path = Path(path)
    if not path.is_file():
        return path
    with open(path, "rb") as f:
        head = f.read(max(len(HDF5_SIGNATURE), len(ZIP_SIGNATURE)))
    name = f"{what} {path}" if what else str(path)
    if head.startswith(HDF5_SIGNATURE):
        raise ValueError(f"{name}: is an HDF5 file (a mock store, spectra or predictions?), not a model file written "
                         "by `crnet train`")
    if not head.startswith(ZIP_SIGNATURE):
        raise ValueError(f"{name}: not a model file written by `crnet train` (not a PyTorch archive)")
    return path


def file_sha256(path: Path | str) -> str:
    """sha256 hex digest of a file's bytes (ValueError naming the path when it is not a file).

    Files of :data:`HASH_CACHE_MIN_BYTES` or more are remembered per (path, device, inode, size, modification and
    change times in ns) for this process: the feedback loop and ensemble resumes ask for the same unchanged large
    store every round or member. Smaller files are always read: file times tick coarsely (a few ms), and a small
    file can be rewritten with the same size within one tick."""
    p = Path(path)
    if not p.is_file():
        raise ValueError(f"{path}: no such file")
    st = p.stat()
    if st.st_size < HASH_CACHE_MIN_BYTES:
        return _read_sha256(p)
    return _sha256_of(p.resolve(), (st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns, st.st_ctime_ns))


@functools.lru_cache(maxsize=64)
def _sha256_of(path: Path, _file_state: tuple[int, ...]) -> str:
    """:func:`_read_sha256`, remembered per path and file state (device, inode, size, mtime, ctime)."""
    return _read_sha256(path)


def _read_sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(HASH_CHUNK_BYTES), b""):
            h.update(chunk)
    return h.hexdigest()


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
    members: list[tuple[dict[str, torch.Tensor], FeatureScaler]] = field(default_factory=list)
    """Ensemble members after the first: (state_dict, feature scaler) each (module docstring)."""
    source_sha256: str | None = field(default=None, init=False, compare=False)
    """sha256 of the file bytes :func:`load_model` read this from (None for one built in memory or a
    :meth:`member`); not saved. A cache keyed by the file's content (the closure test's) keys a loaded model by the
    bytes it was actually built from, not by what the path holds later."""
    _checked: dict[int, nn.Module] = field(default_factory=dict, init=False, repr=False, compare=False)
    """Networks :func:`load_model` built to check that the weights fit, by member, kept for the first
    :meth:`take_network` so a loaded model is not built twice."""

    def take_network(self, k: int) -> nn.Module:
        """Member ``k``'s network (CPU) with its weights loaded, owned by the caller: the one built by
        :func:`load_model`'s check the first time, a fresh one after that (callers move it to a device and set its
        mode, so two callers never share one). Raises RuntimeError / KeyError from ``load_state_dict`` when the
        weights do not fit the architecture."""
        net = self._checked.pop(k, None)
        if net is None:
            net = build_network(self.network, self.architecture)
            net.load_state_dict(self.member(k).state_dict)
        return net

    @property
    def is_check(self) -> bool:
        return self.network == "check"

    @property
    def n_members(self) -> int:
        """Machines averaged at prediction time (1 for a single machine)."""
        return 1 + len(self.members)

    def member(self, k: int) -> ModelFile:
        """Member ``k`` as a single-machine ModelFile (the ensemble's metadata with the member's own
        ``split_seed``, no further members)."""
        if not 0 <= k < self.n_members:
            raise ValueError(f"member {k}: this model has {self.n_members} member(s)")
        meta = dict(self.metadata)
        ensemble = meta.get("ensemble") or {}
        seeds = ensemble.get("member_split_seeds") or ensemble.get("member_seeds")  # the latter: older files
        if seeds is not None:
            meta["split_seed"] = int(seeds[k])
        if k == 0:
            return ModelFile(self.network, self.architecture, self.machine, self.state_dict, self.transform,
                             self.scaler, self.energies, meta)
        sd, scaler = self.members[k - 1]
        return ModelFile(self.network, self.architecture, self.machine, sd, self.transform, scaler, self.energies,
                         meta)


def save_model(path: Path | str, model: ModelFile) -> None:
    """Write ``model`` to ``path`` atomically (temporary file, then rename)."""
    path = Path(path)
    if not model.is_check and (model.scaler is None or model.energies is None):
        raise ValueError("a regression model needs its feature scaler and energy grid")
    if model.is_check and model.members:
        raise ValueError("Check Machine ensembles are not supported (its classifier is not averaged)")
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
    version = MODEL_FORMAT_VERSION if model.members else SINGLE_MODEL_FORMAT_VERSION
    payload = {"format": MODEL_FORMAT, "format_version": version,
               "state_dict": {k: v.detach().cpu().clone() for k, v in model.state_dict.items()},
               "tensors": tensors, "metadata_json": json.dumps(meta, default=_json_default)}
    if model.members:
        payload["members"] = [{"state_dict": {k: v.detach().cpu().clone() for k, v in sd.items()},
                               "feature_mean": torch.as_tensor(sc.mean), "feature_std": torch.as_tensor(sc.std)}
                              for sd, sc in model.members]
    atomic_write(path, lambda tmp: torch.save(payload, tmp))


def _json_default(obj):
    if isinstance(obj, np.ndarray):
        return obj.tolist()
    if isinstance(obj, (np.floating, np.integer, np.bool_)):
        return obj.item()
    if isinstance(obj, Path):
        return str(obj)
    raise TypeError(f"not JSON serialisable: {type(obj).__name__}")


def load_model(path: Path | str) -> ModelFile:
    """Read a model file written by :func:`save_model` (``weights_only=True``); ValueError naming the file when it
    is missing, not a zip archive (an HDF5 store, a text file: :func:`check_model_signature`), holds pickled objects,
    is not a crnet model or has NaN / inf network weights (:func:`_check_finite_weights`)."""
    path = Path(path)
    if not path.is_file():
        raise ValueError(f"{path}: no such model file")
    check_model_signature(path)
    raw = path.read_bytes()  # read once: the digest is that of the bytes loaded (model files are a few MB)
    try:
        payload = torch.load(io.BytesIO(raw), map_location="cpu", weights_only=True)
    except UnpicklingError as exc:
        # torch's text runs to many lines and advises loading with weights_only=False, i.e. running the pickle,
        # which crnet never does: one line naming the file instead (walk-through by helper-87, session 21)
        raise ValueError(_pickle_refusal(path, exc)) from None
    except Exception as exc:  # torch raises several types for foreign / corrupt files
        raise ValueError(f"{path}: not a crnet model file ({type(exc).__name__}: {_first_line(exc)})") from None
    source_sha256 = hashlib.sha256(raw).hexdigest()
    del raw  # the tensors are built: do not hold the file's bytes too while the networks are checked
    if not isinstance(payload, dict) or payload.get("format") != MODEL_FORMAT:
        raise ValueError(f"{path}: not a crnet model file (format tag missing)")
    if payload.get("format_version") not in SUPPORTED_FORMAT_VERSIONS:
        raise ValueError(f"{path}: model format version {payload.get('format_version')} is not supported "
                         f"(this crnet reads versions {list(SUPPORTED_FORMAT_VERSIONS)})")
    _check_finite_weights(path, payload)
    try:
        model = _model_from_payload(path, payload)
        model.source_sha256 = source_sha256
        return model
    except (KeyError, TypeError, AttributeError, IndexError, json.JSONDecodeError) as exc:
        raise ValueError(f"{path}: malformed crnet model file ({type(exc).__name__}: {exc})") from None
    except ValueError as exc:  # e.g. from TargetTransform / FeatureScaler: name the file
        if str(exc).startswith(str(path)):
            raise
        raise ValueError(f"{path}: malformed crnet model file ({exc})") from None


UNSAFE_GLOBAL = re.compile(r"GLOBAL (\S+) was not an allowed global")
"""How torch's weights-only refusal names the pickled object (class or function) a file asks for."""


def _pickle_refusal(path: Path, exc: Exception) -> str:
    """One line for a torch archive the weights-only loader refused: it asks for pickled objects (named as torch
    names them), or, when torch names none, its pickle stream is damaged (review by helper-92, session 21: a corrupt
    file was reported as holding pickled objects). Never torch's own advice to load with ``weights_only=False``."""
    found = UNSAFE_GLOBAL.search(str(exc))
    if found is None:
        text = next((line.strip() for line in str(exc).splitlines() if "WeightsUnpickler error" in line),
                    _first_line(exc))
        return f"{path}: corrupt model file: its weights cannot be read ({text})"
    return (f"{path}: not a crnet model file: it holds pickled objects ({found.group(1)}), which crnet never loads "
            "(a model file written by `crnet train` holds only tensors, numbers and text)")


def _first_line(exc: Exception) -> str:
    """The first non-empty line of an exception's text (torch's messages run to several lines)."""
    return next((line.strip() for line in str(exc).splitlines() if line.strip()), type(exc).__name__)


def _check_finite_weights(path: Path, payload: dict) -> None:
    """ValueError naming the file and the tensor when a network weight of ``payload`` (its ``state_dict``, and each
    ensemble member's) is NaN or inf. Such a file loaded, and `crnet predict` wrote NaN parameters with exit status 0
    (the scalers were checked, the weights were not: walk-through by helper-87, session 21). Entries that are no
    dict or no tensor are left to :func:`_model_from_payload`, which reports a malformed file."""
    dicts = [("state_dict", payload.get("state_dict"))]
    members = payload.get("members")
    if isinstance(members, list):
        dicts += [(f"ensemble member {k + 1}'s state_dict", m.get("state_dict"))
                  for k, m in enumerate(members) if isinstance(m, dict)]
    for where, sd in dicts:
        if not isinstance(sd, dict):
            continue
        for name, tensor in sd.items():
            if not (isinstance(tensor, torch.Tensor) and (tensor.is_floating_point() or tensor.is_complex())):
                continue  # integer buffers (counters) are always finite
            bad = int((~torch.isfinite(tensor)).sum())
            if bad:
                raise ValueError(f"{path}: {where} tensor {name!r} holds {bad} NaN or inf value(s) of "
                                 f"{tensor.numel()}; every network weight must be finite (the model would predict "
                                 "NaN): retrain it, or use another model file")


def _model_from_payload(path: Path, payload: dict) -> ModelFile:
    meta = json.loads(payload["metadata_json"])
    if not isinstance(meta, dict):
        raise TypeError(f"metadata_json holds a {type(meta).__name__}, not an object")
    tensors = payload["tensors"]
    transform = TargetTransform.from_dict(meta.pop("target_transform"))
    # the rest of crnet reads predictions in PARAM_NAMES order (columns, clip_to_box, tau) and builds features
    # in FEATURE_SPECIES / CHANNEL_NAMES order: a file that says otherwise would be read wrongly, not just differently
    expected = {"target_transform.names": (list(transform.names), list(PARAM_NAMES)),
                "target_transform.log_columns": (list(transform.log_columns), [8, 9]),
                "species": (meta.get("species"), list(FEATURE_SPECIES)),
                "channels": (meta.get("channels"), list(CHANNEL_NAMES))}
    for key, (found, wanted) in expected.items():
        if found != wanted:
            raise ValueError(f"{path}: {key} is {found}, but this crnet needs {wanted} (a model file from another "
                             "parameterisation or feature layout)")
    network, arch, machine = meta.pop("network"), meta.pop("architecture"), meta.pop("machine")
    scaler = energies = None
    if network != "check":
        scaler = FeatureScaler(tensors["feature_mean"].numpy(), tensors["feature_std"].numpy())
        energies = tensors["energies"].numpy()
    for name, value in (("target_low", transform.low), ("target_high", transform.high)):
        if not np.array_equal(tensors[name].numpy(), np.asarray(value, dtype=np.float64)):
            raise ValueError(f"{path}: tensor {name} {tensors[name].tolist()} disagrees with the metadata's "
                             f"target_transform ({list(value)})")
    members = []
    for k, m in enumerate(payload.get("members", [])):
        if not isinstance(m, dict) or not {"state_dict", "feature_mean", "feature_std"} <= set(m):
            raise ValueError(f"{path}: ensemble member {k + 1} lacks state_dict / feature_mean / feature_std")
        members.append((m["state_dict"], FeatureScaler(m["feature_mean"].numpy(), m["feature_std"].numpy())))
    if network != "check":
        _check_feature_grid(path, energies, arch, [scaler] + [sc for _, sc in members])
    model = ModelFile(network, arch, machine, payload["state_dict"], transform, scaler, energies, meta, members)
    for k in range(model.n_members):  # the weights must fit the network the file names
        try:
            model._checked[k] = model.take_network(k)
        except (RuntimeError, KeyError, TypeError, ValueError) as exc:
            raise ValueError(f"{path}: member {k} of network {network!r}: its weights do not fit the architecture "
                             f"({type(exc).__name__}: {str(exc).splitlines()[0]})") from None
    return model


def _check_feature_grid(path: Path, energies: np.ndarray, arch: dict, scalers: list[FeatureScaler]) -> None:
    """The energy grid, the architecture's ``n_bins`` and every member's scaler must describe the same (8, n_E)
    feature layout; otherwise the file fails at its first prediction, with a message naming none of them."""
    if energies.ndim != 1 or energies.size < 2 or not (np.all(np.isfinite(energies)) and np.all(energies > 0)
                                                       and np.all(np.diff(energies) > 0)):
        raise ValueError(f"{path}: tensor energies must be a 1-D increasing grid of positive GeV/n, got shape "
                         f"{energies.shape}")
    if isinstance(arch, dict) and "n_bins" in arch and arch["n_bins"] != energies.size:
        raise ValueError(f"{path}: architecture n_bins = {arch['n_bins']} but the energy grid has {energies.size} bins")
    for k, scaler in enumerate(scalers):
        if scaler.mean.shape != (N_CHANNELS, energies.size):
            raise ValueError(f"{path}: member {k}'s feature_mean/feature_std have shape {scaler.mean.shape}, not "
                             f"({N_CHANNELS}, {energies.size}) for the file's energy grid")


def resolve_device(name: str | torch.device) -> torch.device:
    """'auto' -> CUDA when available, else CPU; otherwise the named device (checked)."""
    if isinstance(name, torch.device):
        return name
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        dev = torch.device(name)
    except RuntimeError:
        raise ValueError(f"device {name!r} is not a torch device (use 'auto', 'cpu', 'cuda' or 'cuda:N')") from None
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise ValueError("device 'cuda' requested but no CUDA GPU is available")
    return dev


class Predictor:
    """A loaded model ready for inference on CPU (or ``device``)."""

    def __init__(self, model: ModelFile, device: str | torch.device = "cpu") -> None:
        self.model = model
        self.device = resolve_device(device)
        self.nets: list[nn.Module] = []
        for k in range(model.n_members):
            self.nets.append(model.take_network(k).to(self.device).eval())
        self.net: nn.Module = self.nets[0]
        self.scalers = [model.member(k).scaler for k in range(model.n_members)]

    @classmethod
    def load(cls, path: Path | str, device: str | torch.device = "cpu") -> Predictor:
        """The model file ``path`` read by :func:`load_model` (which refuses non-model files) on ``device``."""
        return cls(load_model(path), device)

    @property
    def bounded(self) -> bool:
        return bool(getattr(self.net, "bounded_outputs", False))

    def network_outputs(self, x: np.ndarray, member: int = 0) -> np.ndarray:
        """Raw outputs (float64) of one member for inputs standardised with that member's scaler: scaled
        targets (n, 10) of a regressor (no clipping, no inverse transform), logits (n,) of a Check Machine."""
        out = []
        with torch.no_grad():
            for lo in range(0, x.shape[0], PREDICT_BATCH):
                xb = torch.as_tensor(x[lo: lo + PREDICT_BATCH], dtype=torch.float32, device=self.device)
                out.append(self.nets[member](xb).double().cpu().numpy())
        return np.concatenate(out) if out else np.zeros((0,) + ((self.model.transform.n_outputs,)
                                                                 if not self.model.is_check else ()))

    def scaled_outputs(self, log_features: np.ndarray, energies_gev_per_n: np.ndarray) -> np.ndarray:
        """Network outputs in the scaled target space for log10 features (n, 8, n_E) on ``energies`` (the
        members' mean for an ensemble)."""
        if self.model.is_check:
            raise ValueError("this is a Check Machine: use classify(params)")
        check_same_grid(self.model.energies, energies_gev_per_n)
        x = np.asarray(log_features, dtype=np.float64)
        _refuse_nonfinite(x, "features")
        outs = [self.network_outputs(sc.transform(x), k) for k, sc in enumerate(self.scalers)]
        return outs[0] if len(outs) == 1 else np.mean(outs, axis=0)

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
