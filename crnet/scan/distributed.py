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

from crnet.scan.models import ScanModel
from crnet.scan.runner import ScanConfig, run_scan
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
    """
    from dask.distributed import Client, LocalCluster

    out = Path(out)
    if (n_workers is None) == (scheduler is None):
        raise ValueError("give exactly one of n_workers (embedded LocalCluster) or scheduler (existing cluster)")
    cluster = None
    if scheduler is None:
        if n_workers < 1:
            raise ValueError(f"n_workers must be >= 1, got {n_workers}")
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
        if not resume:
            clash = [str(p) for p in [out, *paths] if p.exists()]
            if clash and not overwrite:
                raise StoreError(f"{clash[0]}: file exists (resume the run, or overwrite explicitly)")
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
