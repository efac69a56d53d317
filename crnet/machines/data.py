"""Training data from a mock store (or a pseudo-data store from :mod:`crnet.pseudodata`), read in blocks.

The store is :mod:`crnet.store`'s file (opened read-only through :class:`crnet.store.MockStore`):
``params`` (N, 10) in PARAM_NAMES columns, ``norms`` (N, 4) = (q_c, xi_Li, xi_Be, qO_over_qC), ``flux``
(N, n_species, n_E) float32 before the normalisations, m^-2 s^-1 sr^-1 (GeV/n)^-1, ``chi2``, ``converged``
...; only the first ``n_complete`` records are read. The features need q_c only (:mod:`crnet.features`).

Records are used when converged, with finite parameters inside the prior box, q_c > 0 and positive
fluxes of Li, Be, B, C, O on the whole grid; the others are counted in ``dropped``. The split is a
seeded random permutation (90 % / 10 % by default); pseudo-data from enough centres are split by central
record, so that validation holds out whole centres (:func:`split_indices`). Small stores are held in memory as float32;
larger ones (above ``memory_limit_bytes``) are streamed: each epoch visits blocks of ``block_size``
consecutive records in a random order and shuffles inside each block.
"""

from __future__ import annotations

import warnings
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from crnet.features import (
    FEATURE_SPECIES,
    FeatureScaler,
    MomentAccumulator,
    TargetTransform,
    features_from_raw,
    species_rows,
)
from crnet.likelihood import delta_chi2_threshold
from crnet.machines import CHECK_SIGMA
from crnet.store import NORM_NAMES, MockStore, store_holdout_records

DEFAULT_MEMORY_LIMIT_BYTES = 2 * 1024**3
"""Feature arrays up to this size (float32) are held in memory; larger stores are streamed."""

DEFAULT_BLOCK_SIZE = 4096
"""Records per HDF5 read when computing features."""


@dataclass(frozen=True)
class StoreInfo:
    """Fixed content of a store: number of committed records, species, energy grid (GeV/n), root attributes."""

    path: Path
    n_records: int
    species: tuple[str, ...]
    energies: np.ndarray
    attrs: dict = field(default_factory=dict)

    @property
    def is_pseudo(self) -> bool:
        """Whether the file holds pseudo-data (:mod:`crnet.pseudodata`) rather than mock spectra."""
        return bool(self.attrs.get("pseudo_data", False))


class StoreReader:
    """Read-only access to the committed records of a mock store (:class:`crnet.store.MockStore`).

    Use as a context manager. Raises :class:`crnet.store.StoreError` (a ValueError) for missing, foreign
    or corrupt files and ValueError when the store lacks a feature species.
    """

    def __init__(self, path: Path | str) -> None:
        self.store = MockStore.open(path, "r")
        try:
            rows = species_rows(self.store.species, FEATURE_SPECIES)
        except ValueError as exc:
            self.store.close()
            raise ValueError(f"{path}: {exc}") from None
        self.info = StoreInfo(Path(path), self.store.n_complete, tuple(self.store.species),
                              self.store.ekin_gev_per_n.copy(), self.store.attrs())
        order = np.argsort(rows)
        self._sorted_rows = [int(r) for r in np.asarray(rows)[order]]
        self._unsort = np.argsort(order)

    def __enter__(self) -> StoreReader:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def close(self) -> None:
        self.store.close()

    @property
    def n_records(self) -> int:
        return self.info.n_records

    def _rows(self, start: int, stop: int | None) -> slice:
        return slice(start, self.n_records if stop is None else stop)

    def params(self, start: int = 0, stop: int | None = None) -> np.ndarray:
        """(n, 10) float64 in :data:`PARAM_NAMES` order and units (breaks in MV)."""
        return self.store.read("params", self._rows(start, stop))

    def norms(self, start: int = 0, stop: int | None = None) -> np.ndarray:
        """(n, 4) float64 profiled normalisations, columns :data:`crnet.store.NORM_NAMES`."""
        return self.store.read("norms", self._rows(start, stop))

    def chi2(self) -> np.ndarray:
        return self.store.read("chi2")

    def converged(self) -> np.ndarray:
        return self.store.read("converged").astype(bool)

    def take(self, name: str, idx: np.ndarray) -> np.ndarray:
        """Records ``idx`` (sorted, unique, below n_records) of record dataset ``name``."""
        idx = np.asarray(idx, dtype=np.int64)
        if idx.size and np.any(np.diff(idx) <= 0):
            raise ValueError("take: indices must be sorted and unique")
        return self.store.read(name, idx)

    def raw_feature_flux(self, start: int, stop: int) -> np.ndarray:
        """(n, 5, n_E) float64 flux of Li, Be, B, C, O before the normalisations."""
        stop = min(stop, self.n_records)
        block = np.asarray(self.store.file["flux"][start:stop, self._sorted_rows, :], dtype=np.float64)
        return block[:, self._unsort, :]

    def features(self, start: int, stop: int) -> tuple[np.ndarray, np.ndarray]:
        """(log10 features (n, 8, n_E) with NaN for unusable models, valid (n,) bool) of records start..stop."""
        q_c = self.norms(start, stop)[:, NORM_NAMES.index("q_c")]
        return features_from_raw(self.raw_feature_flux(start, stop), q_c, self.info.energies, strict=False)


def read_store_info(path: Path | str) -> StoreInfo:
    """:class:`StoreInfo` of a store (validates the file)."""
    with StoreReader(path) as reader:
        return reader.info


def record_filter(reader: StoreReader, transform: TargetTransform, max_sigma: float | None,
                  holdout_fraction: float = 0.0) -> tuple[np.ndarray, dict]:
    """Candidate records (bool mask) and the number dropped by each criterion (before features).

    holdout_fraction : drop every record of the hold-out hash (:func:`crnet.pseudodata.holdout_mask`), the
        records test pseudo-data may be made from, so that a closure test never sees a spectrum the machine
        trained on. All of them, not only those inside today's n-sigma selection: merging re-simulations
        into the store (feedback) lowers chi2_min and would move that selection. The re-simulations themselves
        (after the store's :data:`crnet.store.HOLDOUT_RECORDS_ATTR`) are never test centres and are kept.
    """
    params = reader.params()
    conv = reader.converged()
    finite = np.all(np.isfinite(params), axis=1)
    in_box = np.zeros(params.shape[0], dtype=bool)
    in_box[finite] = ~transform.outside_box(params[finite]).any(axis=1)
    q_c = reader.norms()[:, NORM_NAMES.index("q_c")]
    good_q = np.isfinite(q_c) & (q_c > 0)
    mask = conv & finite & in_box & good_q
    dropped = {"not_converged": int((~conv).sum()), "nonfinite_params": int((~finite).sum()),
               "outside_prior_box": int((finite & ~in_box).sum()), "bad_q_c": int((~good_q).sum())}
    if max_sigma is not None:
        chi2 = reader.chi2()
        # chi2_min over converged records, as the scan, the pseudo-data, the evaluation and the Check Machine's labels
        # take it (review by helper-110, session 23: a failed solve's finite chi2 below the converged minimum shrank
        # the selection, 18 records kept instead of 64 on its synthetic store)
        ok = np.isfinite(chi2) & conv
        if not ok.any():
            raise ValueError(f"{reader.info.path}: no converged record with a finite chi2 for the max_sigma "
                             "selection")
        within = ok & (chi2 < chi2[ok].min() + delta_chi2_threshold(max_sigma))
        dropped["outside_max_sigma"] = int((mask & ~within).sum())
        mask &= within
    if holdout_fraction > 0:
        from crnet.pseudodata import holdout_mask

        held = holdout_mask(np.arange(params.shape[0]), holdout_fraction, store_holdout_records(reader.info.attrs))
        dropped["held_out_for_tests"] = int((mask & held).sum())
        mask &= ~held
    return mask, dropped


def split_hash(ids: np.ndarray, seed: int) -> np.ndarray:
    """A uniform number in [0, 1) per id (non-negative integers), fixed by (id, seed): SplitMix64 of the id offset
    by a SplitMix64 of the seed. Independent of :func:`crnet.pseudodata.holdout_mask`'s hash."""
    def mix(z: np.ndarray) -> np.ndarray:
        z = z + np.uint64(0x9E3779B97F4A7C15)
        z = (z ^ (z >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
        z = (z ^ (z >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
        return z ^ (z >> np.uint64(31))

    with np.errstate(over="ignore"):
        z = mix(np.asarray(ids, dtype=np.int64).astype(np.uint64) + mix(np.array([int(seed) % 2**64],
                                                                                  dtype=np.uint64))[0])
    return (z >> np.uint64(11)).astype(np.float64) / 2.0**53


def split_indices(candidates: np.ndarray, val_fraction: float, seed: int,
                  groups: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Seeded split of record indices into (train, validation), each sorted ascending.

    A record (or group) goes to validation when its :func:`split_hash` is below ``val_fraction``: its side depends
    only on its own id and the seed, not on the other candidates. A store that grows (the feedback loop appends
    re-simulations and retrains with a warm start) therefore keeps every old record on the side it had, and no
    record the previous weights trained on is used to validate the next round. (A seeded permutation of the
    candidates, used before session 13, re-drew the whole split when the store grew: most of round 1's validation
    records had been round 0's training records, measured in review.) The validation share is ``val_fraction``
    on average (binomial); at least one id goes to each side.

    ``groups`` (one id per candidate) keeps every group on one side: pseudo-data are split by their central
    record (the ``step`` field), so that validation measures spectra of centres the network has not seen,
    not fresh noise on the ones it trains on. When even one group is more than the share ``val_fraction``
    (fewer than 1 / val_fraction groups, e.g. < 10 centres) the split falls back to records, with a warning:
    measured on the CPU-scale pipeline (4 training centres), holding out one of them took a quarter of Machine B's
    centres, early stopping ended members at epochs 5-28 on a loss 1000x the record split's, and the
    measured-data prediction's chi2_tot rose from 682 to 35,633.
    """
    if not 0.0 < val_fraction < 1.0:
        raise ValueError(f"val_fraction must lie in (0, 1), got {val_fraction}")
    cand = np.asarray(candidates, dtype=np.int64)
    ids = cand
    if groups is not None:
        groups = np.asarray(groups)
        if groups.shape != cand.shape:
            raise ValueError(f"groups has shape {groups.shape}, candidates {cand.shape}")
        if np.unique(groups).size * val_fraction >= 1.0:
            ids = groups.astype(np.int64)
        else:
            warnings.warn(f"the {cand.size} pseudo-spectra come from {np.unique(groups).size} central spectra: one "
                          f"held-out centre would be more than val_fraction = {val_fraction} of them, so validation "
                          "shares centres with training (early stopping then measures noise on known spectra, not "
                          "new ones)", RuntimeWarning, stacklevel=2)
    if np.unique(ids).size < 2:
        raise ValueError(f"only {cand.size} usable records ({np.unique(ids).size} distinct): too few to split")
    u = split_hash(ids, seed)
    is_val = u < val_fraction
    if not is_val.any():  # tiny sets: the id with the smallest hash validates
        is_val = ids == ids[np.argmin(u)]
    elif is_val.all():
        is_val = ids != ids[np.argmax(u)]
    return np.sort(cand[~is_val]), np.sort(cand[is_val])


@dataclass
class RegressionData:
    """Standardised features and scaled targets of a store's train / validation split."""

    path: Path
    info: StoreInfo
    transform: TargetTransform
    scaler: FeatureScaler
    train_idx: np.ndarray
    val_idx: np.ndarray
    dropped: dict
    block_size: int
    cache: dict | None = None

    @property
    def in_memory(self) -> bool:
        return self.cache is not None

    def _split_idx(self, split: str) -> np.ndarray:
        if split not in ("train", "val"):
            raise ValueError(f"split must be 'train' or 'val', got {split!r}")
        return self.train_idx if split == "train" else self.val_idx

    def arrays(self, split: str) -> tuple[np.ndarray, np.ndarray]:
        """All (x float32 (n, 8, n_E), y float32 (n, 10)) of a split (reads the store when streaming)."""
        if self.cache is not None:
            return self.cache[f"x_{split}"], self.cache[f"y_{split}"]
        xs, ys = [], []
        for x, y in self.batches(split, batch_size=self.block_size, generator=None):
            xs.append(x)
            ys.append(y)
        return np.concatenate(xs), np.concatenate(ys)

    def batches(self, split: str, batch_size: int,
                generator: np.random.Generator | None) -> Iterator[tuple[np.ndarray, np.ndarray]]:
        """Mini-batches (x, y) of a split; shuffled with ``generator`` (None: in record order)."""
        if self.cache is not None:
            x, y = self.cache[f"x_{split}"], self.cache[f"y_{split}"]
            order = generator.permutation(x.shape[0]) if generator is not None else np.arange(x.shape[0])
            for lo in range(0, order.size, batch_size):
                sel = order[lo: lo + batch_size]
                yield x[sel], y[sel]
            return
        yield from self._stream(self._split_idx(split), batch_size, generator)

    def _stream(self, idx: np.ndarray, batch_size: int,
                generator: np.random.Generator | None) -> Iterator[tuple[np.ndarray, np.ndarray]]:
        starts = np.arange(0, self.info.n_records, self.block_size)
        if generator is not None:
            starts = starts[generator.permutation(starts.size)]
        buf_x: list[np.ndarray] = []
        buf_y: list[np.ndarray] = []
        n_buf = 0
        with StoreReader(self.path) as reader:
            for lo in starts:
                hi = min(lo + self.block_size, self.info.n_records)
                rows = idx[(idx >= lo) & (idx < hi)]
                if rows.size == 0:
                    continue
                feats, _ = reader.features(lo, hi)
                x = self.scaler.transform(feats[rows - lo]).astype(np.float32)
                y = self.transform.forward(reader.params(lo, hi)[rows - lo]).astype(np.float32)
                if generator is not None:
                    perm = generator.permutation(rows.size)
                    x, y = x[perm], y[perm]
                buf_x.append(x)
                buf_y.append(y)
                n_buf += rows.size
                while n_buf >= batch_size:
                    bx, by = np.concatenate(buf_x), np.concatenate(buf_y)
                    yield bx[:batch_size], by[:batch_size]
                    buf_x, buf_y, n_buf = [bx[batch_size:]], [by[batch_size:]], n_buf - batch_size
        if n_buf:
            yield np.concatenate(buf_x), np.concatenate(buf_y)


def prepare_regression_data(path: Path | str, transform: TargetTransform, *, val_fraction: float = 0.1,
                            seed: int = 0, max_sigma: float | None = None,
                            holdout_fraction: float = 0.0,
                            memory_limit_bytes: int = DEFAULT_MEMORY_LIMIT_BYTES,
                            block_size: int = DEFAULT_BLOCK_SIZE,
                            scaler: FeatureScaler | None = None) -> RegressionData:
    """Filter, split, compute features block by block and fit the standardisation on the training part.

    ``scaler``: use this standardisation instead of fitting one. A warm-started retraining (feedback rounds) passes
    its initial model's, so that the inherited weights see inputs scaled as they were trained on (refitting on the
    grown store moved the feature means by a sizeable fraction of the old standard deviations, review of session 13)."""
    path = Path(path)
    with StoreReader(path) as reader:
        info = reader.info
        mask, dropped = record_filter(reader, transform, max_sigma, holdout_fraction)
        cand = np.flatnonzero(mask)
        n_e = info.energies.size
        in_memory = cand.size * 8 * n_e * 4 <= memory_limit_bytes
        valid = np.zeros(info.n_records, dtype=bool)
        feats_all = np.empty((cand.size, 8, n_e), dtype=np.float32) if in_memory else None
        y_all = np.empty((cand.size, transform.n_outputs)) if in_memory else None
        # provisional split on the candidates: records whose features turn out unusable are dropped from
        # both parts afterwards, so the split does not depend on the feature pass.
        groups = reader.take("step", cand) if info.is_pseudo else None  # pseudo-data: split by central record
        try:
            train_c, val_c = split_indices(cand, val_fraction, seed, groups)
        except ValueError as exc:  # say why so few remain (walk-through by helper-87, session 21: a scan whose
            # models all missed the solver tolerance gave "only 0 usable records" and nothing else)
            raise ValueError(f"{path}: {exc}; of its {info.n_records} records, dropped: {dropped}") from None
        is_train = np.zeros(info.n_records, dtype=bool)
        is_train[train_c] = True
        acc = MomentAccumulator()
        pos = 0
        for lo in range(0, info.n_records, block_size):
            hi = min(lo + block_size, info.n_records)
            rows = cand[(cand >= lo) & (cand < hi)]
            if rows.size == 0:
                continue
            feats, ok = reader.features(lo, hi)
            feats, ok = feats[rows - lo], ok[rows - lo]
            valid[rows] = ok
            acc.update(feats[ok & is_train[rows]])
            if in_memory:
                feats_all[pos: pos + rows.size] = feats
                y_all[pos: pos + rows.size] = transform.forward(reader.params(lo, hi)[rows - lo])
            pos += rows.size
    dropped["bad_features"] = int((mask & ~valid).sum())
    train_idx, val_idx = train_c[valid[train_c]], val_c[valid[val_c]]
    if train_idx.size < 2 or val_idx.size < 1:
        raise ValueError(f"{path}: only {train_idx.size} training and {val_idx.size} validation records are usable "
                         f"(dropped: {dropped})")
    if scaler is None:
        scaler = acc.scaler()
    elif scaler.mean.shape != (8, n_e):
        raise ValueError(f"{path}: the given feature scaler has shape {scaler.mean.shape}, the store's features "
                         f"{(8, n_e)} (another energy grid)")
    cache = None
    if in_memory:
        cache = {}
        for split, idx in (("train", train_idx), ("val", val_idx)):
            where = np.searchsorted(cand, idx)
            x = np.empty((idx.size, 8, n_e), dtype=np.float32)
            for lo in range(0, idx.size, block_size):  # standardise in float64, chunk by chunk
                x[lo: lo + block_size] = scaler.transform(feats_all[where[lo: lo + block_size]])
            cache[f"x_{split}"], cache[f"y_{split}"] = x, y_all[where].astype(np.float32)
    return RegressionData(path, info, transform, scaler, train_idx, val_idx, dropped, block_size, cache)


@dataclass
class CheckData:
    """Scaled parameters and inside/outside labels of the Check Machine's balanced train / validation split."""

    path: Path
    info: StoreInfo
    transform: TargetTransform
    train_idx: np.ndarray
    val_idx: np.ndarray
    dropped: dict
    cache: dict
    n_sigma: float = CHECK_SIGMA

    def arrays(self, split: str) -> tuple[np.ndarray, np.ndarray]:
        return self.cache[f"x_{split}"], self.cache[f"y_{split}"]

    def batches(self, split: str, batch_size: int,
                generator: np.random.Generator | None) -> Iterator[tuple[np.ndarray, np.ndarray]]:
        x, y = self.arrays(split)
        order = generator.permutation(x.shape[0]) if generator is not None else np.arange(x.shape[0])
        for lo in range(0, order.size, batch_size):
            sel = order[lo: lo + batch_size]
            yield x[sel], y[sel]


def prepare_check_data(path: Path | str, transform: TargetTransform, *, val_fraction: float = 0.1, seed: int = 0,
                       n_sigma: float = CHECK_SIGMA) -> CheckData:
    """Balanced inside/outside-region sample (Appendix B, 4 sigma) with a seeded 90/10 split."""
    from crnet.machines.check import balanced_sample, inside_region

    path = Path(path)
    with StoreReader(path) as reader:
        params, chi2, conv = reader.params(), reader.chi2(), reader.converged()
        info = reader.info
    finite = np.all(np.isfinite(params), axis=1) & np.all(params[:, list(transform.log_columns)] > 0, axis=1)
    usable = conv & finite & np.isfinite(chi2)
    dropped = {"not_converged": int((~conv).sum()), "bad_params_or_chi2": int((conv & ~usable).sum())}
    inside = inside_region(np.where(usable, chi2, np.nan), n_sigma)
    rng = np.random.default_rng(seed)
    idx, labels = balanced_sample(inside, rng, np.flatnonzero(usable))
    train_idx, val_idx = split_indices(idx, val_fraction, seed)
    lab = dict(zip(idx.tolist(), labels.tolist(), strict=True))
    x = {k: transform.forward(params[v]).astype(np.float32) for k, v in (("train", train_idx), ("val", val_idx))}
    y = {k: np.array([lab[i] for i in v.tolist()], dtype=np.float32) for k, v in (("train", train_idx),
                                                                                  ("val", val_idx))}
    cache = {"x_train": x["train"], "y_train": y["train"], "x_val": x["val"], "y_val": y["val"]}
    return CheckData(path, info, transform, train_idx, val_idx, dropped, cache, n_sigma)
