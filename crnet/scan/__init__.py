"""Parameter scans producing mock data: batched adaptive MCMC, space-filling designs, Dask shards.

``run_scan(out, ScanConfig(...))`` drives a design or the sampler, evaluates each batch with
crprop.propagate + crnet.likelihood (or an injected model) and commits it to a crash-safe mock store
(crnet.store); ``run_distributed`` spreads shards over a Dask cluster and merges them.
"""

from __future__ import annotations

from crnet.scan.designs import DESIGNS, design_points, design_slice, prior_box, to_log, to_physical
from crnet.scan.models import Evaluation, FunctionModel, GridConfig, PropagateModel, ScanModel
from crnet.scan.runner import SCAN_DESIGNS, ScanConfig, ScanSummary, run_scan
from crnet.scan.sampler import AdaptiveMetropolis, SamplerConfig, Trace, chain_moments

__all__ = [
    "DESIGNS", "SCAN_DESIGNS", "AdaptiveMetropolis", "Evaluation", "FunctionModel", "GridConfig",
    "PropagateModel", "SamplerConfig", "ScanConfig", "ScanModel", "ScanSummary", "Trace", "chain_moments",
    "design_points", "design_slice", "prior_box", "run_scan", "to_log", "to_physical",
]
