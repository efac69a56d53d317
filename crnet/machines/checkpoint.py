"""Training checkpoints: what a checkpoint holds, how it is written and restored, and what a resuming run must
share with the run that wrote it (its identity). Used by :mod:`crnet.machines.training`."""

from __future__ import annotations

import json
from dataclasses import asdict
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import torch
from torch import nn

from crnet.paths import atomic_write
from crnet.provenance import array_sha256, changed_settings, list_settings

if TYPE_CHECKING:
    from crnet.features import FeatureScaler
    from crnet.machines.training import TrainConfig

CHECKPOINT_FORMAT = "crnet-checkpoint"
CHECKPOINT_VERSION = 1


def checkpoint_path(out: Path | str) -> Path:
    """Checkpoint written beside the model file: ``<out>.ckpt``."""
    out = Path(out)
    return out.with_name(out.name + ".ckpt")


IDENTITY_KEYS: tuple[str, ...] = ("machine", "arch", "val_fraction", "seed", "max_sigma", "check_sigma", "batch_size",
                                  "lr_schedule", "input_noise")
"""TrainConfig fields a checkpoint must share with the run that resumes it (with the network, architecture and
training file)."""


def checkpoint_identity(cfg: TrainConfig, network: str, arch: dict, store_sha: str, pseudo_store: bool,
                        init_scaler_sha: str | None) -> dict:
    """What a checkpoint must share with the run that resumes it. The pseudo-data settings count too: they pick
    Machine A's training records (hold-out of the test centres) and make Machine B's pseudo-data file, which a
    resume reuses. So does the feature scaler of an ``init_from`` model (``init_scaler_sha``, None without one):
    a run started from a model trains on that model's scaling, and resuming it without ``init_from`` would refit
    the scaler on the store and train the later epochs on differently scaled inputs."""
    pseudo = asdict(cfg.pseudo) if pseudo_store else {"centres": cfg.pseudo.centres,
                                                      "holdout_fraction": cfg.pseudo.holdout_fraction}
    return {"network": network, "architecture": arch, "store_sha256": store_sha, "pseudo": pseudo,
            "init_scaler_sha256": init_scaler_sha, **{k: getattr(cfg, k) for k in IDENTITY_KEYS}}


def scaler_sha256(scaler: FeatureScaler) -> str:
    """Digest of a feature scaler's mean and std (float64), for :func:`checkpoint_identity`."""
    return array_sha256(scaler.mean, scaler.std)


def save_checkpoint(path: Path, identity: dict, net: nn.Module, optimizer, scheduler, shuffle: np.random.Generator,
                    state: dict, best_weights: dict) -> None:
    """Write (atomically: ``<path>.<pid>.tmp``, then a rename) the weights, best weights, optimiser, scheduler,
    both random streams and the early-stopping state, with the run's identity."""
    payload = {"format": CHECKPOINT_FORMAT, "format_version": CHECKPOINT_VERSION,
               "identity_json": json.dumps(identity, sort_keys=True), "state_json": json.dumps(state),
               "model": {k: v.detach().cpu() for k, v in net.state_dict().items()},
               "best_model": {k: v.detach().cpu() for k, v in best_weights.items()},
               "optimizer": optimizer.state_dict(), "scheduler": scheduler.state_dict(),
               "rng_torch": torch.get_rng_state(), "rng_shuffle_json": json.dumps(shuffle.bit_generator.state)}
    if torch.cuda.is_available():
        payload["rng_cuda"] = torch.cuda.get_rng_state_all()
    # per-process temporary name: two processes writing the same checkpoint must not rename each other's
    # half-written file away (review by helper-51, session 17)
    atomic_write(path, lambda tmp: torch.save(payload, tmp))


OPTIMIZER_IDENTITY_KEYS: tuple[str, ...] = ("learning_rate", "weight_decay")
"""TrainConfig fields a checkpoint must share with the run that resumes it besides :data:`IDENTITY_KEYS`: the
optimiser state a resume restores holds them (crnet.machines.training._identity adds them). Recorded in the
identity since session 19; for a checkpoint written before, :func:`optimizer_settings` reads them back from its
optimiser state, so that a changed ``--lr`` or ``--weight-decay`` is refused there too."""

LAYOUT_IDENTITY_KEY = "stream_block_size"
"""Identity entry for how the training records are read (crnet.machines.training._identity): None when they are held
in memory, else the streaming block size. The two visit the records in different orders, so a resume that crossed
``memory_limit_bytes`` (``--memory-gb``) would continue on another batch sequence. Recorded since session 21; a
checkpoint written before lacks it and is compared without it."""


def optimizer_settings(payload: dict) -> dict:
    """``learning_rate`` (the initial rate) and ``weight_decay`` of the run that wrote a checkpoint, read from its
    optimiser state: the scheduler's ``initial_lr`` (cosine, constant) or else the first epoch's recorded rate
    (plateau: recorded before the schedule's first step), and the parameter group's weight decay. For checkpoints
    written before those settings were part of the identity."""
    try:
        group = payload["optimizer"]["param_groups"][0]
        history = checkpoint_state(payload).get("history") or [{}]
        lr = group.get("initial_lr", history[0].get("lr"))
        out = {"weight_decay": float(group["weight_decay"])}
    except (KeyError, IndexError, TypeError, ValueError, AttributeError):
        return {}
    if lr is not None:
        out["learning_rate"] = float(lr)
    return out


def read_checkpoint(path: Path, identity: dict, compare_layout: bool = True) -> dict:
    """The payload of the checkpoint ``path`` (weights only, never pickled objects), after checking that it was
    written by a run with this ``identity`` (:func:`checkpoint_identity`). ValueError naming the file for a
    foreign, corrupt or other-run checkpoint. ``compare_layout=False``: leave :data:`LAYOUT_IDENTITY_KEY` out of
    the check (for a caller that only asks whether a run has ended, before reading the records)."""
    try:
        payload = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # torch raises several types for foreign / corrupt files
        raise ValueError(f"{path}: not a readable crnet training checkpoint ({type(exc).__name__}); delete it to "
                         "train from the start") from None
    if not isinstance(payload, dict) or payload.get("format") != CHECKPOINT_FORMAT:
        raise ValueError(f"{path}: not a crnet training checkpoint; delete it to train from the start")
    try:
        saved = json.loads(payload["identity_json"])
        json.loads(payload["state_json"])
    except (KeyError, TypeError, json.JSONDecodeError) as exc:
        raise ValueError(f"{path}: crnet training checkpoint without a readable identity or state ({exc!r}); "
                         "delete it to train from the start") from None
    if not isinstance(saved, dict):
        raise ValueError(f"{path}: crnet training checkpoint whose identity is no table ({saved!r}); delete it to "
                         "train from the start")
    # a checkpoint from before session 19: the optimiser settings this run compares, read from its optimiser state
    saved = {**{k: v for k, v in optimizer_settings(payload).items() if k in identity}, **saved}
    unrecorded = {key for key in (*OPTIMIZER_IDENTITY_KEYS, LAYOUT_IDENTITY_KEY) if key not in saved}
    if not compare_layout:
        unrecorded.add(LAYOUT_IDENTITY_KEY)
    diff = changed_settings(saved, identity, keys=(set(saved) | set(identity)) - unrecorded)
    if diff:
        raise ValueError(f"{path}: checkpoint was written by a different run (differs in {list_settings(diff)}); "
                         "resume with the same store, machine, architecture, init_from, seed, split settings, "
                         "learning rate, weight decay and memory limit, or train without --resume to start over")
    return payload


def checkpoint_state(payload: dict) -> dict:
    """The early-stopping state (epoch, best loss, history, ...) a checkpoint holds."""
    return json.loads(payload["state_json"])


def load_checkpoint(path: Path, identity: dict, net: nn.Module, optimizer, scheduler, shuffle: np.random.Generator,
                    state: dict, device: torch.device) -> dict:
    """Restore everything from ``path`` in place (after :func:`read_checkpoint`'s checks); returns the best
    weights so far."""
    payload = read_checkpoint(path, identity)
    net.load_state_dict(payload["model"])
    optimizer.load_state_dict(payload["optimizer"])
    scheduler.load_state_dict(payload["scheduler"])
    torch.set_rng_state(payload["rng_torch"])
    shuffle.bit_generator.state = json.loads(payload["rng_shuffle_json"])
    if "rng_cuda" in payload and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(payload["rng_cuda"])
    state.update(checkpoint_state(payload))
    return {k: v.to(device) for k, v in payload["best_model"].items()}
