"""Scale a scan out over a Dask cluster: one shard (own chains or own design points, own store) per task.

``run_distributed(out, config, n_workers=N)`` starts an embedded ``dask.distributed.LocalCluster``;
``scheduler="tcp://host:8786"`` uses an existing cluster instead (the shard files must then live on a
file system every worker and this client can reach). Shards are written next to ``out`` as
``<stem>.shardIII-of-NNN.h5``; each is an ordinary resumable store, and ``out`` is their merge
(:func:`crnet.store_read.merge_stores`). A killed distributed run resumes with ``resume=True``: every
shard resumes from its own last batch, then the merge is redone.

MCMC: the K chains are split into contiguous groups, chain ids stay global (shard i holds chains
chain_offset .. chain_offset + K_i - 1) and every shard has its own random stream
(ScanConfig.rng_seed). Designs: the whole design is generated from the base seed and every shard
evaluates its contiguous slice, so the merged store equals the single-process design.
"""

from __future__ import annotations

import dataclasses
import re
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from crnet.run_lock import file_lock
from crnet.scan.models import ScanModel
from crnet.scan.runner import SCAN_BUSY, ScanConfig, run_scan
from crnet.store import MockStore, StoreError
from crnet.store_read import merge_stores

POLL_INTERVAL_S = 0.5
"""How often the client re-reads the shards' n_complete for the progress bar, seconds."""

ModelFactory = Callable[[ScanConfig], ScanModel]
"""Builds the model of a shard on its worker (default: the real propagate + likelihood model)."""


@dataclass
class DistributedSummary:
    """Outcome of :func:`run_distributed`: merged store, shard files and each shard's ScanSummary (dict)."""

    path: str
    shards: list[str]
    shard_summaries: list[dict[str, Any]]
    records: int
    elapsed_s: float


def shard_configs(config: ScanConfig, n_shards: int) -> list[ScanConfig]:
    """Per-shard configurations (chains split for MCMC, design slices otherwise)."""
    if n_shards < 1:
        raise ValueError(f"n_shards must be >= 1, got {n_shards}")
    if config.design == "mcmc" and n_shards > config.n_chains:
        raise ValueError(f"{n_shards} shards for {config.n_chains} chains: every shard needs >= 1 chain")
    out, offset = [], config.chain_offset
    for i in range(n_shards):
        changes: dict[str, Any] = {"shard": i, "n_shards": n_shards}
        if config.design == "mcmc":
            k = config.n_chains // n_shards + (1 if i < config.n_chains % n_shards else 0)
            changes.update(n_chains=k, chain_offset=offset)
            offset += k
        out.append(dataclasses.replace(config, **changes))
    return out


def shard_paths(out: Path | str, n_shards: int) -> list[Path]:
    """Shard file names next to ``out``."""
    out = Path(out)
    return [out.with_name(f"{out.stem}.shard{i:03d}-of-{n_shards:03d}{out.suffix or '.h5'}") for i in range(n_shards)]


def existing_shard_counts(out: Path | str) -> set[int]:
    """Shard counts (the -of-MMM of the names) of the shard files of ``out`` that exist."""
    out = Path(out)
    pattern = re.compile(rf"{re.escape(out.stem)}\.shard\d{{3}}-of-(\d{{3}}){re.escape(out.suffix or '.h5')}")
    return {int(m.group(1)) for p in out.parent.glob(f"{out.stem}.shard*") if (m := pattern.fullmatch(p.name))}


def _run_shard(path: str, config: dict[str, Any], resume: bool, overwrite: bool,
               model_factory: ModelFactory | None) -> dict[str, Any]:
    """Task body on a worker: run (or resume) one shard into its own store."""
    cfg = ScanConfig.from_dict(config)
    model = model_factory(cfg) if model_factory is not None else None
    summary = run_scan(path, cfg, model=model, resume=resume, overwrite=overwrite, progress=False)
    return dataclasses.asdict(summary)


def _committed(paths: list[Path]) -> int:
    total = 0
    for p in paths:
        try:
            with MockStore.open(p, "r") as st:
                total += st.n_complete
        except StoreError:  # not created yet
            continue
    return total


def run_distributed(out: Path | str, config: ScanConfig, n_workers: int | None = None,
                    scheduler: str | None = None, n_shards: int | None = None, resume: bool = False,
                    overwrite: bool = False, progress: bool = True, model_factory: ModelFactory | None = None,
                    processes: bool = True) -> DistributedSummary:
    """Run the scan as shards on Dask workers and merge them into ``out``.

    n_workers : size of the embedded LocalCluster (one thread each; ``processes=False`` runs the workers
        as threads of this process). scheduler : address of an existing cluster (then n_workers is unused).
    n_shards : number of shards (default: the number of workers).
    model_factory : picklable callable ScanConfig -> ScanModel run on the worker (default: the real model).
    resume : resume every shard, then merge again; an existing ``out`` must be the merge of this run's shards (a
        store written without workers is refused: resume it with :func:`crnet.scan.runner.run_scan`).
    overwrite : a fresh run replaces ``out`` and its shards, and removes the shard files of ``out`` with another
        shard count (without it they are refused, as ``out`` is).
    The run holds ``<out>.lock`` (:func:`crnet.run_lock.file_lock`): a second scan on ``out`` is refused.
    """
    out = Path(out)
    if (n_workers is None) == (scheduler is None):
        raise ValueError("give exactly one of n_workers (embedded LocalCluster) or scheduler (existing cluster)")
    if scheduler is None and n_workers < 1:
        raise ValueError(f"n_workers must be >= 1, got {n_workers}")
    # the whole run holds <out>.lock, as run_scan does (each shard's run_scan holds its own shard's lock)
    with file_lock(out, "crnet scan (distributed)", SCAN_BUSY, StoreError):
        return _run_locked(out, config, n_workers, scheduler, n_shards, resume, overwrite, progress, model_factory,
                           processes)


def _check_own_merge(out: Path, paths: list[Path]) -> None:
    """Resume: an existing ``out`` must be the merge of exactly these shards (else the new merge would replace a
    store this run did not write: review by helper-115, session 23), and the shards must still exist (a missing one
    would start afresh and the merge would lose its records)."""
    with MockStore.open(out, "r") as st:
        merged = st.attrs().get("merged_from")
    if not merged:
        raise StoreError(f"{out}: written without --workers (a single-process scan, not a merge of shards): resume it "
                         "without --workers / --scheduler (crnet scan --resume; run_scan(resume=True))")
    names = [Path(str(m.get("path"))).name for m in merged]
    if names != [p.name for p in paths]:
        raise StoreError(f"{out}: the merge of {names}, not of this run's shards {[p.name for p in paths]}; it "
                         "cannot be resumed: give another --out, or pass --overwrite to replace it")
    missing = [str(p) for p in paths if not p.exists()]
    if missing:
        raise StoreError(f"{out}: shard files {missing} of this merged run are missing, so resuming would start them "
                         "afresh and the new merge would lose their records; restore them, or pass --overwrite to "
                         "start the whole run afresh")


def _run_locked(out: Path, config: ScanConfig, n_workers: int | None, scheduler: str | None, n_shards: int | None,
                resume: bool, overwrite: bool, progress: bool, model_factory: ModelFactory | None,
                processes: bool) -> DistributedSummary:
    from dask.distributed import Client, LocalCluster

    cluster = None
    if scheduler is None:
        cluster = LocalCluster(n_workers=n_workers, threads_per_worker=1, processes=processes,
                               dashboard_address=None)
        client = Client(cluster)
    else:
        client = Client(scheduler)
    t0 = time.perf_counter()
    try:
        n = n_shards or len(client.scheduler_info()["workers"]) or 1
        if resume:  # the shard files name their count: resuming with another count would start every shard afresh
            found = existing_shard_counts(out)
            if found and found != {n}:
                raise ValueError(f"{out}: the run to resume has shards of {sorted(found)} (files "
                                 f"{out.stem}.shardNNN-of-MMM{out.suffix or '.h5'}) but this call makes {n}; pass "
                                 f"n_shards={min(found)} (CLI --shards) to resume it")
        configs = shard_configs(config, n)
        paths = shard_paths(out, n)
        if resume and out.exists():
            _check_own_merge(out, paths)
        if not resume:
            clash = [str(p) for p in [out, *paths] if p.exists()]
            if clash and not overwrite:
                raise StoreError(f"{clash[0]}: file exists (resume the run, or overwrite explicitly)")
            # shards of an earlier run with another count: left behind, they made every later resume refused
            stale = [(c, p) for c in sorted(existing_shard_counts(out) - {n}) for p in shard_paths(out, c)
                     if p.exists()]
            if stale and not overwrite:
                c, p = stale[0]
                raise StoreError(f"{p}: a shard of an earlier run on {out} with {c} shards; resume that run "
                                 f"(n_shards={c}, CLI --resume --shards {c}) or replace it (overwrite=True, CLI "
                                 "--overwrite)")
            for _, p in stale:
                p.unlink()
        futures = [client.submit(_run_shard, str(p), c.to_dict(), resume, overwrite, model_factory, pure=False)
                   for p, c in zip(paths, configs, strict=True)]
        bar = None
        if progress:
            from tqdm.auto import tqdm

            bar = tqdm(total=sum(c.planned_records() for c in configs), unit="model", desc=f"{n} shards",
                       dynamic_ncols=True)
        try:
            while not all(f.done() for f in futures):
                if bar is not None:
                    bar.n = _committed(paths)
                    bar.set_postfix({"shards_done": sum(f.done() for f in futures)}, refresh=False)
                    bar.refresh()
                time.sleep(POLL_INTERVAL_S)
            summaries = client.gather(futures)
            if bar is not None:
                bar.n = _committed(paths)
                bar.refresh()
        finally:
            if bar is not None:
                bar.close()
        merge_stores(paths, out, overwrite=True)
        with MockStore.open(out, "r") as st:
            records = st.n_complete
    finally:
        client.close()
        if cluster is not None:
            cluster.close()
    return DistributedSummary(str(out), [str(p) for p in paths], summaries, records, time.perf_counter() - t0)
