"""The closure test of one machine (paper Sec. 4.5, Eq. 4.4) and the settings it shares with the feedback loop.

Closure test of one machine on a pseudo-data store (:mod:`crnet.pseudodata`):

1. predict theta from every pseudo-spectrum (:func:`crnet.machines.inference.predict_file`);
2. re-simulate theta in-process with crprop (:class:`crnet.scan.models.PropagateModel`: the CuPy backend
   on a GPU when ``backend='auto'`` finds one, numpy/numba on CPU); the spectra, chi^2_tot and profiled
   normalisations go into a mock store ``resim.h5`` (resumable, committed batch by batch);
3. make pseudo-data of the new spectra (the paper's noise: every element's spectrum multiplied by
   1 + eps per energy bin, eps ~ U(-max_relative, max_relative), q_C re-profiled) and predict theta';
4. tau_i = (theta'_i - theta_i) / |theta_i| per parameter (Eq. 4.4; |theta_i| keeps the shift's sign for
   eta < 0), with the breaks as log10(R/MV)
   as in the paper's Table 3 (columns :data:`crprop.params.LOG_PARAM_NAMES`).

A prediction *passes* when mean_i |tau_i| < ``tau_threshold`` (0.1). Predictions that cannot be
re-simulated (a non-finite entry; out-of-box ones are clipped into the box, where the two break boxes
keep R_br1 < R_br2) or whose re-simulated spectra are
unusable fail. The arrays are cached in ``closure.npz`` keyed by what they were computed from
(:func:`closure_key`). The loop that repeats this and retrains is :mod:`crnet.feedback`; ``crnet evaluate`` runs
it once per machine (:mod:`crnet.evaluate.report`).
"""

from __future__ import annotations

import functools
import json
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
from tqdm.auto import tqdm

from crnet.config_fields import check_seed
from crnet.data import DEFAULT_DATASET
from crnet.features import (
    FEATURE_SPECIES,
    TargetTransform,
    features_from_raw,
    relative_change,
    species_rows,
)
from crnet.feedback_state import (
    load_keyed,
    savez_keyed,
)
from crnet.likelihood import chi2 as chi2_of
from crnet.pseudodata import PAPER_MAX_RELATIVE, paper_noise
from crnet.scan.models import GridConfig, PropagateModel, require_converging_mode
from crnet.spectra_io import parse_species
from crnet.store import MockStore, RecordBatch, StoreMeta
from crnet.store_read import spectra_from_flux
from crprop.params import PARAM_NAMES
from crprop.solvers import DEFAULT_MAX_STEPS, DEFAULT_TOL, check_solver_settings
from crprop.spectra import SYMBOL_TO_Z

if TYPE_CHECKING:
    from crnet.machines.modelfile import ModelFile

TAU_THRESHOLD = 0.1
"""Paper Sec. 4.5: a prediction is consistent when the mean |tau| over the parameters is below 0.1."""

TARGET_SHARE = 0.95
"""Paper Sec. 4.5: the loop stops once 95 % of the predictions are consistent."""

BOX_INSET = 1e-9
"""Relative inset (of each box width) when clipping predictions into the closed prior box."""

def solver_defaults_as_none(tol: float | None, max_steps: int | None) -> tuple[float | None, int | None]:
    """(tol, max_steps) with crprop's defaults (DEFAULT_TOL, DEFAULT_MAX_STEPS) spelt None: the one spelling
    :class:`SimConfig`, a store (crnet.feedback_inputs.sim_from_store), feedback logs and pipeline markers compare.
    `crnet feedback --tol 1e-6` on a store recorded with defaults was "another run" (review by helper-118, s23)."""
    return (None if tol == DEFAULT_TOL else tol), (None if max_steps == DEFAULT_MAX_STEPS else max_steps)


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
        check_solver_settings(self.mode, self.tol, self.max_steps, self.backend)
        self.tol, self.max_steps = solver_defaults_as_none(self.tol, self.max_steps)
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
        # one message per field, starting with its name (crnet feedback names its option instead)
        if not (self.tau_threshold > 0 and np.isfinite(self.tau_threshold)):
            raise ValueError(f"tau_threshold must be finite and > 0 (mean |tau|), got {self.tau_threshold}")
        if not 0 < self.target_share <= 1:  # False for nan too
            raise ValueError(f"target_share must lie in (0, 1] (share of passing predictions), got "
                             f"{self.target_share}")
        if self.n_test is not None and self.n_test < 1:
            raise ValueError(f"n_test must be >= 1 (pseudo-spectra) or None (all), got {self.n_test}")
        if self.max_rounds < 1:
            raise ValueError(f"max_rounds must be >= 1 (rounds), got {self.max_rounds}")
        if self.retrain_epochs < 1:
            raise ValueError(f"retrain_epochs must be >= 1 (epochs per retraining), got {self.retrain_epochs}")
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
    """Eq. 4.4: (theta' - theta) / |theta| per parameter (|theta|: the sign follows the shift also for eta < 0),
    breaks as log10(R/MV) (LOG_PARAM_NAMES columns); NaN rows where theta' is not finite
    (:func:`crnet.features.relative_change`)."""
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


def closure_key(model_path: Path | str, test_store: Path | str, cfg: FeedbackConfig,
                model_sha256: str | None = None) -> str:
    """What a closure test's result depends on: the model and test-store bytes (sha256), n_test, the noise
    seed and size, and the re-simulation's grid, solver and data set (not its backend or batch size).
    ``model_sha256``: the digest of the model's bytes when the caller loaded them already
    (:attr:`crnet.machines.modelfile.ModelFile.source_sha256`), else ``model_path`` is hashed."""
    from crnet.machines.modelfile import file_sha256

    sim = cfg.sim
    model_sha256 = model_sha256 if model_sha256 is not None else file_sha256(model_path)
    return json.dumps({"model_sha256": model_sha256, "test_sha256": file_sha256(test_store),
                       "n_test": cfg.n_test, "seed": cfg.seed, "max_relative": cfg.max_relative,
                       "sim": [sim.grid.settings(), sim.mode, sim.tol, sim.max_steps, sim.dataset]}, sort_keys=True)


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
                 device: str = "cpu", model: ModelFile | None = None) -> ClosureResult:
    """Steps 1-4 of the module docstring for one machine; cached in ``workdir/closure.npz`` under
    :func:`closure_key`. The predictions theta are saved (``workdir/prediction.npz``) before the re-simulation
    starts, so a killed run resumes ``resim.h5`` from the same theta on any device; files left by another
    model, test store or setting are removed and recomputed, never reused. Test records the machine cannot read
    are left out and counted (:attr:`ClosureResult.n_skipped_inputs`).

    ``model``: the model file ``model_path`` already loaded (:func:`crnet.machines.modelfile.load_model`; callers
    that checked it pass it, so it is not read again); None reads ``model_path`` when the cache does not answer.
    The cache key is the model's bytes: those ``model`` was loaded from (its ``source_sha256``, so a file rewritten
    since then does not key the old model's predictions as the new file's), else ``model_path``'s."""
    from crnet.machines.inference import predict_file
    from crnet.machines.modelfile import Predictor

    if model is not None and model.source_sha256 is None:
        raise ValueError(f"closure_test: model= must be {model_path} as load_model read it (its source_sha256 keys the "
                         "cache); this one was built in memory or is an ensemble member")
    workdir = Path(workdir)
    workdir.mkdir(parents=True, exist_ok=True)
    cache, pred_file, resim_path = workdir / "closure.npz", workdir / "prediction.npz", workdir / "resim.h5"
    key = closure_key(model_path, test_store, cfg, model_sha256=None if model is None else model.source_sha256)
    cached = load_keyed(cache, key)  # None when unreadable too: a cache keyed by content, recomputed
    if cached is not None and CLOSURE_ARRAYS <= cached.keys():
        return ClosureResult.from_arrays(cached)
    predictor = Predictor.load(model_path, device) if model is None else Predictor(model, device)
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
