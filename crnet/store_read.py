"""Readers of the mock store (schema in :mod:`crnet.store`): selections, merging shards, summaries.

Every reader opens the file read-only without HDF5's file lock and looks only at the first
``n_complete`` records, so it can follow a running scan and never sees a half-written batch.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from crnet.paths import atomic_write, same_file
from crnet.store import (
    HOLDOUT_RECORDS_ATTR,
    NORM_NAMES,
    RECORD_DTYPES,
    MockStore,
    RecordBatch,
    StoreError,
    StoreMeta,
    store_holdout_records,
)
from crprop.params import PARAM_NAMES
from crprop.spectra import Spectra

READ_BLOCK_RECORDS = 4096
"""Records read (and re-evaluated) per block, bounding memory for large stores."""

MERGE_KEYS: tuple[str, ...] = ("grid", "cross_sections", "solver_mode", "dataset")
"""Root attributes that must agree between shards for them to be merged."""

GRID_DEFAULTS_LEFT_OUT: Mapping[str, Any] = {"half_lives": "galprop"}
"""Grid entries a store leaves out at their default (crnet.scan.models.GridConfig spells GALPROP's half-lives
None and does not record them): absent and the default are the same setting."""

NOT_RECORDED = "(not recorded)"
"""What :func:`merge_differences` reports for an attribute (or grid entry) one of the stores lacks."""


def merge_differences(ours: Mapping[str, Any], theirs: Mapping[str, Any]) -> list[tuple[str, Any, Any]]:
    """(key, ours, theirs) for every MERGE_KEYS root attribute on which ``ours`` and ``theirs`` disagree, the
    ``grid`` dict (and any other dict attribute) entry by entry as 'grid.dz_kpc', so that a refusal can name the
    setting; a missing one is its default (:data:`GRID_DEFAULTS_LEFT_OUT`), else :data:`NOT_RECORDED`. Empty
    when :func:`merge_stores` can merge the two (its rule: equal attributes)."""
    out: list[tuple[str, Any, Any]] = []
    for key in MERGE_KEYS:
        a, b = ours.get(key, NOT_RECORDED), theirs.get(key, NOT_RECORDED)
        if isinstance(a, dict) and isinstance(b, dict):
            for sub in sorted(set(a) | set(b)):
                x, y = (d.get(sub, GRID_DEFAULTS_LEFT_OUT.get(sub, NOT_RECORDED)) for d in (a, b))
                if x != y:
                    out.append((f"{key}.{sub}", x, y))
        elif a != b:
            out.append((key, a, b))
    return out


@dataclass
class Selection:
    """Which committed records to read (all criteria combine with AND).

    delta_chi2 : keep chi2 - min(chi2) <= delta_chi2 (min over the whole store, or over the whole store
        re-evaluated against ``dataset``); n_sigma : the same with crnet.likelihood's threshold for
        14 parameters (3 sigma: 33.20, 4: 43.82, 6: 69.91); give at most one of the two.
    dataset : re-evaluate chi2 (and the profiled normalisations) against this data set (name, as
        crnet.data.get_dataset takes) from the stored fluxes, instead of using the store's chi2.
    chains : keep these chain ids. rows : (start, stop) record range. param_ranges : {name: (lo, hi)}
        for PARAM_NAMES columns (closed; breaks in MV). converged_only, accepted_only : flags.
    """

    delta_chi2: float | None = None
    n_sigma: float | None = None
    dataset: str | None = None
    chains: Sequence[int] | None = None
    rows: tuple[int, int] | None = None
    param_ranges: Mapping[str, tuple[float, float]] = field(default_factory=dict)
    converged_only: bool = False
    accepted_only: bool = False

    def threshold(self) -> float | None:
        if self.delta_chi2 is not None and self.n_sigma is not None:
            raise ValueError("Selection: give delta_chi2 or n_sigma, not both")
        if self.n_sigma is not None:
            from crnet.likelihood import delta_chi2_threshold

            return delta_chi2_threshold(self.n_sigma)
        return self.delta_chi2


@dataclass
class StoreData:
    """Selected records. ``index`` are their record numbers in the file; ``chi2``/``norms`` are against
    ``dataset`` (the store's own data set unless the selection re-evaluated them); ``delta_chi2`` is
    chi2 - min over the whole store for that data set. ``flux`` is None when not loaded."""

    index: np.ndarray
    params: np.ndarray
    norms: np.ndarray
    chi2: np.ndarray
    delta_chi2: np.ndarray
    chain: np.ndarray
    step: np.ndarray
    accepted: np.ndarray
    converged: np.ndarray
    residual: np.ndarray
    flux: np.ndarray | None
    species: list[str]
    ekin_gev_per_n: np.ndarray
    dataset: str
    attrs: dict[str, Any]
    param_names: tuple[str, ...] = PARAM_NAMES
    norm_names: tuple[str, ...] = NORM_NAMES

    def __len__(self) -> int:
        return int(self.index.size)


def spectra_from_flux(flux: np.ndarray, species: Sequence[str], ekin_gev_per_n: np.ndarray) -> Spectra:
    """Spectra (isotopes) rebuilt from stored flux rows (n, n_species, n_E); element rows are dropped."""
    from crnet.spectra_io import parse_species

    iso = [(i, parse_species(s)) for i, s in enumerate(species) if parse_species(s)[0] == "isotope"]
    if not iso:
        raise ValueError("stored species contain no isotope rows; cannot rebuild Spectra")
    cols = [i for i, _ in iso]
    n = flux.shape[0]
    return Spectra(ekin_gev_per_n, [p[1] for _, p in iso], [p[2] for _, p in iso],
                   np.asarray(flux[:, cols, :], dtype=np.float64), np.ones(n, bool), np.zeros(n))


def recompute_chi2(store: MockStore, dataset: str, rows: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """(chi2 (n,), norms (n, 4)) of the stored fluxes against ``dataset``, block by block; ``rows`` in any order
    (repeats allowed), read in increasing order through :func:`read_flux_rows` (bounded memory)."""
    from crnet.likelihood import RATIO_PARAMETERS, chi2

    rows = np.arange(store.n_complete) if rows is None else np.asarray(rows, dtype=np.int64).reshape(-1)
    order = np.argsort(rows, kind="stable")  # a block's span was first..last row: unsorted rows read nothing
    out_c = np.empty(rows.size)
    out_n = np.empty((rows.size, len(NORM_NAMES)))
    for s in range(0, rows.size, READ_BLOCK_RECORDS):
        at = order[s:s + READ_BLOCK_RECORDS]
        flux = read_flux_rows(store, rows[at])
        res = chi2(spectra_from_flux(flux, store.species, store.ekin_gev_per_n), dataset)
        out_c[at] = res.chi2_tot
        out_n[at] = np.column_stack([res.q_c] + [res.ratios[k] for k in RATIO_PARAMETERS.values()])
    return out_c, out_n


def read_store(path: Path | str, select: Selection | None = None, load_flux: bool = True) -> StoreData:
    """Committed records of a store that pass ``select`` (default: all).

    Raises StoreError for a missing, foreign or corrupt file and ValueError for a bad selection
    (unknown parameter name, both delta_chi2 and n_sigma).
    """
    sel = select or Selection()
    threshold = sel.threshold()
    unknown = [k for k in sel.param_ranges if k not in PARAM_NAMES]
    if unknown:
        raise ValueError(f"Selection.param_ranges: unknown parameters {unknown}; names are {list(PARAM_NAMES)}")
    with MockStore.open(path, "r") as store:
        n = store.n_complete
        attrs = store.attrs()
        cols = {name: store.read(name) for name in RECORD_DTYPES if name != "flux"}
        dataset = str(attrs.get("dataset", ""))
        if sel.dataset is not None and sel.dataset != dataset:
            cols["chi2"], cols["norms"] = recompute_chi2(store, sel.dataset)
            dataset = sel.dataset
        finite = np.isfinite(cols["chi2"])
        best = float(cols["chi2"][finite].min()) if finite.any() else np.nan
        delta = cols["chi2"] - best
        keep = np.ones(n, dtype=bool)
        if threshold is not None:
            keep &= np.isfinite(delta) & (delta <= threshold)
        if sel.chains is not None:
            keep &= np.isin(cols["chain"], np.asarray(list(sel.chains), dtype=np.int64))
        if sel.rows is not None:
            idx = np.arange(n)
            keep &= (idx >= sel.rows[0]) & (idx < sel.rows[1])
        for name, (lo, hi) in sel.param_ranges.items():
            col = cols["params"][:, PARAM_NAMES.index(name)]
            keep &= (col >= lo) & (col <= hi)
        if sel.converged_only:
            keep &= cols["converged"]
        if sel.accepted_only:
            keep &= cols["accepted"]
        index = np.nonzero(keep)[0]
        flux = read_flux_rows(store, index) if load_flux else None
        return StoreData(index=index, delta_chi2=delta[index], flux=flux, species=list(store.species),
                         ekin_gev_per_n=store.ekin_gev_per_n.copy(), dataset=dataset, attrs=attrs,
                         **{k: v[index] for k, v in cols.items()})


READ_GAP_RECORDS = 16
"""Fewest unselected records :func:`read_flux_rows` reads through rather than starting another read."""

READ_GAP_BYTES = 1 << 18
"""Flux bytes of unselected records :func:`read_flux_rows` reads through rather than starting another read: 31 records
of the paper grid's 8.4 kB, hundreds of a small store's. A separate read costs about as much as copying ~200 kB
(measured in session 23 on a 20000 x 25 x 84 float32 dataset in chunks of 64 records: 39 us for a one-record read,
225 us for a 1 MiB one). A gap of 16 records whatever their size made every-20th-record reads of a 384-byte store
70x slower (0.86 against 0.012 s; re-read by helper-121, session 23)."""


def row_spans(index: np.ndarray, max_gap: int = READ_GAP_RECORDS,
              max_span: int = READ_BLOCK_RECORDS) -> list[tuple[int, int]]:
    """(start, stop) positions in the sorted ``index`` whose records one contiguous read covers: neighbours at most
    ``max_gap`` records apart, and no read longer than ``max_span`` records (so memory stays bounded however
    scattered the selection is)."""
    index = np.asarray(index, dtype=np.int64)
    if index.size == 0:
        return []
    cuts = np.flatnonzero(np.diff(index) > max_gap + 1) + 1
    spans = []
    for a, b in zip(np.r_[0, cuts], np.r_[cuts, index.size], strict=True):
        piece = (index[a:b] - index[a]) // max_span  # a long dense run, in reads of <= max_span records
        edges = np.flatnonzero(np.diff(piece)) + 1 + a
        spans += list(zip(np.r_[a, edges].tolist(), np.r_[edges, b].tolist(), strict=True))
    return spans


def read_flux_rows(store: MockStore, index: np.ndarray) -> np.ndarray:
    """flux rows ``index`` (sorted increasing, repeats allowed), read as contiguous spans of at most
    READ_BLOCK_RECORDS records (:func:`row_spans`) rather than point selections. Reading a block's whole
    first-to-last span held every record between two scattered selected ones in memory (review by helper-115,
    session 23)."""
    index = np.asarray(index, dtype=np.int64)
    if index.size > 1 and np.any(np.diff(index) < 0):
        raise ValueError("read_flux_rows: index must be sorted increasing")
    out = np.empty((index.size, len(store.species), store.ekin_gev_per_n.size), dtype=np.float32)
    record_bytes = out.itemsize * len(store.species) * store.ekin_gev_per_n.size
    for a, b in row_spans(index, max(READ_GAP_RECORDS, READ_GAP_BYTES // max(record_bytes, 1))):
        first = int(index[a])
        out[a:b] = store.read("flux", slice(first, int(index[b - 1]) + 1))[index[a:b] - first]
    return out


def iter_batches(store: MockStore, block: int = READ_BLOCK_RECORDS, stop: int | None = None):
    """Yield the committed records (the first ``stop`` of them, default all) as RecordBatch blocks of at most
    ``block`` records."""
    end = store.n_complete if stop is None else min(int(stop), store.n_complete)
    for s in range(0, end, block):
        sl = slice(s, min(s + block, end))
        yield RecordBatch(**{name: store.read(name, sl) for name in RECORD_DTYPES})


def merge_stores(paths: Sequence[Path | str], out: Path | str, overwrite: bool = False,
                 holdout_records: int | None = None) -> Path:
    """Combine the committed records of ``paths`` (shards) into a new store ``out``; returns its path.

    The shards must share species, energies and the attributes in MERGE_KEYS. Chain ids are kept when
    the shards' MCMC chain ids are disjoint (shards of one distributed scan), otherwise shifted so that
    every chain stays distinct; -1 (designs) stays -1. The merged store records the shards in the
    ``merged_from`` attribute and holds no resume checkpoint. Written through :func:`crnet.paths.atomic_write`
    (a temporary file beside ``out``, renamed once). ``holdout_records``: recorded as the merged store's
    :data:`crnet.store.HOLDOUT_RECORDS_ATTR` (records appended to a scan, which are never test centres). When None
    it is derived from the inputs, conservatively: if an input carries the attribute (a feedback loop's
    ``train_store.h5``), the limit is the records of the inputs before the first such input plus that input's own
    limit, so that no record of it or of a later input beyond that becomes a test centre (a re-merge used to drop
    the attribute and hold re-simulations out as test centres: review by helper-115, session 23); else none.
    """
    paths = [Path(p) for p in paths]
    out = Path(out)
    if not paths:
        raise ValueError("merge_stores: no input stores")
    if out.exists() and not overwrite:
        raise StoreError(f"{out}: file exists (pass overwrite=True to replace it)")
    if any(same_file(p, out) for p in paths):
        raise ValueError(f"merge_stores: output {out} is one of the inputs")
    for i, a in enumerate(paths):
        twin = next((b for b in paths[:i] if same_file(a, b)), None)
        if twin is not None:  # its records would enter the merged store twice
            raise ValueError(f"input store {a} is given twice (also as {twin}): each shard may be merged once")
    infos = []
    for p in paths:
        with MockStore.open(p, "r") as st:
            chains = st.read("chain")
            infos.append({"path": p, "n": st.n_complete, "attrs": st.attrs(), "species": st.species,
                          "ekin": st.ekin_gev_per_n, "chains": np.unique(chains[chains >= 0]),
                          "steps_done": mcmc_steps_done(st)})
    if holdout_records is None:
        holdout_records = _inherited_holdout(infos)
    ref = infos[0]
    for info in infos[1:]:
        if info["species"] != ref["species"] or not np.array_equal(info["ekin"], ref["ekin"]):
            raise StoreError(f"{info['path']}: species or energy grid differ from {ref['path']}; cannot merge")
        diffs = merge_differences(info["attrs"], ref["attrs"])
        if diffs:
            key, theirs, ours = diffs[0]
            also = f"; also differ: {', '.join(d[0] for d in diffs[1:])}" if len(diffs) > 1 else ""
            raise StoreError(f"{info['path']}: attribute '{key}' = {theirs!r} differs from {ref['path']} ({ours!r})"
                             f"{also}; cannot merge")
    temps = {float(i["attrs"].get("temperature", np.nan)) for i in infos if i["chains"].size}
    if len(temps) > 1:  # chains of different temperatures sample different targets: one weighting cannot hold both
        raise StoreError(f"merge_stores: the MCMC inputs ran at different temperatures {sorted(temps)}; cannot merge")
    all_chains = np.concatenate([i["chains"] for i in infos])
    disjoint = np.unique(all_chains).size == all_chains.size
    offsets, next_free = [], 0
    for info in infos:
        offsets.append(0 if disjoint else next_free - (int(info["chains"].min()) if info["chains"].size else 0))
        if info["chains"].size:
            next_free = max(next_free, int(info["chains"].max()) + offsets[-1] + 1)
    a = ref["attrs"]
    merged_from = [{"path": str(i["path"]), "records": i["n"], "seed": i["attrs"].get("seed"),
                    "design": i["attrs"].get("design"), "chain_offset": off, "config": i["attrs"].get("config"),
                    "steps_done": i["steps_done"]}
                   for i, off in zip(infos, offsets, strict=True)]
    designs = sorted({str(i["attrs"].get("design")) for i in infos})
    meta = StoreMeta(species=ref["species"], ekin_gev_per_n=ref["ekin"], grid=a.get("grid", {}),
                     cross_sections=a.get("cross_sections", ""), solver_mode=a.get("solver_mode", ""),
                     backend=",".join(sorted({str(i["attrs"].get("backend")) for i in infos})),
                     design=designs[0] if len(designs) == 1 else "+".join(designs), dataset=a.get("dataset", ""),
                     temperature=float(a.get("temperature", np.nan)), seed=int(a.get("seed", 0)),
                     config={"merged": True, "inputs": [str(p) for p in paths]},
                     extra={"merged_from": merged_from,
                            **({} if holdout_records is None else {HOLDOUT_RECORDS_ATTR: int(holdout_records)})})

    def write(tmp: Path) -> None:
        with MockStore.create_in_place(tmp, meta, capacity=sum(i["n"] for i in infos)) as dst:
            for info, off in zip(infos, offsets, strict=True):
                with MockStore.open(info["path"], "r") as src:
                    # the records counted above, not what a scan still appending has committed since (they
                    # would enter the store but not merged_from's 'records': review by helper-115, session 23)
                    for batch in iter_batches(src, stop=info["n"]):
                        if off:
                            batch.chain = np.where(batch.chain >= 0, batch.chain + off, batch.chain).astype(np.int32)
                        dst.append_batch(batch, None)

    atomic_write(out, write)  # one rename: a failed merge leaves no half store, and an old ``out`` whole
    return out


def _inherited_holdout(infos: list[dict[str, Any]]) -> int | None:
    """The merged store's holdout limit implied by its inputs' (see :func:`merge_stores`); None when none has one."""
    before = 0
    for info in infos:
        limit = store_holdout_records(info["attrs"])
        if limit is not None:
            return before + min(max(limit, 0), info["n"])
        before += info["n"]
    return None


def _sigma_shares(chi2: np.ndarray) -> dict[str, float] | None:
    """Share of records with chi2 < min + Delta chi2_14(n sigma), n = 3, 4, 6 (how burnt in a scan is)."""
    from crnet.likelihood import delta_chi2_threshold

    if chi2.size == 0:
        return None
    lo = float(chi2.min())
    return {f"{n}sigma": float(np.mean(chi2 < lo + delta_chi2_threshold(n))) for n in (3, 4, 6)}


def mcmc_steps_done(store: MockStore) -> int | None:
    """Metropolis steps the MCMC run behind ``store`` has completed, from its checkpoint; None for a design or
    merged store, or one whose checkpoint cannot be read. Proposals outside the prior box leave no record, so
    the largest stored ``step`` can be smaller."""
    try:
        state = store.checkpoint()
    except StoreError:
        return None
    return int(state["sampler"]["step"]) if isinstance(state, dict) and "sampler" in state else None


def record_steps_done(store: MockStore) -> np.ndarray | None:
    """(n_complete,) Metropolis steps completed by the run each record comes from: one run's
    :func:`mcmc_steps_done`, or per input for a merged store (``merged_from``, whose inputs' records come in
    order); None where that is not known (then the chains' largest stored step stands in)."""
    done = mcmc_steps_done(store)
    if done is not None:
        return np.full(store.n_complete, done, dtype=np.int64)
    inputs = store.attrs().get("merged_from")
    if not inputs or any(i.get("steps_done") is None for i in inputs if str(i.get("design")) == "mcmc"):
        return None
    counts = [int(i["records"]) for i in inputs]
    if sum(counts) != store.n_complete:
        return None
    return np.repeat([int(i.get("steps_done") or 0) for i in inputs], counts).astype(np.int64)


def _n_proposals(st: MockStore, attrs: Mapping[str, Any], chain: np.ndarray, step: np.ndarray, n_chains: int) -> int:
    """MCMC proposals behind a store's records: chains x steps done (checkpoint); for a merged store the sum over
    its inputs of their chains x their steps done (``merged_from``, where :func:`record_steps_done` knows them: one
    store-wide count was wrong for inputs of different lengths, review by helper-115, session 23); else chains x
    the largest stored step."""
    mcmc = chain >= 0
    done = mcmc_steps_done(st)
    if done is not None:
        return n_chains * done
    inputs = attrs.get("merged_from")
    if inputs and record_steps_done(st) is not None:
        total, start = 0, 0
        for i in inputs:
            n = int(i["records"])
            seg = chain[start:start + n]
            total += int(np.unique(seg[seg >= 0]).size) * int(i.get("steps_done") or 0)
            start += n
        return total
    return n_chains * int(step[mcmc].max()) if mcmc.any() else 0


def store_info(path: Path | str) -> dict[str, Any]:
    """Summary of a store: attributes, record counts, chains, acceptance, chi2 range, checkpoint."""
    path = Path(path)
    with MockStore.open(path, "r") as st:
        n = st.n_complete
        chi2 = st.read("chi2")
        chain = st.read("chain")
        accepted = st.read("accepted")
        converged = st.read("converged")
        step = st.read("step")
        attrs = st.attrs()
        try:
            state = st.checkpoint()
            checkpoint = "none" if state is None else f"valid (at {n} records)"
        except StoreError as exc:
            checkpoint = f"damaged: {exc}"
        finite = np.isfinite(chi2)
        mcmc = chain >= 0
        moves = mcmc & (step > 0)
        n_chains = int(np.unique(chain[mcmc]).size)
        # proposals outside the prior box are rejected without a record: the acceptance rate divides by every
        # proposal (chains x completed steps, from the checkpoint; else the largest stored step)
        n_proposals = _n_proposals(st, attrs, chain, step, n_chains)
        info: dict[str, Any] = {
            "path": str(path), "file_bytes": path.stat().st_size, "format": attrs.get("format"),
            "format_version": attrs.get("format_version"), "n_complete": n, "capacity": st.capacity,
            "n_species": len(st.species), "n_energies": int(st.ekin_gev_per_n.size),
            "ekin_range_gev_per_n": [float(st.ekin_gev_per_n[0]), float(st.ekin_gev_per_n[-1])],
            "n_chains": n_chains, "max_step": int(step.max()) if n else 0,
            "acceptance_rate": float(accepted[moves].sum() / n_proposals) if n_proposals else None,
            "acceptance_rate_in_box": float(accepted[moves].mean()) if moves.any() else None,
            "converged_fraction": float(converged.mean()) if n else None,
            "chi2_min": float(chi2[finite].min()) if finite.any() else None,
            "chi2_median": float(np.median(chi2[finite])) if finite.any() else None,
            "n_nonfinite_chi2": int((~finite).sum()), "checkpoint": checkpoint,
            "share_within_sigma_of_min": _sigma_shares(chi2[finite]),
        }
        for key in ("design", "dataset", "temperature", "solver_mode", "backend", "cross_sections", "seed",
                    "crnet_version", "grid", "merged_from"):
            if key in attrs:
                info[key] = attrs[key]
    return info
