"""The feedback loop (paper Sec. 4.5, Fig. 1 steps v -> vi -> i): closure tests (:mod:`crnet.closure`, where the
settings, the closure test and the re-simulation live; re-exported here) repeated with retraining.

The loop stops when the share of passing predictions reaches ``target_share`` (0.95);
otherwise the re-simulated (theta, spectra) are appended to the training store (a new file per round,
:func:`crnet.store_read.merge_stores`) and the machine is retrained from the previous round's weights
(warm start: ``TrainConfig.init_from``, fresh optimiser and schedule), up to ``max_rounds`` rounds.

Resume: each round lives in ``<out>/round_<k>/``; finished steps are detected from their files (the
closure arrays ``closure.npz``, the re-simulation store's ``n_complete``, the model file) and the run
log ``<out>/feedback_log.json`` holds every round's metrics (written atomically after each round). The npz
files are caches keyed by what they were computed from: one that cannot be read (a truncated copy) counts as
stale and is recomputed; a log that cannot be read is refused, naming it.

Inputs are checked before anything is computed (:func:`crnet.feedback_inputs.check_feedback_inputs`): both stores
hold committed records, the training store is the model's, and the re-simulations repeat the training store's
simulations on the model's energy grid; :mod:`crnet.feedback_inputs` holds those checks and
:func:`crnet.feedback_inputs.sim_from_store` (the re-simulation settings that repeat a store's).
:mod:`crnet.feedback_state` holds the run directory's state: the run log, the round directories and whether they are
this loop's, and the keyed npz caches. This module holds the loop itself.
"""
from __future__ import annotations

import json
import warnings
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from crnet.closure import (
    BOX_INSET,
    CLOSURE_ARRAYS,
    PREDICTION_ARRAYS,
    TARGET_SHARE,
    TAU_THRESHOLD,
    ClosureResult,
    FeedbackConfig,
    SimConfig,
    clip_to_box,
    closure_key,
    closure_test,
    pseudo_features,
    read_in_row_order,
    resimulate,
    resimulated_chi2,
    tau,
)
from crnet.feedback_inputs import check_feedback_inputs
from crnet.feedback_state import (
    LOG_NAME,
    ReplacedRoundsWarning,
    _check_identity,
    _comparable_identity,
    _other_run,
    _read_log,
    _write_log,
    remove_rounds,
)
from crnet.run_lock import run_lock
from crnet.store import MockStore, store_holdout_records
from crnet.store_read import merge_stores
from crprop.backends import release_cached_device_memory
from crprop.params import LOG_PARAM_NAMES

if TYPE_CHECKING:
    from crnet.machines.modelfile import ModelFile
    from crnet.machines.training import TrainConfig

__all__ = [
    "BOX_INSET",
    "clip_to_box",
    "CLOSURE_ARRAYS",
    "closure_key",
    "closure_test",
    "ClosureResult",
    "FeedbackConfig",
    "FeedbackResult",
    "LOOP_FREE_SETTINGS",
    "loop_identity",
    "PREDICTION_ARRAYS",
    "pseudo_features",
    "read_in_row_order",
    "resimulate",
    "resimulated_chi2",
    "run_feedback",
    "SimConfig",
    "TARGET_SHARE",
    "tau",
    "TAU_THRESHOLD",
]


# ------------------------------------------------------------------------------------------ loop
@dataclass
class FeedbackResult:
    """Outcome of :func:`run_feedback`: the final model, whether the stop rule was met, every round's log."""

    model_path: Path
    converged: bool
    rounds: list[dict]


def _round_metrics(k: int, res: ClosureResult, cfg: FeedbackConfig, model: Path) -> dict[str, Any]:
    finite = np.isfinite(res.tau).all(axis=1)
    med = np.nanmedian(res.tau[finite], axis=0) if finite.any() else np.full(10, np.nan)
    return {"round": k, "model": str(model), "n_predictions": int(res.theta.shape[0]),
            "n_skipped_inputs": int(res.n_skipped_inputs), "n_simulated": int(res.simulated.sum()),
            "n_with_theta_prime": int(finite.sum()),
            "passing_share": res.passing_share(cfg.tau_threshold),
            "median_mean_abs_tau": float(np.median(res.mean_abs_tau)) if res.tau.shape[0] else float("nan"),
            "median_tau": {n: float(v) for n, v in zip(LOG_PARAM_NAMES, med, strict=True)},
            "chi2_resim_min": float(np.min(res.chi2_resim, initial=np.inf))}


def run_feedback(model: Path | str, train_store: Path | str, test_store: Path | str, out: Path | str,
                 cfg: FeedbackConfig | None = None, train_config: TrainConfig | None = None,
                 replace_other_run: bool = False) -> FeedbackResult:
    """Run the feedback loop of ``model`` (module docstring); resumes from ``out`` after a kill.

    train_store : the store the machine was trained on (Machine A: mock store; Machine B: the scan training made
        its pseudo-data from); test_store : the pseudo-data to predict from (not the evaluation's test
        set: later rounds retrain on re-simulations of these predictions; crnet pipeline makes
        ``feedback_pseudo.h5`` from the training centres); cfg.sim : how predictions are re-simulated - its grid,
        solver mode, tol, max_steps and data set must repeat ``train_store``'s (:func:`sim_from_store` reads them;
        crnet pipeline passes its scan's); train_config : the :class:`crnet.machines.training.TrainConfig` of
        retraining (its ``epochs`` is replaced by ``cfg.retrain_epochs``).

    Before round 0 and before ``out`` is created, :func:`crnet.feedback_inputs.check_feedback_inputs` refuses
    (FeedbackInputError, one line naming the argument, the file and the allowed value) an empty store, a
    ``train_store`` that is not the model's and re-simulation settings the retraining could not merge into
    ``train_store``. The model file is read once (the checks and round 0's closure test share it) and the training
    store hashed once (the checks' digest keys the loop, :func:`loop_identity`). A corrupt ``feedback_log.json`` is
    refused naming it (ValueError), and so is a second loop on an ``out`` in use
    (:func:`crnet.run_lock.run_lock`, ``<out>/.lock``).

    replace_other_run : rounds in ``out`` of another loop (a log of another identity, an unreadable log, or round
        directories without a log) are removed (:func:`crnet.feedback_state.remove_rounds`, once ``out`` is locked)
        instead of refused; a log of this loop is resumed either way. crnet pipeline, which owns its feedback
        directories, sets it.
    """
    from crnet.machines.modelfile import load_model

    cfg = cfg or FeedbackConfig()
    out = Path(out)
    current, store = Path(model), Path(train_store)
    model_file = load_model(current)
    checked = check_feedback_inputs(current, model_file, store, test_store, cfg.sim)  # before anything is written
    with run_lock(out, "crnet feedback"):  # one loop per directory (crnet pipeline locks its own out besides)
        return _run_rounds(current, store, Path(test_store), out, cfg, model_file, train_config, replace_other_run,
                           checked.train_store_sha256)


def _run_rounds(current: Path, store: Path, test_store: Path, out: Path, cfg: FeedbackConfig, model_file: ModelFile,
                train_config: TrainConfig | None, replace_other_run: bool,
                train_store_sha256: str | None = None) -> FeedbackResult:
    """:func:`run_feedback`'s rounds in ``out``, its inputs checked and the directory locked. ``model_file``: the
    loaded ``current`` (round 0's closure test predicts with it); ``train_store_sha256``: ``store``'s digest, when
    the checks computed it."""
    from crnet.machines.training import TrainConfig

    log_path = out / LOG_NAME
    tcfg = replace(train_config or TrainConfig(machine=model_file.machine), epochs=cfg.retrain_epochs,
                   progress=cfg.progress)
    # the model digest of the bytes round 0 predicts with (model_file), not of the path read again: a file rewritten
    # since the checks would otherwise name other bytes in the identity than those of round 0's predictions
    identity = loop_identity(current, store, test_store, cfg, tcfg, train_store_sha256,
                             model_sha256=model_file.source_sha256)
    given = current
    if replace_other_run:
        why = _other_run(log_path, identity, store)
        if why:
            removed = remove_rounds(out)
            warnings.warn(f"{out}: replaced the rounds of another feedback loop ({why}): removed "
                          f"{', '.join(p.name for p in removed)}", ReplacedRoundsWarning, stacklevel=3)
    if log_path.is_file():
        log = _read_log(log_path)
        saved = log.get("identity")
        _check_identity(log_path, saved, _comparable_identity(saved, identity, store))
        log["identity"] = identity
    else:
        log = {"config": asdict(cfg), "identity": identity, "rounds": []}
        _write_log(log_path, log)  # before round 0: a killed round 0 resumes only under the same identity
    rounds: list[dict] = log["rounds"]
    if rounds:  # the model given: the identity holds its sha256, the log where it was (a moved run directory)
        rounds[0]["model"] = str(current)
    for r in rounds:  # replay finished rounds from there
        if r.get("next_model"):
            current, store = Path(r["next_model"]), Path(r["next_store"])
    if len(rounds) > cfg.max_rounds or (rounds and len(rounds) == cfg.max_rounds and not rounds[-1]["stop"]):
        # max_rounds lowered below the rounds done (a loop killed after a retraining, resumed with a smaller cap):
        # the result is the cap's last round and the model it tested, not the later retraining's untested model
        # (also when the loop had stopped in a later round: review by helper-118, session 23)
        done = rounds[: cfg.max_rounds]
        return FeedbackResult(Path(done[-1]["model"]), bool(done[-1]["stop"]), done)
    if rounds and rounds[-1]["stop"]:  # the loop had ended: nothing to redo
        return FeedbackResult(current, True, rounds)
    if rounds and not rounds[-1].get("next_model") and len(rounds) < cfg.max_rounds:
        # max_rounds raised after a run that ended at its cap: the last round's retraining first, else the next
        # round would test the same model again
        last = rounds[-1]
        last["next_store"], last["next_model"] = map(str, _retrain(out / f"round_{last['round']}", store, current,
                                                                   tcfg))
        _write_log(log_path, log)
        current, store = Path(last["next_model"]), Path(last["next_store"])
    for k in range(len(rounds), cfg.max_rounds):
        rdir = out / f"round_{k}"
        res = closure_test(current, test_store, rdir, cfg, device=_device(),
                           model=model_file if current == given else None)
        if res.theta.shape[0] == 0:  # every round ran and retrained on nothing (review by helper-118, session 23)
            raise ValueError(f"{test_store}: the machine could read none of its test inputs ({res.n_skipped_inputs} "
                             "skipped: unusable spectra or unconverged solves); give a pseudo-data store of usable "
                             "spectra")
        metrics = _round_metrics(k, res, cfg, current)
        metrics["stop"] = metrics["passing_share"] >= cfg.target_share
        if not metrics["stop"] and k + 1 < cfg.max_rounds:
            next_store, next_model = _retrain(rdir, store, current, tcfg)
            metrics.update(next_store=str(next_store), next_model=str(next_model))
        rounds.append(metrics)
        _write_log(log_path, log)
        if metrics["stop"]:
            return FeedbackResult(current, True, rounds)
        if metrics.get("next_model"):
            current, store = Path(metrics["next_model"]), Path(metrics["next_store"])
    stopped = bool(rounds and rounds[-1]["stop"])
    return FeedbackResult(current, stopped, rounds)


def _retrain(rdir: Path, store: Path, current: Path, tcfg) -> tuple[Path, Path]:
    """Round ``rdir``'s retraining: its re-simulations appended to ``store`` (``rdir/train_store.h5``) and the
    machine trained on that from ``current``'s weights (``rdir/model.pt``; resumes its own checkpoint)."""
    from crnet.machines.training import has_checkpoint, train

    next_store, next_model = rdir / "train_store.h5", rdir / "model.pt"
    if not next_store.is_file():
        # test centres come from the scan only: the re-simulations appended after it are never held out
        with MockStore.open(store, "r") as st:
            limit = store_holdout_records(st.attrs())
            scan_records = st.n_complete if limit is None else limit
        merge_stores([store, rdir / "resim.h5"], next_store, holdout_records=scan_records)
    if not next_model.is_file():
        release_cached_device_memory()  # the re-simulations' CuPy cache would starve PyTorch on the GPU
        train(next_store, next_model, replace(tcfg, init_from=str(current)),
              resume=has_checkpoint(next_model, tcfg.ensemble))
    return next_store, next_model


LOOP_FREE_SETTINGS: tuple[str, ...] = ("max_rounds", "progress", "sim.backend", "sim.batch_size")
"""FeedbackConfig entries a resumed loop may change: the round cap (raising it extends a finished loop) and how
it runs (progress bar, solver backend, models per call)."""


def loop_identity(model: Path, train_store: Path, test_store: Path | str, cfg: FeedbackConfig, tcfg,
                  train_store_sha256: str | None = None, model_sha256: str | None = None) -> dict:
    """What a feedback directory's rounds depend on: the starting model, test pseudo-data and training store
    (sha256: not their paths, so a moved run directory resumes), every FeedbackConfig setting except
    :data:`LOOP_FREE_SETTINGS`, and the retraining's TrainConfig (except how it runs).

    ``train_store_sha256``: the training store's digest when the caller has it (:func:`run_feedback` passes the one
    :func:`crnet.feedback_inputs.check_feedback_inputs` computed), so that the store is hashed once per run;
    :func:`crnet.machines.modelfile.file_sha256` remembers digests of files of 256 MiB or more only.
    ``model_sha256``: the digest of the model bytes the loop predicts with (``ModelFile.source_sha256`` of the
    loaded model), else ``model`` is hashed."""
    from crnet.machines.modelfile import file_sha256

    settings = asdict(cfg)
    for key in LOOP_FREE_SETTINGS:
        *parents, leaf = key.split(".")
        d = settings
        for p in parents:
            d = d[p]
        d.pop(leaf, None)
    settings["sim"]["grid"] = cfg.sim.grid.settings()
    from crnet.machines import network_name
    from crnet.machines.training import RUN_PLACE_SETTINGS

    train = {k: v for k, v in asdict(tcfg).items() if k not in RUN_PLACE_SETTINGS}
    resolved = tcfg.resolved()  # per-network defaults that decide the training (None would hide a change of them,
    # and a default given explicitly - a model file's recorded learning rate - would read as a change: walk-through)
    for key in ("epochs", "batch_size", "learning_rate", "weight_decay", "lr_schedule", "patience"):
        train[key] = getattr(resolved, key)
    if network_name(resolved.machine, resolved.arch) in ("paper-A", "paper-B"):  # patience >= epochs: no early
        train["patience"] = min(train["patience"], train["epochs"])  # stop, however far above (one spelling)
    return json.loads(json.dumps({
        "model_sha256": model_sha256 if model_sha256 is not None else file_sha256(model),
        "test_store_sha256": file_sha256(test_store),
        "train_store_sha256": train_store_sha256 if train_store_sha256 is not None else file_sha256(train_store),
        "feedback": settings, "retraining": train}, default=str))



def _device() -> str:
    import torch

    return "cuda" if torch.cuda.is_available() else "cpu"
