"""Closure test and feedback loop (paper Sec. 4.5, Fig. 1 steps v -> vi -> i, Eq. 4.4).

Closure test of one machine on a pseudo-data store (:mod:`crnet.pseudodata`):

1. predict theta from every pseudo-spectrum (:func:`crnet.machines.inference.predict_file`);
2. re-simulate theta in-process with crprop (:class:`crnet.scan.models.PropagateModel`: the CuPy backend
   on a GPU when ``backend='auto'`` finds one, numpy/numba on CPU); the spectra, chi^2_tot and profiled
   normalisations go into a mock store ``resim.h5`` (resumable, committed batch by batch);
3. make pseudo-data of the new spectra (the paper's noise: every element's spectrum multiplied by
   1 + eps per energy bin, eps ~ U(-max_relative, max_relative), q_C re-profiled) and predict theta';
4. tau_i = (theta'_i - theta_i) / theta_i per parameter (Eq. 4.4), with the breaks as log10(R/MV)
   as in the paper's Table 3 (columns :data:`crprop.params.LOG_PARAM_NAMES`).

A prediction *passes* when mean_i |tau_i| < ``tau_threshold`` (0.1). Predictions that cannot be
re-simulated (R_br1 >= R_br2 after clipping to the prior box) or whose re-simulated spectra are
unusable fail. The loop stops when the share of passing predictions reaches ``target_share`` (0.95);
otherwise the re-simulated (theta, spectra) are appended to the training store (a new file per round,
:func:`crnet.store_read.merge_stores`) and the machine is retrained from the previous round's weights
(warm start: ``TrainConfig.init_from``, fresh optimiser and schedule), up to ``max_rounds`` rounds.

Resume: each round lives in ``<out>/round_<k>/``; finished steps are detected from their files (the
closure arrays ``closure.npz``, the re-simulation store's ``n_complete``, the model file) and the run
log ``<out>/feedback_log.json`` holds every round's metrics (written atomically after each round). The npz
files are caches keyed by what they were computed from: one that cannot be read (a truncated copy) counts as
stale and is recomputed; a log that cannot be read is refused, naming it.

Inputs are checked before anything is computed (:func:`check_feedback_inputs`): both stores hold committed
records, the training store is the model's (:func:`check_training_store`), and the re-simulations repeat the
training store's simulations (:func:`check_resimulation_settings`, the rule the retraining's merge applies) on the
model's energy grid. :func:`sim_from_store` gives the re-simulation settings that repeat a store's.
"""

from __future__ import annotations

import functools
import json
import re
import shutil
import warnings
import zipfile
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field, fields, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
from tqdm.auto import tqdm

from crnet.config_fields import check_seed
from crnet.data import DEFAULT_DATASET
from crnet.features import (
    FEATURE_SPECIES,
    TargetTransform,
    check_same_grid,
    features_from_raw,
    relative_change,
    species_rows,
)
from crnet.likelihood import chi2 as chi2_of
from crnet.paths import atomic_write, atomic_write_text, same_file
from crnet.provenance import changed_settings, list_settings
from crnet.pseudodata import PAPER_MAX_RELATIVE, paper_noise
from crnet.run_lock import run_lock
from crnet.scan.models import GridConfig, PropagateModel, require_converging_mode
from crnet.spectra_io import parse_species
from crnet.store import MockStore, RecordBatch, StoreError, StoreMeta
from crnet.store_read import NOT_RECORDED, merge_differences, merge_stores, spectra_from_flux
from crprop.backends import release_cached_device_memory
from crprop.params import LOG_PARAM_NAMES, PARAM_NAMES
from crprop.spectra import SYMBOL_TO_Z

if TYPE_CHECKING:
    from crnet.machines.modelfile import ModelFile
    from crnet.machines.training import TrainConfig

TAU_THRESHOLD = 0.1
"""Paper Sec. 4.5: a prediction is consistent when the mean |tau| over the parameters is below 0.1."""

TARGET_SHARE = 0.95
"""Paper Sec. 4.5: the loop stops once 95 % of the predictions are consistent."""

BOX_INSET = 1e-9
"""Relative inset (of each box width) when clipping predictions into the closed prior box."""

LOG_NAME = "feedback_log.json"


@dataclass
class SimConfig:
    """How predictions are re-simulated: grid overrides, solver mode / backend ('auto' = CuPy on a GPU),
    tolerance, step cap, likelihood data set, models per propagate call."""

    grid: GridConfig = field(default_factory=GridConfig)
    mode: str = "fast"
    backend: str = "auto"
    tol: float | None = None
    max_steps: int | None = None
    dataset: str = DEFAULT_DATASET
    batch_size: int = 64

    def __post_init__(self) -> None:
        if isinstance(self.grid, dict):
            self.grid = GridConfig(**self.grid)
        if self.batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {self.batch_size}")
        require_converging_mode(self.mode, "re-simulating predictions (a non-converged re-simulation counts as "
                                "chi^2 = inf)")

    def model(self) -> PropagateModel:
        """The solver model these settings describe (cold starts: re-simulated points are not a chain)."""
        return PropagateModel(self.grid, self.mode, self.backend, self.tol, self.dataset, warm_start=False,
                              max_steps=self.max_steps)


@dataclass
class FeedbackConfig:
    """Settings of :func:`run_feedback` (module docstring)."""

    sim: SimConfig = field(default_factory=SimConfig)
    tau_threshold: float = TAU_THRESHOLD
    target_share: float = TARGET_SHARE
    max_rounds: int = 3
    n_test: int | None = None
    max_relative: float = PAPER_MAX_RELATIVE
    seed: int = 0
    retrain_epochs: int = 20
    progress: bool = True

    def __post_init__(self) -> None:
        if isinstance(self.sim, dict):
            self.sim = SimConfig(**self.sim)
        if not (self.tau_threshold > 0 and np.isfinite(self.tau_threshold)) or not 0 < self.target_share <= 1:
            raise ValueError(f"tau_threshold must be finite and > 0 and target_share in (0, 1], got "
                             f"{self.tau_threshold} and {self.target_share}")
        if self.n_test is not None and self.n_test < 1:
            raise ValueError(f"n_test must be >= 1 (pseudo-spectra) or None (all), got {self.n_test}")
        if self.max_rounds < 1 or self.retrain_epochs < 1:
            raise ValueError(f"max_rounds and retrain_epochs must be >= 1, got {self.max_rounds} and "
                             f"{self.retrain_epochs}")
        if not 0.0 <= self.max_relative < 1.0:
            raise ValueError(f"max_relative must lie in [0, 1) (largest relative pseudo-data fluctuation), got "
                             f"{self.max_relative}")
        check_seed(self.seed)


@dataclass
class ClosureResult:
    """One closure test: theta (n, 10) predicted from the test pseudo-data (PARAM_NAMES units), theta'
    (n, 10) predicted from pseudo-data of theta's re-simulation (NaN where impossible), chi2_resim (n,)
    chi^2_tot of theta's re-simulated spectra (inf when not simulated), simulated (n,) bool, truth (n, 10)
    parameters of the test records (or None), n_skipped_inputs: the test records the machine could not read
    (unusable spectra or a non-converged solve: :func:`crnet.machines.inference.predict_file` with
    ``skip_invalid``; with ``n_test``, those before the last prediction kept).

    A skipped input gives no prediction, so it is in no denominator: not in Table 4 (the paper's shares are "of the
    total predictions", and one the machine cannot read was never made; an input is not a prediction that cannot
    be simulated, which counts as > 6 sigma), not in Table 3, not in the stop rule's share. It is reported instead
    (:func:`crnet.evaluate.report.closure_counts`), so a machine fed many unusable inputs is not hidden behind the
    shares of the rest.

    A theta outside the prior box is re-simulated clipped into it (:func:`clip_to_box`), but ``tau`` compares
    theta' with the machine's own theta: against the clipped point a machine whose theta' came back at the box
    edge would show tau = 0 for a prediction it cannot reproduce (review of session 14)."""

    theta: np.ndarray
    theta_prime: np.ndarray
    chi2_resim: np.ndarray
    simulated: np.ndarray
    truth: np.ndarray | None = None
    n_skipped_inputs: int = 0

    @functools.cached_property
    def tau(self) -> np.ndarray:
        """(n, 10) Eq. 4.4 in LOG_PARAM_NAMES coordinates (:func:`tau`), theta the machine's prediction."""
        return tau(self.theta, self.theta_prime)

    @property
    def n_outside_box(self) -> int:
        """Finite predictions that lie outside the prior box (re-simulated clipped into it)."""
        t = np.asarray(self.theta, dtype=np.float64)
        return int(np.count_nonzero(np.any(TargetTransform().outside_box(t) & np.isfinite(t), axis=1)))

    @property
    def mean_abs_tau(self) -> np.ndarray:
        """(n,) mean over parameters of |tau|; inf where theta' is missing."""
        m = np.mean(np.abs(self.tau), axis=1)
        return np.where(np.isfinite(m), m, np.inf)

    def passing_share(self, tau_threshold: float = TAU_THRESHOLD) -> float:
        return float(np.mean(self.mean_abs_tau < tau_threshold)) if self.tau.shape[0] else 0.0

    def save(self, path: Path, key: str = "") -> None:
        """Write to ``path`` (npz); ``key`` records what it was computed from (:func:`closure_key`)."""
        truth = np.full_like(self.theta, np.nan) if self.truth is None else self.truth
        savez_keyed(path, key, theta=self.theta, theta_prime=self.theta_prime, chi2_resim=self.chi2_resim,
                    simulated=self.simulated, truth=truth, has_truth=np.array(self.truth is not None),
                    n_skipped_inputs=np.array(int(self.n_skipped_inputs)))

    @classmethod
    def load(cls, path: Path) -> ClosureResult:
        with np.load(path, allow_pickle=False) as z:
            return cls.from_arrays({name: np.array(z[name]) for name in z.files})

    @classmethod
    def from_arrays(cls, arrays: Mapping[str, np.ndarray]) -> ClosureResult:
        """From the arrays :meth:`save` writes (KeyError when one is missing)."""
        truth = arrays["truth"] if bool(arrays["has_truth"]) else None
        return cls(arrays["theta"], arrays["theta_prime"], arrays["chi2_resim"], arrays["simulated"], truth,
                   int(arrays["n_skipped_inputs"]))


# ------------------------------------------------------------------------------------------ pieces
def tau(theta: np.ndarray, theta_prime: np.ndarray) -> np.ndarray:
    """Eq. 4.4: (theta' - theta) / theta per parameter, breaks as log10(R/MV) (LOG_PARAM_NAMES columns); NaN rows
    where theta' is not finite (:func:`crnet.features.relative_change`)."""
    return relative_change(np.asarray(theta, dtype=np.float64), np.asarray(theta_prime, dtype=np.float64))


def clip_to_box(params: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Predictions clipped into the prior box (physical units) and a (n,) mask of simulable points
    (finite, R_br1 < R_br2 after clipping)."""
    lo, hi = TargetTransform().physical_box()
    inset = BOX_INSET * (hi - lo)
    p = np.clip(np.asarray(params, dtype=np.float64), lo + inset, hi - inset)
    ok = np.all(np.isfinite(params), axis=1) & (p[:, 8] < p[:, 9])
    return p, ok


def _store_meta(model: PropagateModel, sim: SimConfig, extra: dict[str, Any]) -> StoreMeta:
    f = model.store_fields()
    return StoreMeta(species=list(model.species), ekin_gev_per_n=model.ekin_gev_per_n, grid=f["grid"],
                     cross_sections=f["cross_sections"], solver_mode=f["solver_mode"], backend=f["backend"],
                     design="resimulation", dataset=f["dataset"], temperature=1.0, seed=0,
                     config={"sim": asdict(sim)}, extra=extra)


def resimulate(params: np.ndarray, out: Path | str, sim: SimConfig, progress: bool = True) -> Path:
    """Propagate every row of ``params`` (n, 10; PARAM_NAMES units, inside the prior box) and store the
    spectra, chi^2_tot and normalisations in the mock store ``out``. Resumes a partly written ``out`` from
    its committed records.

    Rows are propagated in order of halo height, so that each batch of ``sim.batch_size`` shares a small
    z grid (a batch is solved on the grid of its largest z_h: one z_h = 15 kpc row in a batch of 4 kpc rows
    would make the whole batch ~4 times dearer). The store therefore holds the rows in that order, with
    ``step`` = the row's index in ``params``; :func:`read_in_row_order` gives them back in row order.
    """
    out = Path(out)
    params = np.asarray(params, dtype=np.float64)
    order = np.argsort(params[:, PARAM_NAMES.index("z_halo_kpc")], kind="stable")
    params = params[order]
    model = sim.model()
    if out.exists():
        store = MockStore.open(out, "r+")
        done = store.n_complete
        if done > params.shape[0] or not np.allclose(store.read("params"), params[:done], rtol=1e-12):
            store.close()
            raise ValueError(f"{out}: holds other parameters than the ones to re-simulate; delete it")
    else:
        store = MockStore.create(out, _store_meta(model, sim, {"n_planned": int(params.shape[0])}),
                                 capacity=params.shape[0])
        done = 0
    with store, tqdm(total=params.shape[0], initial=done, disable=not progress, desc="re-simulate",
                     unit="model") as bar:
        while done < params.shape[0]:
            x = params[done: done + sim.batch_size]
            ev = model.evaluate(x)
            n = x.shape[0]
            store.append_batch(RecordBatch(params=x, norms=ev.norms, flux=ev.flux, chi2=ev.chi2,
                                           chain=np.full(n, -1), step=order[done: done + n],
                                           accepted=np.ones(n, bool), converged=ev.converged,
                                           residual=ev.residual), {"kind": "resim", "cursor": done + n})
            done += n
            bar.update(n)
    return out


def read_in_row_order(store: MockStore, name: str) -> np.ndarray:
    """Field ``name`` of a complete :func:`resimulate` store, in the row order of the re-simulated params."""
    values = store.read(name)
    rows = store.read("step")
    if not np.array_equal(np.sort(rows), np.arange(rows.size)):
        raise ValueError(f"{store.path}: 'step' is not a permutation of 0..{rows.size - 1}; not a complete "
                         "re-simulation store")
    out = np.empty_like(values)
    out[rows] = values
    return out


def _element_rows(species: list[str]) -> list[list[int]]:
    """Rows (element and its isotopes) of every feature element in a store's species list."""
    return [[i for i, s in enumerate(species) if parse_species(s)[1] == SYMBOL_TO_Z[sym]] for sym in FEATURE_SPECIES]


def pseudo_features(flux: np.ndarray, species: list[str], energies: np.ndarray, rng: np.random.Generator,
                    max_relative: float = PAPER_MAX_RELATIVE,
                    dataset: str = DEFAULT_DATASET) -> tuple[np.ndarray, np.ndarray]:
    """Pseudo-data of one spectrum per row (the paper's noise, see the module docstring) and its log10
    features: returns (features (n, 8, n_E), valid (n,)). ``flux``: (n, n_species, n_E) before the
    normalisations, m^-2 s^-1 sr^-1 (GeV/n)^-1; q_C is re-profiled on the noisy spectra."""
    noisy = np.asarray(flux, dtype=np.float64).copy()
    factor = paper_noise(rng, (noisy.shape[0], len(FEATURE_SPECIES), noisy.shape[2]), max_relative)
    for k, rows in enumerate(_element_rows(species)):
        noisy[:, rows, :] *= factor[:, k][:, None, :]
    q_c = chi2_of(spectra_from_flux(noisy, species, energies), dataset).q_c
    raw = noisy[:, species_rows(species, FEATURE_SPECIES), :]
    return features_from_raw(raw, q_c, energies, strict=False)


def resimulated_chi2(store: MockStore, ok: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """chi^2_tot of a :func:`resimulate` store of the rows ``ok`` (n,) selects: (n,) with inf where a row was not
    simulated (outside the prior box), did not converge or has no finite chi^2; and the (n_ok,) mask of the
    store's good rows, in row order."""
    chi2 = read_in_row_order(store, "chi2")
    good = read_in_row_order(store, "converged") & np.isfinite(chi2)
    out = np.full(ok.shape[0], np.inf)
    out[np.flatnonzero(ok)] = np.where(good, chi2, np.inf)
    return out, good


def closure_key(model_path: Path | str, test_store: Path | str, cfg: FeedbackConfig) -> str:
    """What a closure test's result depends on: the model and test-store bytes (sha256), n_test, the noise
    seed and size, and the re-simulation's grid, solver and data set (not its backend or batch size)."""
    from crnet.machines.modelfile import file_sha256

    sim = cfg.sim
    return json.dumps({"model_sha256": file_sha256(model_path), "test_sha256": file_sha256(test_store),
                       "n_test": cfg.n_test, "seed": cfg.seed, "max_relative": cfg.max_relative,
                       "sim": [sim.grid.settings(), sim.mode, sim.tol, sim.max_steps, sim.dataset]}, sort_keys=True)


UNREADABLE_NPZ: tuple[type[Exception], ...] = (OSError, EOFError, ValueError, KeyError, zipfile.BadZipFile)
"""What np.load and reading its members raise for a truncated or overwritten npz file."""


def has_key(path: Path, key: str) -> bool:
    """Whether the npz ``path`` exists and was written by :func:`savez_keyed` under ``key``. The files are caches
    keyed by content: one that cannot be read (a truncated copy, a disk that filled up) is stale, False, and its
    caller recomputes it."""
    if not path.is_file():
        return False
    try:
        with np.load(path, allow_pickle=False) as z:
            return "key" in z.files and str(z["key"]) == key
    except UNREADABLE_NPZ:
        return False


def load_keyed(path: Path, key: str) -> dict[str, np.ndarray] | None:
    """The arrays (``key`` left out) of the npz ``path`` written by :func:`savez_keyed` under ``key``; None when the
    file is missing, of another key, or cannot be read in full (a cache: the caller recomputes it, as for
    :func:`has_key`)."""
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


CLOSURE_ARRAYS = frozenset({"theta", "theta_prime", "chi2_resim", "simulated", "truth", "has_truth",
                            "n_skipped_inputs"})
"""Arrays of ``closure.npz`` (:meth:`ClosureResult.save`); a cache without one of them is recomputed."""
PREDICTION_ARRAYS = frozenset({"theta", "truth", "has_truth"})
"""Arrays of ``prediction.npz`` (:func:`closure_test`) it cannot be used without. It also holds ``n_skipped``; one
written before that was saved is used, the count taken again (predicting is cheap, its re-simulations are not)."""


def _n_skipped(pred: Any, n_test: int | None) -> int:
    """Test records :func:`crnet.machines.inference.predict_file` left out of ``pred`` as unusable: all of them, or,
    when ``n_test`` keeps fewer predictions than it made, those before the last prediction kept."""
    kept = pred.index.size if n_test is None else min(n_test, pred.index.size)
    last = pred.index[kept - 1] if 0 < kept < pred.index.size else np.inf
    return int(np.count_nonzero(np.asarray(pred.skipped) < last))


def closure_test(model_path: Path | str, test_store: Path | str, workdir: Path | str, cfg: FeedbackConfig,
                 device: str = "cpu") -> ClosureResult:
    """Steps 1-4 of the module docstring for one machine; cached in ``workdir/closure.npz`` under
    :func:`closure_key`. The predictions theta are saved (``workdir/prediction.npz``) before the re-simulation
    starts, so a killed run resumes ``resim.h5`` from the same theta on any device; files left by another
    model, test store or setting are removed and recomputed, never reused. Test records the machine cannot read
    are left out and counted (:attr:`ClosureResult.n_skipped_inputs`)."""
    from crnet.machines.inference import predict_file
    from crnet.machines.modelfile import Predictor

    workdir = Path(workdir)
    workdir.mkdir(parents=True, exist_ok=True)
    cache, pred_file, resim_path = workdir / "closure.npz", workdir / "prediction.npz", workdir / "resim.h5"
    key = closure_key(model_path, test_store, cfg)
    cached = load_keyed(cache, key)  # None when unreadable too: a cache keyed by content, recomputed
    if cached is not None and CLOSURE_ARRAYS <= cached.keys():
        return ClosureResult.from_arrays(cached)
    predictor = Predictor.load(model_path, device)
    saved = load_keyed(pred_file, key)
    if saved is not None and PREDICTION_ARRAYS <= saved.keys():
        theta, truth = saved["theta"], (saved["truth"] if bool(saved["has_truth"]) else None)
        if "n_skipped" in saved:
            n_skipped = int(saved["n_skipped"])
        else:  # saved before the count was: count again, keeping the saved theta (resim.h5 holds its re-simulations)
            n_skipped = _n_skipped(predict_file(predictor, test_store, dataset=cfg.sim.dataset, skip_invalid=True),
                                   cfg.n_test)
    else:
        # from another model / test store / setting, or unreadable (a truncated file is stale, like one of another
        # key): the re-simulations of its theta cannot be trusted either, so all three are recomputed
        for stale in (cache, pred_file, resim_path):
            stale.unlink(missing_ok=True)
        pred = predict_file(predictor, test_store, dataset=cfg.sim.dataset, skip_invalid=True)
        theta, truth, n_skipped = pred.params, pred.truth, _n_skipped(pred, cfg.n_test)
        if cfg.n_test is not None:
            theta = theta[: cfg.n_test]
            truth = None if truth is None else truth[: cfg.n_test]
        savez_keyed(pred_file, key, theta=theta, truth=np.full_like(theta, np.nan) if truth is None else truth,
                    has_truth=np.array(truth is not None), n_skipped=np.array(n_skipped))
    n = theta.shape[0]
    clipped, ok = clip_to_box(theta)
    resim = resimulate(clipped[ok], resim_path, cfg.sim, cfg.progress)
    theta_prime = np.full((n, len(PARAM_NAMES)), np.nan)
    with MockStore.open(resim, "r") as st:
        flux = read_in_row_order(st, "flux").astype(np.float64)
        chi2_resim, good = resimulated_chi2(st, ok)
        feats, valid = pseudo_features(flux, st.species, st.ekin_gev_per_n, np.random.default_rng(cfg.seed),
                                       cfg.max_relative, cfg.sim.dataset)
        use = valid & good
        if use.any():
            theta_prime[np.flatnonzero(ok)[use]] = predictor.predict(feats[use], st.ekin_gev_per_n)
    result = ClosureResult(theta, theta_prime, chi2_resim, ok, truth, n_skipped)
    result.save(cache, key)
    return result


# ------------------------------------------------------------------------------------------ input checks
class ReplacedRoundsWarning(UserWarning):
    """:func:`run_feedback` with ``replace_other_run`` removed another loop's rounds (it names them and why)."""


class FeedbackInputError(ValueError):
    """An input of :func:`run_feedback` that cannot work, found before any re-simulation.

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


def _store_content(path: Path | str, argument: str) -> tuple[int, dict[str, Any], list[str], np.ndarray]:
    """(committed records, root attributes, species, energies in GeV/n) of the store ``path``; FeedbackInputError
    naming ``argument`` when it is missing, foreign or corrupt."""
    try:
        with MockStore.open(path, "r") as st:
            return st.n_complete, st.attrs(), list(st.species), st.ekin_gev_per_n
    except StoreError as exc:
        raise FeedbackInputError(argument, str(exc)) from None


def sim_from_store(store: Path | str, backend: str = "auto", batch_size: int = 64) -> SimConfig:
    """The re-simulation settings that repeat the simulations of ``store`` (a scan, a merged or pseudo-data store
    of it): grid, solver mode, tolerance, step cap and data set from its root attributes ``grid`` (what
    :meth:`crnet.scan.models.PropagateModel.store_fields` recorded, the tolerance and step cap included),
    ``solver_mode`` and ``dataset`` - the attributes the retraining's merge compares (MERGE_KEYS), which every
    merge keeps. A value equal to the paper galdef's (or the solver's default) is left unset (None), as a scan
    given only its changes records them. ``backend`` and ``batch_size`` (models per propagate call) are how the
    re-simulations run, not what they compute. FeedbackInputError ('train_store') for a store that is no crprop
    scan (e.g. one of a FunctionModel) or whose solver mode cannot re-simulate."""
    from crprop.solvers import DEFAULT_MAX_STEPS, DEFAULT_TOL

    _, attrs, _, _ = _store_content(store, "train_store")
    grid = attrs.get("grid")
    if not isinstance(grid, dict) or "dr_kpc" not in grid:
        raise FeedbackInputError("train_store", f"{store}: its attribute 'grid' = {grid!r} is not a crprop "
                                 "propagation grid (no 'dr_kpc'); only stores of crprop scans can be re-simulated")
    paper = GridConfig().setup()
    changes = {name: grid[name] for name in _GRID_FIELDS
               if name != "half_lives" and name in grid and grid[name] != getattr(paper, name)}
    tol, max_steps = grid.get("tol"), grid.get("max_steps")
    try:
        return SimConfig(grid=GridConfig(**changes, half_lives=grid.get("half_lives")),
                         mode=str(attrs.get("solver_mode")), backend=backend,
                         tol=None if tol is None or tol == DEFAULT_TOL else float(tol),
                         max_steps=None if max_steps is None or max_steps == DEFAULT_MAX_STEPS else int(max_steps),
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


def check_resimulation_settings(sim: SimConfig, store: Path | str, consequence: str = RETRAINING_CONSEQUENCE) -> None:
    """Refuse (FeedbackInputError naming the SimConfig field and both values) re-simulation settings whose records
    the retraining could not merge into ``store``: the species, energies and MERGE_KEYS attributes (grid with its
    tolerance and step cap, cross sections, solver mode, data set) that ``sim.model()`` would record must equal
    the store's, as :func:`crnet.store_read.merge_stores` demands. Where several differ the first settable one is
    named (grid options, tol, max_steps, mode, dataset) and the others listed. ``consequence`` ends the message:
    what goes wrong otherwise (the feedback loop's merge; crnet evaluate passes its own)."""
    model = sim.model()
    ours = json.loads(json.dumps(model.store_fields(), default=str))  # as a store's JSON attributes read back
    _, attrs, species, energies = _store_content(store, "train_store")
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


def _made_from(pseudo: Path, store: Path) -> bool:
    """Whether every record of the pseudo-data store ``pseudo`` has its central parameters in ``store`` at the
    record number it names (``step``: :func:`crnet.pseudodata.make_pseudodata`)."""
    with MockStore.open(pseudo, "r") as ps, MockStore.open(store, "r") as st:
        steps, params = ps.read("step"), ps.read("params")
        if steps.size == 0 or steps.min() < 0 or steps.max() >= st.n_complete:
            return False
        return bool(np.array_equal(st.read("params", steps), params))


def check_training_store(model_path: Path | str, metadata: Mapping[str, Any], train_store: Path | str,
                         machine: str | None = None) -> None:
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

    ``machine``: the model's ('A' or 'B'); None decides by whether it was trained on pseudo-data.

    A model file without the record (written before it existed) is not checked: a warning says so."""
    from crnet.machines.modelfile import file_sha256

    model_path, train_store = Path(model_path), Path(train_store)
    record = metadata.get("training_store")
    if not isinstance(record, dict) or not record.get("sha256"):
        warnings.warn(f"{model_path}: the model file records no training store; train_store {train_store} is not "
                      "checked against it", stacklevel=2)
        return
    trained_on = Path(str(record.get("path", "")))
    sha = file_sha256(train_store)
    if machine != "B" if machine is not None else not record.get("pseudo_data"):
        # Machine A (also one trained on pseudo-data: the loop retrains it on that file, so it must be given)
        if sha != record["sha256"]:
            raise FeedbackInputError("train_store", (
                f"{train_store}: not the store the model {model_path} was trained on ({trained_on}, sha256 "
                f"{record['sha256'][:12]}; this file's is {sha[:12]}): the loop adds re-simulations to the model's "
                f"own training set. Pass {trained_on}, or train a model on {train_store} first"))
        return
    pseudo = _training_pseudo_file(model_path, record)
    source = record.get("source_store")
    if pseudo is not None:
        with MockStore.open(pseudo, "r") as ps:
            source = ps.attrs().get("source_store", source)
    if sha == record["sha256"]:
        raise FeedbackInputError("train_store", (
            f"{train_store}: is the pseudo-data Machine B {model_path} was trained on, not the scan they were made "
            f"from ({source}); pass the scan: each retraining makes new pseudo-data of its store"))
    if pseudo is not None:
        with MockStore.open(pseudo, "r") as ps, MockStore.open(train_store, "r") as st:
            # same records, other simulations (grid, tol ...); the data set the pseudo-data were scored against
            # is no simulation setting (check_model_dataset compares the model's with the loop's)
            differ = [d for d in merge_differences(ps.attrs(), st.attrs()) if d[0] != "dataset"]
        if not differ and _made_from(pseudo, train_store):
            return
        why = (f"its pseudo-data {pseudo} were simulated otherwise ({', '.join(d[0] for d in differ)} differ)"
               if differ else f"its pseudo-data {pseudo} were made from other records ({source})")
        raise FeedbackInputError("train_store", (
            f"{train_store}: not the scan Machine B {model_path} was trained on: {why}. Pass that scan, or train a "
            f"model on {train_store} first"))
    if source is not None and Path(str(source)) == trained_on:
        source = None  # an ensemble's members record the pseudo-data as their source: the scan is named in them only
    if source is not None and same_file(train_store, str(source)):
        return
    named = f"records the scan {source}. Pass that scan, or" if source is not None else "records no scan path:"
    raise FeedbackInputError("train_store", (
        f"{train_store}: cannot be matched to Machine B {model_path}: its pseudo-data {trained_on} are gone and it "
        f"{named} put the pseudo-data file back beside the model"))


def check_model_dataset(model_path: Path | str, metadata: Mapping[str, Any], dataset: str) -> None:
    """Refuse (FeedbackInputError 'sim.dataset') predicting with ``dataset`` from a model whose inputs were
    normalised against another data set (its metadata ``dataset``: the q_C of its pseudo-data inputs), as
    :func:`crnet.machines.inference.predict_file` would - but before any work. A model that records none passes."""
    trained_on = metadata.get("dataset")
    if trained_on is not None and trained_on != dataset:
        raise FeedbackInputError("sim.dataset", f"{dataset!r} differs from the data set the model {model_path} was "
                                 f"trained against ({trained_on!r}: its inputs are normalised (q_C) to it); train a "
                                 f"model against {dataset!r}, or use {trained_on!r}")


def check_feedback_inputs(model_path: Path | str, model: ModelFile, train_store: Path | str,
                          test_store: Path | str, sim: SimConfig) -> None:
    """Every check :func:`run_feedback` makes before round 0 (FeedbackInputError naming the argument, the file and
    the allowed value): ``model`` (the loaded :class:`crnet.machines.modelfile.ModelFile` of ``model_path``) is a
    regressor; both stores are readable mock stores with committed records; ``train_store`` is the model's
    (:func:`check_training_store`); ``sim`` repeats its simulations (:func:`check_resimulation_settings`); and the
    model takes spectra on the re-simulations' and the test store's energy grids (GeV/n)."""
    if model.is_check:
        raise FeedbackInputError("model", f"{model_path}: is a Check Machine; the feedback loop needs a regressor "
                                 "(Machine A or B)")
    content = {}
    for argument, path in (("train_store", train_store), ("test_store", test_store)):
        content[argument] = _store_content(path, argument)
        if content[argument][0] == 0:
            raise FeedbackInputError(argument, f"{path}: holds no committed records")
    check_training_store(model_path, model.metadata, train_store, model.machine)
    check_model_dataset(model_path, model.metadata, sim.dataset)
    check_resimulation_settings(sim, train_store)
    for argument, path in (("train_store", train_store), ("test_store", test_store)):
        energies = content[argument][3]
        try:
            check_same_grid(model.energies, energies, "its")
        except ValueError as exc:
            raise FeedbackInputError(argument, f"{path}: {exc} ({model_path})") from None


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
    try:
        log = json.loads(path.read_text())
    except ValueError as exc:  # JSONDecodeError, UnicodeDecodeError
        raise ValueError(f"{path}: corrupt ({exc}); delete it to redo the loop from round 0 (the files under round_*/ "
                         "are reused), or delete its directory to start afresh") from None
    if not isinstance(log, dict) or not isinstance(log.get("rounds"), list):
        raise ValueError(f"{path}: corrupt (not a feedback log: no list 'rounds'); delete it to redo the loop from "
                         "round 0, or delete its directory to start afresh")
    if log.pop("paths", None) == RELATIVE_PATHS:  # logs of earlier versions hold the paths as they were given
        log = _log_paths(log, lambda name: str(path.parent / name) if not Path(name).is_absolute() else name)
    return log


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

    Before round 0 and before ``out`` is created, :func:`check_feedback_inputs` refuses (FeedbackInputError, one line
    naming the argument, the file and the allowed value) an empty store, a ``train_store`` that is not the model's
    and re-simulation settings the retraining could not merge into ``train_store``; a corrupt
    ``feedback_log.json`` is refused naming it (ValueError), and so is a second loop on an ``out`` in use
    (:func:`crnet.run_lock.run_lock`, ``<out>/.lock``).

    replace_other_run : rounds in ``out`` of another loop (a log of another identity, an unreadable log, or round
        directories without a log) are removed (:func:`remove_rounds`, once ``out`` is locked) instead of refused;
        a log of this loop is resumed either way. crnet pipeline, which owns its feedback directories, sets it.
    """
    from crnet.machines.modelfile import load_model

    cfg = cfg or FeedbackConfig()
    out = Path(out)
    current, store = Path(model), Path(train_store)
    model_file = load_model(current)
    check_feedback_inputs(current, model_file, store, test_store, cfg.sim)  # before anything is written
    with run_lock(out, "crnet feedback"):  # one loop per directory (crnet pipeline locks its own out besides)
        return _run_rounds(current, store, Path(test_store), out, cfg, model_file, train_config, replace_other_run)


def _run_rounds(current: Path, store: Path, test_store: Path, out: Path, cfg: FeedbackConfig, model_file: ModelFile,
                train_config: TrainConfig | None, replace_other_run: bool) -> FeedbackResult:
    """:func:`run_feedback`'s rounds in ``out``, its inputs checked and the directory locked."""
    from crnet.machines.training import TrainConfig

    log_path = out / LOG_NAME
    tcfg = replace(train_config or TrainConfig(machine=model_file.machine), epochs=cfg.retrain_epochs,
                   progress=cfg.progress)
    identity = loop_identity(current, store, test_store, cfg, tcfg)
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
    if rounds and rounds[-1]["stop"]:  # the loop had ended: nothing to redo
        return FeedbackResult(current, True, rounds)
    if len(rounds) >= cfg.max_rounds:
        # max_rounds lowered below the rounds done (a loop killed after a retraining, resumed with a smaller cap):
        # the result is the cap's last round and the model it tested, not the later retraining's untested model
        done = rounds[: cfg.max_rounds]
        return FeedbackResult(Path(done[-1]["model"]), bool(done[-1]["stop"]), done)
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
        res = closure_test(current, test_store, rdir, cfg, device=_device())
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
        merge_stores([store, rdir / "resim.h5"], next_store)
    if not next_model.is_file():
        release_cached_device_memory()  # the re-simulations' CuPy cache would starve PyTorch on the GPU
        train(next_store, next_model, replace(tcfg, init_from=str(current)),
              resume=has_checkpoint(next_model, tcfg.ensemble))
    return next_store, next_model


LOOP_FREE_SETTINGS: tuple[str, ...] = ("max_rounds", "progress", "sim.backend", "sim.batch_size")
"""FeedbackConfig entries a resumed loop may change: the round cap (raising it extends a finished loop) and how
it runs (progress bar, solver backend, models per call)."""


def loop_identity(model: Path, train_store: Path, test_store: Path | str, cfg: FeedbackConfig, tcfg) -> dict:
    """What a feedback directory's rounds depend on: the starting model, test pseudo-data and training store
    (sha256: not their paths, so a moved run directory resumes; :func:`check_training_store` hashes the training
    store on every start anyway, and large files' digests are remembered within a process), every FeedbackConfig
    setting except :data:`LOOP_FREE_SETTINGS`, and the retraining's TrainConfig (except how it runs)."""
    from crnet.machines.modelfile import file_sha256

    settings = asdict(cfg)
    for key in LOOP_FREE_SETTINGS:
        *parents, leaf = key.split(".")
        d = settings
        for p in parents:
            d = d[p]
        d.pop(leaf, None)
    settings["sim"]["grid"] = cfg.sim.grid.settings()
    from crnet.machines.training import RUN_PLACE_SETTINGS

    train = {k: v for k, v in asdict(tcfg).items() if k not in RUN_PLACE_SETTINGS}
    resolved = tcfg.resolved()  # per-network defaults that decide the training (None would hide a change of them)
    train["lr_schedule"], train["patience"] = resolved.lr_schedule, resolved.patience
    return json.loads(json.dumps({
        "model_sha256": file_sha256(model), "test_store_sha256": file_sha256(test_store),
        "train_store_sha256": file_sha256(train_store), "feedback": settings, "retraining": train}, default=str))


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
    diff = changed_settings(saved, _comparable_identity(saved, identity, train_store), nested=True)
    return f"differs in {list_settings(diff)}" if diff else None


def _check_identity(log_path: Path, saved: dict | None, ours: dict) -> None:
    if saved is None:  # a log written before identities were recorded
        return
    diff = changed_settings(saved, ours, nested=True)
    if diff:
        raise ValueError(f"{log_path}: this feedback directory belongs to another run (differs in "
                         f"{list_settings(diff)}); use another output directory or delete it")


def _device() -> str:
    import torch

    return "cuda" if torch.cuda.is_available() else "cpu"
