"""The mock store: one appendable, crash-safe HDF5 file of propagated models (``crnet scan`` writes it).

Schema (format "crnet-mock-store", format_version 1)
----------------------------------------------------
Record datasets — first axis = record, resizable (maxshape None) and chunked along records. Their
allocated length (the *capacity*) may exceed the number of committed records: readers must never look
beyond the root attribute ``n_complete``.

=============  ===========================  =========  =====================================================
dataset        shape                        dtype      content
=============  ===========================  =========  =====================================================
``params``     (N, 10)                      float64    Table 1 parameters, columns ``crprop.params.PARAM_NAMES``
                                                       (attrs ``names``, ``units``; D0 in 1e28 cm^2/s, v_A in
                                                       km/s, z_h in kpc, breaks R_br1, R_br2 in MV - linear)
``norms``      (N, 4)                       float64    profiled normalisations as crnet.likelihood returns
                                                       them, attr ``names`` = :data:`NORM_NAMES`
                                                       (q_c, xi_Li, xi_Be, qO_over_qC; all dimensionless)
``flux``       (N, n_species, n_E)          float32    fluxes at the Sun, m^-2 s^-1 sr^-1 (GeV/n)^-1, before
                                                       the profiled normalisations (local interstellar)
``chi2``       (N,)                         float64    chi^2_tot (paper Eq. 4.3) at the profiled normalisations
``chain``      (N,)                         int32      MCMC chain id; -1 for the non-MCMC designs
``step``       (N,)                         int64      MCMC step (0 = starting point) or design-point index
``accepted``   (N,)                         bool       the MH step accepted this proposal (True for designs
                                                       and starting points)
``converged``  (N,)                         bool       every species met the solver tolerance
``residual``   (N,)                         float64    largest relative solver residual over the species
=============  ===========================  =========  =====================================================

Fixed datasets: ``species`` (n_species,) UTF-8 strings, element symbols first ('H', 'Li', ..., 'Si')
then isotopes ('1H', '2H', '6Li', ..., '30Si') as ``Spectra.species_table()`` orders them;
``Ekin_GeV_per_n`` (n_E,) float64, kinetic energy per nucleon in GeV/n.

Root attributes: ``format``, ``format_version``, ``n_complete`` (int64, committed records), ``grid``
(JSON), ``cross_sections``, ``solver_mode``, ``backend``, ``crnet_version``, ``seed``, ``design``,
``dataset`` (the likelihood's data-set name), ``temperature`` (chi2_scan = chi2_tot / temperature),
``config`` (JSON of the run), ``flux_units``, ``energy_units``, and the resume checkpoint in two
fixed-size JSON slots ``sampler_state_0`` / ``sampler_state_1`` (see below). Merged stores add
``merged_from`` (JSON list of the shards).

Chain states: every record of an MCMC run is one evaluated proposal. The current state of chain c
after step s is its last record with ``accepted`` = True and ``step`` <= s; a chain's weight at a state
is the number of steps until its next accepted record. The checkpoint therefore holds only the O(d^2)
adaptation state and the RNG (JSON, never pickles); the per-chain positions and chi^2 come from the
records on resume.

Crash safety (SIGKILL at any moment, not power loss)
----------------------------------------------------
Record datasets are allocated up front (HDF5 early allocation, no fill) and uncompressed, so writing a
batch changes raw data only, never HDF5 metadata. A batch is committed in three flushed steps: (1) its
rows are written beyond ``n_complete`` and flushed; (2) the checkpoint, tagged with the new record
count, a commit counter (which decides between two slots at the same ``n_complete``, after a batch with no
records) and a CRC32, goes into the slot *not* holding the current checkpoint, flushed; (3) the 8-byte
``n_complete`` is overwritten in place and flushed. A kill before (3) leaves the old ``n_complete``
and its intact checkpoint slot: readers see the previous batch boundary, a resume continues from it.
A new store is created under a temporary name and renamed into place. The only metadata changes after
creation are capacity growths (:meth:`MockStore.reserve`), which the scan does once, at its start. A growth
resizes the record datasets one after another in many writes, so a kill inside it can leave them with different
lengths: the capacity is the shortest length (all are >= ``n_complete``), and the next growth completes the others
(review by helper-85, session 21: a kill inside the resize of a resume with more steps made the store unreadable).
"""

from __future__ import annotations

import json
import re
import zlib
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import h5py
import numpy as np

from crnet import __version__
from crnet.paths import atomic_write
from crprop.params import PARAM_NAMES, PARAM_UNITS

FORMAT = "crnet-mock-store"
FORMAT_VERSION = 1

NORM_NAMES: tuple[str, ...] = ("q_c", "xi_Li", "xi_Be", "qO_over_qC")
"""Columns of ``norms``: crnet.likelihood's q_C and its RATIO_PARAMETERS (xi_Li, xi_Be, q_O/q_C), dimensionless."""

FLUX_UNITS = "m^-2 s^-1 sr^-1 (GeV/n)^-1"
ENERGY_UNITS = "GeV/n"

RECORD_DTYPES: dict[str, Any] = {
    "params": np.float64, "norms": np.float64, "flux": np.float32, "chi2": np.float64, "chain": np.int32,
    "step": np.int64, "accepted": np.bool_, "converged": np.bool_, "residual": np.float64,
}
"""Record datasets and their dtypes (the first axis of each is the record)."""

JSON_ATTRS: tuple[str, ...] = ("grid", "config", "merged_from")
"""Root attributes stored as JSON text."""

HOLDOUT_RECORDS_ATTR = "holdout_records"
"""Root attribute of a store made by appending records to another (the feedback loop's ``train_store.h5``): only
records below this index can be test centres (:func:`crnet.pseudodata.holdout_mask`). The appended ones
(re-simulations of predictions) never are, so the hold-out must not take them from training. Absent: every record
can be one."""


def store_holdout_records(attrs: Mapping[str, Any]) -> int | None:
    """The :data:`HOLDOUT_RECORDS_ATTR` of a store's root attributes (None: every record can be a test centre)."""
    value = attrs.get(HOLDOUT_RECORDS_ATTR)
    return None if value is None else int(value)

STATE_SLOTS: tuple[str, str] = ("sampler_state_0", "sampler_state_1")
STATE_CAPACITY_BYTES = 48_000
"""Fixed size of a checkpoint slot (under HDF5's 64 KiB object-header message limit; a slot is
overwritten in place, never resized)."""

FLUX_CHUNK_BYTES = 1 << 20
"""Target size of one ``flux`` chunk (records per chunk = this / bytes per record, at least 1)."""

SCALAR_CHUNK_RECORDS = 8192
"""Records per chunk of the 1-D and (N, 10)/(N, 4) datasets."""

GROWTH_FACTOR = 1.5
"""Capacity growth when an append exceeds the allocated records."""


class StoreError(ValueError):
    """A store file that is missing, foreign, corrupt, incompatible or locked (message names the file)."""


@dataclass
class StoreMeta:
    """What a new store records besides its records (root attributes and fixed datasets).

    species : labels of the flux rows (elements then isotopes); ekin_gev_per_n : (n_E,) energies, GeV/n.
    grid : JSON-able description of the propagation grid; cross_sections : cross-section set name(s);
    solver_mode, backend : how the spectra were computed; design : 'mcmc' | 'uniform' | 'lhs' |
    'sobol' | 'gaussian'; dataset : likelihood data-set name; temperature : chi2_scan = chi2_tot / T;
    seed : base seed; config : JSON-able run configuration; extra : further JSON-able root attributes.
    """

    species: list[str]
    ekin_gev_per_n: np.ndarray
    grid: dict[str, Any]
    cross_sections: str
    solver_mode: str
    backend: str
    design: str
    dataset: str
    temperature: float
    seed: int
    config: dict[str, Any] = field(default_factory=dict)
    extra: dict[str, Any] = field(default_factory=dict)


@dataclass
class RecordBatch:
    """B records to append; shapes as in the module docstring (params in PARAM_NAMES columns, linear MV)."""

    params: np.ndarray
    norms: np.ndarray
    flux: np.ndarray
    chi2: np.ndarray
    chain: np.ndarray
    step: np.ndarray
    accepted: np.ndarray
    converged: np.ndarray
    residual: np.ndarray

    def __post_init__(self) -> None:
        for name, dtype in RECORD_DTYPES.items():
            setattr(self, name, np.asarray(getattr(self, name), dtype=dtype))
        n = self.chi2.shape[0] if self.chi2.ndim == 1 else -1
        expect = {"params": (n, len(PARAM_NAMES)), "norms": (n, len(NORM_NAMES))}
        for name in RECORD_DTYPES:
            arr = getattr(self, name)
            if name in expect and arr.shape != expect[name]:
                raise ValueError(f"RecordBatch.{name}: shape {arr.shape}, expected {expect[name]}")
            if name == "flux" and (arr.ndim != 3 or arr.shape[0] != n):
                raise ValueError(f"RecordBatch.flux: shape {arr.shape}, expected ({n}, n_species, n_E)")
            if name not in expect and name != "flux" and arr.shape != (n,):
                raise ValueError(f"RecordBatch.{name}: shape {arr.shape}, expected ({n},)")

    def __len__(self) -> int:
        return int(self.chi2.shape[0])

    @classmethod
    def concatenate(cls, batches: list[RecordBatch]) -> RecordBatch:
        return cls(**{name: np.concatenate([getattr(b, name) for b in batches]) for name in RECORD_DTYPES})


def _text_attr(value: Any) -> str:
    return json.dumps(value, sort_keys=True, default=lambda o: o.tolist() if isinstance(o, np.ndarray) else str(o))


def _decode(value: Any) -> Any:
    if isinstance(value, bytes | np.bytes_):
        return value.decode("utf-8").rstrip()
    if isinstance(value, np.ndarray):
        return [_decode(v) for v in value.tolist()]
    if isinstance(value, np.generic):
        return value.item()
    return value


def encode_state(n_complete: int, state: Mapping[str, Any] | None, commit: int = 0) -> bytes:
    """Checkpoint slot content: JSON {"crc32", "body": {"n_complete", "state", "commit"}} padded to the slot
    size. ``commit`` counts checkpoints: a batch with no records (every MCMC proposal outside the prior box)
    leaves both slots at the same ``n_complete``, and the higher count tells which one is current."""
    body = json.dumps({"n_complete": int(n_complete), "state": state, "commit": int(commit)}, sort_keys=True,
                      separators=(",", ":"), allow_nan=True)
    text = json.dumps({"crc32": zlib.crc32(body.encode()), "body": json.loads(body)}, sort_keys=True,
                      separators=(",", ":"))
    raw = text.encode()
    if len(raw) > STATE_CAPACITY_BYTES:
        raise ValueError(f"checkpoint state of {len(raw)} bytes exceeds the slot size {STATE_CAPACITY_BYTES}")
    return raw.ljust(STATE_CAPACITY_BYTES)


def decode_state(raw: Any) -> tuple[int, Any, int] | None:
    """(n_complete, state, commit count) of a slot, or None if it is empty, torn or fails its CRC (count 0 for
    slots written before the count existed)."""
    try:
        text = raw.decode("utf-8") if isinstance(raw, bytes | np.bytes_) else str(raw)
        obj = json.loads(text)
        body = json.dumps(obj["body"], sort_keys=True, separators=(",", ":"), allow_nan=True)
        if zlib.crc32(body.encode()) != obj["crc32"]:
            return None
        return int(obj["body"]["n_complete"]), obj["body"]["state"], int(obj["body"].get("commit", 0))
    except (ValueError, KeyError, TypeError, UnicodeDecodeError):
        return None


def _open_h5(path: Path, mode: str) -> h5py.File:
    if not path.is_file():
        raise StoreError(f"{path}: no such store file")
    try:
        # readers do not lock: they may follow a running scan (they only look up to n_complete)
        return h5py.File(path, mode, locking=False) if mode == "r" else h5py.File(path, mode)
    except (OSError, RuntimeError) as exc:
        text = str(exc)
        if re.search(r"\block", text.lower()):  # 'lock' as a word start, not inside 'superblock'/'block'
            raise StoreError(f"{path}: the store is open for writing by another process ({text})") from None
        raise StoreError(f"{path}: not a readable HDF5 file ({text}); refusing it") from None


def validate_file(f: h5py.File, path: Path) -> tuple[int, int]:
    """Check an open file against the schema; returns (n_complete, capacity). Raises StoreError."""
    fmt = _decode(f.attrs.get("format"))
    if fmt != FORMAT:
        raise StoreError(f"{path}: not a crnet mock store (root attribute 'format' is {fmt!r}, expected "
                         f"{FORMAT!r}); refusing a foreign file")
    version = _decode(f.attrs.get("format_version"))
    if version != FORMAT_VERSION:
        raise StoreError(f"{path}: store format_version {version!r}; this crnet reads version {FORMAT_VERSION}")
    for name in (*RECORD_DTYPES, "species", "Ekin_GeV_per_n"):
        if name not in f or not isinstance(f[name], h5py.Dataset):
            raise StoreError(f"{path}: dataset '{name}' is missing; the file is corrupt or not a complete store")
    n_species, n_e = f["species"].shape[0], f["Ekin_GeV_per_n"].shape[0]
    tails = {"params": (len(PARAM_NAMES),), "norms": (len(NORM_NAMES),), "flux": (n_species, n_e)}
    for name, dtype in RECORD_DTYPES.items():
        dset = f[name]
        tail = tails.get(name, ())
        if dset.ndim != 1 + len(tail) or dset.shape[1:] != tail:
            raise StoreError(f"{path}: dataset '{name}' has shape {dset.shape}, expected (records,) + {tail} "
                             "(species x energies from 'species', 'Ekin_GeV_per_n')")
        if np.dtype(dset.dtype) != np.dtype(dtype):
            raise StoreError(f"{path}: dataset '{name}' has dtype {dset.dtype}, expected {np.dtype(dtype)}")
    names = [str(n) for n in _decode(f["params"].attrs.get("names", []))]
    if tuple(names) != PARAM_NAMES:
        raise StoreError(f"{path}: params attribute 'names' is {names}, expected {list(PARAM_NAMES)}")
    # a growth killed midway leaves the datasets at different lengths (module docstring): the shortest counts
    capacity = min(f[name].shape[0] for name in RECORD_DTYPES)
    n_complete = _decode(f.attrs.get("n_complete"))
    if not isinstance(n_complete, int) or not 0 <= n_complete <= capacity:
        raise StoreError(f"{path}: root attribute 'n_complete' = {n_complete!r} outside 0 .. capacity {capacity} "
                         "(the shortest record dataset)")
    return n_complete, capacity


def read_attrs(f: h5py.File) -> dict[str, Any]:
    """Root attributes, JSON ones decoded, checkpoint slots left out."""
    out: dict[str, Any] = {}
    for key, value in f.attrs.items():
        if key in STATE_SLOTS:
            continue
        value = _decode(value)
        if key in JSON_ATTRS and isinstance(value, str):
            try:
                value = json.loads(value)
            except ValueError as exc:
                raise StoreError(f"{f.filename}: root attribute '{key}' is not valid JSON ({exc})") from None
        out[key] = value
    return out


class MockStore:
    """Writer (and low-level reader) of one store file; a context manager.

    ``MockStore.create(path, meta, capacity)`` makes a new file (atomically); ``MockStore.open(path)``
    re-opens an existing one for appending ('r+', takes HDF5's file lock) or reading ('r').
    :meth:`append_batch` commits records with their checkpoint (see the module docstring).
    """

    def __init__(self, f: h5py.File, path: Path) -> None:
        self._f = f
        self.path = path
        self.n_complete, self.capacity = validate_file(f, path)
        self.species: list[str] = [str(s) for s in _decode(f["species"][()])]
        self.ekin_gev_per_n = np.asarray(f["Ekin_GeV_per_n"][()], dtype=np.float64)
        self._slot, self._commit = self._current_slot()

    # ------------------------------------------------------------------------------ lifecycle
    @classmethod
    def create(cls, path: Path | str, meta: StoreMeta, capacity: int = 0, overwrite: bool = False) -> MockStore:
        """New store at ``path`` with room for ``capacity`` records; refuses an existing file unless
        ``overwrite``. Written through :func:`crnet.paths.atomic_write` (a temporary file beside ``path``,
        renamed), so a crash leaves no half file and an overwritten store stays whole until the rename."""
        path = Path(path)
        if path.exists() and not overwrite:
            raise StoreError(f"{path}: file exists (resume it, or overwrite explicitly)")
        species, energy = _checked_layout(meta)  # before any file is written
        atomic_write(path, lambda tmp: _write_new_file(tmp, meta, species, energy, capacity))
        return cls.open(path, "r+")

    @classmethod
    def create_in_place(cls, path: Path | str, meta: StoreMeta, capacity: int = 0) -> MockStore:
        """New store written directly at ``path`` (a file there is truncated), open for appending. For a caller
        that fills the whole file under a temporary name and renames it itself (:func:`crnet.store_read.merge_stores`
        through :func:`crnet.paths.atomic_write`); everything else uses :meth:`create`."""
        path = Path(path)
        _write_new_file(path, meta, *_checked_layout(meta), capacity)
        return cls.open(path, "r+")

    @classmethod
    def open(cls, path: Path | str, mode: str = "r") -> MockStore:
        """Open an existing store ('r' read-only, 'r+' append); StoreError if missing, foreign or corrupt."""
        if mode not in ("r", "r+"):
            raise ValueError(f"MockStore.open: mode must be 'r' or 'r+', got {mode!r}")
        path = Path(path)
        f = _open_h5(path, mode)
        try:
            return cls(f, path)
        except StoreError:
            f.close()
            raise
        except (KeyError, OSError, RuntimeError, ValueError, IndexError, TypeError) as exc:
            f.close()
            raise StoreError(f"{path}: corrupt store ({type(exc).__name__}: {exc})") from None

    def close(self) -> None:
        if self._f.id.valid:
            self._f.close()

    def __enter__(self) -> MockStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @property
    def file(self) -> h5py.File:
        """The underlying h5py file (read only the rows below :attr:`n_complete`)."""
        return self._f

    @property
    def writable(self) -> bool:
        return self._f.mode == "r+"

    # ------------------------------------------------------------------------------ content
    def attrs(self) -> dict[str, Any]:
        """Root attributes (JSON decoded, checkpoint slots excluded)."""
        return read_attrs(self._f)

    def _current_slot(self) -> tuple[int | None, int]:
        """(slot, commit count) of the checkpoint matching ``n_complete``; of two (an empty batch was committed),
        the later one. (None, 0) when no slot matches."""
        best, best_commit = None, 0
        for i, name in enumerate(STATE_SLOTS):
            decoded = decode_state(self._f.attrs.get(name, b""))
            if decoded is not None and decoded[0] == self.n_complete and (best is None or decoded[2] > best_commit):
                best, best_commit = i, decoded[2]
        return best, best_commit

    def checkpoint(self) -> Any:
        """The checkpoint committed with the current ``n_complete`` (None for an empty or merged store).

        Raises StoreError if records exist but neither slot matches them (cannot happen with this writer).
        """
        if self._slot is None:
            if self.n_complete == 0:
                return None
            raise StoreError(f"{self.path}: no checkpoint matches n_complete = {self.n_complete}; cannot resume")
        decoded = decode_state(self._f.attrs[STATE_SLOTS[self._slot]])
        return None if decoded is None else decoded[1]

    def read(self, name: str, rows: slice | np.ndarray | None = None) -> np.ndarray:
        """Committed rows of one record dataset (default all ``n_complete``), in the order of ``rows`` (an index
        array may repeat rows and need not be sorted)."""
        if name not in RECORD_DTYPES:
            raise KeyError(f"{self.path}: no record dataset {name!r}; have {list(RECORD_DTYPES)}")
        dset = self._f[name]
        if rows is None:
            return dset[: self.n_complete]
        if isinstance(rows, slice):
            start, stop, step = rows.indices(self.n_complete)
            return dset[start:stop:step] if step > 0 else np.asarray(dset[: self.n_complete])[rows]
        idx = np.asarray(rows, dtype=np.int64)
        if idx.size and (idx.min() < 0 or idx.max() >= self.n_complete):
            raise IndexError(f"{self.path}: rows outside the {self.n_complete} committed records")
        if not idx.size:
            return dset[:0]
        unique, inverse = np.unique(idx, return_inverse=True)  # h5py reads increasing, distinct rows only
        return dset[unique][inverse.reshape(idx.shape)]

    # ------------------------------------------------------------------------------ writing
    def _require_writable(self) -> None:
        if not self.writable:
            raise StoreError(f"{self.path}: opened read-only")

    def reserve(self, n_records: int) -> None:
        """Grow the capacity to at least ``n_records`` (one flushed metadata change): every record dataset shorter
        than that is resized; a longer one (a growth killed midway) is kept."""
        self._require_writable()
        if n_records <= self.capacity:
            return
        for name in RECORD_DTYPES:
            dset = self._f[name]
            if dset.shape[0] < n_records:
                dset.resize((n_records,) + dset.shape[1:])
        self._f.flush()
        self.capacity = min(self._f[name].shape[0] for name in RECORD_DTYPES)

    def append_batch(self, batch: RecordBatch, state: Mapping[str, Any] | None = None) -> int:
        """Commit ``batch`` (and the checkpoint ``state``, JSON-able); returns the new ``n_complete``."""
        self._require_writable()
        b = len(batch)
        if batch.flux.shape[1:] != (len(self.species), self.ekin_gev_per_n.size):
            raise ValueError(f"{self.path}: batch flux has shape {batch.flux.shape}, the store holds "
                             f"(B, {len(self.species)} species, {self.ekin_gev_per_n.size} energies)")
        start, stop = self.n_complete, self.n_complete + b
        slot = 0 if self._slot is None else 1 - self._slot
        commit = self._commit + 1
        payload = encode_state(stop, state, commit)  # fails before anything is written if too large
        if stop > self.capacity:
            self.reserve(max(stop, int(self.capacity * GROWTH_FACTOR)))
        if b:
            for name in RECORD_DTYPES:
                self._f[name][start:stop] = getattr(batch, name)
            self._f.flush()
        self._f.attrs.modify(STATE_SLOTS[slot], np.bytes_(payload))
        self._f.flush()
        self._f.attrs.modify("n_complete", np.int64(stop))
        self._f.flush()
        self.n_complete, self._slot, self._commit = stop, slot, commit
        return stop


def _checked_layout(meta: StoreMeta) -> tuple[list[str], np.ndarray]:
    """``meta``'s species labels and energy grid (float64); ValueError when they cannot make a store."""
    species = [str(s) for s in meta.species]
    energy = np.asarray(meta.ekin_gev_per_n, dtype=np.float64)
    if energy.ndim != 1 or energy.size < 2 or np.any(np.diff(energy) <= 0):
        raise ValueError("StoreMeta.ekin_gev_per_n must be a strictly increasing 1-D grid (GeV/n)")
    if len(set(species)) != len(species) or not species:
        raise ValueError(f"StoreMeta.species must be unique non-empty labels, got {species}")
    return species, energy


def _write_new_file(path: Path, meta: StoreMeta, species: list[str], energy: np.ndarray, capacity: int) -> None:
    """Write an empty store's layout to ``path`` (created or truncated) and close it."""
    with h5py.File(path, "w") as f:
        _write_layout(f, meta, species, energy, max(int(capacity), 0))


def _write_layout(f: h5py.File, meta: StoreMeta, species: list[str], energy: np.ndarray, capacity: int) -> None:
    """Datasets (allocated early, no fill) and every root attribute of a new store."""
    n_s, n_e = len(species), energy.size
    f.create_dataset("species", data=np.array(species, dtype=object), dtype=h5py.string_dtype("utf-8"))
    dset = f.create_dataset("Ekin_GeV_per_n", data=energy)
    dset.attrs["units"] = ENERGY_UNITS
    flux_rows = max(1, FLUX_CHUNK_BYTES // (4 * n_s * n_e))
    trailing = {"params": (len(PARAM_NAMES),), "norms": (len(NORM_NAMES),), "flux": (n_s, n_e)}
    for name, dtype in RECORD_DTYPES.items():
        tail = trailing.get(name, ())
        dcpl = h5py.h5p.create(h5py.h5p.DATASET_CREATE)
        dcpl.set_alloc_time(h5py.h5d.ALLOC_TIME_EARLY)  # raw writes never touch metadata (crash safety)
        rows = flux_rows if name == "flux" else SCALAR_CHUNK_RECORDS
        f.create_dataset(name, shape=(capacity,) + tail, maxshape=(None,) + tail, dtype=dtype,
                         chunks=(rows,) + tail, fill_time="never", dcpl=dcpl)
    str_t = h5py.string_dtype("utf-8")
    f["params"].attrs.create("names", np.array(PARAM_NAMES, dtype=object), dtype=str_t)
    f["params"].attrs.create("units", np.array([PARAM_UNITS[n] for n in PARAM_NAMES], dtype=object), dtype=str_t)
    f["norms"].attrs.create("names", np.array(NORM_NAMES, dtype=object), dtype=str_t)
    f["flux"].attrs["units"] = FLUX_UNITS
    f["chi2"].attrs["definition"] = "chi2_tot (Eq. 4.3) with the profiled normalisations"
    # the commit attributes first: fixed size, rewritten in place
    f.attrs["n_complete"] = np.int64(0)
    for name in STATE_SLOTS:
        f.attrs.create(name, np.bytes_(encode_state(0, None)))
    attrs: dict[str, Any] = {
        "format": FORMAT, "format_version": np.int64(FORMAT_VERSION), "grid": _text_attr(meta.grid),
        "cross_sections": str(meta.cross_sections), "solver_mode": str(meta.solver_mode),
        "backend": str(meta.backend), "crnet_version": __version__, "seed": np.int64(meta.seed),
        "design": str(meta.design), "dataset": str(meta.dataset), "temperature": float(meta.temperature),
        "config": _text_attr(meta.config), "flux_units": FLUX_UNITS, "energy_units": ENERGY_UNITS,
    }
    for key, value in meta.extra.items():
        attrs[key] = _text_attr(value) if key in JSON_ATTRS or not isinstance(value, str | int | float) else value
    for key, value in attrs.items():
        f.attrs[key] = value
