"""Run-directory state of the feedback loop (:func:`crnet.feedback.run_feedback`): what lies in its output directory.

* the run log ``<out>/feedback_log.json`` (:data:`LOG_NAME`): every round's metrics and the loop's identity, written
  atomically with the round files relative to the directory (:func:`_write_log`, :func:`_read_log`);
* the round directories ``<out>/round_<k>/`` (:data:`ROUND_DIR`): whether they belong to this loop (its identity,
  :func:`_other_run`, :func:`_check_identity`) and their removal (:func:`remove_rounds`);
* the npz caches keyed by what they were computed from (:func:`savez_keyed`, :func:`load_keyed`):
  one that cannot be read counts as stale and is recomputed.
"""

from __future__ import annotations

import json
import re
import shutil
import zipfile
from pathlib import Path
from typing import Any

import numpy as np

from crnet.json_files import read_json_object
from crnet.paths import atomic_write, atomic_write_text
from crnet.provenance import changed_settings, list_settings

# ------------------------------------------------------------------------------------------ run log
LOG_NAME = "feedback_log.json"


class ReplacedRoundsWarning(UserWarning):
    """:func:`crnet.feedback.run_feedback` with ``replace_other_run`` removed another loop's rounds (it names them and
    why)."""


ROUND_PATH_KEYS: tuple[str, ...] = ("model", "next_store", "next_model")
"""Entries of a round in the run log that name files; those inside the feedback directory are written relative to
it (the log's ``paths``: :data:`RELATIVE_PATHS`), so a copied or moved run directory resumes with its own files."""
RELATIVE_PATHS = "relative to the feedback directory"


def _log_paths(payload: dict, convert) -> dict:
    """``payload`` with ``convert`` applied to every round's :data:`ROUND_PATH_KEYS` entry (a copy)."""
    rounds = [{**r, **{k: convert(r[k]) for k in ROUND_PATH_KEYS if r.get(k)}} for r in payload.get("rounds", [])]
    return {**payload, "rounds": rounds}


def _write_log(path: Path, payload: dict) -> None:
    """Write the run log atomically, its round files relative to the log's directory where they lie inside it."""
    root = path.parent.resolve()

    def relative(name: str) -> str:
        full = Path(name).resolve()
        return full.relative_to(root).as_posix() if full.is_relative_to(root) else name

    payload = {**_log_paths(payload, relative), "paths": RELATIVE_PATHS}
    atomic_write_text(path, json.dumps(payload, indent=2, default=str))


def _read_log(path: Path) -> dict[str, Any]:
    """The run log ``path``; ValueError naming it when it cannot be read (it is written atomically, so only a copy
    or an edit truncates it): the rounds it lists cannot be recovered from the round files alone."""
    hint = ("delete it to redo the loop from round 0 (the files under round_*/ are reused), or delete its directory to "
            "start afresh")
    log = read_json_object(path, "feedback log", hint=hint)
    if not isinstance(log.get("rounds"), list):
        raise ValueError(f"{path}: corrupt feedback log (no list 'rounds'); {hint}")
    if log.pop("paths", None) == RELATIVE_PATHS:  # logs of earlier versions hold the paths as they were given
        log = _log_paths(log, lambda name: str(path.parent / name) if not Path(name).is_absolute() else name)
    return log


# ------------------------------------------------------------------------------------------ round directories
def _earlier_identity(ours: dict, train_store: Path) -> dict:
    """``ours`` in the form logs of earlier versions recorded it: the training store by its resolved path and size
    instead of its sha256 (a moved run directory cannot resume those)."""
    old = {k: v for k, v in ours.items() if k != "train_store_sha256"}
    return {**old, "train_store": str(train_store.resolve()), "train_store_bytes": train_store.stat().st_size}


ROUND_DIR = re.compile(r"round_\d+")
"""Names of a feedback loop's round directories in its output directory."""


def remove_rounds(directory: Path | str) -> list[Path]:
    """Remove what a feedback loop left in ``directory``: its round directories (``round_<k>/``, which hold only the
    loop's own files; a symbolic link of that name is unlinked, not followed) and then its log (last: a removal
    killed half-way leaves the log, so the next run still sees another run's rounds). Nothing else is touched.
    Returns what was removed."""
    directory = Path(directory)
    rounds = sorted(d for d in directory.iterdir() if ROUND_DIR.fullmatch(d.name) and (d.is_dir() or d.is_symlink())
                    ) if directory.is_dir() else []
    log = [directory / LOG_NAME] if (directory / LOG_NAME).is_file() else []
    for path in rounds + log:
        if path.is_dir() and not path.is_symlink():
            shutil.rmtree(path)
        else:
            path.unlink()
    return rounds + log


RESOLVED_TRAINING_KEYS: tuple[str, ...] = ("epochs", "batch_size", "learning_rate", "weight_decay")
"""Retraining settings an identity records as resolved (the network's default in place of None) since session 19;
logs written before hold None for a default (:func:`_resolved_saved`)."""


def _resolved_saved(saved: dict | None) -> dict | None:
    """``saved`` (a loop identity read from a log) as this code records the same loop, so that logs of earlier
    versions still match: the None of :data:`RESOLVED_TRAINING_KEYS` replaced by the network's default
    (:meth:`crnet.machines.training.TrainConfig.resolved`; an explicit value is kept and compared); a paper
    machine's patience at or above the retraining's epochs (no early stopping) recorded as those epochs; the
    re-simulation grid with explicit paper values as None (:func:`crnet.scan.models.normalised_grid`)."""
    if not isinstance(saved, dict):
        return saved
    saved = _normalised_sim_grid(saved)
    retraining = saved.get("retraining")
    if not isinstance(retraining, dict):
        return saved
    from crnet.machines.training import TrainConfig, network_name

    if all(retraining.get(k) is not None for k in RESOLVED_TRAINING_KEYS):
        resolved = {}
    else:
        try:
            config = TrainConfig(machine=retraining["machine"], arch=retraining.get("arch", "paper"),
                                 **{k: retraining.get(k) for k in RESOLVED_TRAINING_KEYS}).resolved()
        except (KeyError, TypeError, ValueError):  # not a retraining record this code can read: compared as it is
            return saved
        resolved = {k: getattr(config, k) for k in RESOLVED_TRAINING_KEYS}
    retraining = {**retraining, **resolved}
    try:
        paper = network_name(retraining["machine"], retraining.get("arch", "paper")) in ("paper-A", "paper-B")
        no_stopping = paper and retraining["patience"] >= retraining["epochs"]
    except (KeyError, TypeError, ValueError):
        no_stopping = False
    if no_stopping:  # a paper machine's first-training epochs (crnet feedback before session 19): no early stop
        retraining["patience"] = retraining["epochs"]  # either way, as the resolved None now records it
    return {**saved, "retraining": retraining}


def _normalised_sim_grid(saved: dict) -> dict:
    """``saved`` with its re-simulation settings as this code records them: the grid through
    crnet.scan.models.normalised_grid, the solver's default tol and max_steps as None (crnet.closure.SimConfig)."""
    feedback = saved.get("feedback")
    sim = feedback.get("sim") if isinstance(feedback, dict) else None
    if not isinstance(sim, dict):
        return saved
    from crnet.closure import solver_defaults_as_none
    from crnet.scan.models import normalised_grid

    sim = {**sim, **({"grid": normalised_grid(sim["grid"])} if "grid" in sim else {})}
    if "tol" in sim or "max_steps" in sim:
        tol, max_steps = solver_defaults_as_none(sim.get("tol"), sim.get("max_steps"))
        sim.update({k: v for k, v in (("tol", tol), ("max_steps", max_steps)) if k in sim})
    return {**saved, "feedback": {**feedback, "sim": sim}}


def _comparable_identity(saved: dict | None, ours: dict, train_store: Path) -> dict:
    """``ours`` in the form ``saved`` was recorded in (:func:`_earlier_identity` for logs of earlier versions)."""
    return ours if saved is None or "train_store_sha256" in saved else _earlier_identity(ours, train_store)


def _other_run(log_path: Path, identity: dict, train_store: Path) -> str | None:
    """Why the rounds beside ``log_path`` are not this loop's (``identity``): the settings its log differs in, an
    unreadable log, a log of a version that recorded no identity, or round directories without a log; None when
    they are (or there are none)."""
    if not log_path.is_file():
        directory = log_path.parent
        strays = sorted(d.name for d in directory.iterdir() if ROUND_DIR.fullmatch(d.name)) if directory.is_dir() \
            else []
        return f"{', '.join(strays)} without a log" if strays else None
    try:
        saved = _read_log(log_path).get("identity")
    except ValueError as exc:
        return str(exc).split(";")[0]
    if saved is None:
        return "its log records no identity (an earlier crnet)"
    diff = changed_settings(_resolved_saved(saved), _comparable_identity(saved, identity, train_store), nested=True)
    return f"differs in {list_settings(diff)}" if diff else None


def _check_identity(log_path: Path, saved: dict | None, ours: dict) -> None:
    if saved is None:  # a log written before identities were recorded
        return
    diff = changed_settings(_resolved_saved(saved), ours, nested=True)
    if diff:
        raise ValueError(f"{log_path}: this feedback directory belongs to another run (differs in "
                         f"{list_settings(diff)}); use another output directory or delete it")


# ------------------------------------------------------------------------------------------ keyed npz caches
UNREADABLE_NPZ: tuple[type[Exception], ...] = (OSError, EOFError, ValueError, KeyError, zipfile.BadZipFile)
"""What np.load and reading its members raise for a truncated or overwritten npz file."""


def load_keyed(path: Path, key: str) -> dict[str, np.ndarray] | None:
    """The arrays (``key`` left out) of the npz ``path`` written by :func:`savez_keyed` under ``key``; None when the
    file is missing, of another key, or cannot be read in full (a truncated copy, a disk that filled up: a cache,
    which the caller recomputes)."""
    if not path.is_file():
        return None
    try:
        with np.load(path, allow_pickle=False) as z:
            if "key" not in z.files or str(z["key"]) != key:
                return None
            return {name: np.array(z[name]) for name in z.files if name != "key"}
    except UNREADABLE_NPZ:
        return None


def savez_keyed(path: Path, key: str, **arrays: np.ndarray) -> None:
    """Write ``arrays`` and ``key`` (what they were computed from) to the npz ``path`` atomically."""
    def write(tmp: Path) -> None:
        with open(tmp, "wb") as fh:  # a file object: np.savez would append '.npz' to the temporary's name
            np.savez(fh, key=np.array(key), **arrays)

    atomic_write(path, write)
