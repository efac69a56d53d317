"""The scan loop: design or sampler -> model (propagate + likelihood) -> mock store, with resume.

One batch = one model call: for 'mcmc' one lockstep Metropolis step of the K chains (only the proposals
inside the prior box are evaluated; the first batch holds the K starting points, step 0), for the
designs ``batch_size`` consecutive design points. After every batch the records and the checkpoint are
committed to the store (:meth:`crnet.store.MockStore.append_batch`), so a killed run resumes with
``resume=True`` from the last complete batch.

The chain target is the paper's Eq. 4.1: log p = -chi2_tot / (2 T) with T = ``temperature`` (10 in
the paper: chi2_scan = chi2_tot / 10) and a uniform prior on the Table 1 box (breaks uniform in
log10 R). A model with non-finite chi^2 (or not converged, when ``reject_nonconverged``) has log p = -inf.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from crnet.config_fields import check_seed
from crnet.data import DATASETS
from crnet.provenance import changed_settings
from crnet.run_lock import file_lock
from crnet.scan.designs import DESIGNS, design_points, design_slice, gaussian_design, prior_box, to_log, to_physical
from crnet.scan.models import (
    Evaluation,
    GridConfig,
    PropagateModel,
    ScanModel,
    normalised_grid,
    require_converging_mode,
)
from crnet.scan.sampler import OPTIMAL_SCALE, AdaptiveMetropolis, SamplerConfig
from crnet.store import MockStore, RecordBatch, StoreError, StoreMeta
from crnet.store_read import mcmc_steps_done
from crprop.params import PARAM_NAMES
from crprop.solvers import check_solver_settings

SCAN_DESIGNS: tuple[str, ...] = ("mcmc",) + DESIGNS

SCAN_BUSY = "another scan is writing this store; wait for it to end or give another --out"
"""Refusal of a scan whose store another scan holds (:func:`crnet.run_lock.file_lock` on ``<out>.lock``)."""

RESUME_MUTABLE: tuple[str, ...] = ("n_steps", "backend", "warm_start", "warm_start_max_gb", "batch_size")
"""Configuration entries a resumed run may change (everything else must match the store's config). batch_size:
an MCMC scan never reads it and a design scan resumes at its point cursor, the same points in the same order
(fluxes bitwise equal, chi2 within 1e-15, resumed at another batch size; review by helper-119, session 23), so a
scan killed by a GPU out-of-memory resumes with a smaller one."""


@dataclass
class ScanConfig:
    """One scan (or one shard of a distributed scan).

    design : 'mcmc' | 'uniform' | 'lhs' | 'sobol' | 'gaussian'.
    n_chains : K chains (mcmc); n_steps : Metropolis steps per chain after the starting point.
    n_points : design points of the whole scan (all shards); batch_size : design points per model call
        (0 = n_chains).
    seed : base seed (shards derive theirs from (seed, shard)); temperature : T of log p = -chi2 / (2 T).
    dataset : likelihood data set; mode, backend, tol, max_steps : solver (crprop.propagate; None = its
        defaults; every model stops at its own converged step or max_steps); warm_start : warm
        start each chain's proposal from its current state (mode 'fast'); warm_start_max_gb : memory cap.
    start : (10,) PARAM_NAMES values (breaks in MV) around which the chains start / the Gaussian design
        is centred; None = chains start uniformly over the box.
    start_spread : std of the start dispersion / Gaussian design, as a fraction of each box width.
    start_cov : (10, 10) covariance in log-break coordinates (breaks as log10 R/MV) of the start dispersion,
        e.g. T C from ``crnet.scan.fit`` (the Laplace approximation of the tempered posterior); replaces
        start_spread and proposal_scale: chain 0 starts at ``start`` itself, the others from N(start,
        start_cov) redrawn until inside the box, and the initial proposal covariance is (2.38^2/d) start_cov.
    proposal_scale : std of the initial proposal, fraction of each box width.
    reject_nonconverged : give non-converged models log p = -inf.
    chain_offset, shard, n_shards : set by crnet.scan.distributed (chain ids chain_offset + 0 .. K-1).
    """

    design: str = "mcmc"
    n_chains: int = 64
    n_steps: int = 100
    n_points: int = 0
    batch_size: int = 0
    seed: int = 0
    temperature: float = 10.0
    dataset: str = "paper"
    mode: str = "fast"
    backend: str = "auto"
    tol: float | None = None
    max_steps: int | None = None
    warm_start: bool = True
    warm_start_max_gb: float = 8.0
    start: list[float] | None = None
    start_spread: float = 0.05
    start_cov: list[list[float]] | None = None
    proposal_scale: float = 0.02
    reject_nonconverged: bool = True
    grid: GridConfig = field(default_factory=GridConfig)
    sampler: SamplerConfig = field(default_factory=SamplerConfig)
    chain_offset: int = 0
    shard: int = 0
    n_shards: int = 1

    def __post_init__(self) -> None:
        if isinstance(self.grid, dict):
            self.grid = GridConfig(**self.grid)
        if isinstance(self.sampler, dict):
            self.sampler = SamplerConfig(**self.sampler)
        if self.design not in SCAN_DESIGNS:
            raise ValueError(f"design must be one of {SCAN_DESIGNS}, got {self.design!r}")
        if self.n_chains < 1:
            raise ValueError(f"n_chains must be >= 1, got {self.n_chains}")
        for key in ("n_steps", "n_points", "batch_size"):
            if getattr(self, key) < 0:
                raise ValueError(f"{key} must be >= 0, got {getattr(self, key)}")
        if self.design != "mcmc" and self.n_points == 0:
            raise ValueError(f"design {self.design!r} needs n_points > 0")
        if self.design == "gaussian" and self.start is None:
            raise ValueError("start: the gaussian design needs a centre (the 10 PARAM_NAMES values)")
        if not (self.temperature > 0 and np.isfinite(self.temperature)):
            raise ValueError(f"temperature must be > 0, got {self.temperature}")
        if self.start is not None and len(self.start) != 10:
            raise ValueError(f"start must hold the 10 PARAM_NAMES values, got {len(self.start)}")
        if self.start is not None:
            bad = [n for n, v in zip(PARAM_NAMES, self.start, strict=True) if not np.isfinite(v)]
            if bad:
                raise ValueError(f"start: {bad} must be finite numbers (PARAM_NAMES units), got {self.start}")
            lo, hi = prior_box()
            with np.errstate(divide="ignore", invalid="ignore"):
                centre = to_log(np.asarray(self.start, dtype=np.float64)[None])[0]
            out = [n for n, c, a, b in zip(PARAM_NAMES, centre, lo, hi, strict=True) if not a <= c <= b]
            if out:  # checked here, before a store file is created
                raise ValueError(f"start: {out} outside the prior box (crprop.params.PRIOR_BOX; breaks in MV), "
                                 f"got {self.start}")
        for key in ("start_spread", "proposal_scale"):
            value = getattr(self, key)
            if not (np.isfinite(value) and value > 0):
                raise ValueError(f"{key} must be finite and > 0 (fraction of each box width), got {value}")
        if self.dataset not in DATASETS:
            raise ValueError(f"dataset: unknown data set {self.dataset!r}; known: {', '.join(DATASETS)}")
        # before a store file is created (crprop refused them at the first propagation, after `crnet scan` had
        # written an empty store; review by helper-77)
        check_solver_settings(self.mode, self.tol, self.max_steps, self.backend)
        if self.start_cov is not None:
            cov = np.asarray(self.start_cov, dtype=np.float64)
            if self.design != "mcmc":
                raise ValueError(f"start_cov needs design 'mcmc' (it spreads the chains' starts), got design "
                                 f"{self.design!r}")
            if self.start is None:
                raise ValueError("start_cov needs a start (the centre of the chains' starts)")
            if cov.shape != (10, 10) or not np.all(np.isfinite(cov)) or not np.allclose(cov, cov.T, rtol=1e-10,
                                                                                           atol=0.0):
                raise ValueError(f"start_cov must be a finite symmetric 10x10 matrix, got shape {cov.shape}")
            if np.linalg.eigvalsh(cov).min() <= 0:
                raise ValueError("start_cov must be positive definite (log-break coordinates)")
        check_seed(self.seed)
        if not 0 <= self.shard < self.n_shards:
            raise ValueError(f"shard {self.shard} outside 0 .. {self.n_shards - 1}")
        if self.design == "mcmc" and self.reject_nonconverged:
            require_converging_mode(self.mode, "an MCMC scan (non-converged models are rejected: the chains "
                                    "would never move)")

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> ScanConfig:
        known = {f.name for f in dataclasses.fields(cls)}
        return cls(**{k: v for k, v in d.items() if k in known})

    @property
    def rng_seed(self) -> int:
        """Seed of this shard's random stream (the base seed for an unsharded run)."""
        if self.n_shards == 1:
            return int(self.seed)
        return int(np.random.SeedSequence([int(self.seed), int(self.shard)]).generate_state(1)[0])

    def planned_records(self) -> int:
        if self.design == "mcmc":
            return self.n_chains * (self.n_steps + 1)
        start, stop = design_slice(self.n_points, self.n_shards, self.shard)
        return stop - start


@dataclass
class ScanSummary:
    """Outcome of :func:`run_scan` (times in seconds, rates in models per second)."""

    path: str
    records: int
    new_records: int
    resumed_from: int
    batches: int
    elapsed_s: float
    model_s: float
    solver_steps: int
    acceptance_rate: float | None
    best_chi2: float
    """Smallest chi2_tot of the store's converged records (inf when none converged; walk-through by helper-87,
    session 21: it was taken over every record, and `crnet scan --max-steps 1` reported 200001 from models that all
    missed the tolerance: `crnet scan --out X --design sobol --points 4 --batch 4 --max-steps 1 --dr 4 --dz 1.3
    --ekin-factor 3` stores chi2 200001.19 as its smallest, re-measured in session 23)."""
    n_nonconverged: int
    """Records of this run whose solve did not converge."""

    @property
    def models_per_s(self) -> float:
        return self.new_records / self.elapsed_s if self.elapsed_s > 0 else float("nan")


def build_model(config: ScanConfig) -> PropagateModel:
    """The real model (propagate + likelihood) a config describes."""
    return PropagateModel(config.grid, config.mode, config.backend, config.tol, config.dataset,
                          warm_start=config.warm_start and config.design == "mcmc",
                          n_slots=config.n_chains if config.design == "mcmc" else 0,
                          warm_start_max_bytes=config.warm_start_max_gb * 1e9, max_steps=config.max_steps)


def _check_resume_config(store: MockStore, config: ScanConfig, ignore: tuple[str, ...] = ()) -> None:
    """Refuse (StoreError) resuming ``store`` under ``config`` (entries other than RESUME_MUTABLE and ``ignore``
    differ, or fewer MCMC steps than run)."""
    attrs = store.attrs()
    if "merged_from" in attrs:
        raise StoreError(f"{store.path}: a merged store cannot be resumed; resume its shards")
    old = attrs.get("config", {})
    if isinstance(old, dict) and "grid" in old:  # written before explicit paper values were spelt None
        old = {**old, "grid": normalised_grid(old["grid"])}
    new = config.to_dict()
    diff = changed_settings(old, new, keys=[k for k in new if k not in RESUME_MUTABLE + ignore])
    if diff:
        detail = ", ".join(f"{k}: store {old.get(k)!r} vs now {new[k]!r}" for k in diff)
        raise StoreError(f"{store.path}: cannot resume with a different configuration ({detail})")
    if config.design == "mcmc" and store.n_complete:
        # the steps run, from the checkpoint: proposals outside the box leave no record, so the largest stored step
        # can be smaller (review by helper-115, session 23); that step only where the checkpoint does not say
        done = mcmc_steps_done(store)
        done = int(store.read("step").max()) if done is None else done
        if config.n_steps < done:
            raise StoreError(f"{store.path}: n_steps {config.n_steps} is below the {done} steps already run; resume "
                             f"with n_steps (crnet scan --steps) >= {done}")


def open_store(out: Path, config: ScanConfig, model: ScanModel, resume: bool, overwrite: bool) -> MockStore:
    """Create the run's store, or re-open it for ``resume`` (a missing file starts afresh)."""
    if resume and out.exists():
        store = MockStore.open(out, "r+")
        try:
            _check_resume_config(store, config)
            if store.species != list(model.species) or not np.array_equal(store.ekin_gev_per_n,
                                                                         model.ekin_gev_per_n):
                raise StoreError(f"{out}: species / energy grid of the store differ from the model's")
        except StoreError:
            store.close()
            raise
        return store
    fields_ = model.store_fields()
    meta = StoreMeta(species=list(model.species), ekin_gev_per_n=model.ekin_gev_per_n, grid=fields_["grid"],
                     cross_sections=fields_["cross_sections"], solver_mode=fields_["solver_mode"],
                     backend=fields_["backend"], design=config.design, dataset=fields_["dataset"],
                     temperature=config.temperature, seed=config.seed, config=config.to_dict())
    return MockStore.create(out, meta, capacity=config.planned_records(), overwrite=overwrite)


def log_density(ev: Evaluation, temperature: float, reject_nonconverged: bool) -> np.ndarray:
    """log p = -chi2 / (2 T); -inf for non-finite chi2 (and non-converged models if asked)."""
    lp = -ev.chi2 / (2.0 * temperature)
    bad = ~np.isfinite(lp)
    if reject_nonconverged:
        bad |= ~ev.converged
    return np.where(bad, -np.inf, lp)


class _Progress:
    """tqdm bar over records with acceptance and best chi^2 (no-op when disabled)."""

    def __init__(self, total: int, initial: int, enabled: bool, desc: str) -> None:
        self.bar = None
        if enabled:
            from tqdm.auto import tqdm

            self.bar = tqdm(total=total, initial=initial, unit="model", desc=desc, dynamic_ncols=True,
                            smoothing=0.1)

    def update(self, n: int, acceptance: float | None, best: float) -> None:
        if self.bar is not None:
            post = {"best_chi2": f"{best:.1f}"}
            if acceptance is not None:
                post = {"acc": f"{acceptance:.2f}", **post}
            self.bar.set_postfix(post, refresh=False)
            self.bar.update(n)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()


def run_scan(out: Path | str, config: ScanConfig, model: ScanModel | None = None, resume: bool = False,
             overwrite: bool = False, progress: bool = True,
             on_batch: Callable[[int, int], None] | None = None) -> ScanSummary:
    """Run (or resume) a scan into the store ``out``; returns a summary.

    model : what to evaluate; default the real propagate + likelihood model of ``config`` (pass a
        :class:`crnet.scan.models.FunctionModel` to inject a ``simulate`` function).
    resume : continue from the last committed batch of ``out`` (which must hold the same configuration,
        except RESUME_MUTABLE entries); a missing file starts a new run.
    on_batch : called with (batch number, n_complete) after every commit (tests, monitors).
    The run holds ``<out>.lock`` (:func:`crnet.run_lock.file_lock`): a second scan on ``out`` is refused.
    """
    out = Path(out)
    model = model if model is not None else build_model(config)
    t_start = time.perf_counter()
    # one writer per store for the whole run: HDF5's own lock neither stops a second --overwrite (a new file is
    # renamed over the path) nor works under HDF5_USE_FILE_LOCKING=FALSE (review by helper-115, session 23)
    with file_lock(out, "crnet scan", SCAN_BUSY, StoreError), \
            open_store(out, config, model, resume, overwrite) as store:
        store.reserve(config.planned_records())
        first = store.n_complete
        loop = _run_mcmc if config.design == "mcmc" else _run_design
        stats = loop(store, config, model, progress, on_batch)
        conv = store.read("converged")
        best = float(np.nanmin(store.read("chi2")[conv], initial=np.inf)) if store.n_complete else float("nan")
        return ScanSummary(path=str(out), records=store.n_complete, new_records=store.n_complete - first,
                           resumed_from=first, batches=stats["batches"], elapsed_s=time.perf_counter() - t_start,
                           model_s=stats["model_s"], solver_steps=stats["solver_steps"],
                           acceptance_rate=stats.get("acceptance"), best_chi2=best,
                           n_nonconverged=stats["nonconverged"])


def _batch(params_log: np.ndarray, ev: Evaluation, chain: np.ndarray, step: np.ndarray,
           accepted: np.ndarray) -> RecordBatch:
    return RecordBatch(params=to_physical(params_log), norms=ev.norms, flux=ev.flux, chi2=ev.chi2, chain=chain,
                       step=step, accepted=accepted, converged=ev.converged, residual=ev.residual)


def _initial_points(config: ScanConfig, rng: np.random.Generator) -> np.ndarray:
    lo, hi = prior_box()
    k = config.n_chains
    if config.start is None:
        return lo + (hi - lo) * rng.random((k, lo.size))
    centre = to_log(np.asarray(config.start, dtype=np.float64)[None])[0]
    if np.any(centre < lo) or np.any(centre > hi):
        raise ValueError(f"start {config.start} lies outside the prior box")
    if config.start_cov is not None:
        # chain 0 of the whole run at the centre (the first shard's, not every shard's), the others from the
        # truncated Gaussian
        at_centre = 1 if config.chain_offset == 0 else 0
        draws = gaussian_design(k - at_centre, centre, np.asarray(config.start_cov), rng, lo, hi)
        return np.vstack([centre[None], draws]) if at_centre else draws
    # truncated, not clipped: clipping would pile starting points onto the box faces (review of session 14)
    return gaussian_design(k, centre, config.start_spread * (hi - lo), rng, lo, hi)


def _chain_states(store: MockStore, config: ScanConfig) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Current (x (K, 10) log-break coordinates, log p (K,), accepted proposals (K,)) of every chain, from the
    committed records (a chain's starting point is its step-0 record, not an accepted proposal)."""
    chain = store.read("chain").astype(np.int64)
    accepted = store.read("accepted")
    step = store.read("step")
    k = config.n_chains
    rows = np.full(k, -1)
    local = chain - config.chain_offset
    mask = accepted & (local >= 0) & (local < k)
    idx = np.nonzero(mask)[0]
    order = np.lexsort((step[idx], local[idx]))  # by chain, then step: the last row per chain wins
    rows[local[idx][order]] = idx[order]
    if np.any(rows < 0):
        raise StoreError(f"{store.path}: chains {np.nonzero(rows < 0)[0].tolist()} have no accepted record")
    params = store.read("params")[rows]
    ev_like = Evaluation(np.zeros((k, 1, 1)), store.read("chi2")[rows], np.zeros((k, 4)),
                         store.read("converged")[rows], np.zeros(k))
    lo, hi = prior_box()  # MV -> log10 may round one ulp across a box edge
    n_accepted = np.bincount(local[mask & (step > 0)], minlength=k)[:k]
    return (np.clip(to_log(params), lo, hi), log_density(ev_like, config.temperature, config.reject_nonconverged),
            n_accepted)


class _Tally:
    """What both scan loops count: model calls (time, solver steps, non-converged models), committed batches
    and the best chi2; after every commit it advances the progress bar and calls ``on_batch``."""

    def __init__(self, store: MockStore, on_batch: Callable[[int, int], None] | None) -> None:
        self.stats: dict[str, Any] = {"batches": 0, "model_s": 0.0, "solver_steps": 0, "nonconverged": 0}
        # the best chi2 of converged records, as the summary's (review by helper-92, session 21)
        self.best = (float(np.nanmin(store.read("chi2")[store.read("converged")], initial=np.inf)) if store.n_complete
                     else np.inf)
        self.store, self.on_batch = store, on_batch

    def evaluate(self, model: ScanModel, x_log: np.ndarray, slots: np.ndarray | None) -> Evaluation:
        t0 = time.perf_counter()
        ev = model.evaluate(to_physical(x_log), slots)
        self.stats["model_s"] += time.perf_counter() - t0
        self.stats["solver_steps"] += ev.solver_steps
        self.stats["nonconverged"] += int((~ev.converged).sum())
        return ev

    def committed(self, bar: _Progress, n: int, acceptance: float | None, chi2: np.ndarray,
                  converged: np.ndarray) -> None:
        self.stats["batches"] += 1
        self.best = min(self.best, float(np.nanmin(np.asarray(chi2)[np.asarray(converged, dtype=bool)],
                                                   initial=np.inf)))
        bar.update(n, acceptance, self.best)
        if self.on_batch:
            self.on_batch(self.stats["batches"], self.store.n_complete)


def _run_mcmc(store: MockStore, config: ScanConfig, model: ScanModel, progress: bool,
              on_batch: Callable[[int, int], None] | None) -> dict[str, Any]:
    lo, hi = prior_box()
    k = config.n_chains
    chain_ids = config.chain_offset + np.arange(k, dtype=np.int32)
    tally = _Tally(store, on_batch)
    state = store.checkpoint()
    bar = _Progress(0, 0, False, "")

    try:
        if state is None:
            rng = np.random.default_rng(config.rng_seed)
            x0 = _initial_points(config, rng)
            ev = tally.evaluate(model, x0, np.arange(k))
            model.commit(np.arange(k), np.ones(k, dtype=bool))
            lp0 = log_density(ev, config.temperature, config.reject_nonconverged)
            prop = (OPTIMAL_SCALE**2 / lo.size * np.asarray(config.start_cov) if config.start_cov is not None
                    else config.proposal_scale * (hi - lo))
            sampler = AdaptiveMetropolis(x0, lp0, prop, config.sampler, rng, lo, hi)
            bar = _Progress(config.planned_records(), 0, progress, f"mcmc x{k}")
            store.append_batch(_batch(x0, ev, chain_ids, np.zeros(k, np.int64), np.ones(k, bool)),
                               {"kind": "mcmc", "sampler": sampler.state_dict(include_chains=False)})
            tally.committed(bar, k, None, ev.chi2, ev.converged)
        else:
            if state.get("kind") != "mcmc":
                raise StoreError(f"{store.path}: checkpoint of kind {state.get('kind')!r}, expected 'mcmc'")
            x, lp, n_acc = _chain_states(store, config)
            sampler = AdaptiveMetropolis.from_state(state["sampler"], x, lp, n_acc)
            bar = _Progress(config.planned_records(), k * (sampler.step + 1), progress, f"mcmc x{k}")
        while sampler.step < config.n_steps:
            x_prop, inside = sampler.propose()
            idx = np.nonzero(inside)[0]
            lp_prop = np.full(k, -np.inf)
            ev = None
            if idx.size:
                ev = tally.evaluate(model, x_prop[idx], idx)
                lp_prop[idx] = log_density(ev, config.temperature, config.reject_nonconverged)
            acc = sampler.update(x_prop, lp_prop)
            if ev is not None:
                model.commit(idx, acc[idx])
                batch = _batch(x_prop[idx], ev, chain_ids[idx], np.full(idx.size, sampler.step, np.int64), acc[idx])
            else:
                batch = _empty_batch(store)
            store.append_batch(batch, {"kind": "mcmc", "sampler": sampler.state_dict(include_chains=False)})
            tally.committed(bar, k, sampler.acceptance_rate, batch.chi2, batch.converged)
        tally.stats["acceptance"] = sampler.acceptance_rate
    finally:
        bar.close()
    return tally.stats


def _empty_batch(store: MockStore) -> RecordBatch:
    n_s, n_e = len(store.species), store.ekin_gev_per_n.size
    return RecordBatch(np.zeros((0, 10)), np.zeros((0, 4)), np.zeros((0, n_s, n_e)), np.zeros(0), np.zeros(0),
                       np.zeros(0), np.zeros(0, bool), np.zeros(0, bool), np.zeros(0))


def _run_design(store: MockStore, config: ScanConfig, model: ScanModel, progress: bool,
                on_batch: Callable[[int, int], None] | None) -> dict[str, Any]:
    lo, hi = prior_box()
    centre = sigma = None
    if config.design == "gaussian":
        centre = to_log(np.asarray(config.start, dtype=np.float64)[None])[0]
        sigma = config.start_spread * (hi - lo)
    start, stop = design_slice(config.n_points, config.n_shards, config.shard)
    points = design_points(config.design, config.n_points, config.seed, centre, sigma)[start:stop]
    state = store.checkpoint()
    cursor = 0 if state is None else int(state.get("cursor", -1))
    if state is not None and (state.get("kind") != "design" or cursor != store.n_complete):
        raise StoreError(f"{store.path}: checkpoint {state} does not match {store.n_complete} design records")
    size = config.batch_size or config.n_chains
    tally = _Tally(store, on_batch)
    bar = _Progress(points.shape[0], cursor, progress, config.design)
    try:
        while cursor < points.shape[0]:
            x = points[cursor:cursor + size]
            ev = tally.evaluate(model, x, None)
            n = x.shape[0]
            steps = np.arange(start + cursor, start + cursor + n, dtype=np.int64)
            store.append_batch(_batch(x, ev, np.full(n, -1, np.int32), steps, np.ones(n, bool)),
                               {"kind": "design", "cursor": cursor + n})
            cursor += n
            tally.committed(bar, n, None, ev.chi2, ev.converged)
    finally:
        bar.close()
    return tally.stats
