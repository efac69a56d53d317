"""The collected mocks an evaluation scores against: the converged records of the scan store and any further
stores (params, chi^2_tot), with the MCMC weights of the scan's chain states (multiplicity), for chi^2_min,
Table 4's "MCMC (re-weighted)" row and Figs. 6-7 (:mod:`crnet.evaluate.report`)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from crnet.evaluate.tables import sigma_bands
from crnet.store import MockStore


@dataclass
class Mocks:
    """Collected mocks: params (N, 10) PARAM_NAMES units, chi2 (N,) chi^2_tot, weights (N,) MCMC weights
    of the first store's records (re-weighting row; others weight 0 there)."""

    params: np.ndarray
    chi2: np.ndarray
    weights: np.ndarray
    first_rows: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=np.int64))
    """Store row of each of the first store's records (they come first in params / chi2 / weights)."""
    from_chains: bool = True
    """Whether the first store's records are MCMC chain states (else a design, weight 1 each)."""
    temperature: float = float("nan")
    """The first store's T (log p = -chi2_tot / (2 T) of its chains; its ``temperature`` attribute), NaN if absent."""
    unconverged_weights: np.ndarray = field(default_factory=lambda: np.zeros(0))
    """Weights of the first store's records without a converged solve: MCMC chain states (a chain's start, or every
    state with ``reject_nonconverged`` off) and design points (weight 1 each). Not in params / chi2, but part of the
    scan, so :meth:`mcmc_row` counts their weight as > 6 sigma in the MCMC or design row, as a machine's prediction
    without a converged re-simulation (review by helper-83, session 21: left out, a chain that sat 10 of 11 steps on
    such a state gave 100 % within 4 sigma; design points were dropped the same way)."""

    def mcmc_row(self, chi2_min: float) -> dict[str, float] | None:
        """Table 4 shares of the first store's chain states (or design points) by weight, those without a converged
        chi^2 as > 6 sigma; None when no record carries weight."""
        w = np.concatenate([self.weights, self.unconverged_weights])
        if not w.sum() > 0:
            return None
        return sigma_bands(np.concatenate([self.chi2, np.full(self.unconverged_weights.size, np.inf)]), chi2_min, w)


def chain_weights(chain: np.ndarray, step: np.ndarray, accepted: np.ndarray,
                  last_step: int | np.ndarray | None = None) -> np.ndarray:
    """MCMC weight of every record: steps until its chain's next accepted record, through ``last_step`` (the
    run's completed steps: one number, or (n,) per record for a merged store of runs of different lengths;
    default the largest stored step of any chain), 0 for rejected proposals, 1 for design records with chain -1.
    See crnet.store's 'Chain states'. All chains of a run step in lockstep, so a chain whose last proposals fell
    outside the prior box (never stored) still holds its state to the end of its run."""
    w = np.where(chain < 0, 1.0, 0.0)
    mcmc = chain >= 0
    if not mcmc.any():
        return w
    last_step = int(step[mcmc].max()) if last_step is None else last_step
    per_record = np.broadcast_to(np.asarray(last_step), chain.shape) if np.ndim(last_step) == 0 else last_step
    if np.shape(per_record) != chain.shape:
        raise ValueError(f"last_step per record must have shape {chain.shape}, got {np.shape(per_record)}")
    for c in np.unique(chain[mcmc]):
        rows = np.flatnonzero((chain == c) & accepted)
        rows = rows[np.argsort(step[rows], kind="stable")]
        last = int(np.max(per_record[chain == c])) + 1
        nxt = np.append(step[rows][1:], last)
        w[rows] = nxt - step[rows]
    return w


def load_mocks(paths: list[str], dataset: str | None = None) -> Mocks:
    """The converged records of the stores ``paths`` (the first one's MCMC weights). ``dataset``: the data set
    the re-simulations are scored against; a store whose chi^2 was computed against another one has it
    recomputed from its fluxes, so that chi^2_min, the MCMC row and Figs. 6-7 compare like with like (the
    paper's updated-data case, Sec. 4.6)."""
    from crnet.store_read import recompute_chi2, record_steps_done

    ps, cs, ws = [], [], []
    first_rows = np.zeros(0, dtype=np.int64)
    unconverged = np.zeros(0)
    from_chains = True
    temperature = float("nan")
    for k, p in enumerate(paths):
        with MockStore.open(p, "r") as st:
            ok = st.read("converged")
            if k == 0:
                first_rows = np.flatnonzero(ok)
            ps.append(st.read("params")[ok])
            if dataset is not None and st.attrs().get("dataset") != dataset:
                cs.append(recompute_chi2(st, dataset, np.flatnonzero(ok))[0])
            else:
                cs.append(st.read("chi2")[ok])
            if k == 0:
                done = record_steps_done(st)
                chain = st.read("chain")
                from_chains = bool(np.any(chain[ok] >= 0))
                temperature = _float_or_nan(st.attrs().get("temperature"))
                weights = chain_weights(chain, st.read("step"), st.read("accepted"), done)
                ws.append(weights[ok])
                unconverged = weights[~ok]
            else:
                ws.append(np.zeros(int(ok.sum())))
    return Mocks(np.concatenate(ps), np.concatenate(cs), np.concatenate(ws), first_rows, from_chains, temperature,
                 unconverged[unconverged > 0])


def _float_or_nan(value: Any) -> float:
    try:
        return float(value)
    except (TypeError, ValueError):
        return float("nan")
