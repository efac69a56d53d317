"""Pseudo-data (paper Sec. 4.2, 4.6): stored mock spectra inside a confidence level plus artificial fluctuations.

Steps (paper Fig. 1, (i) -> (ii)):

1. chi2 of every stored record: the store's ``chi2`` or, with ``update_chi2``, recomputed against a
   (possibly newer) data set with :func:`crnet.likelihood.chi2` ("updated chi2", Sec. 4.6);
2. records with chi2 < chi2_min + Delta chi2_14(n_sigma) are the central values (3 sigma: 33.20);
   ``n_pseudo`` of them are drawn at random (with replacement only when more are asked for);
3. artificial fluctuations on the Li, Be, B, C, O spectra, one of

   * ``'paper'``: the paper's wording, a relative fluctuation of at most ``max_relative`` (5 %) per
     energy bin and element, N' = N (1 + eps), eps ~ U(-max_relative, max_relative);
   * ``'envelope'``: what the CR-ML code does (``Create_Pseudodata``): on the channels Li/C, Be/C, B/C
     (N_X / (N_C / N_C^110)), C (N_C) and O/C (N_O / (N_C / N_C^110)), each bin gets uniform noise of
     half-width (max - min over the selected set)/Delta, Delta ~ U(low, high) once per pseudo-spectrum
     (defaults 10, 30), and the spectra are rebuilt from the noisy channels. Draws that would make a
     channel <= 0 are redrawn (a uniform noise truncated to positive values);

   each element's factor N'/N multiplies all of its isotopes (store rows), so modulation per Z/A in
   the likelihood stays consistent;
4. the normalisations are re-profiled on the pseudo-spectra with :func:`crnet.likelihood.chi2`
   (q_C, xi_Li, xi_Be, q_O/q_C within their bounds) and chi2 (Eq. 4.3) is computed with the
   pseudo-spectra themselves, as Sec. 4.6 asks.

Output: a mock store (:mod:`crnet.store`) of the pseudo-spectra: flux before normalisations, the
re-profiled ``norms``, the pseudo ``chi2``, the central value's ``params``; ``step`` holds the index of
the store record each pseudo-spectrum came from (``chain`` = -1), root attributes ``design = 'pseudo'``,
``pseudo_data = True``, ``config`` (the settings) and the source's chi2_min / Delta chi2; so
:mod:`crnet.machines.data` reads it like any store (Machine B trains on it). The normalisations enter the
features only through q_C (see :mod:`crnet.features`): removing the re-profiled xi's and q_O/q_C from
the fitted pseudo-spectra gives back the noisy normalisation-free N' (the CR-ML procedure).
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from crnet.config_fields import check_seed
from crnet.data import DATASETS, DEFAULT_DATASET
from crnet.features import FEATURE_SPECIES, c_norm_index, species_rows
from crnet.likelihood import RATIO_PARAMETERS, chi2, delta_chi2_threshold
from crnet.machines.data import StoreReader
from crnet.spectra_io import parse_species
from crnet.store import NORM_NAMES, MockStore, RecordBatch, StoreMeta, store_holdout_records
from crnet.store_read import recompute_chi2, spectra_from_flux
from crprop.spectra import SYMBOL_TO_Z

NOISE_MODELS: tuple[str, ...] = ("paper", "envelope")

PAPER_MAX_RELATIVE = 0.05
"""Paper Sec. 4.3: the average relative error of the 398 data points is ~5 %; fluctuations are at most 5 %."""

ENVELOPE_DELTA: tuple[float, float] = (10.0, 30.0)
"""CR-ML Create_Pseudodata defaults LOW, HIGH of Delta (the noise half-width is envelope / Delta)."""

ENVELOPE_MAX_REDRAWS = 1000
"""Rounds of redrawing non-positive envelope-noise bins before giving up (each round redraws only those)."""

DEFAULT_PSEUDO_SIGMA = 3.0
"""Confidence level of the central values (Sec. 4.6: Delta chi2 < 33.2, the 3 sigma region)."""

CENTRE_SETS: tuple[str, ...] = ("all", "train", "test")
"""Which selected records may be central values: all of them, or the training / held-out test part."""

_GOLDEN_64 = np.uint64(0x9E3779B97F4A7C15)
"""2^64 / golden ratio: Fibonacci hashing spreads consecutive record indices evenly over [0, 2^64)."""


def holdout_mask(record_index: np.ndarray, fraction: float, holdout_records: int | None = None) -> np.ndarray:
    """True for the records held out as test centres: a deterministic hash of the record index below
    ``fraction`` (stable when the store grows, the same in every process, independent of any seed).

    ``holdout_records``: only indices below it can be held out (a store's :func:`crnet.store.store_holdout_records`):
    the feedback loop's re-simulations appended to the scan are never test centres, and the hash took ~``fraction``
    of them from every retraining (review by helper-86, session 21)."""
    if not 0.0 <= fraction < 1.0:
        raise ValueError(f"holdout fraction must lie in [0, 1), got {fraction}")
    idx = np.asarray(record_index, dtype=np.uint64)
    with np.errstate(over="ignore"):
        h = (idx + np.uint64(1)) * _GOLDEN_64
    held = (h >> np.uint64(11)).astype(np.float64) / 2.0**53 < fraction
    if holdout_records is not None:
        held &= np.asarray(record_index) < holdout_records
    return held


@dataclass
class PseudoDataConfig:
    """Settings of :func:`make_pseudodata` (see the module docstring).

    centres : 'all' selected records are central values, or only the 'train' part or the held-out 'test'
        part (:func:`holdout_mask` with ``holdout_fraction``): Machine B's training pseudo-data and the test
        pseudo-data then never share a central spectrum.
    """

    n_pseudo: int = 1000
    n_sigma: float = DEFAULT_PSEUDO_SIGMA
    noise: str = "paper"
    max_relative: float = PAPER_MAX_RELATIVE
    envelope_delta: tuple[float, float] = ENVELOPE_DELTA
    dataset: str = DEFAULT_DATASET
    update_chi2: bool = False
    seed: int = 0
    chunk_size: int = 256
    centres: str = "all"
    holdout_fraction: float = 0.0

    def __post_init__(self) -> None:
        if self.dataset not in DATASETS:  # a typo was trained on and written into the model file (walk-through)
            raise ValueError(f"dataset: unknown data set {self.dataset!r}; known: {', '.join(DATASETS)}")
        if self.centres not in CENTRE_SETS:
            raise ValueError(f"centres must be one of {CENTRE_SETS}, got {self.centres!r}")
        if not 0.0 <= self.holdout_fraction < 1.0:
            raise ValueError(f"holdout_fraction must lie in [0, 1), got {self.holdout_fraction}")
        if self.centres != "all" and self.holdout_fraction == 0.0:
            raise ValueError(f"centres={self.centres!r} needs holdout_fraction > 0")
        if self.noise not in NOISE_MODELS:
            raise ValueError(f"noise must be one of {NOISE_MODELS}, got {self.noise!r}")
        for key in ("n_pseudo", "chunk_size"):
            if getattr(self, key) < 1:
                raise ValueError(f"{key} must be >= 1 (pseudo-spectra), got {getattr(self, key)}")
        if not 0.0 <= self.max_relative < 1.0:
            raise ValueError(f"max_relative must lie in [0, 1), got {self.max_relative}")
        lo, hi = self.envelope_delta
        if not 0 < lo <= hi:
            raise ValueError(f"envelope_delta must satisfy 0 < low <= high, got {self.envelope_delta}")
        if not (np.isfinite(self.n_sigma) and self.n_sigma > 0):
            raise ValueError(f"n_sigma must be finite and > 0 (confidence level in sigma), got {self.n_sigma}")
        check_seed(self.seed)


@dataclass
class PseudoDataSummary:
    """What :func:`make_pseudodata` did."""

    path: Path
    n_pseudo: int
    n_selected: int
    chi2_min: float
    delta_chi2: float
    median_abs_relative_fluctuation: float
    max_abs_relative_fluctuation: float
    chi2_median: float


# ------------------------------------------------------------------------------------------ selection
def select_within_confidence(chi2_values: np.ndarray, n_sigma: float) -> tuple[np.ndarray, float, float]:
    """(indices with chi2 < chi2_min + Delta chi2_14(n_sigma), chi2_min, Delta chi2); NaN/inf never selected."""
    c = np.asarray(chi2_values, dtype=np.float64)
    finite = np.isfinite(c)
    if not finite.any():
        raise ValueError("no finite chi2 values to select from")
    c_min = float(c[finite].min())
    delta = delta_chi2_threshold(n_sigma)
    return np.flatnonzero(finite & (c < c_min + delta)), c_min, delta


def updated_chi2(reader: StoreReader, dataset: str = DEFAULT_DATASET) -> np.ndarray:
    """chi2_tot (Eq. 4.3, normalisations profiled) of every committed store record against ``dataset``."""
    return recompute_chi2(reader.store, dataset)[0]


# ------------------------------------------------------------------------------------------ noise
def paper_noise(rng: np.random.Generator, shape: tuple[int, ...], max_relative: float) -> np.ndarray:
    """Multiplicative factors 1 + eps, eps ~ U(-max_relative, max_relative), of the given shape."""
    return 1.0 + rng.uniform(-max_relative, max_relative, size=shape)


def envelope_channels(n_flux: np.ndarray, c_idx: int) -> np.ndarray:
    """CR-ML's perturbed channels (n, 5, n_E): Li/C, Be/C, B/C (flux / (N_C/N_C^110)), C = N_C, O/C.

    ``n_flux`` (n, 5, n_E): normalisation-free Li, Be, B, C, O; ``c_idx`` the bin of N_C^110.
    """
    c = n_flux[:, 3, :]
    c_shape = c / c[:, c_idx][:, None]
    return np.stack([n_flux[:, 0] / c_shape, n_flux[:, 1] / c_shape, n_flux[:, 2] / c_shape, c,
                     n_flux[:, 4] / c_shape], axis=1)


def channels_to_fluxes(channels: np.ndarray, c_idx: int) -> np.ndarray:
    """Inverse of :func:`envelope_channels`."""
    c = channels[:, 3, :]
    c_shape = c / c[:, c_idx][:, None]
    return np.stack([channels[:, 0] * c_shape, channels[:, 1] * c_shape, channels[:, 2] * c_shape, c,
                     channels[:, 4] * c_shape], axis=1)


ENVELOPE_STREAM = 1
"""Second word of the envelope noise's seeds ``[seed, ENVELOPE_STREAM, round]``: apart from the stream of
``default_rng(seed)``, which draws the central spectra and the paper noise."""


def indexed_uniforms(seed: int, first: int, n: int, per_item: int, stream: int = 0) -> np.ndarray:
    """(n, per_item) U[0, 1) draws of items ``first`` .. ``first + n - 1`` of a counter-based stream (Philox keyed by
    ``[seed, ENVELOPE_STREAM, stream]``, each item starting at its own counter): the same values for an item whatever
    the chunk it is drawn in. One generator per pseudo-spectrum did the same at ~12x the cost (118 against 9.8 us
    per spectrum on the 2-core machine, session 23; re-read by helper-122)."""
    key = np.random.SeedSequence([seed, ENVELOPE_STREAM, stream]).generate_state(2, np.uint64)
    padded = -(-per_item // 4) * 4  # Philox gives 4 draws per counter step: items start on a step
    gen = np.random.Generator(np.random.Philox(key=key, counter=[first * (padded // 4), 0, 0, 0]))
    return gen.random((n, padded))[:, :per_item]


def envelope_noise(rng: np.random.Generator | Callable[[int], np.ndarray], channels: np.ndarray,
                   envelope: np.ndarray, delta_range: tuple[float, float]) -> np.ndarray:
    """Noisy channels: value + U(-h, h) per bin with h = envelope / Delta, Delta ~ U(*delta_range) per model.

    ``envelope`` (5, n_E) = max - min of the channels over the selected set. Bins that would become <= 0
    are redrawn (at most :data:`ENVELOPE_MAX_REDRAWS` rounds). ``rng``: a Generator, or draws(round) giving the
    (n, 1 + channels per model) U[0, 1) values of round 0 (Delta, then the bins) and of each redraw round (the bins),
    as :func:`indexed_uniforms` does for :func:`make_pseudodata`.
    """
    n = channels.shape[0]
    draws = rng if callable(rng) else (lambda _round: rng.random((n, 1 + channels[0].size)))
    u = draws(0)
    lo, hi = delta_range
    half = envelope[None] / (lo + (hi - lo) * u[:, 0])[:, None, None]
    out = channels + (2.0 * u[:, 1:].reshape(channels.shape) - 1.0) * half
    for redraw in range(1, ENVELOPE_MAX_REDRAWS + 1):
        bad = out <= 0
        if not bad.any():
            return out
        u = draws(redraw)[:, 1:].reshape(channels.shape)
        out[bad] = channels[bad] + (2.0 * u[bad] - 1.0) * half[bad]
    raise ValueError("envelope noise: could not draw positive channels (the envelope is far wider than the "
                     "spectra; raise envelope_delta)")


def _element_rows(species: tuple[str, ...]) -> list[list[int]]:
    """For each feature element: its element row and all of its isotope rows in the store's species list."""
    return [[i for i, s in enumerate(species) if parse_species(s)[1] == SYMBOL_TO_Z[sym]] for sym in FEATURE_SPECIES]


# ------------------------------------------------------------------------------------------ driver
def _n_space(reader: StoreReader, idx: np.ndarray) -> np.ndarray:
    """Normalisation-free feature fluxes q_C Phi^raw (n, 5, n_E) of records idx (sorted, unique)."""
    rows = species_rows(reader.info.species, FEATURE_SPECIES)
    flux = reader.take("flux", idx).astype(np.float64)[:, rows, :]
    return flux * reader.take("norms", idx)[:, NORM_NAMES.index("q_c")][:, None, None]


def _selection_envelope(reader: StoreReader, selected: np.ndarray, c_idx: int, chunk: int) -> np.ndarray:
    """max - min of the CR-ML channels over the selected records, (5, n_E)."""
    hi_env = lo_env = None
    for start in range(0, selected.size, chunk):
        ch = envelope_channels(_n_space(reader, selected[start: start + chunk]), c_idx)
        mx, mn = ch.max(axis=0), ch.min(axis=0)
        hi_env = mx if hi_env is None else np.maximum(hi_env, mx)
        lo_env = mn if lo_env is None else np.minimum(lo_env, mn)
    return hi_env - lo_env


def _pseudo_meta(reader: StoreReader, cfg: PseudoDataConfig, store: Path, extra: dict) -> StoreMeta:
    """Store metadata of a pseudo-data file: the source's, with the pseudo-data settings added."""
    a = reader.info.attrs
    return StoreMeta(species=list(reader.info.species), ekin_gev_per_n=reader.info.energies, grid=a.get("grid", {}),
                     cross_sections=str(a.get("cross_sections", "")), solver_mode=str(a.get("solver_mode", "")),
                     backend=str(a.get("backend", "")), design="pseudo", dataset=cfg.dataset,
                     temperature=float(a.get("temperature", np.nan)), seed=cfg.seed, config=asdict(cfg),
                     extra={"pseudo_data": True, "source_store": str(store.resolve()), **extra})


def make_pseudodata(store: Path | str, out: Path | str, config: PseudoDataConfig | None = None,
                    overwrite: bool = True) -> PseudoDataSummary:
    """Write ``config.n_pseudo`` pseudo-spectra made from ``store`` to the new store ``out`` (module docstring).

    ``out`` is a :class:`crnet.store.MockStore` file: ``params`` of the central value, re-profiled ``norms``,
    pseudo ``chi2`` against ``config.dataset``, ``flux`` before normalisations; ``chain`` = -1 and ``step`` =
    index of the central value's record in ``store``; ``converged`` / ``residual`` copied from it.
    """
    cfg = config or PseudoDataConfig()
    store, out = Path(store), Path(out)
    rng = np.random.default_rng(cfg.seed)
    with StoreReader(store) as reader:
        info = reader.info
        if info.is_pseudo:  # a second draw on pseudo-data: ~10 % fluctuations reported as "max 4.99 %" (review by
            # helper-112, session 23)
            raise ValueError(f"{store}: is a pseudo-data store already (made from {info.attrs.get('source_store')}); "
                             "make pseudo-data from the scan's mock store, so that each spectrum carries one noise "
                             "draw")
        scanned = info.attrs.get("dataset")
        if scanned is not None and str(scanned) != cfg.dataset and not cfg.update_chi2:
            raise ValueError(f"{store}: pseudo-data would re-profile q_C (features 0-2) against data set "
                             f"{cfg.dataset!r}, but the store's chi2 (which picks the central spectra) and its "
                             f"normalisations are against {scanned!r}: use dataset {scanned!r}, or update_chi2 to "
                             "rescore the store against the other one")
        c_idx = c_norm_index(info.energies)
        chi2_all = updated_chi2(reader, cfg.dataset) if cfg.update_chi2 else reader.chi2()
        converged = reader.converged()
        if not np.any(converged & np.isfinite(chi2_all)):
            # said 'no finite chi2 values to select from' of finite chi2 values whose records had not converged
            # (walk-through by helper-87, session 21)
            n_conv, n_finite = int(converged.sum()), int(np.isfinite(chi2_all).sum())
            fix = ("scan again with a solver that converges (`crnet scan`: raise --max-steps or loosen --tol)"
                   if n_conv == 0 else f"the chi2 of all {n_conv} converged records are NaN or infinite")
            raise ValueError(f"{store}: no converged record with a finite chi2 to draw central spectra from "
                             f"({n_conv} of {converged.size} records converged, {n_finite} have a finite chi2); "
                             f"pseudo-data are made from converged spectra only: {fix}")
        selected, c_min, delta = select_within_confidence(np.where(converged, chi2_all, np.nan), cfg.n_sigma)
        # the envelope of the whole selection, before the train / test split: computed on the test part alone (20 %
        # of the records) it was narrower, the test pseudo-data less noisy than Machine B's training pseudo-data
        # (a max - min over a subset can only be narrower; review by helper-86, session 21)
        envelope = _selection_envelope(reader, selected, c_idx, cfg.chunk_size) if cfg.noise == "envelope" else None
        if cfg.centres != "all":
            held = holdout_mask(selected, cfg.holdout_fraction, store_holdout_records(info.attrs))
            selected = selected[held] if cfg.centres == "test" else selected[~held]
            if selected.size == 0:
                raise ValueError(f"{store}: no {cfg.centres} centres among the records within {cfg.n_sigma} sigma "
                                 f"(hold-out fraction {cfg.holdout_fraction}); scan more or change the fraction")
        sources = rng.choice(selected, size=cfg.n_pseudo, replace=cfg.n_pseudo > selected.size)
        el_rows = _element_rows(info.species)
        extra = {"source_chi2_min": c_min, "source_delta_chi2": delta, "n_selected": int(selected.size),
                 "centres": cfg.centres, "holdout_fraction": cfg.holdout_fraction,
                 "source_chi2": "updated" if cfg.update_chi2 else "stored"}
        rel_dev: list[np.ndarray] = []
        chi2_new = np.empty(cfg.n_pseudo)
        with MockStore.create(out, _pseudo_meta(reader, cfg, store, extra), capacity=cfg.n_pseudo,
                              overwrite=overwrite) as dst:
            for start in range(0, cfg.n_pseudo, cfg.chunk_size):
                src = sources[start: start + cfg.chunk_size]
                uniq, inverse = np.unique(src, return_inverse=True)
                flux = reader.take("flux", uniq).astype(np.float64)[inverse]
                n_flux = _n_space(reader, uniq)[inverse]
                if cfg.noise == "paper":
                    factor = paper_noise(rng, n_flux.shape, cfg.max_relative)
                else:  # draws by pseudo-spectrum index: the same seed gives the same spectra whatever chunk_size
                    # (one stream per chunk interleaved Delta, bins and redraws by chunk; review by helper-112, s23)
                    channels = envelope_channels(n_flux, c_idx)
                    per = 1 + channels[0].size
                    draws = functools.partial(indexed_uniforms, cfg.seed, start, src.size, per)  # (stream)
                    noisy = envelope_noise(draws, channels, envelope, cfg.envelope_delta)
                    factor = channels_to_fluxes(noisy, c_idx) / n_flux
                for k, rows in enumerate(el_rows):
                    flux[:, rows, :] *= factor[:, k][:, None, :]
                rel_dev.append(np.abs(factor - 1.0).reshape(factor.shape[0], -1).max(axis=1))
                res = chi2(spectra_from_flux(flux, info.species, info.energies), cfg.dataset)
                norms = np.column_stack([res.q_c] + [res.ratios[k] for k in RATIO_PARAMETERS.values()])
                chi2_new[start: start + src.size] = res.chi2_tot
                n = src.size
                dst.append_batch(RecordBatch(
                    params=reader.take("params", uniq)[inverse], norms=norms, flux=flux.astype(np.float32),
                    chi2=res.chi2_tot, chain=np.full(n, -1), step=src, accepted=np.ones(n, dtype=bool),
                    converged=reader.take("converged", uniq)[inverse],
                    residual=reader.take("residual", uniq)[inverse]))
    devs = np.concatenate(rel_dev)
    return PseudoDataSummary(out, cfg.n_pseudo, int(selected.size), c_min, delta, float(np.median(devs)),
                             float(devs.max()), float(np.median(chi2_new)))
