"""Ensemble training: ``TrainConfig.ensemble`` members trained one after the other, then one model file of them all.

Entered only through :func:`crnet.machines.training.train` (``ensemble > 1``), which imports this module inside
the function: this module needs ``train`` (each member is one single-machine run) and the run helpers of
:mod:`crnet.machines.training`, so it imports that module at the top and that module imports this one lazily,
keeping ``training`` the entry point without an import cycle.
"""

from __future__ import annotations

from dataclasses import asdict, replace
from pathlib import Path

import numpy as np

from crnet.machines import network_name, training
from crnet.machines.checkpoint import checkpoint_path, checkpoint_state, read_checkpoint
from crnet.machines.data import read_store_info
from crnet.machines.modelfile import ModelFile, file_sha256, save_model
from crnet.machines.train_files import member_path
from crnet.machines.training import (
    ENSEMBLE_SEED_STRIDE,
    TrainConfig,
    TrainResult,
    _identity,
    _initial_model,
    _prepare_store,
    has_checkpoint,
)


def _train_ensemble(store: Path, out: Path, cfg: TrainConfig, resume: bool) -> TrainResult:
    """``cfg.ensemble`` members trained one after the other, then one model file holding all of them. Machine B's
    pseudo-data are made once and shared by the members.

    Without ``resume`` every member is trained afresh (old member files are removed). With ``resume`` a
    finished member is reused only when its checkpoint says it was trained on the same data with the same
    settings (else ValueError, as for a single machine), and an unfinished one resumes from its checkpoint."""
    from crnet.machines.modelfile import load_model

    if resume and not has_checkpoint(out, cfg.ensemble):
        raise ValueError(f"--resume: no checkpoint of ensemble member 0 ({checkpoint_path(member_path(out, 0))}); "
                         "train without --resume first")
    if not resume:
        for k in range(cfg.ensemble):
            path = member_path(out, k)
            for f in (path, checkpoint_path(path), path.with_name(path.name + ".init")):
                f.unlink(missing_ok=True)
    data_path = _prepare_store(store, out, cfg, resume)
    store_sha = file_sha256(data_path) if resume else ""
    init = load_model(cfg.init_from) if cfg.init_from else None
    if init is not None and init.n_members not in (1, cfg.ensemble):
        raise ValueError(f"init_from {cfg.init_from}: an ensemble of {init.n_members} members cannot start one of "
                         f"{cfg.ensemble} (use a single machine or the same number of members)")
    results = []
    for k in range(cfg.ensemble):
        path = member_path(out, k)
        start = cfg.init_from
        if init is not None and init.n_members > 1:
            start_path = path.with_name(path.name + ".init")
            save_model(start_path, init.member(k))
            start = str(start_path)
        mcfg = replace(cfg, ensemble=1, seed=cfg.seed + ENSEMBLE_SEED_STRIDE * k, init_from=start)
        ckpt = checkpoint_path(path)
        if resume and path.is_file():
            if _finished_member(ckpt, mcfg, data_path, store_sha, k):
                results.append(load_model(path))
                continue
        # looked up on the module at call time (not bound at import): a patched or reloaded ``training.train``
        # trains the members too
        training.train(data_path, path, mcfg, resume=resume and ckpt.is_file())
        results.append(load_model(path))
    first = results[0]
    meta = {key: v for key, v in first.metadata.items() if key not in ("metrics", "best_val_loss", "history",
                                                                        "best_epoch", "stopped_early")}
    model = ModelFile(first.network, first.architecture, first.machine, first.state_dict, first.transform,
                      first.scaler, first.energies, meta, [(m.state_dict, m.scaler) for m in results[1:]])
    model.metadata.update(train_config=asdict(cfg), ensemble={
        "n_members": cfg.ensemble, "member_files": [str(member_path(out, k)) for k in range(cfg.ensemble)],
        "member_seeds": [cfg.seed + ENSEMBLE_SEED_STRIDE * k for k in range(cfg.ensemble)],
        "member_split_seeds": [m.metadata["split_seed"] for m in results],
        "member_best_val_loss": [m.metadata["best_val_loss"] for m in results],
        "member_metrics": [m.metadata["metrics"] for m in results]})
    save_model(out, model)
    losses = [m.metadata["best_val_loss"] for m in results]
    # TrainResult fields of a single run: epochs summed over the members, loss the members' mean, history and best
    # epoch the last member's (the members' own are in the file's metadata["ensemble"])
    return TrainResult(out, checkpoint_path(member_path(out, cfg.ensemble - 1)), data_path,
                       sum(len(m.metadata["history"]) for m in results), results[-1].metadata["best_epoch"],
                       float(np.mean(losses)), all(m.metadata["stopped_early"] for m in results),
                       results[-1].metadata["history"],
                       {"ensemble_members": cfg.ensemble,
                        "member_min_r2": [m.metadata["metrics"].get("min_r2") for m in results],
                        "member_best_val_loss": losses})


def _finished_member(ckpt: Path, cfg: TrainConfig, data_path: Path, store_sha: str, k: int) -> bool:
    """Whether member ``k``'s training ended (epochs done or stopped early), from one read of its checkpoint;
    ValueError unless that checkpoint was written with the identity a run of ``cfg`` on this training file would
    have (the same check as a single machine's resume: network, architecture, init_from scaler, split, ...)."""
    if not ckpt.is_file():
        raise ValueError(f"{ckpt.with_suffix('')}: ensemble member {k} without its checkpoint; train without "
                         "--resume to start over")
    resolved = cfg.resolved()
    network = network_name(resolved.machine, resolved.arch)
    init = _initial_model(resolved, network) if resolved.init_from else None
    n_bins = 0 if network == "check" else read_store_info(data_path).energies.size
    # a member trains on data_path itself (Machine B: the pseudo-data file made once for all members), so its
    # checkpoint was written with pseudo_store False, whatever store the ensemble was given
    # the record layout (in memory or streamed) is not known before the records are read; a member that has not
    # ended resumes through train(), which compares it
    payload = read_checkpoint(ckpt, _identity(resolved, network, init, n_bins, store_sha, False, streamed=False),
                              compare_layout=False)
    state = checkpoint_state(payload)
    # early stopping judged with this run's patience, as train() does on a resume (re-read by helper-122, session 23:
    # a member stopped at patience 2 stayed stopped when the ensemble was resumed with patience 100)
    stopped = int(state.get("bad_epochs", 0)) >= resolved.patience
    return stopped or int(state.get("epoch", 0)) >= resolved.epochs
