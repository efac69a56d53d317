"""An analytic stand-in for propagate + likelihood: instant, deterministic, with a known chi^2 minimum.

Used to test and time the scan machinery (sampler, store, resume, Dask shards) without the solver.
The fluxes are smooth power laws whose index and normalisation depend on the parameters; chi^2 is a
quadratic form in the box-normalised log-break coordinates u in [0, 1]^10:

    chi2 = sum_i ((u_i - u0_i) / width_i)^2,

so with temperature T the chains' target is a Gaussian (truncated to the box) of std width_i sqrt(T).
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import numpy as np

from crnet.scan.designs import prior_box, to_log
from crnet.scan.models import Evaluation, FunctionModel

ANALYTIC_SPECIES: tuple[str, ...] = ("H", "C", "O", "1H", "12C", "16O")
"""Flux rows of the analytic model (elements, then isotopes, as the real store orders them)."""


@dataclass
class AnalyticSimulator:
    """Callable ``params (B, 10) -> Evaluation`` (PARAM_NAMES columns, breaks in MV).

    centre : (10,) u0 in [0, 1]; width : chi^2 = 1 at |u - u0| = width (per coordinate);
    n_energies : energy nodes from 1e-3 to 1e4 GeV/n; delay_s : sleep per call (emulates a solver).
    """

    centre: tuple[float, ...] = (0.3, 0.4, 0.5, 0.25, 0.35, 0.6, 0.45, 0.55, 0.5, 0.4)
    width: float = 0.05
    n_energies: int = 16
    delay_s: float = 0.0

    @property
    def ekin_gev_per_n(self) -> np.ndarray:
        return np.geomspace(1e-3, 1e4, self.n_energies)

    def __call__(self, params: np.ndarray) -> Evaluation:
        if self.delay_s > 0:
            time.sleep(self.delay_s)
        lo, hi = prior_box()
        u = (to_log(params) - lo) / (hi - lo)
        chi2 = (((u - np.asarray(self.centre)) / self.width) ** 2).sum(axis=1)
        e = self.ekin_gev_per_n
        index = 2.0 + u[:, 1:2, None] + 0.1 * np.arange(len(ANALYTIC_SPECIES))[None, :, None]
        flux = (1.0 + u[:, 0:1, None]) * (1.0 + e[None, None, :]) ** (-index)
        n = params.shape[0]
        norms = np.column_stack([1.0 + u[:, 2], np.full(n, 1.0), np.full(n, 1.0), 1.0 + 0.1 * u[:, 3]])
        return Evaluation(flux.astype(np.float32), chi2, norms, np.ones(n, bool), np.full(n, 1e-7), 0)

    def model(self) -> FunctionModel:
        """This simulator as a ScanModel."""
        return FunctionModel(self, list(ANALYTIC_SPECIES), self.ekin_gev_per_n,
                             {"grid": {"model": "analytic", "n_energies": self.n_energies},
                              "dataset": "analytic", "solver_mode": "analytic"})
