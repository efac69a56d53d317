"""Training checkpoints: what a checkpoint holds, how it is written and restored, and what a resuming run must
share with the run that wrote it (its identity). Used by :mod:`crnet.machines.training`."""

from __future__ import annotations

import json
import os
from dataclasses import asdict
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import torch
from torch import nn

if TYPE_CHECKING:
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


def checkpoint_identity(cfg: TrainConfig, network: str, arch: dict, store_sha: str, pseudo_store: bool) -> dict:
    """What a checkpoint must share with the run that resumes it. The pseudo-data settings count too: they pick
    Machine A's training records (hold-out of the test centres) and make Machine B's pseudo-data file, which a
    resume reuses."""
    pseudo = asdict(cfg.pseudo) if pseudo_store else {"centres": cfg.pseudo.centres,
                                                      "holdout_fraction": cfg.pseudo.holdout_fraction}
    return {"network": network, "architecture": arch, "store_sha256": store_sha, "pseudo": pseudo,
            **{k: getattr(cfg, k) for k in IDENTITY_KEYS}}


def save_checkpoint(path: Path, identity: dict, net: nn.Module, optimizer, scheduler, shuffle: np.random.Generator,
                    state: dict, best_weights: dict) -> None:
    """Write (atomically) the weights, best weights, optimiser, scheduler, both random streams and the
    early-stopping state, with the run's identity."""
    payload = {"format": CHECKPOINT_FORMAT, "format_version": CHECKPOINT_VERSION,
               "identity_json": json.dumps(identity, sort_keys=True), "state_json": json.dumps(state),
               "model": {k: v.detach().cpu() for k, v in net.state_dict().items()},
               "best_model": {k: v.detach().cpu() for k, v in best_weights.items()},
               "optimizer": optimizer.state_dict(), "scheduler": scheduler.state_dict(),
               "rng_torch": torch.get_rng_state(), "rng_shuffle_json": json.dumps(shuffle.bit_generator.state)}
    if torch.cuda.is_available():
        payload["rng_cuda"] = torch.cuda.get_rng_state_all()
    tmp = path.with_name(path.name + ".tmp")
    torch.save(payload, tmp)
    os.replace(tmp, path)


def load_checkpoint(path: Path, identity: dict, net: nn.Module, optimizer, scheduler, shuffle: np.random.Generator,
                    state: dict, device: torch.device) -> dict:
    """Restore everything from ``path`` in place; returns the best weights so far."""
    try:
        payload = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # torch raises several types for foreign / corrupt files
        raise ValueError(f"{path}: not a readable crnet training checkpoint ({type(exc).__name__}); delete it to "
                         "train from the start") from None
    if not isinstance(payload, dict) or payload.get("format") != CHECKPOINT_FORMAT:
        raise ValueError(f"{path}: not a crnet training checkpoint")
    saved = json.loads(payload["identity_json"])
    ours = json.loads(json.dumps(identity, sort_keys=True))
    diff = sorted(k for k in set(saved) | set(ours) if saved.get(k) != ours.get(k))
    if diff:
        raise ValueError(f"{path}: checkpoint was written by a different run (differs in {diff}); "
                         "resume with the same store, machine, architecture, seed and split settings")
    net.load_state_dict(payload["model"])
    optimizer.load_state_dict(payload["optimizer"])
    scheduler.load_state_dict(payload["scheduler"])
    torch.set_rng_state(payload["rng_torch"])
    shuffle.bit_generator.state = json.loads(payload["rng_shuffle_json"])
    if "rng_cuda" in payload and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(payload["rng_cuda"])
    state.update(json.loads(payload["state_json"]))
    return {k: v.to(device) for k, v in payload["best_model"].items()}
