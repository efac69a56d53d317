"""``crnet pipeline CONFIG``: scan -> train Machines A and B (paper / crnet variants) and the Check Machine
-> feedback loop -> evaluation (-> inference on the measured spectra), from one TOML file.

Config sections: :mod:`crnet.pipeline_config`. Each stage writes a marker under ``stages/`` when it begins and when
it is done; a re-run skips finished stages, refuses changed settings and resumes the interrupted stage
(:mod:`crnet.pipeline_stages`). A feedback stage resumes the rounds of its own loop (the loop's identity: model,
stores and settings by content, so also after a raised max_rounds) and replaces another loop's
(:func:`crnet.feedback_state.remove_rounds`, once the loop has locked its directory). The scan always resumes its
store (an MCMC scan extends to a larger n_steps); caches keyed by content (closure tests, oracle draws) are reused
when their key matches. ``resolved_config.json`` next to the outputs holds the resolved config and every derived
seed, and ``invocations``: for each run that passed those checks its time, versions (crnet and its source digest,
torch, numpy, numba, h5py, scipy, cupy, device), the settings of where and how it ran (``run_settings``: threads,
device, backends, batch sizes, ...) and the stages it ran (``stages_run``), so a run resumed on another commit,
machine or thread count says so. A run holds ``<out>/.lock`` (:mod:`crnet.run_lock`) from
start to end: a second run on the same directory is refused."""

from __future__ import annotations

import json
import platform
import time
from collections.abc import Callable
from dataclasses import asdict, replace
from pathlib import Path
from typing import Any

from crnet.pipeline_config import (
    FEEDBACK_SEED_OFFSET,
    MACHINE_NAMES,
    PAPER_PROTOCOL_MACHINES,
    TEST_SEED_OFFSET,
    PipelineConfig,
)
from crnet.pipeline_stages import (
    NOT_RESULT_SETTINGS,
    SCAN_STORE,
    _Stages,
    atomic_json,
    config_dict,
    flatten,
    remove_training_files,
)
from crnet.scan.runner import ScanConfig


def versions(source_sha256: str | None = None) -> dict[str, Any]:
    """The code and libraries a run uses: crnet (version, git commit, the package sources' digest,
    :func:`crnet.provenance.source_sha256`, or ``source_sha256`` when already computed), torch, numpy, numba, h5py,
    scipy, cupy (None when not importable), python, the platform and the CUDA device."""
    import h5py
    import numba
    import numpy
    import scipy
    import torch

    from crnet.provenance import code_version
    from crnet.provenance import source_sha256 as sources

    try:
        import cupy

        cupy_version = cupy.__version__
    except Exception:  # not installed, or no usable CUDA runtime
        cupy_version = None
    return {**code_version(), "source_sha256": source_sha256 or sources(), "torch": torch.__version__,
            "numpy": numpy.__version__, "numba": numba.__version__, "h5py": h5py.__version__,
            "scipy": scipy.__version__, "cupy": cupy_version,
            "python": platform.python_version(), "platform": platform.platform(),
            "cuda_device": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None}


def run_pipeline(cfg: PipelineConfig) -> dict[str, Any]:
    """Run (or resume) every stage; returns {'timings': {stage: s}, 'skipped': [stage], 'resumed': [stage],
    'killed_runs_s': {stage: [s or None]}, 'report': ..., 'measured': ...}: 'skipped' are the stages found finished
    and not run again, whose timings are those of the runs that worked on them; 'resumed' those finished by a run that
    resumed them after a kill. A stage's timing adds the time of the runs killed before it finished
    ('killed_runs_s', from the started marker's heartbeat, :mod:`crnet.stage_clock`: each undercounted by at most
    HEARTBEAT_S; None for a run killed under code before session 20, whose time is unknown and not in the timing).

    The whole run holds the lock of its output directory (:func:`crnet.run_lock.run_lock`): a second run on the
    same directory is refused (ValueError naming ``<out>/.lock`` and the holder's pid) before it reads or writes
    anything there."""
    from crnet.run_lock import run_lock

    with run_lock(cfg.out, "crnet pipeline"):
        return _run_locked(cfg)


def _run_locked(cfg: PipelineConfig) -> dict[str, Any]:
    import torch

    from crnet.evaluate import EvalConfig, evaluate
    from crnet.feedback import run_feedback
    from crnet.machines.training import TrainConfig, train
    from crnet.pseudodata import PseudoDataConfig, make_pseudodata
    from crnet.scan.runner import run_scan

    out = cfg.out
    if cfg.run.threads:
        from crprop.backends.numba_backend import set_threads

        torch.set_num_threads(cfg.run.threads)
        set_threads(cfg.run.threads)  # the solver too: on a shared or small machine its threads set the wall time
    st = _Stages(out, cfg)
    scan_path = out / SCAN_STORE
    if cfg.fit.enabled:
        # before the fit (18 s on the tiny grid in helper-119's reproduction; 1,135 s on the paper grid, 2-core CPU,
        # benchmarks/results/pipeline_gpu_fit_h100.md): every marker and the scan store,
        # but for the start / start_cov the fit sets (review by helper-119: a refused run had run the fit and left
        # its files)
        _check_stages(st, cfg, scan_path, before_fit=True)
        fit = st.run("fit", lambda resume: {**(r := _run_fit(cfg)), "path": st.rel(r["path"])})
        cfg.scan = _scan_from_fit(cfg, {**fit, "path": str(st.path("fit", fit["path"]))})
    _check_stages(st, cfg, scan_path)  # every marker checked before anything (more) is written
    st.after_stage = _write_resolved_config(out, cfg, st)
    st.run("scan", lambda resume: run_scan(scan_path, cfg.scan, resume=True, progress=cfg.run.progress).new_records)

    def tcfg(machine: str, arch: str) -> TrainConfig:
        t = cfg.train
        return TrainConfig(machine=machine, arch=arch, epochs=t.epochs, batch_size=t.batch_size,
                           patience=None if f"{machine}-{arch}" in PAPER_PROTOCOL_MACHINES else t.patience,
                           seed=cfg.run.seed, device=t.device, amp=t.amp, threads=cfg.run.threads or None,
                           progress=cfg.run.progress,
                           input_noise=t.input_noise if f"{machine}-{arch}" in t.input_noise_machines else 0.0,
                           ensemble=t.ensemble if f"{machine}-{arch}" in t.ensemble_machines else 1,
                           pseudo=PseudoDataConfig(n_pseudo=t.n_pseudo, dataset=cfg.scan.dataset, seed=cfg.run.seed,
                                                   centres="train" if t.holdout_fraction > 0 else "all",
                                                   holdout_fraction=t.holdout_fraction))

    def train_one(machine: str, arch: str, path: Path, resume: bool) -> str:
        from crnet.machines.training import has_checkpoint

        config = tcfg(machine, arch)
        if not resume:  # not this stage's interrupted run: its checkpoints belong to another one
            remove_training_files(path)
        train(scan_path, path, config, resume=resume and has_checkpoint(path, config.ensemble))
        return st.rel(path)

    models: dict[str, Path] = {}
    for name in cfg.train.machines:
        machine, arch, _ = MACHINE_NAMES[name]
        stage = f"train_{name}"
        models[name] = st.path(stage, st.run(stage, lambda resume, m=machine, a=arch, n=name: train_one(
            m, a, out / f"{n}.pt", resume)))
    check = None
    if cfg.train.check:
        check = st.path("train_check", st.run("train_check", lambda resume: train_one(
            "check", "paper", out / "check.pt", resume)))

    test_path = out / "test_pseudo.h5"
    seed = cfg.test.seed if cfg.test.seed is not None else cfg.run.seed + TEST_SEED_OFFSET
    held = cfg.train.holdout_fraction
    st.run("test_pseudodata", lambda resume: st.rel(make_pseudodata(
        scan_path, test_path, PseudoDataConfig(n_pseudo=cfg.test.n_test, dataset=cfg.scan.dataset, seed=seed,
                                               centres="test" if held > 0 else "all",
                                               holdout_fraction=held)).path))

    stores = [str(scan_path)]
    feedback_path = out / "feedback_pseudo.h5"
    if cfg.feedback.machines:
        # The loop retrains on re-simulations of its own predictions, so it must not predict from the test set:
        # its pseudo-data come from the training centres (all records when nothing is held out) with their own
        # noise draws. With [train] holdout_fraction > 0 Tables 3/4 then measure spectra no machine, retrained or
        # not, has learnt from; with 0 (the paper's protocol, pipeline_ci/demo) the test centres are training centres.
        st.run("feedback_pseudodata", lambda resume: st.rel(make_pseudodata(
            scan_path, feedback_path, PseudoDataConfig(
                n_pseudo=cfg.test.n_test, dataset=cfg.scan.dataset, seed=cfg.run.seed + FEEDBACK_SEED_OFFSET,
                centres="train" if held > 0 else "all", holdout_fraction=held)).path))
    for name in cfg.feedback.machines:
        machine, arch, _ = MACHINE_NAMES[name]
        fb_dir = out / f"feedback_{name}"

        def fb(resume: bool, n: str = name, m: str = machine, a: str = arch, d: Path = fb_dir) -> dict[str, Any]:
            # the pipeline owns its feedback directories: rounds of another loop (another model after a retraining,
            # another scan after an MCMC extension) are replaced once the loop has locked the directory; rounds of
            # this loop (same identity: model, stores, settings) are resumed, also after a raised max_rounds
            r = run_feedback(models[n], scan_path, feedback_path, d, cfg.feedback.settings, tcfg(m, a),
                             replace_other_run=True)
            rounds = [{k: st.rel(v, keep=True) if k in ("model", "next_model", "next_store") else v
                       for k, v in rd.items()} for rd in r.rounds]
            return {"model": st.rel(r.model_path), "converged": r.converged, "rounds": rounds}

        stage = f"feedback_{name}"
        res = st.run(stage, fb)
        models[name] = st.path(stage, res["model"])
        stores += [str(fb_dir / f"round_{r['round']}" / "resim.h5") for r in res["rounds"]]

    ecfg = EvalConfig(machines={MACHINE_NAMES[n][2]: str(p) for n, p in models.items()}, test_store=str(test_path),
                      mock_stores=stores, out=str(out / "evaluation"),
                      check_model=None if check is None else str(check),
                      # every [test] n_test spectrum is scored: [feedback] n_test sizes the loop's rounds only (the
                      # evaluation took the first [feedback] n_test of the test set until session 19, walk-through)
                      feedback=replace(cfg.feedback.settings, n_test=None))
    report_path = Path(ecfg.out) / "report.json"
    st.run("evaluate", lambda resume: (evaluate(ecfg), st.rel(report_path))[1])
    report = json.loads(report_path.read_text())
    measured = None
    if cfg.measured.enabled:
        from crnet.evaluate.measured import predict_measured

        measured = st.run("measured", lambda resume: predict_measured(
            {n: str(p) for n, p in models.items()}, out / "measured", scan_path, dataset=cfg.measured.dataset,
            sim=cfg.sim(), progress=cfg.run.progress))
    atomic_json(out / "timings.json", st.timings)
    return {"timings": st.timings, "skipped": list(st.skipped), "resumed": list(st.resumed),
            "killed_runs_s": dict(st.killed_runs), "report": report, "measured": measured}


FIT_SETS: tuple[str, ...] = ("start", "start_cov")
"""The [scan] entries the fit stage sets: not checked before the fit has run (:func:`_check_stages`)."""


def _check_stages(st: _Stages, cfg: PipelineConfig, scan_path: Path, before_fit: bool = False) -> None:
    """Refuse (ValueError, nothing written) a marker of a planned stage written under other settings, and an
    existing scan store this config cannot extend. ``before_fit``: the fit's marker too, and the [scan] entries the
    fit sets (:data:`FIT_SETS`) left out (after the fit, its marker holds the scan's start as the user gave it)."""
    ignore = FIT_SETS if before_fit else ()
    names = (["fit"] if before_fit else []) + planned_stages(cfg)
    done = {name: st.check(name, tuple(f"scan.{k}" for k in ignore)) for name in names}
    if not done["scan"]:
        _check_scan_store(scan_path, cfg.scan, ignore)


def _check_scan_store(path: Path, scan: ScanConfig, ignore: tuple[str, ...] = ()) -> None:
    """Before anything is written: the refusal :func:`crnet.scan.runner.run_scan` (resume) would give for an
    existing store ``path`` this scan config cannot extend (another design, n_points, seed, grid, ...; only
    crnet.scan.runner.RESUME_MUTABLE entries, such as an MCMC scan's n_steps, may change). ``ignore``: entries set
    by the fit that has not run yet (:data:`FIT_SETS`); a store started without a fit's start_cov is refused then."""
    from crnet.scan.runner import _check_resume_config
    from crnet.store import MockStore, StoreError

    if not path.exists():
        return
    with MockStore.open(path, "r") as store:
        try:
            _check_resume_config(store, scan, ignore)
            if "start_cov" in ignore and store.attrs().get("config", {}).get("start_cov") is None:
                raise StoreError(f"{path}: the store was not started from a fit (no start_cov) and [fit] enabled "
                                 "sets one")
        except StoreError as exc:
            raise ValueError(f"{exc}; nothing was written: only an MCMC scan extends in place (a larger [scan] "
                             "n_steps), any other [scan] change needs another [run] out") from None


def _run_fit(cfg: PipelineConfig) -> dict[str, Any]:
    from crnet.scan.fit import FitConfig, fit_best
    from crnet.scan.models import PropagateModel
    from crprop.solvers import DEFAULT_TOL

    s = cfg.scan
    tol = DEFAULT_TOL if cfg.fit.tol is None else cfg.fit.tol
    model = PropagateModel(s.grid, s.mode, s.backend, tol, s.dataset, warm_start=False, max_steps=s.max_steps)
    res = fit_best(model, FitConfig(start=cfg.fit.start or s.start, max_evaluations=cfg.fit.max_evaluations),
                   progress=cfg.run.progress)
    path = res.save(cfg.out / "fit.json")
    return {"path": str(path), "chi2": res.chi2, "success": res.success, "n_models": res.n_models}


def _scan_from_fit(cfg: PipelineConfig, fit_stage: dict[str, Any]) -> ScanConfig:
    """The scan config with start / start_cov from the fit (fit.json is the record; deterministic on resume)."""
    import dataclasses

    from crnet.scan.fit import FitResult

    start, cov = FitResult.load(fit_stage["path"]).scan_start(cfg.scan.temperature)
    return dataclasses.replace(cfg.scan, start=start, start_cov=cov)


def _seeds(cfg: PipelineConfig) -> dict[str, int]:
    """Every seed the run uses, derived ones included."""
    from crnet.evaluate.report import ORACLE_SEED_OFFSET
    from crnet.machines.training import ENSEMBLE_SEED_STRIDE

    t = cfg.train
    return {"run": cfg.run.seed, "scan": cfg.scan.seed, "train": cfg.run.seed,
            "machine_b_pseudodata": cfg.run.seed,
            "ensemble_members": [cfg.run.seed + ENSEMBLE_SEED_STRIDE * k for k in range(t.ensemble)],
            "test_pseudodata": cfg.test.seed if cfg.test.seed is not None else cfg.run.seed + TEST_SEED_OFFSET,
            "feedback_pseudodata": cfg.run.seed + FEEDBACK_SEED_OFFSET,
            "feedback_and_evaluation_noise": cfg.feedback.settings.seed,
            "oracle": cfg.feedback.settings.seed + ORACLE_SEED_OFFSET}


def planned_stages(cfg: PipelineConfig) -> list[str]:
    """The stages ``cfg`` runs after the fit, in order (their marker names)."""
    names = ["scan"] + [f"train_{n}" for n in cfg.train.machines] + (["train_check"] if cfg.train.check else [])
    names.append("test_pseudodata")
    if cfg.feedback.machines:
        names += ["feedback_pseudodata"] + [f"feedback_{n}" for n in cfg.feedback.machines]
    return names + ["evaluate"] + (["measured"] if cfg.measured.enabled else [])


def _write_resolved_config(out: Path, cfg: PipelineConfig, st: _Stages) -> Callable[[], None]:
    """resolved_config.json: this config and its seeds, and one more entry in ``invocations`` (module docstring):
    this run's start, versions, the settings that say how and where it runs (``run_settings``: the
    :data:`crnet.pipeline_stages.NOT_RESULT_SETTINGS`, which may differ between the runs of one directory, and the
    thread counts in effect) and ``stages_run``, the stages it ran (resumed ones included; the fit's too), kept
    current by the returned callback, called after each stage it finishes (the top-level ``config`` is the latest
    run's)."""
    import numba
    import torch

    path = out / "resolved_config.json"
    previous = json.loads(path.read_text()).get("invocations", []) if path.is_file() else []
    flat = flatten(config_dict(cfg))
    entry: dict[str, Any] = {
        "started": time.strftime("%Y-%m-%dT%H:%M:%S%z"), "versions": versions(st.code.get("source_sha256")),
        "run_settings": {**{k: flat.get(k) for k in NOT_RESULT_SETTINGS},
                         "torch_threads": torch.get_num_threads(), "numba_threads": numba.get_num_threads()},
        "stages_run": []}

    def write() -> None:
        entry["stages_run"] = list(st.ran)
        atomic_json(path, {"config": asdict(cfg), "seeds": _seeds(cfg), "versions": entry["versions"],
                           "invocations": [*previous, entry]})

    write()
    return write
