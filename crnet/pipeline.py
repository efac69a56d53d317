"""``crnet pipeline CONFIG``: scan -> train Machines A and B (paper / crnet variants) and the Check Machine
-> feedback loop -> evaluation (-> inference on the measured spectra), from one TOML file.

Config sections (all optional except ``[run] out``; see configs/pipeline_*.toml):

* ``[run]``: out (directory), seed, threads (CPU threads of torch and of the numba solver; 0 = their defaults,
  every core), progress;
* ``[fit]``: enabled (bool), start, max_evaluations, tol (solver; default crprop's 1e-6 whatever the scan's) —
  find the chi2_tot minimum first
  (:mod:`crnet.scan.fit`, on the scan's grid/backend/data set) and start the MCMC chains from its Laplace
  approximation (``start`` = best fit, ``start_cov`` = T C); this replaces a long burn-in;
* ``[scan]``: :class:`crnet.scan.runner.ScanConfig` fields (``[scan.grid]`` = dr_kpc, dz_kpc, ekin_factor and the
  stretched halo z_uniform_half_kpc, z_stretch_factor, dz_max_kpc, the loss stencil loss_scheme and the half-lives
  half_lives ("galprop" or "measured"), see
  crnet.scan.models.GridConfig);
  its grid, solver mode, backend, tol, max_steps and data set are also used for every re-simulation;
* ``[train]``: machines (names ``A-paper``, ``A-crnet``, ``B-paper``, ``B-crnet``), check (bool),
  epochs, batch_size, patience (early stopping of the crnet machines and the Check Machine, default 20; the
  paper machines train every epoch at a constant rate and keep the best validation epoch, as CR-ML's
  ML_Training), n_pseudo (Machine B's pseudo-data), device, input_noise and
  input_noise_machines (train those machines on fresh pseudo-experiment fluctuations of at most this relative
  size, :mod:`crnet.machines.augment`; default off, machines ["A-crnet"]), ensemble and ensemble_machines
  (train those machines as ensembles of this many members whose mean is the prediction; default 1, machines
  ["A-crnet"]), amp (bfloat16 autocast on CUDA; ignored on the CPU), holdout_fraction (> 0: the
  records of a hold-out hash are reserved as central values of the test pseudo-data; Machines A and B
  never train on them, see crnet.pseudodata.holdout_mask; 0 = the paper's protocol, train and test
  pseudo-data drawn from the same central spectra). The feedback loop predicts from its own pseudo-data
  (``feedback_pseudo.h5``: training centres, other noise draws), never from the test set, because it
  retrains on the re-simulations of what it predicts;
* ``[test]``: n_test (pseudo-spectra of the test set, and of the feedback loop's own ``feedback_pseudo.h5``; at
  least [feedback] n_test), seed;
* ``[feedback]``: machines (subset of train.machines), and :class:`crnet.feedback.FeedbackConfig` fields except
  ``sim`` and ``progress`` (re-simulations use the [scan] solver settings, progress is [run]'s); its ``seed`` (closure
  noise of the feedback loop and the evaluation) defaults to the [run] seed, so replicate runs draw their own;
* ``[measured]``: enabled (bool), dataset.

Stages write a marker ``stages/<stage>.json`` (with their wall time, seconds, and their settings,
:func:`stage_settings`: the stage's own config section and every earlier one, except where and how it runs, and for
the fit only the [scan] entries it reads) when done, and ``stages/<stage>.started.json`` (the settings) when they
begin, after the stage's own up-front checks (an existing scan store this config cannot extend is refused before
anything is written); a re-run skips finished stages, refuses a finished or started stage whose settings changed
(naming them; checked for every stage before anything runs or is written, the fit's first since it sets the scan's
start), and resumes the running one. A training stage resumes its checkpoints only when its own started marker was
there, with these settings, before the run began (it was killed while running); otherwise it starts afresh, first
removing what an earlier training to its model file left there (:func:`remove_training_files`: only those files). A
feedback stage resumes the rounds of its own loop (the loop's identity: model, stores and settings by content, so
also after a raised max_rounds) and replaces another loop's (:func:`crnet.feedback.remove_rounds`, once the loop has
locked its directory). The scan always resumes its store (an MCMC scan extends to a larger n_steps); caches keyed by
content (closure tests, oracle draws) are reused when their key matches. Paths in the markers are relative to the
output directory (:data:`MARKER_PATHS`), so a copied or moved run directory uses its own files. A corrupt marker is
refused, naming it. ``resolved_config.json`` next to the outputs holds the resolved config and every derived seed,
and ``invocations``: the time and versions (crnet, torch, numpy, device) of each run that passed those checks, so a
run resumed on another commit or machine says so. A run holds ``<out>/.lock`` (:mod:`crnet.run_lock`) from start to
end: a second run on the same directory is refused."""

from __future__ import annotations

import glob
import json
import platform
import re
import time
import tomllib
from collections.abc import Callable
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

from crnet.config_fields import check_fields, check_seed
from crnet.feedback import FeedbackConfig, SimConfig
from crnet.paths import atomic_write_text
from crnet.provenance import changed_settings, list_settings
from crnet.scan.runner import ScanConfig
from crprop.backends import release_cached_device_memory

MACHINE_NAMES: dict[str, tuple[str, str, str]] = {
    # config name -> (machine, arch, report label)
    "A-paper": ("A", "paper", "Machine A (paper)"), "A-crnet": ("A", "crnet", "Machine A (crnet)"),
    "B-paper": ("B", "paper", "Machine B (paper)"), "B-crnet": ("B", "crnet", "Machine B (crnet)"),
}
PAPER_PROTOCOL_MACHINES: tuple[str, ...] = tuple(n for n, (_, arch, _) in MACHINE_NAMES.items() if arch == "paper")
"""Machines trained with CR-ML's protocol (every epoch at a constant rate, crnet.machines.training.TrainConfig):
[train] patience is not theirs, neither for their training nor for their stages' settings."""
TEST_SEED_OFFSET = 1_000_003
"""Added to the run seed for the test pseudo-data so that it never repeats Machine B's training draws."""
FEEDBACK_SEED_OFFSET = 2_000_029
"""Added to the run seed for the feedback loop's own pseudo-data (neither Machine B's draws nor the test set's)."""
CLOSURE_SEED_OFFSET = 3_000_017
"""Added to the run seed for the closure-test noise of the feedback loop and the evaluation ([feedback] seed when
not given): with the run seed itself it repeated, shifted, the uniform stream of Machine B's training pseudo-data
(review of session 14)."""


@dataclass
class RunSection:
    out: str = "runs/pipeline"
    seed: int = 0
    threads: int = 0
    progress: bool = True

    def __post_init__(self) -> None:
        check_seed(self.seed, "[run] seed")
        if self.threads < 0:
            raise ValueError(f"[run] threads must be >= 0 (0 = every core), got {self.threads}")


@dataclass
class FitSection:
    enabled: bool = False
    start: list[float] | None = None
    max_evaluations: int = 60
    tol: float | None = None
    """Solver tolerance of the fit; None = crprop's default (1e-6), whatever [scan] tol is: the fit's
    forward differences (crnet.scan.fit.FD_STEP_FRACTION) need fluxes accurate to ~1e-6."""

    def __post_init__(self) -> None:
        if self.tol is not None and not (0 < self.tol < 1):
            raise ValueError(f"[fit] tol must lie in (0, 1) (relative residual), got {self.tol}")
        if self.max_evaluations < 1:
            raise ValueError(f"[fit] max_evaluations must be >= 1, got {self.max_evaluations}")


@dataclass
class TrainSection:
    machines: list[str] = field(default_factory=lambda: list(MACHINE_NAMES))
    check: bool = True
    epochs: int | None = None
    batch_size: int | None = None
    patience: int = 20
    n_pseudo: int = 10000
    device: str = "auto"
    holdout_fraction: float = 0.0
    input_noise: float = 0.0
    input_noise_machines: list[str] = field(default_factory=lambda: ["A-crnet"])
    ensemble: int = 1
    ensemble_machines: list[str] = field(default_factory=lambda: ["A-crnet"])
    amp: bool = False

    def __post_init__(self) -> None:
        if self.ensemble < 1:
            raise ValueError(f"[train] ensemble must be >= 1 (members), got {self.ensemble}")
        for key in ("epochs", "batch_size", "patience", "n_pseudo"):
            value = getattr(self, key)
            if value is not None and value < 1:
                raise ValueError(f"[train] {key} must be >= 1, got {value}")
        if not 0.0 <= self.holdout_fraction < 1.0:
            raise ValueError(f"[train] holdout_fraction must lie in [0, 1), got {self.holdout_fraction}")
        if not 0.0 <= self.input_noise < 1.0:
            raise ValueError(f"[train] input_noise must lie in [0, 1) (max relative fluctuation), "
                             f"got {self.input_noise}")
        if self.device not in ("auto", "cpu", "cuda") and not self.device.startswith("cuda:"):
            raise ValueError(f"[train] device must be 'auto', 'cpu', 'cuda' or 'cuda:N', got {self.device!r}")
        for key in ("machines", "input_noise_machines", "ensemble_machines"):
            bad = [m for m in getattr(self, key) if m not in MACHINE_NAMES]
            if bad:
                raise ValueError(f"[train] {key}: unknown {bad}; known {list(MACHINE_NAMES)}")


@dataclass
class TestSection:
    n_test: int = 1000
    seed: int | None = None

    def __post_init__(self) -> None:
        if self.n_test < 1:
            raise ValueError(f"[test] n_test must be >= 1 (pseudo-spectra), got {self.n_test}")
        if self.seed is not None:
            check_seed(self.seed, "[test] seed")


@dataclass
class FeedbackSection:
    machines: list[str] = field(default_factory=lambda: ["A-crnet"])
    settings: FeedbackConfig = field(default_factory=FeedbackConfig)


@dataclass
class MeasuredSection:
    enabled: bool = True
    dataset: str = "paper"

    def __post_init__(self) -> None:
        from crnet.data.registry import DATASETS

        if self.dataset not in DATASETS:
            raise ValueError(f"[measured] dataset: unknown data set {self.dataset!r}; known: {', '.join(DATASETS)}")


@dataclass
class PipelineConfig:
    """The resolved pipeline configuration (module docstring)."""

    run: RunSection = field(default_factory=RunSection)
    fit: FitSection = field(default_factory=FitSection)
    scan: ScanConfig = field(default_factory=ScanConfig)
    train: TrainSection = field(default_factory=TrainSection)
    test: TestSection = field(default_factory=TestSection)
    feedback: FeedbackSection = field(default_factory=FeedbackSection)
    measured: MeasuredSection = field(default_factory=MeasuredSection)

    @property
    def out(self) -> Path:
        return Path(self.run.out)

    def sim(self) -> SimConfig:
        s = self.scan
        return SimConfig(grid=s.grid, mode=s.mode, backend=s.backend, tol=s.tol, max_steps=s.max_steps,
                         dataset=s.dataset, batch_size=s.batch_size or s.n_chains)


def _section(cls, raw: Any, name: str):
    if not isinstance(raw, dict):
        raise ValueError(f"[{name}] must be a table of settings, got {raw!r}")
    check_fields(cls, raw, name)
    return cls(**raw)


def load_config(path: Path | str, out: str | None = None) -> PipelineConfig:
    """Read a TOML pipeline config (unknown keys are errors); ``out`` overrides ``[run] out``."""
    path = Path(path)
    try:
        raw = tomllib.loads(path.read_text())
    except (OSError, tomllib.TOMLDecodeError) as exc:
        raise ValueError(f"{path}: cannot read the pipeline config ({exc})") from None
    unknown = sorted(set(raw) - {f.name for f in fields(PipelineConfig)})
    if unknown:
        raise ValueError(f"{path}: unknown sections {unknown}")
    run = _section(RunSection, raw.get("run", {}), "run")
    if out is not None:
        run.out = out
    fb_raw = dict(raw.get("feedback", {}))
    fb_machines = fb_raw.pop("machines", ["A-crnet"])
    if not (isinstance(fb_machines, list) and all(m in MACHINE_NAMES for m in fb_machines)):
        raise ValueError(f"{path}: [feedback] machines must be a list of {list(MACHINE_NAMES)} (may be empty), got "
                         f"{fb_machines!r}")
    for key, where in (("sim", "the [scan] grid, mode, backend, tol, max_steps and dataset"),
                       ("progress", "[run] progress")):
        if key in fb_raw:
            raise ValueError(f"{path}: [feedback] {key} is not a setting of its own: re-simulations take {where}")
    fb_raw.setdefault("seed", run.seed + CLOSURE_SEED_OFFSET)  # replicate runs get their own closure noise
    fit = _section(FitSection, raw.get("fit", {}), "fit")
    if fit.enabled and raw.get("scan", {}).get("start_cov") is not None:
        raise ValueError(f"{path}: [fit] enabled sets the scan's start_cov; do not give [scan] start_cov too")
    cfg = PipelineConfig(run=run, fit=fit, scan=_section(ScanConfig, raw.get("scan", {}), "scan"),
                         train=_section(TrainSection, raw.get("train", {}), "train"),
                         test=_section(TestSection, raw.get("test", {}), "test"),
                         feedback=FeedbackSection(fb_machines, _section(FeedbackConfig, fb_raw, "feedback")),
                         measured=_section(MeasuredSection, raw.get("measured", {}), "measured"))
    missing = [m for m in cfg.feedback.machines if m not in cfg.train.machines]
    if missing:
        raise ValueError(f"[feedback] machines {missing} are not trained ([train] machines)")
    fb_n = cfg.feedback.settings.n_test
    if fb_n is not None and fb_n > cfg.test.n_test:  # it would be capped silently (review by helper-51, session 17)
        raise ValueError(f"{path}: [feedback] n_test = {fb_n} exceeds [test] n_test = {cfg.test.n_test}: the feedback "
                         "loop and the evaluation predict from the first [feedback] n_test of the [test] n_test "
                         "pseudo-spectra (feedback_pseudo.h5, test_pseudo.h5); lower [feedback] n_test (or leave "
                         "it out: all) or raise [test] n_test")
    cfg.feedback.settings.sim = cfg.sim()
    cfg.feedback.settings.progress = cfg.run.progress
    return cfg


def versions() -> dict[str, Any]:
    import numpy
    import torch

    from crnet.provenance import code_version

    return {**code_version(), "torch": torch.__version__, "numpy": numpy.__version__,
            "python": platform.python_version(), "platform": platform.platform(),
            "cuda_device": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None}


def _atomic_json(path: Path, obj: Any) -> None:
    atomic_write_text(path, json.dumps(obj, indent=2, default=str))


SECTION_ORDER: tuple[str, ...] = ("run", "fit", "scan", "train", "test", "feedback", "measured")
"""Config sections in the order of the stages that read them: a stage's result depends on its own section and
every one before it (:data:`STAGE_SECTIONS`)."""

STAGE_SECTIONS: dict[str, str] = {"fit": "scan", "scan": "scan", "train": "train", "test_pseudodata": "test",
                                  "feedback_pseudodata": "test", "feedback": "feedback", "evaluate": "feedback",
                                  "measured": "measured"}
"""Stage (name prefix) -> the last config section its result depends on."""

FIT_SCAN_SETTINGS: tuple[str, ...] = ("grid", "mode", "max_steps", "dataset", "start", "temperature")
"""The [scan] entries the fit reads (its solver, data set, start and the temperature of its covariance): extending
the scan (n_steps, chains) does not outdate the fit."""

NOT_RESULT_SETTINGS: tuple[str, ...] = (
    "run.out", "run.threads", "run.progress", "scan.backend", "scan.warm_start", "scan.warm_start_max_gb",
    "train.device", "feedback.settings.progress", "feedback.settings.sim.backend")
"""Settings that say how or where a stage runs, not what it computes: changing them does not outdate a stage."""


def stage_settings(cfg: PipelineConfig, stage: str) -> dict[str, Any]:
    """The flattened settings ({'scan.n_steps': 64, ...}) a finished stage's result depends on."""
    last = next(v for k, v in STAGE_SECTIONS.items() if stage == k or stage.startswith(k + "_"))
    flat: dict[str, Any] = {}

    def walk(prefix: str, value: Any) -> None:
        if isinstance(value, dict):
            for k, v in value.items():
                walk(f"{prefix}.{k}", v)
        elif prefix not in NOT_RESULT_SETTINGS:
            flat[prefix] = value

    full = json.loads(json.dumps(asdict(cfg), default=str))
    if stage == "fit":
        full["scan"] = {k: full["scan"][k] for k in FIT_SCAN_SETTINGS}
    for section in SECTION_ORDER[: SECTION_ORDER.index(last) + 1]:
        walk(section, full[section])
    if stage not in ("evaluate", "measured"):  # a machine's stages do not depend on the other machines
        machine = stage.split("_", 1)[1] if stage.startswith(("train_", "feedback_")) else None
        for key in MACHINE_LIST_SETTINGS:
            members = flat.pop(key, None)
            if machine in MACHINE_NAMES and key in ("train.input_noise_machines", "train.ensemble_machines"):
                flat[f"{key}[{machine}]"] = machine in members
        if machine in PAPER_PROTOCOL_MACHINES:
            flat.pop("train.patience", None)
    return flat


MACHINE_LIST_SETTINGS: tuple[str, ...] = ("train.machines", "train.check", "train.input_noise_machines",
                                          "train.ensemble_machines", "feedback.machines")
"""Settings naming which machines run: a machine's own stages (and the test pseudo-data) depend only on whether
the noise / ensemble lists include it, so adding a machine to a finished run does not outdate the others' stages."""


MARKER_PATHS = "relative to out"
"""Value of a finished marker's ``paths`` entry: the paths its result holds are relative to the output directory,
so a copied or moved run directory uses its own files. Markers without it (written before) hold the paths as
given when they ran (absolute, or relative to that run's working directory): :meth:`_Stages.path` rebases them."""


class _Stages:
    def __init__(self, out: Path, cfg: PipelineConfig) -> None:
        self.out = out
        self.dir = out / "stages"
        self.dir.mkdir(parents=True, exist_ok=True)
        self.timings: dict[str, float] = {}
        self.cfg = cfg
        self.started_before: dict[str, bool] = {}
        """Stage -> whether its started marker was there, with this run's settings, when this run first checked
        it: only then does the stage resume its checkpoints (:meth:`run`)."""
        self.legacy: set[str] = set()
        """Finished stages whose marker holds paths as written before they were relative to out."""

    @staticmethod
    def read_marker(marker: Path) -> dict[str, Any]:
        """A marker's content; ValueError naming it when it cannot be read (a truncated copy, a full disk)."""
        try:
            data = json.loads(marker.read_text())
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise ValueError(f"{marker}: corrupt stage marker ({exc}); delete it to redo the stage") from None
        if not isinstance(data, dict):
            raise ValueError(f"{marker}: corrupt stage marker (a JSON {type(data).__name__}, not an object); delete "
                             "it to redo the stage")
        return data

    def check(self, name: str) -> dict[str, Any] | None:
        """The finished marker of stage ``name`` (None if not finished), after checking that neither it nor a
        started marker was written under other settings (its outputs would be mixed with this config's)."""
        settings = stage_settings(self.cfg, name)
        info = None
        started = False
        for marker, state in ((self.dir / f"{name}.json", "finished"), (self.dir / f"{name}.started.json", "started")):
            if not marker.is_file():
                continue
            data = self.read_marker(marker)
            done_with = data.get("settings")  # None: a marker from before settings were recorded
            diff = [] if done_with is None else changed_settings(done_with, settings)
            if diff:
                scan = (" (an MCMC scan then resumes and extends its store to a larger [scan] n_steps; any other "
                        "[scan] change, such as a Sobol design's n_points, needs another [run] out)"
                        if any(k.startswith("scan.") for k in diff) else "")
                raise ValueError(
                    f"{marker}: stage {name!r} was {state} under other settings ({list_settings(diff)} differ). "
                    f"Use another [run] out, or delete this marker and those of the later stages to redo them{scan}")
            if state == "finished":
                info = data
                if data.get("paths") != MARKER_PATHS:
                    self.legacy.add(name)
            else:
                started = True
        self.started_before.setdefault(name, started)
        return info

    def run(self, name: str, fn: Callable[[bool], Any]) -> Any:
        """Run stage ``name`` unless its marker says it is done with the same settings (:meth:`check`).

        ``fn(resume)``: ``resume`` is True when the stage's started marker was there, with these settings, before
        this run (it was killed while running): only then may it resume its checkpoints; else it starts afresh.
        Paths in its result are to be relative to out (:meth:`rel`). The started marker is written here, so the
        stage's up-front checks belong before the first :meth:`run` (run_pipeline: every marker, and the scan
        store): a refused start leaves nothing behind."""
        info = self.check(name)
        if info is not None:
            self.timings[name] = info["wall_s"]
            return info.get("result")
        resume = self.started_before[name]
        settings = stage_settings(self.cfg, name)
        started = self.dir / f"{name}.started.json"
        _atomic_json(started, {"stage": name, "settings": settings})
        t0 = time.perf_counter()
        result = fn(resume)
        release_cached_device_memory()  # CuPy's cache would starve the next stage's PyTorch on the GPU
        wall = time.perf_counter() - t0
        _atomic_json(self.dir / f"{name}.json", {"stage": name, "wall_s": wall, "result": result,
                                                  "settings": settings, "paths": MARKER_PATHS})
        started.unlink(missing_ok=True)
        self.legacy.discard(name)
        self.timings[name] = wall
        return result

    def rel(self, path: Path | str, keep: bool = False) -> str:
        """``path`` (under out) relative to out, for a marker; one outside out is an error, or with ``keep``
        (entries the pipeline only records) kept as it is."""
        given = Path(path)
        for p, base in ((given, self.out), (given.resolve(), self.out.resolve())):
            try:
                return p.relative_to(base).as_posix()
            except ValueError:
                continue
        if keep:
            return str(path)
        raise ValueError(f"{path}: a stage output outside the output directory {self.out}")

    def path(self, name: str, value: str) -> Path:
        """The file a path in stage ``name``'s marker names: ``out / value``. A marker written before paths were
        relative to out (:data:`MARKER_PATHS`) holds them as that run gave them: a path inside out is used as it
        is; one outside (the directory was copied or moved) is rebased onto out, to the longest tail of it that
        exists under out, and refused (ValueError naming the marker) when none does: never the old directory's
        file."""
        if name not in self.legacy:
            return self.out / value
        given, out = Path(value), self.out.resolve()
        try:
            return self.out / given.resolve().relative_to(out)
        except ValueError:
            pass
        parts = given.parts[1:] if given.is_absolute() else given.parts
        path = next((t for t in (self.out.joinpath(*parts[i:]) for i in range(len(parts))) if t.exists()), None)
        if path is None:
            raise ValueError(f"{self.dir / f'{name}.json'}: {value} lies outside the output directory {self.out} (a "
                             "copied or moved run directory) and no file of that name lies under it; delete this "
                             "marker and those of the later stages to redo them")
        return path


def run_pipeline(cfg: PipelineConfig) -> dict[str, Any]:
    """Run (or resume) every stage; returns {'timings': {stage: s}, 'report': ..., 'measured': ...}.

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
    if cfg.fit.enabled:
        fit = st.run("fit", lambda resume: {**(r := _run_fit(cfg)), "path": st.rel(r["path"])})
        cfg.scan = _scan_from_fit(cfg, {**fit, "path": str(st.path("fit", fit["path"]))})
    for name in planned_stages(cfg):  # every marker checked before anything is written
        st.check(name)
    scan_path = out / "scan.h5"
    if not st.check("scan"):
        _check_scan_store(scan_path, cfg.scan)  # ... and a scan store this config cannot extend
    _write_resolved_config(out, cfg)
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
                      check_model=None if check is None else str(check), feedback=cfg.feedback.settings)
    report_path = Path(ecfg.out) / "report.json"
    st.run("evaluate", lambda resume: (evaluate(ecfg), st.rel(report_path))[1])
    report = json.loads(report_path.read_text())
    measured = None
    if cfg.measured.enabled:
        from crnet.evaluate.measured import predict_measured

        measured = st.run("measured", lambda resume: predict_measured(
            {n: str(p) for n, p in models.items()}, out / "measured", scan_path, dataset=cfg.measured.dataset,
            sim=cfg.sim(), progress=cfg.run.progress))
    _atomic_json(out / "timings.json", st.timings)
    return {"timings": st.timings, "report": report, "measured": measured}


def _check_scan_store(path: Path, scan: ScanConfig) -> None:
    """Before anything is written: the refusal :func:`crnet.scan.runner.run_scan` (resume) would give for an
    existing store ``path`` this scan config cannot extend (another design, n_points, seed, grid, ...; only
    crnet.scan.runner.RESUME_MUTABLE entries, such as an MCMC scan's n_steps, may change)."""
    from crnet.scan.runner import _check_resume_config
    from crnet.store import MockStore, StoreError

    if not path.exists():
        return
    with MockStore.open(path, "r") as store:
        try:
            _check_resume_config(store, scan)
        except StoreError as exc:
            raise ValueError(f"{exc}; nothing was written: only an MCMC scan extends in place (a larger [scan] "
                             "n_steps), any other [scan] change needs another [run] out") from None


TRAINING_FILE = re.compile(r"(\.member\d+)?(\.ckpt|\.init|\.pseudo\.h5)?(\.\d+\.tmp|\.tmp)?")
"""What :func:`crnet.machines.training.train` to ``<model>`` writes beside it, named ``<model>`` + this: its
checkpoint, Machine B's pseudo-data, ensemble members with their checkpoints and warm-start files, and the
temporary files of their atomic writes."""


def remove_training_files(model: Path) -> list[Path]:
    """Remove the model file ``model`` and what training to it left beside it (:data:`TRAINING_FILE`), before a
    training stage starts afresh: a checkpoint of another run would otherwise be resumed (or refused) by the next
    resume of this stage. Only those files: nothing else in the directory is touched. Returns the removed files."""
    removed = []
    if model.is_file():
        removed.append(model)
    for f in model.parent.glob(glob.escape(model.name) + ".*"):
        if f.is_file() and TRAINING_FILE.fullmatch(f.name[len(model.name):]):
            removed.append(f)
    for f in removed:
        f.unlink()
    return removed


def _run_fit(cfg: PipelineConfig) -> dict[str, Any]:
    from crnet.scan.fit import FitConfig, fit_best
    from crnet.scan.models import PropagateModel
    from crprop.solvers import DEFAULT_TOL

    s = cfg.scan
    tol = DEFAULT_TOL if cfg.fit.tol is None else cfg.fit.tol
    model = PropagateModel(s.grid, s.mode, s.backend, tol, s.dataset, warm_start=False, max_steps=s.max_steps)
    res = fit_best(model, FitConfig(start=cfg.fit.start or s.start, max_evaluations=cfg.fit.max_evaluations,
                                    temperature=s.temperature), progress=cfg.run.progress)
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
    from crnet.machines.training import ENSEMBLE_SEED_STRIDE

    t = cfg.train
    return {"run": cfg.run.seed, "scan": cfg.scan.seed, "train": cfg.run.seed,
            "machine_b_pseudodata": cfg.run.seed,
            "ensemble_members": [cfg.run.seed + ENSEMBLE_SEED_STRIDE * k for k in range(t.ensemble)],
            "test_pseudodata": cfg.test.seed if cfg.test.seed is not None else cfg.run.seed + TEST_SEED_OFFSET,
            "feedback_pseudodata": cfg.run.seed + FEEDBACK_SEED_OFFSET,
            "feedback_and_evaluation_noise": cfg.feedback.settings.seed}


def planned_stages(cfg: PipelineConfig) -> list[str]:
    """The stages ``cfg`` runs after the fit, in order (their marker names)."""
    names = ["scan"] + [f"train_{n}" for n in cfg.train.machines] + (["train_check"] if cfg.train.check else [])
    names.append("test_pseudodata")
    if cfg.feedback.machines:
        names += ["feedback_pseudodata"] + [f"feedback_{n}" for n in cfg.feedback.machines]
    return names + ["evaluate"] + (["measured"] if cfg.measured.enabled else [])


def _write_resolved_config(out: Path, cfg: PipelineConfig) -> None:
    """resolved_config.json: this config and its seeds, and one more entry in ``invocations`` (module docstring)."""
    path = out / "resolved_config.json"
    previous = json.loads(path.read_text()).get("invocations", []) if path.is_file() else []
    entry = {"started": time.strftime("%Y-%m-%dT%H:%M:%S%z"), "versions": versions()}
    _atomic_json(path, {"config": asdict(cfg), "seeds": _seeds(cfg), "versions": entry["versions"],
                        "invocations": [*previous, entry]})
