"""Input checks of the feedback loop (:func:`crnet.feedback.run_feedback`), made before anything is computed.

:func:`check_feedback_inputs` is every check the loop makes before round 0: both stores hold committed records, the
training store is the model's (:func:`check_training_store`), the model was trained against the loop's data set
(:func:`check_model_dataset`), and the re-simulations repeat the training store's simulations
(:func:`check_resimulation_settings`, the rule the retraining's merge applies) on the model's energy grid. Each
refusal is a :class:`FeedbackInputError` naming the argument, the file and the allowed value.
:func:`sim_from_store` gives the re-simulation settings that repeat a store's.

Each store is opened once for what the checks read of it (:class:`StoreSetup`, :func:`read_store_setup`) and the
training store hashed once (:class:`CheckedInputs` hands the digest on to :func:`crnet.feedback.loop_identity`); the
checks also take a path alone, reading it themselves.
"""

from __future__ import annotations

import json
import warnings
from collections.abc import Mapping
from dataclasses import dataclass, fields
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from crnet.data import DEFAULT_DATASET
from crnet.features import check_same_grid
from crnet.paths import same_file
from crnet.scan.models import GridConfig
from crnet.store import MockStore, StoreError
from crnet.store_read import NOT_RECORDED, merge_differences

if TYPE_CHECKING:
    from crnet.feedback import SimConfig
    from crnet.machines.modelfile import ModelFile


class FeedbackInputError(ValueError):
    """An input of :func:`crnet.feedback.run_feedback` that cannot work, found before any re-simulation.

    ``argument`` names the input as the library does: 'model', 'train_store', 'test_store', a SimConfig field
    ('sim.grid.dz_kpc', 'sim.tol', 'sim.max_steps', 'sim.mode', 'sim.dataset') or 'sim' (a setting no field
    sets). The message is ``f"{argument} {detail}"``; :meth:`named` puts a caller's name for the input (a
    command-line option) in its place."""

    def __init__(self, argument: str, detail: str) -> None:
        self.argument, self.detail = argument, detail
        super().__init__(f"{argument} {detail}")

    def named(self, names: Mapping[str, str]) -> str:
        """The message with ``names[argument]`` (when given) for the argument."""
        return f"{names.get(self.argument, self.argument)} {self.detail}"


_GRID_FIELDS: tuple[str, ...] = tuple(f.name for f in fields(GridConfig))


def _show(value: Any) -> str:
    return NOT_RECORDED if value is NOT_RECORDED else repr(value)


@dataclass(frozen=True)
class StoreSetup:
    """What the input checks read of a store, in one opening (:func:`read_store_setup`): its committed records, root
    attributes, species and energy grid (GeV/n)."""

    path: Path
    n_complete: int
    attrs: dict[str, Any]
    species: list[str]
    energies: np.ndarray


def read_store_setup(path: Path | str, argument: str = "train_store") -> StoreSetup:
    """:class:`StoreSetup` of the store ``path``; FeedbackInputError naming ``argument`` when it is missing, foreign or
    corrupt."""
    try:
        return _read_setup(path)
    except StoreError as exc:
        raise FeedbackInputError(argument, str(exc)) from None


def _read_setup(path: Path | str) -> StoreSetup:
    """:class:`StoreSetup` of the store ``path``; StoreError when it is missing, foreign or corrupt."""
    with MockStore.open(path, "r") as st:
        return StoreSetup(Path(path), st.n_complete, st.attrs(), list(st.species), st.ekin_gev_per_n)


def check_test_store(setup: StoreSetup) -> None:
    """FeedbackInputError 'test_store' unless ``setup`` is a pseudo-data store (`crnet pseudodata`): the closure
    tests (paper Sec. 4.5) predict from pseudo-spectra, noisy copies of collected mocks. A scan's noise-free store was
    accepted, its Tables 3 and 4 printed as the pseudo-data test's (review by helper-112, session 23)."""
    if not setup.attrs.get("pseudo_data", False):
        raise FeedbackInputError("test_store", f"{setup.path}: is no pseudo-data store (its attribute pseudo_data is "
                                 "not set); the closure tests predict from pseudo-spectra: make them with `crnet "
                                 "pseudodata` from the scan's store")


def _setup_of(store: Path | str, setup: StoreSetup | None) -> StoreSetup:
    """``setup`` when given (read before, of ``store``), else ``store``'s read now (FeedbackInputError
    'train_store')."""
    return setup if setup is not None else read_store_setup(store, "train_store")


@dataclass(frozen=True)
class CheckedInputs:
    """What :func:`check_feedback_inputs` read while checking, for the loop to use instead of reading it again: both
    stores' :class:`StoreSetup` and the training store's sha256 (:func:`crnet.feedback.loop_identity`)."""

    train: StoreSetup
    test: StoreSetup
    train_store_sha256: str


def sim_from_store(store: Path | str, backend: str = "auto", batch_size: int = 64,
                   setup: StoreSetup | None = None) -> SimConfig:
    """The re-simulation settings that repeat the simulations of ``store`` (a scan, a merged or pseudo-data store
    of it): grid, solver mode, tolerance, step cap and data set from its root attributes ``grid`` (what
    :meth:`crnet.scan.models.PropagateModel.store_fields` recorded, the tolerance and step cap included),
    ``solver_mode`` and ``dataset`` - the attributes the retraining's merge compares (MERGE_KEYS), which every
    merge keeps. A value equal to the paper galdef's (or the solver's default) is left unset (None), as a scan
    given only its changes records them. ``backend`` and ``batch_size`` (models per propagate call) are how the
    re-simulations run, not what they compute. FeedbackInputError ('train_store') for a store that is no crprop
    scan (e.g. one of a FunctionModel) or whose solver mode cannot re-simulate. ``setup``: the store's
    :class:`StoreSetup` when already read (not opened again)."""
    from crnet.feedback import SimConfig

    attrs = _setup_of(store, setup).attrs
    grid = attrs.get("grid")
    if not isinstance(grid, dict) or "dr_kpc" not in grid:
        raise FeedbackInputError("train_store", f"{store}: its attribute 'grid' = {grid!r} is not a crprop "
                                 "propagation grid (no 'dr_kpc'); only stores of crprop scans can be re-simulated")
    changes = {name: grid[name] for name in _GRID_FIELDS if name != "half_lives" and name in grid}  # GridConfig
    tol, max_steps = grid.get("tol"), grid.get("max_steps")
    try:
        return SimConfig(grid=GridConfig(**changes, half_lives=grid.get("half_lives")),
                         mode=str(attrs.get("solver_mode")), backend=backend,
                         tol=None if tol is None else float(tol),  # SimConfig spells the defaults None
                         max_steps=None if max_steps is None else int(max_steps),
                         dataset=str(attrs.get("dataset", DEFAULT_DATASET)), batch_size=batch_size)
    except ValueError as exc:
        raise FeedbackInputError("train_store", f"{store}: {exc}") from None


def _setting_argument(key: str) -> str:
    """The SimConfig field that sets the store attribute (or ``grid`` entry) ``key``; 'sim' when none does."""
    if key.startswith("grid."):
        name = key[len("grid."):]
        if name in _GRID_FIELDS:
            return f"sim.grid.{name}"
        return {"tol": "sim.tol", "max_steps": "sim.max_steps"}.get(name, "sim")
    return {"solver_mode": "sim.mode", "dataset": "sim.dataset"}.get(key, "sim")


RETRAINING_CONSEQUENCE = "the retraining cannot merge them into it"
"""Why :func:`check_resimulation_settings` refuses, by default: the feedback loop merges its re-simulations."""


def check_resimulation_settings(sim: SimConfig, store: Path | str, consequence: str = RETRAINING_CONSEQUENCE,
                                setup: StoreSetup | None = None) -> None:
    """Refuse (FeedbackInputError naming the SimConfig field and both values) re-simulation settings whose records
    the retraining could not merge into ``store``: the species, energies and MERGE_KEYS attributes (grid with its
    tolerance and step cap, cross sections, solver mode, data set) that ``sim.model()`` would record must equal
    the store's, as :func:`crnet.store_read.merge_stores` demands. Where several differ the first settable one is
    named (grid options, tol, max_steps, mode, dataset) and the others listed. ``consequence`` ends the message:
    what goes wrong otherwise (the feedback loop's merge; crnet evaluate passes its own). ``setup``: the store's
    :class:`StoreSetup` when already read (not opened again)."""
    model = sim.model()
    ours = json.loads(json.dumps(model.store_fields(), default=str))  # as a store's JSON attributes read back
    read = _setup_of(store, setup)
    attrs, species, energies = read.attrs, read.species, read.energies
    diffs = merge_differences(ours, attrs)
    if diffs:
        order = {f"sim.grid.{n}": i for i, n in enumerate(_GRID_FIELDS)}
        order.update({"sim.tol": 90, "sim.max_steps": 91, "sim.mode": 92, "sim.dataset": 93, "sim": 99})
        diffs.sort(key=lambda d: order[_setting_argument(d[0])])
        key, a, b = diffs[0]
        argument = _setting_argument(key)
        also = f"; also differ: {', '.join(d[0] for d in diffs[1:])}" if len(diffs) > 1 else ""
        lead = f"{key}: {_show(a)}" if argument == "sim" else _show(a)
        raise FeedbackInputError(argument, f"{lead} differs from the store's {_show(b)} ({store} records {key} = "
                                 f"{_show(b)}{also}); the re-simulations must repeat the store's simulations, or "
                                 f"{consequence}")
    if list(model.species) != species:
        raise FeedbackInputError("sim", f"species {list(model.species)} differ from the store's {species} ({store})")
    if not np.array_equal(model.ekin_gev_per_n, energies):
        raise FeedbackInputError("sim", f"energy grid ({model.ekin_gev_per_n.size} bins) differs from the store's "
                                 f"({energies.size} bins, {store})")


def _training_pseudo_file(model_path: Path, record: Mapping[str, Any]) -> Path | None:
    """Machine B's training pseudo-data: the recorded file, else the file of that name beside the model (a moved
    run directory), whichever exists with the recorded sha256; None when neither does."""
    from crnet.machines.modelfile import file_sha256

    recorded = Path(str(record.get("path", "")))
    for candidate in (recorded, model_path.parent / recorded.name):
        if candidate.is_file() and file_sha256(candidate) == record.get("sha256"):
            return candidate
    return None


def _made_from(ps: MockStore, store: Path, n_complete: int) -> bool:
    """Whether every record of the open pseudo-data store ``ps`` has its central parameters in ``store`` (of
    ``n_complete`` committed records) at the record number it names (``step``: :func:`crnet.pseudodata.
    make_pseudodata`)."""
    steps = ps.read("step")
    if steps.size == 0 or steps.min() < 0 or steps.max() >= n_complete:
        return False
    params = ps.read("params")
    with MockStore.open(store, "r") as st:
        return bool(np.array_equal(st.read("params", steps), params))


def check_training_store(model_path: Path | str, metadata: Mapping[str, Any], train_store: Path | str,
                         machine: str | None = None, *, sha256: str | None = None,
                         setup: StoreSetup | None = None) -> None:
    """Refuse (FeedbackInputError 'train_store', naming both files and what to pass) a ``train_store`` that is not
    the store the model learnt from, using the model's metadata ``training_store`` (:func:`crnet.machines.training.
    train`: path, sha256, pseudo_data, source_store).

    Decision (review by helper-51, session 17): refuse, never warn. The loop retrains on ``train_store`` plus the
    re-simulations, from the model's weights and feature scaler and with its validation split (paper Sec. 4.5: the
    re-simulations are *added* to the training set); another store would silently swap the training set under a warm
    start fitted to the first. A model for another store is made with ``crnet train`` on it, then its own loop runs.

    * Machine A (``machine`` 'A': trained on mock spectra, or on a pseudo-data file it is then retrained on):
      ``train_store`` must have the recorded sha256. A store that grew or changed since the training is refused
      too (the machine never saw its new records).
    * Machine B (``machine`` 'B': trained on pseudo-data that training made from a scan; the sha256 is the
      pseudo-data's): ``train_store`` must be that scan - the pseudo-data file itself is refused, since each
      retraining makes new pseudo-data of its store and would add noise to noisy spectra. The link is checked by
      content when the pseudo-data file is at hand (recorded path, else beside the model: a moved run directory):
      every pseudo record's centre must be the scan's record it names, and the pseudo-data's simulation attributes
      (:func:`crnet.store_read.merge_differences`: grid, tolerance, solver mode, data set) the scan's. Without the
      file, ``train_store`` must be the recorded ``source_store`` path.

    ``machine``: the model's ('A' or 'B'); None decides by whether it was trained on pseudo-data. ``sha256`` (of
    ``train_store``) and ``setup`` (its :class:`StoreSetup`): what the caller read already, so that the store is not
    hashed or opened again for it.

    A model file without the record (written before it existed) is not checked: a warning says so."""
    from crnet.machines.modelfile import file_sha256

    model_path, train_store = Path(model_path), Path(train_store)
    record = metadata.get("training_store")
    if not isinstance(record, dict) or not record.get("sha256"):
        warnings.warn(f"{model_path}: the model file records no training store; train_store {train_store} is not "
                      "checked against it", stacklevel=2)
        return
    trained_on = Path(str(record.get("path", "")))
    sha = sha256 if sha256 is not None else file_sha256(train_store)
    is_machine_b = machine == "B" if machine is not None else bool(record.get("pseudo_data"))
    if not is_machine_b:
        # Machine A (also one trained on pseudo-data: the loop retrains it on that file, so it must be given)
        if sha != record["sha256"]:
            raise FeedbackInputError("train_store", (
                f"{train_store}: not the store the model {model_path} was trained on ({trained_on}, sha256 "
                f"{record['sha256'][:12]}; this file's is {sha[:12]}): the loop adds re-simulations to the model's "
                f"own training set. Pass {trained_on}, or train a model on {train_store} first"))
        return
    pseudo = _training_pseudo_file(model_path, record)
    if pseudo is not None:
        with MockStore.open(pseudo, "r") as ps:  # once, for its attributes and (below) its records
            _check_against_pseudo(model_path, record, train_store, sha, setup, pseudo, ps)
        return
    source = record.get("source_store")
    if sha == record["sha256"]:
        raise _is_the_pseudo_data(model_path, train_store, source)
    if source is not None and Path(str(source)) == trained_on:
        source = None  # an ensemble's members record the pseudo-data as their source: the scan is named in them only
    if source is not None and same_file(train_store, str(source)):
        return
    named = f"records the scan {source}. Pass that scan, or" if source is not None else "records no scan path:"
    raise FeedbackInputError("train_store", (
        f"{train_store}: cannot be matched to Machine B {model_path}: its pseudo-data {trained_on} are gone and it "
        f"{named} put the pseudo-data file back beside the model"))


def _is_the_pseudo_data(model_path: Path, train_store: Path, source: Any) -> FeedbackInputError:
    return FeedbackInputError("train_store", (
        f"{train_store}: is the pseudo-data Machine B {model_path} was trained on, not the scan they were made "
        f"from ({source}); pass the scan: each retraining makes new pseudo-data of its store"))


def _check_against_pseudo(model_path: Path, record: Mapping[str, Any], train_store: Path, sha: str,
                          setup: StoreSetup | None, pseudo: Path, ps: MockStore) -> None:
    """:func:`check_training_store` of a Machine B whose training pseudo-data ``pseudo`` (open as ``ps``) are at
    hand: ``train_store`` (sha256 ``sha``) must be the scan they were made from."""
    ps_attrs = ps.attrs()
    source = ps_attrs.get("source_store", record.get("source_store"))
    if sha == record["sha256"]:
        raise _is_the_pseudo_data(model_path, train_store, source)
    store = setup if setup is not None else _read_setup(train_store)
    # same records, other simulations (grid, tol ...); the data set the pseudo-data were scored against
    # is no simulation setting (check_model_dataset compares the model's with the loop's)
    differ = [d for d in merge_differences(ps_attrs, store.attrs) if d[0] != "dataset"]
    if not differ and _made_from(ps, train_store, store.n_complete):
        return
    why = (f"its pseudo-data {pseudo} were simulated otherwise ({', '.join(d[0] for d in differ)} differ)"
           if differ else f"its pseudo-data {pseudo} were made from other records ({source})")
    raise FeedbackInputError("train_store", (
        f"{train_store}: not the scan Machine B {model_path} was trained on: {why}. Pass that scan, or train a "
        f"model on {train_store} first"))


def check_model_dataset(model_path: Path | str, metadata: Mapping[str, Any], dataset: str) -> None:
    """:func:`crnet.machines.inference.check_model_dataset` (the rule predict_file applies) before any work, as
    FeedbackInputError 'sim.dataset'."""
    from crnet.machines.inference import check_model_dataset as predict_rule  # imports torch: only when checking

    try:
        predict_rule(metadata, dataset, model_path)
    except ValueError as exc:
        raise FeedbackInputError("sim.dataset", str(exc).removeprefix("dataset ")) from None


def check_feedback_inputs(model_path: Path | str, model: ModelFile, train_store: Path | str,
                          test_store: Path | str, sim: SimConfig) -> CheckedInputs:
    """Every check :func:`crnet.feedback.run_feedback` makes before round 0 (FeedbackInputError naming the argument, the
    file and the allowed value): ``model`` (the loaded :class:`crnet.machines.modelfile.ModelFile` of ``model_path``) is
    a regressor; both stores are readable mock stores with committed records; ``train_store`` is the model's
    (:func:`check_training_store`); ``sim`` repeats its simulations (:func:`check_resimulation_settings`); and the
    model takes spectra on the re-simulations' and the test store's energy grids (GeV/n).

    Each store is opened once for all of these (:func:`read_store_setup`; a Machine B's scan once more, for the
    records its pseudo-data name) and the training store hashed once; what was read is returned
    (:class:`CheckedInputs`: the loop's identity takes the digest from it)."""
    from crnet.machines.modelfile import file_sha256

    if model.is_check:
        raise FeedbackInputError("model", f"{model_path}: is a Check Machine; the feedback loop needs a regressor "
                                 "(Machine A or B)")
    content: dict[str, StoreSetup] = {}
    for argument, path in (("train_store", train_store), ("test_store", test_store)):
        content[argument] = read_store_setup(path, argument)
        if content[argument].n_complete == 0:
            raise FeedbackInputError(argument, f"{path}: holds no committed records")
    check_test_store(content["test_store"])
    train = content["train_store"]
    sha = file_sha256(train_store)
    check_training_store(model_path, model.metadata, train_store, model.machine, sha256=sha, setup=train)
    check_model_dataset(model_path, model.metadata, sim.dataset)
    check_resimulation_settings(sim, train_store, setup=train)
    for argument, path in (("train_store", train_store), ("test_store", test_store)):
        energies = content[argument].energies
        try:
            check_same_grid(model.energies, energies, "its")
        except ValueError as exc:
            raise FeedbackInputError(argument, f"{path}: {exc} ({model_path})") from None
    return CheckedInputs(train, content["test_store"], sha)
