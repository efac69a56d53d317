"""The TOML configuration of ``crnet pipeline`` (:mod:`crnet.pipeline`): :class:`PipelineConfig`, its sections
and their checks, :func:`load_config`, the machine names and the seed offsets derived from the [run] seed.

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
  crnet.scan.models.GridConfig; dz_kpc must leave an interior z node for the prior box's smallest halo, 1 kpc:
  dz_kpc <= 1 always does, and z_stretch_factor / dz_max_kpc need z_uniform_half_kpc);
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
* ``[test]``: n_test (pseudo-spectra of the test set, every one scored by the evaluation, and of the feedback
  loop's own ``feedback_pseudo.h5``, whose first [feedback] n_test each round predicts; at least [feedback]
  n_test), seed;
* ``[feedback]``: machines (subset of train.machines), and :class:`crnet.feedback.FeedbackConfig` fields except
  ``sim`` and ``progress`` (re-simulations use the [scan] solver settings, progress is [run]'s); its ``seed`` (closure
  noise of the feedback loop and the evaluation) defaults to the [run] seed, so replicate runs draw their own;
* ``[measured]``: enabled (bool), dataset.

A value a section's checks refuse is named with its section (``[scan] backend must be one of ...``,
``[scan.grid] dz_kpc ...``); these checks run when the config is read, before any file is written."""

from __future__ import annotations

import dataclasses
import re
import tomllib
import typing
import warnings
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

from crnet.config_fields import check_fields, check_seed
from crnet.feedback import FeedbackConfig, SimConfig
from crnet.scan.models import GridConfig, IdleStretchWarning
from crnet.scan.runner import ScanConfig

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


_CLASS_PREFIX = re.compile(r"^[A-Z]\w*(?:\.|: )")
"""A library message's leading 'SamplerConfig.' / 'SamplerConfig: ' (the class in Python terms), which the section
name replaces in a config's message."""


def section_message(name: str, exc: Exception) -> str:
    """A section dataclass's ValueError message prefixed with its section, ``[scan] backend must be one of ...``: the
    library checks name the field only (they are used from Python too), and a config's reader could not tell which
    of [scan], [train], [feedback] had the refused key (walk-through by helper-87, session 21). A message that names
    its section already (it starts with '[') is kept."""
    message = str(exc)
    if message.startswith("["):
        return message
    return f"[{name}] {_CLASS_PREFIX.sub('', message, count=1)}"


def _section(cls: type, raw: Any, name: str) -> Any:
    """Dataclass ``cls`` from the TOML table ``raw`` of section ``name`` ('scan', 'scan.grid'): keys and types
    checked (crnet.config_fields.check_fields), the tables of nested dataclass fields ([scan.grid], [scan.sampler])
    built here as sections of their own, and every ValueError of the dataclass's checks prefixed with the section
    (:func:`section_message`), in this one place. A [scan.grid] table is also checked as a user's grid options
    (:meth:`GridConfig.check_stretch_options`)."""
    if not isinstance(raw, dict):
        raise ValueError(f"[{name}] must be a table of settings, got {raw!r}")
    check_fields(cls, raw, name)
    hints = typing.get_type_hints(cls)
    values = dict(raw)
    for key, value in raw.items():
        nested = [t for t in (typing.get_args(hints[key]) or (hints[key],)) if dataclasses.is_dataclass(t)]
        if nested and isinstance(value, dict):
            values[key] = _section(nested[0], value, f"{name}.{key}")
    try:
        with warnings.catch_warnings():  # an idle stretch option is refused just below, not warned about
            warnings.simplefilter("ignore", IdleStretchWarning)
            section = cls(**values)
        if cls is GridConfig:  # the user's values, not a record of an earlier run (GridConfig.check_stretch_options)
            GridConfig.check_stretch_options(values)
        return section
    except ValueError as exc:
        raise ValueError(section_message(name, exc)) from None


PART_SCAN_KEYS: tuple[str, ...] = ("shard", "n_shards", "chain_offset")
"""ScanConfig fields of one part of a distributed scan (set by crnet.scan.distributed): refused in a pipeline
config, whose scan would silently cover only that part of the design."""


def _check_fit(path: Path, fit: FitSection, scan: ScanConfig) -> None:
    """[fit] enabled: refused (naming the section and key) before anything runs when the fit could not start or its
    result could not start the scan: the fit sets the MCMC chains' start and start_cov, and its start (``[fit]
    start``, else ``[scan] start``, else crml_base) must be 10 finite values strictly inside the prior box
    (:func:`crnet.scan.fit.check_fit_start`, what :func:`crnet.scan.fit.fit_best` requires; it refused them only
    after the stage's marker was written)."""
    from crnet.scan.fit import FitConfig, check_fit_start

    if scan.design != "mcmc":
        raise ValueError(f'{path}: [fit] enabled needs [scan] design = "mcmc" (the fit sets the chains\' start and '
                         f"start_cov), got design {scan.design!r}; set [scan] design = \"mcmc\" or [fit] enabled = "
                         "false")
    key = "[fit] start" if fit.start is not None else "[scan] start (the fit's start when [fit] start is not given)"
    start = fit.start if fit.start is not None else scan.start
    try:
        FitConfig(start=start, max_evaluations=fit.max_evaluations)
    except ValueError as exc:
        raise ValueError(f"{path}: {key}: {_CLASS_PREFIX.sub('', str(exc), count=1)}") from None
    if start is not None:
        check_fit_start(start, f"{path}: {key}")


def load_config(path: Path | str, out: str | None = None) -> PipelineConfig:
    """Read a TOML pipeline config (unknown keys are errors); ``out`` overrides ``[run] out``."""
    path = Path(path)
    try:
        raw = tomllib.loads(path.read_text())
    except (OSError, tomllib.TOMLDecodeError) as exc:
        raise ValueError(f"{path}: cannot read the pipeline config ({exc})") from None
    known = [f.name for f in fields(PipelineConfig)]
    unknown = sorted(set(raw) - set(known))
    if unknown:
        raise ValueError(f"{path}: unknown sections {unknown}; allowed {known}")
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
    scan_raw = raw.get("scan", {})
    for key in PART_SCAN_KEYS:  # a pipeline scans the whole design into one store (review by helper-119)
        if isinstance(scan_raw, dict) and key in scan_raw:
            raise ValueError(f"{path}: [scan] {key} is not a pipeline setting: crnet pipeline scans the whole design "
                             "into one store; remove it (a distributed scan is `crnet scan --workers` or "
                             "--scheduler)")
    if fit.enabled and isinstance(scan_raw, dict) and scan_raw.get("start_cov") is not None:
        raise ValueError(f"{path}: [fit] enabled sets the scan's start_cov; do not give [scan] start_cov too")
    scan = _section(ScanConfig, scan_raw, "scan")
    if fit.enabled:
        _check_fit(path, fit, scan)
    cfg = PipelineConfig(run=run, fit=fit, scan=scan,
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
                         "loop predicts from the first [feedback] n_test of the [test] n_test pseudo-spectra of "
                         "feedback_pseudo.h5; lower [feedback] n_test (or leave it out: all) or raise [test] n_test")
    cfg.feedback.settings.sim = cfg.sim()
    cfg.feedback.settings.progress = cfg.run.progress
    return cfg
