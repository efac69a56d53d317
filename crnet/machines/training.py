"""Training loop: seeded split, mini-batches from the store, early stopping, LR schedule, checkpoint/resume.

``train(store, out, TrainConfig(...))`` trains one machine and writes the model file ``out`` (best
validation epoch, :mod:`crnet.machines.modelfile`) plus a checkpoint ``<out>.ckpt`` after every epoch.
``resume=True`` continues from that checkpoint: model, optimiser, scheduler, early-stopping state and
both random streams (weight init / dropout and the shuffling generator) are restored, so on CPU a
resumed run gives the same weights as an uninterrupted one.
An ensemble (``ensemble > 1``) trains in :mod:`crnet.machines.ensemble_training`; the names of the files a
training writes, and the refusal to write one over its inputs, are in :mod:`crnet.machines.train_files`.

Machines (paper Sec. 4.4, Appendix B): 'A' trains on the store's mock spectra, 'B' on pseudo-data
(made from the store with :func:`crnet.pseudodata.make_pseudodata` unless the store already is a
pseudo-data file), 'check' is the Check Machine. ``arch='paper'`` uses the paper's layers, log-cosh and
Adam (lr 8e-5, batch 32); ``arch='crnet'`` crnet's variant with AdamW (weight decay) - both log-cosh on
the box-scaled targets. Loss history, validation metrics (per-parameter R^2, relative error, share of
predictions outside the prior box) and provenance go into the model file.

Schedule: ReduceLROnPlateau on the validation loss (factor ``lr_factor`` after ``lr_patience`` epochs
without improvement, not below ``min_lr``), a cosine decay to ``min_lr`` over ``epochs``, or a constant rate;
training stops after ``patience`` epochs without an improvement by more than ``min_delta`` (relative). By
default the paper's machines train as CR-ML did (constant rate, every epoch, the best validation epoch kept;
an epoch counts as better when its loss is lower by more than ``min_delta``, 1e-4 relative, where Keras'
``save_best_only`` keeps any lower loss: the kept loss differs by at most that)
and crnet's and the Check Machine with the plateau schedule and a patience of 20.
Deterministic on CPU for a given seed and thread count. On CUDA, in-memory splits are uploaded once,
mini-batches are gathered and input noise is drawn on the device, and the epoch loss is summed there: no host
copy and no synchronisation per batch (the paper's batch of 32 would otherwise leave the GPU waiting). Timed on
an H100 in session 6 (benchmarks/train_speed.py, benchmarks/results/train_speed_cuda.md).
"""

from __future__ import annotations

import contextlib
import math
from dataclasses import asdict, dataclass, field, fields, replace
from pathlib import Path

import numpy as np
import torch
from torch import nn
from tqdm.auto import tqdm

from crnet.config_fields import check_fields, check_seed
from crnet.features import TargetTransform, check_same_grid, regression_metrics
from crnet.machines import CHECK_SIGMA, LR_SCHEDULES, build_network, default_architecture, network_name
from crnet.machines.augment import VALIDATION_NOISE_SEED_OFFSET, InputNoise
from crnet.machines.check import CHECK_BATCH_SIZE, CHECK_LEARNING_RATE, confusion_matrix
from crnet.machines.checkpoint import (
    LAYOUT_IDENTITY_KEY,
    OPTIMIZER_IDENTITY_KEYS,
    checkpoint_identity,
    checkpoint_path,
    load_checkpoint,
    save_checkpoint,
    scaler_sha256,
)
from crnet.machines.crnet_variant import CRNET_BATCH_SIZE, CRNET_LEARNING_RATE, CRNET_WEIGHT_DECAY
from crnet.machines.data import (
    DEFAULT_BLOCK_SIZE,
    DEFAULT_MEMORY_LIMIT_BYTES,
    CheckData,
    RegressionData,
    prepare_check_data,
    prepare_regression_data,
    read_store_info,
)
from crnet.machines.modelfile import ModelFile, Predictor, code_version, file_sha256, resolve_device, save_model
from crnet.machines.paper import PAPER_BATCH_SIZE, PAPER_EPOCHS, PAPER_LEARNING_RATE
from crnet.machines.train_files import member_path, pseudo_path, refuse_writing_over_inputs
from crnet.paths import require_parent_dir
from crnet.pseudodata import PseudoDataConfig, make_pseudodata

DEFAULT_PATIENCE = 20
"""Early stopping of the crnet and Check machines: epochs without a validation gain (the paper's machines train
every epoch unless a patience is given)."""

DEFAULT_MIN_DELTA = 1e-4
"""Relative improvement of the validation loss that counts for early stopping and the best model."""

LOG2 = math.log(2.0)



def log_cosh_loss(pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Mean log(cosh(pred - target)), computed stably as d + softplus(-2 d) - log 2."""
    d = pred - target
    return (d + nn.functional.softplus(-2.0 * d) - LOG2).mean()


RUN_PLACE_SETTINGS: tuple[str, ...] = ("init_from", "device", "threads", "progress")
"""TrainConfig fields that say where and how a training ran, not what it learned: :meth:`TrainConfig.of_model`
does not copy them from a model file."""


@dataclass
class TrainConfig:
    """Training settings; ``None`` takes the network's default (paper / crnet / check constants).

    init_from : a model file whose weights start the training (same network; its architecture unless
    ``architecture`` is given, which must then match); optimiser, schedule and epochs start fresh; the feature
    scaler and the validation split (its ``split_seed``) are the model's. The feedback loop retrains each round
    this way from the previous round's model.
    input_noise : > 0: train on inputs with the paper's pseudo-experiment fluctuations (at most this relative
    size per element and bin), drawn afresh for every batch (:mod:`crnet.machines.augment`); 0: noise-free
    mocks (the paper's Machine A). Machines A and B only.
    pseudo : Machine B's pseudo-data settings. With ``pseudo.centres = 'train'`` Machine B's central spectra
    and Machine A's training records both leave out the hold-out hash (``pseudo.holdout_fraction``), whose
    records are reserved for the test pseudo-data (``centres = 'test'``): a clean closure test.
    ensemble : > 1: train this many members (seeds ``seed + ENSEMBLE_SEED_STRIDE * k``, so each has its own
    weight initialisation, validation split and noise stream) and write one model file that predicts their
    mean (:mod:`crnet.machines.modelfile`); members are kept as ``<out>.member<k>`` (each resumable). An
    ``init_from`` ensemble with the same number of members starts member k from its member k; a single
    ``init_from`` machine starts every member from the same weights and on its validation split (then only the
    shuffle and the noise differ: another split would validate on records those weights trained on). Machines
    A and B.
    """

    machine: str = "A"
    arch: str = "paper"
    epochs: int | None = None
    batch_size: int | None = None
    learning_rate: float | None = None
    weight_decay: float | None = None
    val_fraction: float = 0.1
    seed: int = 0
    patience: int | None = None
    min_delta: float = DEFAULT_MIN_DELTA
    lr_schedule: str | None = None
    lr_factor: float = 0.5
    lr_patience: int = 5
    min_lr: float = 1e-6
    max_sigma: float | None = None
    check_sigma: float = CHECK_SIGMA
    device: str = "auto"
    amp: bool = False
    threads: int | None = None
    memory_limit_bytes: int = DEFAULT_MEMORY_LIMIT_BYTES
    block_size: int = DEFAULT_BLOCK_SIZE
    progress: bool = True
    architecture: dict | None = None
    init_from: str | None = None
    pseudo: PseudoDataConfig = field(default_factory=PseudoDataConfig)
    input_noise: float = 0.0
    ensemble: int = 1

    @classmethod
    def of_model(cls, model_path: Path | str) -> TrainConfig:
        """The settings a model file was trained with (its metadata ``train_config``; the ensemble size from its
        members), for retraining it the same way (the feedback loop). ValueError naming the file when the metadata
        lack them."""
        from crnet.machines.modelfile import load_model

        model = load_model(model_path)
        saved = model.metadata.get("train_config")
        if not isinstance(saved, dict):
            raise ValueError(f"{model_path}: the model file records no train_config; give the training settings")
        known = {f.name for f in fields(cls)}
        # where and how it ran (device, threads, progress) is this machine's business, not the model's: a model
        # trained on a GPU must retrain on a CPU-only machine too
        values = {k: v for k, v in saved.items() if k in known and k not in RUN_PLACE_SETTINGS}
        if isinstance(values.get("pseudo"), dict):
            pseudo = {**values["pseudo"], "envelope_delta": tuple(
                values["pseudo"].get("envelope_delta", PseudoDataConfig().envelope_delta))}
            check_fields(PseudoDataConfig, pseudo, f"{model_path}: train_config.pseudo")
            try:
                values["pseudo"] = PseudoDataConfig(**pseudo)
            except ValueError as exc:  # e.g. an unknown data set a model trained before names were checked holds
                raise ValueError(f"{model_path}: train_config.pseudo: {exc}") from None
        if (network_name(values.get("machine", "A"), values.get("arch", "paper")) in ("paper-A", "paper-B")
                and values.get("patience") == values.get("epochs")):
            # the paper protocol's patience is its epoch count (no early stopping, resolved()): it follows the
            # retraining's epochs, as the pipeline's None does, instead of keeping the first training's number
            values["patience"] = None
        return cls(**{**values, "ensemble": model.n_members})

    def resolved(self) -> TrainConfig:
        """Copy with every ``None`` hyper-parameter replaced by the network's default."""
        net = network_name(self.machine, self.arch)
        if net == "check":
            d = (PAPER_EPOCHS, CHECK_BATCH_SIZE, CHECK_LEARNING_RATE, 0.0)
        elif net == "crnet":
            d = (200, CRNET_BATCH_SIZE, CRNET_LEARNING_RATE, CRNET_WEIGHT_DECAY)
        else:
            d = (PAPER_EPOCHS, PAPER_BATCH_SIZE, PAPER_LEARNING_RATE, 0.0)
        vals = (self.epochs, self.batch_size, self.learning_rate, self.weight_decay)
        epochs, batch, lr, wd = (d[i] if v is None else v for i, v in enumerate(vals))
        # the paper's machines: constant rate, every epoch, best-validation weights kept (CR-ML's ML_Training:
        # ModelCheckpoint(save_best_only); early stopping and the LR schedule commented out)
        paper = net in ("paper-A", "paper-B")
        schedule = self.lr_schedule or ("constant" if paper else "plateau")
        patience = self.patience if self.patience is not None else (epochs if paper else DEFAULT_PATIENCE)
        # one message per field, naming it and the value (a command maps the field to its option)
        if epochs < 1:
            raise ValueError(f"epochs must be >= 1, got {epochs}")
        if batch < 1:
            raise ValueError(f"batch_size must be >= 1 (records per mini-batch), got {batch}")
        if not (math.isfinite(lr) and lr > 0):
            raise ValueError(f"learning_rate must be finite and > 0, got {lr}")
        if not (math.isfinite(wd) and wd >= 0):
            raise ValueError(f"weight_decay must be finite and >= 0, got {wd}")
        # min_delta >= 1 made no epoch count as better (inf * 0 = nan): the model file held the untrained weights,
        # best_epoch -1, with no error (review by helper-110, session 23)
        if not 0.0 <= self.min_delta < 1.0:
            raise ValueError(f"min_delta must lie in [0, 1) (relative improvement of the validation loss), got "
                             f"{self.min_delta}")
        if not 0.0 < self.lr_factor < 1.0:
            raise ValueError(f"lr_factor must lie in (0, 1) (learning-rate reduction on a plateau), got "
                             f"{self.lr_factor}")
        if not (math.isfinite(self.min_lr) and self.min_lr >= 0):
            raise ValueError(f"min_lr must be finite and >= 0 (learning-rate floor), got {self.min_lr}")
        if not 0.0 < self.val_fraction < 1.0:  # checked again where the split is made, after the store is read
            raise ValueError(f"val_fraction must lie in (0, 1) (share of records held out), got {self.val_fraction}")
        for key in ("max_sigma", "check_sigma"):
            value = getattr(self, key)
            if value is not None and not (math.isfinite(value) and value > 0):
                raise ValueError(f"{key} must be finite and > 0 (confidence level in sigma), got {value}")
        if not 0.0 <= self.input_noise < 1.0:
            raise ValueError(f"input_noise must lie in [0, 1) (max relative fluctuation), got {self.input_noise}")
        if self.input_noise > 0 and net == "check":
            raise ValueError("input_noise applies to Machines A and B (spectral inputs), not the Check Machine")
        if self.ensemble < 1:
            raise ValueError(f"ensemble must be >= 1 (members), got {self.ensemble}")
        if self.ensemble > 1 and net == "check":
            raise ValueError("ensemble applies to Machines A and B, not the Check Machine")
        check_seed(self.seed)
        if schedule not in LR_SCHEDULES:
            raise ValueError(f"lr_schedule must be one of {LR_SCHEDULES}, got {self.lr_schedule!r}")
        if patience < 1:
            raise ValueError(f"patience must be >= 1 (epochs), got {patience}")
        if self.lr_patience < 0:
            raise ValueError(f"lr_patience must be >= 0 (epochs), got {self.lr_patience}")
        if not (self.memory_limit_bytes >= 0):
            raise ValueError(f"memory_limit_bytes must be >= 0, got {self.memory_limit_bytes}")
        return replace(self, epochs=int(epochs), batch_size=int(batch), learning_rate=float(lr),
                       weight_decay=float(wd), lr_schedule=schedule, patience=int(patience))


@dataclass
class TrainResult:
    """Outcome of :func:`train`."""

    model_path: Path
    checkpoint_path: Path
    store_path: Path
    epochs_run: int
    best_epoch: int
    best_val_loss: float
    stopped_early: bool
    history: list[dict]
    metrics: dict


ENSEMBLE_SEED_STRIDE = 1000
"""Seed distance between ensemble members (well apart from the validation-noise offset of one member)."""


@contextlib.contextmanager
def _deterministic(enabled: bool):
    previous = torch.are_deterministic_algorithms_enabled()
    if enabled:
        torch.use_deterministic_algorithms(True)
    try:
        yield
    finally:
        torch.use_deterministic_algorithms(previous)


class _DeviceSplits:
    """In-memory splits copied once to a CUDA device; mini-batches are gathered there, so a batch costs no host
    copy. The shuffling comes from the same numpy generator as on the CPU; input noise is drawn on the device
    from a torch generator seeded once per epoch from the numpy noise stream (other numbers than the CPU's, the
    same distribution; the validation noise is still one fixed draw)."""

    def __init__(self, data: RegressionData | CheckData, device: torch.device) -> None:
        self.data, self.device = data, device
        self._tensors: dict[str, tuple[torch.Tensor, torch.Tensor]] = {}
        self._std: torch.Tensor | None = None

    def noise_std(self, noise: InputNoise) -> torch.Tensor:
        """The feature scaler's standard deviations (8, n_E) on the device (float64), for the noise draws."""
        if self._std is None:
            self._std = torch.as_tensor(noise.scaler.std, dtype=torch.float64, device=self.device)
        return self._std

    def batches(self, split: str, batch_size: int, generator: np.random.Generator | None):
        if split not in self._tensors:
            x, y = self.data.arrays(split)
            self._tensors[split] = (torch.as_tensor(x, device=self.device), torch.as_tensor(y, device=self.device))
        x, y = self._tensors[split]
        n = x.shape[0]
        order = generator.permutation(n) if generator is not None else np.arange(n)
        order_t = torch.as_tensor(order, device=self.device)
        for lo in range(0, n, batch_size):
            idx = order_t[lo: lo + batch_size]
            yield x.index_select(0, idx), y.index_select(0, idx)


def _device_splits(data: RegressionData | CheckData, device: torch.device) -> _DeviceSplits | None:
    """Device-resident batches on CUDA when the features are held in memory; None (host batches) otherwise."""
    in_memory = getattr(data, "cache", None) is not None
    return _DeviceSplits(data, device) if device.type == "cuda" and in_memory else None


def _run_epoch(net: nn.Module, data: RegressionData | CheckData, split: str, batch_size: int, loss_fn,
               device: torch.device, amp: bool, optimizer: torch.optim.Optimizer | None = None,
               generator: np.random.Generator | None = None, noise: InputNoise | None = None,
               noise_rng: np.random.Generator | None = None, on_device: _DeviceSplits | None = None) -> float:
    """Mean loss over a split (weighted by batch size); trains when ``optimizer`` is given. ``noise`` adds
    pseudo-experiment fluctuations to every batch, drawn from ``noise_rng``. ``on_device``: gather batches from
    device-resident copies. The loss is summed on the device (float64) and read once per epoch: no
    synchronisation per batch."""
    training = optimizer is not None
    net.train(training)
    total = torch.zeros((), dtype=torch.float64, device=device)
    count = 0
    source = on_device if on_device is not None else data
    device_noise = None
    if noise is not None and on_device is not None:
        device_noise = torch.Generator(device=device)
        device_noise.manual_seed(int(noise_rng.integers(2**62)))
    grad = torch.enable_grad() if training else torch.no_grad()
    with grad:
        for xb, yb in source.batches(split, batch_size, generator if training else None):
            if device_noise is not None:
                xb = xb + noise.draw_torch(xb.shape[0], device_noise, on_device.noise_std(noise))
            elif noise is not None:
                xb = noise.apply(xb, noise_rng)
            x = torch.as_tensor(xb, device=device)
            y = torch.as_tensor(yb, device=device)
            with torch.autocast(device_type="cuda", dtype=torch.bfloat16, enabled=amp):
                out = net(x)
            loss = loss_fn(out.float(), y)
            if training:
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                optimizer.step()
            total += loss.detach().double() * x.shape[0]
            count += x.shape[0]
    return float(total) / max(count, 1)


def _identity(cfg: TrainConfig, network: str, init: ModelFile | None, n_bins: int, store_sha: str,
              pseudo_store: bool, streamed: bool) -> dict:
    """The checkpoint identity of a run (:func:`crnet.machines.checkpoint.checkpoint_identity`), with its resolved
    architecture (given, the ``init_from`` model's, or the network's default for ``n_bins`` energy bins).

    The optimiser settings count too (:data:`OPTIMIZER_IDENTITY_KEYS`): a resume restores the optimiser's state,
    its learning rate and weight decay included, so a changed ``learning_rate`` or ``weight_decay`` would be
    silently ignored (walk-through, session 19: ``--lr 0.5 --resume`` gave the default rate's weights bit for bit).
    So does how the records are read (``streamed``: :data:`LAYOUT_IDENTITY_KEY`), which ``memory_limit_bytes``
    decides: in memory and streamed in blocks visit them in different orders.
    Settings a resume applies anew (epochs, patience, min_delta, the schedule's factor, patience and floor) and
    where the run happens (device, threads) are not part of it."""
    arch = cfg.architecture or (init.architecture if init is not None else default_architecture(network, n_bins))
    # the Check Machine reads parameters, not features: its model files have no scaler (review by helper-88,
    # session 21: a warm-started Check Machine died here with an AttributeError)
    init_scaler = None if init is None or init.scaler is None else scaler_sha256(init.scaler)
    return {**checkpoint_identity(cfg, network, arch, store_sha, pseudo_store, init_scaler),
            **{key: getattr(cfg, key) for key in OPTIMIZER_IDENTITY_KEYS},
            LAYOUT_IDENTITY_KEY: cfg.block_size if streamed else None,
            "split_seed": _split_seed(cfg, init) if init is not None else None}  # None: cfg.seed (already in)


def _split_seed(cfg: TrainConfig, init: ModelFile | None) -> int:
    """Seed of the train/validation split (:func:`crnet.machines.data.split_indices`): this run's ``seed``, or for
    a warm start the split seed of the model it starts from, so that no record those weights trained on validates
    this run (``seed`` still sets the weight updates' shuffle and noise). Model files from before the split seed
    was recorded used their training seed (an ensemble member's: ``seed + ENSEMBLE_SEED_STRIDE * k``)."""
    if init is None:
        return cfg.seed
    meta = init.metadata
    if "split_seed" in meta:
        return int(meta["split_seed"])
    return int(meta.get("train_config", {}).get("seed", cfg.seed))


def _initial_model(cfg: TrainConfig, network: str):
    """The model file of ``cfg.init_from`` (its weights start the training), checked to be the same network."""
    from crnet.machines.modelfile import load_model

    init = load_model(cfg.init_from)
    if init.network != network:
        raise ValueError(f"init_from {cfg.init_from}: network {init.network!r} cannot start a {network!r} machine")
    return init


def _prepare_store(store: Path, out: Path, cfg: TrainConfig, resume: bool) -> Path:
    """The file the machine trains on: Machine B makes pseudo-data unless ``store`` already is pseudo-data."""
    if cfg.machine != "B" or read_store_info(store).is_pseudo:
        return store
    target = pseudo_path(out)
    if resume and target.is_file():
        return target
    make_pseudodata(store, target, cfg.pseudo)
    return target


def train(store: Path | str, out: Path | str, config: TrainConfig | None = None, resume: bool = False) -> TrainResult:
    """Train the machine of ``config`` on ``store`` and write the best model to ``out`` (see module docstring).

    Before any work, ValueError when ``out``'s directory is missing or ``out`` (or a file written beside it:
    :func:`crnet.machines.train_files.written_files`) is ``store`` or ``config.init_from``
    (:func:`crnet.machines.train_files.refuse_writing_over_inputs`)."""
    cfg = (config or TrainConfig()).resolved()
    store, out = Path(store), Path(out)
    require_parent_dir(out)  # before hours of training, not at the final save
    refuse_writing_over_inputs(store, out, cfg.init_from, cfg.ensemble)
    if cfg.ensemble > 1:
        # imported here: ensemble_training imports this module (train per member, the run helpers)
        from crnet.machines.ensemble_training import _train_ensemble

        return _train_ensemble(store, out, cfg, resume)
    network = network_name(cfg.machine, cfg.arch)
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    device = resolve_device(cfg.device)
    amp = cfg.amp and device.type == "cuda"
    ckpt_path = checkpoint_path(out)
    if resume and not ckpt_path.is_file():
        raise ValueError(f"--resume: no checkpoint {ckpt_path} (train without --resume first)")
    data_path = _prepare_store(store, out, cfg, resume)
    transform = TargetTransform()
    init = _initial_model(cfg, network) if cfg.init_from else None  # its scaler too: the weights were fit to it
    split_seed = _split_seed(cfg, init)
    if network == "check":
        data: RegressionData | CheckData = prepare_check_data(data_path, transform, val_fraction=cfg.val_fraction,
                                                              seed=split_seed, n_sigma=cfg.check_sigma)
        loss_fn = nn.functional.binary_cross_entropy_with_logits
        n_bins = 0
    else:
        holdout = 0.0
        if cfg.pseudo.centres == "train" and not read_store_info(data_path).is_pseudo:
            holdout = cfg.pseudo.holdout_fraction  # Machine A: skip the records test pseudo-data come from
        data = prepare_regression_data(data_path, transform, val_fraction=cfg.val_fraction, seed=split_seed,
                                       max_sigma=cfg.max_sigma, holdout_fraction=holdout,
                                       memory_limit_bytes=cfg.memory_limit_bytes, block_size=cfg.block_size,
                                       scaler=init.scaler if init is not None else None)
        loss_fn = log_cosh_loss
        n_bins = data.info.energies.size
        if init is not None and init.energies is not None:
            # the inherited first layer and scaler are per energy bin: another grid of the same size was accepted
            # (only the scaler's shape was compared; review by helper-88, session 21)
            check_same_grid(init.energies, data.info.energies, f"init_from {cfg.init_from}: training store {data_path}")
    identity = _identity(cfg, network, init, n_bins, file_sha256(data_path), data_path != store,
                         streamed=getattr(data, "cache", None) is None)
    arch = identity["architecture"]

    with _deterministic(device.type == "cpu"):
        torch.manual_seed(cfg.seed)
        net = build_network(network, arch).to(device)
        if init is not None:
            if init.architecture != arch:
                raise ValueError(f"init_from {cfg.init_from}: architecture {init.architecture} differs from {arch}")
            net.load_state_dict(init.state_dict)
        opt_cls = torch.optim.AdamW if cfg.weight_decay > 0 else torch.optim.Adam
        optimizer = opt_cls(net.parameters(), lr=cfg.learning_rate, weight_decay=cfg.weight_decay)
        if cfg.lr_schedule == "cosine":
            scheduler = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=cfg.epochs, eta_min=cfg.min_lr)
        elif cfg.lr_schedule == "constant":
            scheduler = torch.optim.lr_scheduler.ConstantLR(optimizer, factor=1.0, total_iters=0)
        else:
            scheduler = torch.optim.lr_scheduler.ReduceLROnPlateau(optimizer, factor=cfg.lr_factor,
                                                                   patience=cfg.lr_patience, min_lr=cfg.min_lr)
        shuffle = np.random.default_rng(cfg.seed)
        noise = None
        if cfg.input_noise > 0:
            noise = InputNoise(cfg.input_noise, data.scaler, data.info.energies)
        on_device = _device_splits(data, device)
        state = {"epoch": 0, "best_val": math.inf, "best_epoch": -1, "bad_epochs": 0, "stopped_early": False,
                 "history": []}
        best_weights = {k: v.detach().clone() for k, v in net.state_dict().items()}
        if resume:
            best_weights = load_checkpoint(ckpt_path, identity, net, optimizer, scheduler, shuffle, state, device)
            # the schedule settings of this run, not the checkpoint's: a resumed cosine run stretched to more
            # epochs keeps decaying to eta_min at its new end (with the old T_max it would climb back up)
            if cfg.lr_schedule == "cosine":
                scheduler.T_max, scheduler.eta_min = cfg.epochs, cfg.min_lr
            elif cfg.lr_schedule == "plateau":
                scheduler.factor, scheduler.patience = cfg.lr_factor, cfg.lr_patience
                scheduler.min_lrs = [cfg.min_lr] * len(optimizer.param_groups)
            # early stopping judged with this run's patience, as the docstring of _identity says a resume applies it
            # anew: the checkpoint's flag kept a run stopped at patience 2 stopped when resumed with patience 8
            # (review by helper-110, session 23)
            state["stopped_early"] = state["bad_epochs"] >= cfg.patience
        bar = tqdm(total=cfg.epochs, initial=min(state["epoch"], cfg.epochs), disable=not cfg.progress,
                   desc=f"train {network}", unit="epoch")
        for epoch in range(state["epoch"], cfg.epochs):
            if state["stopped_early"]:
                break
            train_loss = _run_epoch(net, data, "train", cfg.batch_size, loss_fn, device, amp, optimizer, shuffle,
                                    noise, shuffle, on_device)
            val_loss = _run_epoch(net, data, "val", cfg.batch_size, loss_fn, device, amp, noise=noise,
                                  noise_rng=np.random.default_rng(cfg.seed + VALIDATION_NOISE_SEED_OFFSET),
                                  on_device=on_device)
            if not (math.isfinite(train_loss) and math.isfinite(val_loss)):
                raise ValueError(
                    f"train {network}: epoch {epoch} gave a non-finite loss (train {train_loss}, validation "
                    f"{val_loss}); the run diverged (learning rate {optimizer.param_groups[0]['lr']:.3g}). Nothing "
                    f"was saved from this epoch; the checkpoint {ckpt_path}, if any, holds the last finite one. Lower "
                    "the learning rate")
            lr = optimizer.param_groups[0]["lr"]
            if cfg.lr_schedule == "plateau":
                scheduler.step(val_loss)
            else:
                scheduler.step()
            if val_loss < state["best_val"] * (1.0 - cfg.min_delta):
                state.update(best_val=val_loss, best_epoch=epoch, bad_epochs=0)
                best_weights = {k: v.detach().clone() for k, v in net.state_dict().items()}
            else:
                state["bad_epochs"] += 1
            state["history"].append({"epoch": epoch, "train_loss": train_loss, "val_loss": val_loss, "lr": lr})
            state["epoch"] = epoch + 1
            state["stopped_early"] = state["bad_epochs"] >= cfg.patience
            save_checkpoint(ckpt_path, identity, net, optimizer, scheduler, shuffle, state, best_weights)
            bar.update(1)
            bar.set_postfix(train=f"{train_loss:.3e}", val=f"{val_loss:.3e}", lr=f"{lr:.1e}")
        bar.close()
        net.load_state_dict(best_weights)
        net.eval()

    model = ModelFile(network, arch, cfg.machine, {k: v.cpu() for k, v in best_weights.items()}, transform,
                      getattr(data, "scaler", None), data.info.energies if network != "check" else None)
    metrics = evaluate(model, data)
    model.metadata = {
        "train_config": asdict(cfg),
        "training_store": {"path": str(data_path.resolve()), "sha256": identity["store_sha256"],
                           "n_records": data.info.n_records,
                           "n_train": int(data.train_idx.size), "n_val": int(data.val_idx.size),
                           "dropped": data.dropped, "pseudo_data": data.info.is_pseudo,
                           "source_store": str(store.resolve())},
        "dataset": data.info.attrs.get("dataset"),  # q_C of the inputs was profiled against it
        "split_seed": split_seed,  # a warm start from this model validates on the same split
        "code_version": code_version(), "device": str(device), "best_epoch": state["best_epoch"],
        "best_val_loss": state["best_val"], "stopped_early": state["stopped_early"], "history": state["history"],
        "metrics": metrics,
    }
    save_model(out, model)
    return TrainResult(out, ckpt_path, data_path, state["epoch"], state["best_epoch"], state["best_val"],
                       state["stopped_early"], state["history"], metrics)


def has_checkpoint(out: Path | str, ensemble: int = 1) -> bool:
    """Whether training to ``out`` left something to resume: its checkpoint, or for an ensemble member 0's."""
    return checkpoint_path(member_path(out, 0) if ensemble > 1 else out).is_file()


def evaluate(model: ModelFile, data: RegressionData | CheckData) -> dict:
    """Validation-split metrics of a trained model (per parameter for regressors, confusion for check)."""
    predictor = Predictor(model)
    x, y = data.arrays("val")
    if model.is_check:
        prob = predictor.classify(model.transform.inverse(x))
        return {"split": "val", "n": int(y.size), **confusion_matrix(y, prob)}
    scaled = predictor.network_outputs(x.astype(np.float64))
    pred = model.transform.inverse(scaled, clip_to_box=predictor.bounded)
    truth = model.transform.inverse(y)
    per_param = regression_metrics(model.transform, truth, pred)
    outside_any = float(model.transform.outside_box(pred).any(axis=1).mean())
    return {"split": "val", "n": int(y.shape[0]), "per_parameter": per_param,
            "frac_predictions_outside_box": outside_any,
            "min_r2": float(min(v["r2"] for v in per_param.values()))}
