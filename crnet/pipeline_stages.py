"""The stage bookkeeping of ``crnet pipeline`` (:mod:`crnet.pipeline`): stage markers, the settings they record,
what a re-run skips, refuses or resumes, and the removal of an earlier training's files.

Stages write a marker ``stages/<stage>.json`` (with their wall time, seconds, summed over the runs that worked on
the stage, and their settings, :func:`stage_settings`: the stage's own config section and every earlier one, except
where and how it runs, the [train] values of other machines, and for the fit only the [scan] entries it reads) when
done, and
``stages/<stage>.started.json`` (the settings, and the time of this run and of earlier killed ones, kept current by
:class:`crnet.stage_clock.StageClock`) when they begin, after the stage's own up-front checks (an existing scan
store this config cannot extend is refused before anything is written); a re-run skips finished stages, refuses a
finished or started stage whose settings changed (naming them; checked for every stage before anything runs or is
written: with a fit, every stage once before it runs, but for the scan's start / start_cov it sets, and again after
it), and resumes the running one. A training stage resumes its
checkpoints only when its own started marker was there, with these settings, before the run began (it was killed
while running); otherwise it starts afresh, first removing what an earlier training to its model file left there
(:func:`remove_training_files`: only those files). Paths in the markers are relative to the output directory
(:data:`MARKER_PATHS`), so a copied or moved run directory uses its own files. A corrupt marker is refused, naming
it.

A finished marker also records the code that made it (:func:`stage_code`: a digest of the crnet and crprop package
files, with the version and git commit for the reader). A re-run whose package sources differ warns
(:class:`StageCodeChangedWarning`, naming the stage and both) and keeps the result: settings are what a stage's
result is defined by, and a code change (a speed-up, a fix elsewhere, a changed default the config does not name)
may or may not change it, which only the user can judge; refusing would make every code change redo GPU hours of
finished stages. Delete the marker (and the later ones) to redo it."""

from __future__ import annotations

import glob
import json
import re
import warnings
from collections.abc import Callable
from dataclasses import asdict
from pathlib import Path
from typing import Any

from crnet import __version__
from crnet.json_files import read_json_object
from crnet.paths import atomic_write_text
from crnet.pipeline_config import MACHINE_NAMES, PAPER_PROTOCOL_MACHINES, PipelineConfig
from crnet.provenance import changed_settings, git_commit, list_settings, source_sha256
from crnet.stage_clock import StageClock, killed_runs, recorded_killed_runs
from crprop.backends import release_cached_device_memory


def atomic_json(path: Path, obj: Any) -> None:
    atomic_write_text(path, json.dumps(obj, indent=2, default=str))


SECTION_ORDER: tuple[str, ...] = ("run", "fit", "scan", "train", "test", "feedback", "measured")
"""Config sections in the order of the stages that read them: a stage's result depends on its own section and
every one before it (:data:`STAGE_SECTIONS`)."""

STAGE_SECTIONS: dict[str, str] = {"fit": "scan", "scan": "scan", "train": "train", "test_pseudodata": "test",
                                  "feedback_pseudodata": "test", "feedback": "feedback", "evaluate": "feedback",
                                  "measured": "measured"}
"""Stage (name prefix) -> the last config section its result depends on."""

FIT_SCAN_SETTINGS: tuple[str, ...] = ("grid", "mode", "max_steps", "dataset", "start", "temperature")
"""The [scan] entries the fit's stage depends on (its solver, data set and start): extending the scan (n_steps,
chains) does not outdate the fit. The fit does not read ``temperature`` (the scan tempers the fit's covariance when it
starts); it stays listed so that the fit markers already written still match (a changed T then re-runs the fit, which
gives the same result)."""

NOT_RESULT_SETTINGS: tuple[str, ...] = (
    "run.out", "run.threads", "run.progress", "scan.backend", "scan.warm_start", "scan.warm_start_max_gb",
    "scan.batch_size", "train.device", "feedback.settings.progress", "feedback.settings.sim.backend",
    "feedback.settings.sim.batch_size")
"""Settings that say how or where a stage runs, not what it computes: changing them does not outdate a stage.
[scan] batch_size (models per solver call; lowered after a GPU out-of-memory) is one: an MCMC scan never reads it,
a design scan resumes by its point cursor (the same points in the same order; fluxes bitwise equal, chi2 within
rounding, 1e-15, for batch sizes 16 and 4 then 3 after a kill; review by helper-119, session 23), and the feedback
loop's re-simulations (``sim.batch_size``, derived from it) leave it out of their identity too."""


def config_dict(cfg: PipelineConfig) -> dict[str, Any]:
    """``cfg`` as the JSON-able dict the stage markers and resolved_config.json record (paths and such as strings)."""
    return json.loads(json.dumps(asdict(cfg), default=str))


def flatten(value: Any, prefix: str = "") -> dict[str, Any]:
    """``value``'s nested dicts as one dict of dotted keys ({'scan': {'n_steps': 64}} -> {'scan.n_steps': 64});
    ``prefix``: the key of ``value`` itself (a value that is no dict is returned under it)."""
    if not isinstance(value, dict):
        return {prefix: value}
    return {k: v for key, item in value.items() for k, v in flatten(item, f"{prefix}.{key}" if prefix else key).items()}


def stage_settings(cfg: PipelineConfig, stage: str) -> dict[str, Any]:
    """The flattened settings ({'scan.n_steps': 64, ...}) a finished stage's result depends on."""
    last = next(v for k, v in STAGE_SECTIONS.items() if stage == k or stage.startswith(k + "_"))
    full = config_dict(cfg)
    if stage == "fit":
        full["scan"] = {k: full["scan"][k] for k in FIT_SCAN_SETTINGS}
    flat = {k: v for k, v in flatten({s: full[s] for s in SECTION_ORDER[: SECTION_ORDER.index(last) + 1]}).items()
            if k not in NOT_RESULT_SETTINGS}
    if not cfg.fit.enabled:  # a fit that does not run sets nothing: its other settings outdated every stage
        for key in [k for k in flat if k.startswith("fit.") and k != "fit.enabled"]:  # (helper-120, session 23)
            del flat[key]
    if stage not in ("evaluate", "measured"):  # a machine's stages do not depend on the other machines
        machine = stage.split("_", 1)[1] if stage.startswith(("train_", "feedback_")) else None
        for key in MACHINE_LIST_SETTINGS:
            members = flat.pop(key, None)
            if machine in MACHINE_NAMES and key in ("train.input_noise_machines", "train.ensemble_machines"):
                flat[f"{key}[{machine}]"] = machine in members
        if machine in PAPER_PROTOCOL_MACHINES:
            flat.pop("train.patience", None)
        # nor on the [train] values of other machines (review by helper-119, session 23): the pseudo-data stages
        # (machine None) read none of them; markers written before hold them, and keys the code no longer records
        # for a stage are not compared (:meth:`_Stages.check`), so those markers still match
        for key in ("train.input_noise", "train.ensemble"):  # read by the machines of their lists only
            if not flat.get(f"{key}_machines[{machine}]"):
                flat.pop(key, None)
        if MACHINE_NAMES.get(machine, ("",))[0] != "B":  # Machine B's pseudo-data, not Machine A's or the Check's
            flat.pop("train.n_pseudo", None)
    return flat


GRID_SETTING_PREFIXES: tuple[str, ...] = ("scan.grid.", "feedback.settings.sim.grid.")
"""Where a stage's flattened settings hold a GridConfig (the scan's, the re-simulations')."""

SIM_SOLVER_SETTINGS: tuple[str, ...] = ("feedback.settings.sim.tol", "feedback.settings.sim.max_steps")
"""The re-simulations' solver settings that crnet.closure.SimConfig records as None at crprop's defaults."""


def _normalised_settings(settings: Any) -> Any:
    """A marker's flattened settings as this code records them: each grid (:data:`GRID_SETTING_PREFIXES`) through
    :func:`crnet.scan.models.normalised_grid` (markers written before session 19 hold explicit paper values, such as
    z_stretch_factor 1.15, where the settings now hold None), and the re-simulations' tol / max_steps
    (:data:`SIM_SOLVER_SETTINGS`) equal to crprop's defaults (crprop.solvers.DEFAULT_TOL, DEFAULT_MAX_STEPS) as None
    (crnet.closure.SimConfig now records them so; markers written before with an explicit [scan] tol = 1e-6 hold
    the number), as crnet.feedback_state reads a feedback log."""
    if not isinstance(settings, dict):
        return settings
    from crnet.closure import solver_defaults_as_none
    from crnet.scan.models import normalised_grid

    out = dict(settings)
    for prefix in GRID_SETTING_PREFIXES:
        grid = {k[len(prefix):]: v for k, v in settings.items() if k.startswith(prefix)}
        if grid:
            out.update({prefix + k: v for k, v in normalised_grid(grid).items()})
    normal = solver_defaults_as_none(out.get(SIM_SOLVER_SETTINGS[0]), out.get(SIM_SOLVER_SETTINGS[1]))
    out.update({key: value for key, value in zip(SIM_SOLVER_SETTINGS, normal, strict=True) if key in out})
    return out


MACHINE_LIST_SETTINGS: tuple[str, ...] = ("train.machines", "train.check", "train.input_noise_machines",
                                          "train.ensemble_machines", "feedback.machines")
"""Settings naming which machines run: a machine's own stages (and the test pseudo-data) depend only on whether
the noise / ensemble lists include it, so adding a machine to a finished run does not outdate the others' stages."""


SCAN_STORE = "scan.h5"
"""The scan store of a pipeline run, under its output directory."""


def _redo_hint(diff: list[str], fit_enabled: bool, store: Path) -> str:
    """How to redo the stages under the changed settings ``diff``, and what that does to the scan store ``store``:
    it resumes only under the store's own config except crnet.scan.runner.RESUME_MUTABLE entries (an MCMC scan
    extends to a larger n_steps); any other [scan] change (a Sobol design's n_points, the start / start_cov a [fit]
    sets) needs another [run] out or the store deleted with the markers, as do [fit] enabled and, with the fit on,
    its other settings (they set the start). Deleting the markers alone would be refused by the store then."""
    from crnet.scan.runner import RESUME_MUTABLE

    fixed = [k for k in diff if k == "fit.enabled" or (fit_enabled and k.startswith("fit."))
             or (k.startswith("scan.") and k.split(".")[1] not in RESUME_MUTABLE)]
    if fixed:
        return (f", and the scan store cannot be resumed under another {list_settings(fixed)}: use another [run] out, "
                f"or delete this marker, those of the later stages and the scan store {store} to redo them (only an "
                "MCMC scan's [scan] n_steps can grow in place)")
    hint = ". Use another [run] out, or delete this marker and those of the later stages to redo them"
    if "scan.n_steps" in diff:
        return hint + " (an MCMC scan then resumes and extends its store to a larger [scan] n_steps)"
    return hint


class StageCodeChangedWarning(UserWarning):
    """A finished stage was made by other code (package sources) than the code now running; its result is kept."""


def stage_code() -> dict[str, Any]:
    """The code a stage's result is recorded as made by: {'crnet': version, 'source_sha256': digest of the crnet and
    crprop packages (:func:`crnet.provenance.source_sha256`), 'git_commit': hash or None (for the reader only)}."""
    return {"crnet": __version__, "source_sha256": source_sha256(), "git_commit": git_commit()}


def code_difference(recorded: Any, current: dict[str, Any]) -> str | None:
    """How ``recorded`` (a marker's ``code`` entry) differs from ``current``, as 'crnet 0.1.0 (commit 1a2b3c4d5e6f,
    sources 0a1b2c3d4e5f) -> crnet 0.1.0 (sources 9f8e7d6c5b4a)', or None when their package sources agree or a
    marker holds no source digest (written before it was recorded): the sources decide, not the commit (a commit that
    changes only tests or documents changes no result; an uncommitted edit may)."""
    if not isinstance(recorded, dict) or not recorded.get("source_sha256"):
        return None
    if recorded["source_sha256"] == current.get("source_sha256"):
        return None

    def name(code: dict) -> str:
        parts = [f"commit {code['git_commit'][:12]}"] if code.get("git_commit") else []
        parts.append(f"sources {str(code.get('source_sha256'))[:12]}")
        return f"crnet {code.get('crnet')} ({', '.join(parts)})"

    return f"{name(recorded)} -> {name(current)}"


MARKER_PATHS = "relative to out"
"""Value of a finished marker's ``paths`` entry: the paths its result holds are relative to the output directory,
so a copied or moved run directory uses its own files. Markers without it (written before) hold the paths as
given when they ran (absolute, or relative to that run's working directory): :meth:`_Stages.path` rebases them."""


class _Stages:
    def __init__(self, out: Path, cfg: PipelineConfig, code: dict[str, Any] | None = None) -> None:
        self.out = out
        self.code = stage_code() if code is None else code
        """The code this run records in its finished markers and compares theirs with (:func:`stage_code`)."""
        self.code_warned: set[str] = set()
        self.dir = out / "stages"
        self.dir.mkdir(parents=True, exist_ok=True)
        self.timings: dict[str, float] = {}
        """Stage -> wall time (s) of every run that worked on it: the run that finished it (this one, or an earlier
        one for a finished stage that is skipped) and the runs killed before (:attr:`killed_runs`)."""
        self.skipped: list[str] = []
        """Stages found finished and not run again by this run (their timings are the earlier runs')."""
        self.resumed: list[str] = []
        """Stages finished by an invocation that resumed them after a kill (or an error)."""
        self.killed_runs: dict[str, list[float | None]] = {}
        """Resumed stage -> the time (s) of each run killed before the one that finished it, as its started marker's
        heartbeat left it (:mod:`crnet.stage_clock`: undercounted by at most HEARTBEAT_S per kill); None for a run
        whose time is unknown (killed under code before session 20). The known ones are in :attr:`timings`."""
        self.cfg = cfg
        self.started_before: dict[str, bool] = {}
        """Stage -> whether its started marker was there, with this run's settings, when this run first checked
        it: only then does the stage resume its checkpoints (:meth:`run`)."""
        self.legacy: set[str] = set()
        """Finished stages whose marker holds paths as written before they were relative to out."""
        self.ran: list[str] = []
        """Stages this run ran (not skipped), in order, once each has finished."""
        self.after_stage: Callable[[], None] | None = None
        """Called after each stage this run finishes (crnet.pipeline: resolved_config.json's invocation entry)."""

    @staticmethod
    def read_marker(marker: Path) -> dict[str, Any]:
        """A marker's content; ValueError naming it when it cannot be read (a truncated copy, a full disk)."""
        return read_json_object(marker, "stage marker", hint="delete it to redo the stage")

    def check(self, name: str, ignore: tuple[str, ...] = ()) -> dict[str, Any] | None:
        """The finished marker of stage ``name`` (None if not finished), after checking that neither it nor a
        started marker was written under other settings (its outputs would be mixed with this config's).
        ``ignore``: settings not compared (the scan's start / start_cov before the fit that sets them has run)."""
        settings = {k: v for k, v in stage_settings(self.cfg, name).items() if k not in ignore}
        info = None
        started = False
        for marker, state in ((self.dir / f"{name}.json", "finished"), (self.dir / f"{name}.started.json", "started")):
            if not marker.is_file():
                continue
            data = self.read_marker(marker)
            done_with = _normalised_settings(data.get("settings"))  # None: a marker from before settings were recorded
            # only the settings this code has for the stage: one it no longer records (train.patience for the paper
            # machines, dropped in session 18) is no change by the user; the code change itself warns below
            diff = [] if done_with is None else changed_settings(done_with, settings, keys=settings)
            if diff:
                raise ValueError(
                    f"{marker}: stage {name!r} was {state} under other settings ({list_settings(diff)} differ)"
                    f"{_redo_hint(diff, self.cfg.fit.enabled, self.out / SCAN_STORE)}")
            if state == "finished":
                info = data
                changed = code_difference(data.get("code"), self.code)
                if changed and name not in self.code_warned:
                    self.code_warned.add(name)
                    warnings.warn(StageCodeChangedWarning(
                        f"{marker}: stage {name!r} was finished by other code ({changed}); its result is kept, as "
                        "its settings are unchanged. Delete this marker and those of the later stages to redo them "
                        "with this code"), stacklevel=2)
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
        stage's up-front checks belong before the first :meth:`run` (:func:`crnet.pipeline.run_pipeline`: every
        marker, and the scan store): a refused start leaves nothing behind."""
        info = self.check(name)
        if info is not None:
            if name not in self.skipped:
                self.skipped.append(name)
            self._record(name, info["wall_s"], bool(info.get("resumed")), recorded_killed_runs(info))
            return info.get("result")
        resume = self.started_before[name]
        settings = stage_settings(self.cfg, name)
        started = self.dir / f"{name}.started.json"
        killed = killed_runs(self.read_marker(started)) if resume and started.is_file() else []
        clock = StageClock(lambda content: atomic_json(started, content),
                           {"stage": name, "settings": settings, "killed_runs_s": killed})
        with clock:  # the started marker's elapsed_s follows this run: a kill leaves its time to the next run
            result = fn(resume)
            release_cached_device_memory()  # CuPy's cache would starve the next stage's PyTorch on the GPU
        wall = clock.elapsed_s + sum(t for t in killed if t is not None)
        atomic_json(self.dir / f"{name}.json", {
            "stage": name, "wall_s": wall, "this_run_s": clock.elapsed_s, "killed_runs_s": killed,
            "resumed": resume, "result": result, "settings": settings, "paths": MARKER_PATHS, "code": self.code})
        started.unlink(missing_ok=True)
        self.legacy.discard(name)
        self._record(name, wall, resume, killed)
        self.ran.append(name)
        if self.after_stage is not None:
            self.after_stage()
        return result

    def _record(self, name: str, wall: float, resumed: bool, killed: list[float | None]) -> None:
        self.timings[name] = wall
        if resumed and name not in self.resumed:
            self.resumed.append(name)
        if resumed:
            self.killed_runs[name] = killed

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
