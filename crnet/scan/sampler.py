"""Batched adaptive Metropolis-Hastings: K chains in lockstep, one batched log-density call per step.

The sampler is target-agnostic: it sees points x in R^d (for the scan: the Table 1 parameters with the
breaks as log10(R/MV), i.e. the coordinates of ``crprop.params.LOG_PRIOR_BOX``) and a batched
log-density ``log_density(X: (B, d)) -> (B,)`` (``-inf`` for an impossible point). An optional box
``[lower, upper]`` is a uniform prior: proposals outside it are rejected without evaluating the target.

Proposal (adaptive Metropolis, Haario, Saksman & Tamminen 2001, with the history pooled over all
chains as in inter-chain adaptation, Craiu, Rosenthal & Yang 2009):

    x' = x + lambda * L z,   z ~ N(0, I_d),   L L^T = S

* before ``adapt_start`` steps (or while the pooled history holds fewer than ``MIN_HISTORY_PER_DIM * d``
  states) S is the user's initial proposal covariance;
* afterwards S = (2.38^2 / d) (C + eps diag(C_0)), where C is the covariance of every chain state seen
  since step ``adapt_start`` (all K chains pooled; a running Welford sum, so each new state moves C by
  O(1/n)) and eps * diag(C_0) keeps S positive definite (Haario's regularisation);
* the global factor lambda is tuned towards ``target_acceptance`` by a Robbins-Monro recursion
  log lambda += gain (1 + t)^-decay (acc_t - target), clipped to |log lambda| <= ``max_log_scale``, where acc_t
  counts proposals outside the box as rejections; lambda restarts at 1 when S switches from the initial
  covariance to the pooled one (a lambda tuned to a small initial proposal, applied to the pooled covariance,
  put every proposal outside the box).

Both adaptations diminish (weights 1/n and (1 + t)^-decay with decay in (0.5, 1]) and are bounded,
the conditions under which adaptive MCMC stays ergodic for the target (Roberts & Rosenthal 2007).
With ``freeze_after = N`` the proposal is frozen after N steps, from when on every chain is an ordinary
time-homogeneous Metropolis chain (use that part for strict inference). The proposal is symmetric, so
the acceptance probability is min(1, exp(log p(x') - log p(x))).

The whole state (per-chain data excepted, see :meth:`AdaptiveMetropolis.state_dict`) serialises to
JSON, so the sampler resumes bit-for-bit from a checkpoint without pickles. A scan's resumed run equals the
uninterrupted one exactly when the model is deterministic (tests: ``FunctionModel``). With crprop in the loop it
is not bit-identical: the solver's warm-start fields are not checkpointed, so each chain's first proposal after
a resume is solved from a cold start, which moves chi^2 within the solver tolerance (measured 1.4e-3 in
chi^2 ~ 8e3 on the test grid, i.e. 7e-5 in log p at T = 10); an accept/reject decision can flip that rarely.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np

OPTIMAL_SCALE = 2.38
"""Gelman, Roberts & Gilks (1996): the optimal random-walk scale for a Gaussian target is 2.38 / sqrt(d)."""

MIN_HISTORY_PER_DIM = 10
"""The pooled history must hold >= this many states per dimension before its covariance is used."""

STATE_FORMAT = "crnet-adaptive-metropolis"
STATE_VERSION = 1

LogDensity = Callable[[np.ndarray], np.ndarray]
"""Batched log-density: (B, d) points -> (B,) log p (natural log, up to a constant; -inf = impossible)."""


@dataclass
class SamplerConfig:
    """Settings of :class:`AdaptiveMetropolis` (see the module docstring for the formulas).

    target_acceptance : acceptance rate the global scale is tuned towards (0.234: optimal for d >> 1).
    adapt_start : steps before chain states enter the pooled covariance (skips the initial transient).
    freeze_after : steps after which the proposal is frozen; None = diminishing adaptation throughout.
    adapt_covariance, adapt_scale : switch the two adaptations individually.
    scale_gain, scale_decay : Robbins-Monro gain gain * (1 + t)^-decay; decay in (0.5, 1].
    regularization : eps, in units of the initial proposal variances, added to the pooled covariance.
    max_log_scale : bound on |log lambda| (bounded adaptation).
    """

    target_acceptance: float = 0.234
    adapt_start: int = 20
    freeze_after: int | None = None
    adapt_covariance: bool = True
    adapt_scale: bool = True
    scale_gain: float = 1.0
    scale_decay: float = 0.6
    regularization: float = 1.0e-6
    max_log_scale: float = 4.0

    def __post_init__(self) -> None:
        if not 0.0 < self.target_acceptance < 1.0:
            raise ValueError(f"SamplerConfig.target_acceptance must lie in (0, 1), got {self.target_acceptance}")
        if self.adapt_start < 0:
            raise ValueError(f"SamplerConfig.adapt_start must be >= 0 steps, got {self.adapt_start}")
        if self.freeze_after is not None and self.freeze_after < 0:
            raise ValueError(f"SamplerConfig.freeze_after must be None or >= 0 steps, got {self.freeze_after}")
        if not 0.5 < self.scale_decay <= 1.0:
            raise ValueError(f"SamplerConfig.scale_decay must lie in (0.5, 1] (diminishing adaptation), "
                             f"got {self.scale_decay}")
        # finite too: a NaN passed every comparison and froze every chain, all proposals NaN and rejected (review by
        # helper-111, session 23)
        for name, value, lowest in (("scale_gain", self.scale_gain, ">= 0"), ("regularization", self.regularization,
                                    "> 0"), ("max_log_scale", self.max_log_scale, "> 0")):
            if not (math.isfinite(value) and (value >= 0 if lowest == ">= 0" else value > 0)):
                raise ValueError(f"SamplerConfig.{name} must be finite and {lowest}, got {value}")

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class Trace:
    """History of a :meth:`AdaptiveMetropolis.run`: states after every step (index 0 = start).

    x : (n_steps + 1, K, d) chain states; log_p : (n_steps + 1, K); accepted : (n_steps, K) bool.
    """

    x: np.ndarray
    log_p: np.ndarray
    accepted: np.ndarray = field(default_factory=lambda: np.zeros((0, 0), dtype=bool))

    @property
    def acceptance_rate(self) -> float:
        return float(self.accepted.mean()) if self.accepted.size else float("nan")


class AdaptiveMetropolis:
    """K random-walk Metropolis chains in lockstep with a shared adaptive Gaussian proposal.

    Parameters
    ----------
    x0 : (K, d) starting points (inside the box when one is given).
    log_p0 : (K,) log-density at x0 (-inf allowed: such a chain accepts its first finite proposal).
    proposal_cov : (d, d) covariance, or (d,) standard deviations, of the initial proposal (units of x).
    config : :class:`SamplerConfig`.
    seed : int seed or a numpy Generator (the sampler keeps and advances it).
    lower, upper : (d,) uniform-prior box (closed); None = unbounded.

    Use either :meth:`run` (evaluates ``log_density`` itself), or :meth:`propose` / :meth:`update`
    when the caller evaluates the batch (the scan runner does, to keep the spectra of every proposal).
    """

    def __init__(self, x0: np.ndarray, log_p0: np.ndarray, proposal_cov: np.ndarray,
                 config: SamplerConfig | None = None, seed: int | np.random.Generator = 0,
                 lower: np.ndarray | None = None, upper: np.ndarray | None = None) -> None:
        self.config = config or SamplerConfig()
        x0 = np.array(x0, dtype=np.float64, ndmin=2)
        if x0.ndim != 2:
            raise ValueError(f"x0 must be (K, d), got shape {x0.shape}")
        self.n_chains, self.dim = x0.shape
        log_p0 = np.asarray(log_p0, dtype=np.float64).reshape(-1)
        if log_p0.shape != (self.n_chains,):
            raise ValueError(f"log_p0 must have one value per chain ({self.n_chains}), got shape {log_p0.shape}")
        if np.any(np.isnan(log_p0)):  # -inf (a start of zero density) is allowed; NaN made a chain that never moves
            raise ValueError(f"log_p0 must not be NaN (chains {np.flatnonzero(np.isnan(log_p0)).tolist()}); -inf marks "
                             "a start of zero density")
        cov0 = np.asarray(proposal_cov, dtype=np.float64)
        if cov0.shape == (self.dim,):
            cov0 = np.diag(cov0**2)
        if cov0.shape != (self.dim, self.dim):
            raise ValueError(f"proposal_cov must be ({self.dim},) std devs or ({self.dim}, {self.dim}), "
                             f"got {cov0.shape}")
        _cholesky(cov0, "proposal_cov")
        self.lower = None if lower is None else np.asarray(lower, dtype=np.float64).reshape(self.dim)
        self.upper = None if upper is None else np.asarray(upper, dtype=np.float64).reshape(self.dim)
        if not self._inside(x0).all():
            raise ValueError("x0: every starting point must lie inside [lower, upper]")
        self.x = x0
        self.log_p = log_p0.copy()
        self.cov0 = cov0
        self.rng = seed if isinstance(seed, np.random.Generator) else np.random.default_rng(seed)
        self.step = 0
        self.log_scale = 0.0
        self.n_hist = 0
        self.mean_hist = np.zeros(self.dim)
        self.m2_hist = np.zeros((self.dim, self.dim))
        self.n_accepted = np.zeros(self.n_chains, dtype=np.int64)
        self.n_proposed = 0

    # ----------------------------------------------------------------------------- proposal
    def _inside(self, x: np.ndarray) -> np.ndarray:
        ok = np.all(np.isfinite(x), axis=1)
        if self.lower is not None:
            ok &= np.all(x >= self.lower, axis=1)
        if self.upper is not None:
            ok &= np.all(x <= self.upper, axis=1)
        return ok

    @property
    def frozen(self) -> bool:
        """Whether the proposal no longer adapts (``freeze_after`` reached)."""
        fa = self.config.freeze_after
        return fa is not None and self.step >= fa

    @property
    def _min_history(self) -> int:
        """Pooled states the empirical covariance needs before it is used."""
        return max(MIN_HISTORY_PER_DIM * self.dim, 2)

    def empirical_cov(self) -> np.ndarray | None:
        """Covariance of the pooled history, or None while it is too short to be used."""
        if self.n_hist < self._min_history:
            return None
        return self.m2_hist / (self.n_hist - 1)

    def proposal_cov(self) -> np.ndarray:
        """Current proposal covariance lambda^2 S (units of x squared)."""
        emp = self.empirical_cov() if self.config.adapt_covariance else None
        if emp is None:
            base = self.cov0
        else:
            base = (OPTIMAL_SCALE**2 / self.dim) * (emp + self.config.regularization * np.diag(np.diag(self.cov0)))
        return math.exp(2.0 * self.log_scale) * base

    def propose(self) -> tuple[np.ndarray, np.ndarray]:
        """(x' (K, d), inside (K,) bool): one proposal per chain and whether it lies inside the box.

        Always draws the normal deviates of this step; :meth:`update` draws the uniforms, so the random
        stream (and a resumed run) does not depend on how the caller evaluates the batch.
        """
        chol = _cholesky(self.proposal_cov(), "proposal covariance")
        z = self.rng.standard_normal((self.n_chains, self.dim))
        x_new = self.x + z @ chol.T
        return x_new, self._inside(x_new)

    def update(self, x_prop: np.ndarray, log_p_prop: np.ndarray) -> np.ndarray:
        """Metropolis accept/reject for every chain, then adapt; returns accepted (K,) bool.

        ``log_p_prop`` must be -inf for proposals outside the box (they are rejected regardless).
        """
        x_prop = np.asarray(x_prop, dtype=np.float64)
        log_p_prop = np.asarray(log_p_prop, dtype=np.float64).reshape(-1)
        if x_prop.shape != self.x.shape or log_p_prop.shape != (self.n_chains,):
            raise ValueError(f"update: expected x_prop {self.x.shape} and log_p_prop ({self.n_chains},), got "
                             f"{x_prop.shape} and {log_p_prop.shape}")
        log_u = np.log(self.rng.random(self.n_chains))
        with np.errstate(invalid="ignore"):
            ratio = log_p_prop - self.log_p  # -inf - -inf = nan -> rejected below
        accepted = self._inside(x_prop) & np.isfinite(log_p_prop) & (np.nan_to_num(ratio, nan=-np.inf) > log_u)
        self.x = np.where(accepted[:, None], x_prop, self.x)
        self.log_p = np.where(accepted, log_p_prop, self.log_p)
        self.n_accepted += accepted
        self.n_proposed += 1
        self._adapt(float(accepted.mean()))
        self.step += 1
        return accepted

    def _adapt(self, acceptance: float) -> None:
        if self.frozen:
            return
        cfg = self.config
        if cfg.adapt_scale:
            gain = cfg.scale_gain * (1.0 + self.step) ** (-cfg.scale_decay)
            self.log_scale = float(np.clip(self.log_scale + gain * (acceptance - cfg.target_acceptance),
                                           -cfg.max_log_scale, cfg.max_log_scale))
        if cfg.adapt_covariance and self.step + 1 >= cfg.adapt_start:
            short = self.n_hist < self._min_history
            self._accumulate(self.x)
            if short and self.n_hist >= self._min_history:
                # S switches from the initial covariance to the pooled one, whose 2.38^2/d is already the optimal
                # scale: a lambda tuned for the (small) initial proposal carried over made it ~1 box width wide
                # (helper-115, session 23: 8 chains, analytic target, log lambda 1.75 at the switch at step 32; no
                # proposal of any chain inside the box in 30 of steps 33-66, until Robbins-Monro shrank lambda; tests/
                # test_scan_store_review_s23.py without the reset: log lambda 1.63 / 1.78 for seeds 0 / 1)
                self.log_scale = 0.0

    def _accumulate(self, batch: np.ndarray) -> None:
        """Chan et al. parallel update of the pooled mean and scatter matrix with K new states."""
        n_b = batch.shape[0]
        mean_b = batch.mean(axis=0)
        dev = batch - mean_b
        m2_b = dev.T @ dev
        n = self.n_hist + n_b
        delta = mean_b - self.mean_hist
        self.mean_hist = self.mean_hist + delta * (n_b / n)
        self.m2_hist = self.m2_hist + m2_b + np.outer(delta, delta) * (self.n_hist * n_b / n)
        self.n_hist = n

    # ----------------------------------------------------------------------------- driver
    def run(self, log_density: LogDensity, n_steps: int,
            callback: Callable[[AdaptiveMetropolis, np.ndarray], None] | None = None) -> Trace:
        """``n_steps`` lockstep steps, evaluating ``log_density`` on the in-box proposals only."""
        xs = np.empty((n_steps + 1, self.n_chains, self.dim))
        lps = np.empty((n_steps + 1, self.n_chains))
        acc = np.zeros((n_steps, self.n_chains), dtype=bool)
        xs[0], lps[0] = self.x, self.log_p
        for t in range(n_steps):
            x_prop, inside = self.propose()
            log_p_prop = np.full(self.n_chains, -np.inf)
            if inside.any():
                log_p_prop[inside] = np.asarray(log_density(x_prop[inside]), dtype=np.float64).reshape(-1)
            acc[t] = self.update(x_prop, log_p_prop)
            xs[t + 1], lps[t + 1] = self.x, self.log_p
            if callback is not None:
                callback(self, acc[t])
        return Trace(xs, lps, acc)

    @property
    def acceptance_rate(self) -> float:
        """Fraction of accepted proposals over all chains and steps so far."""
        return float(self.n_accepted.sum() / max(self.n_proposed * self.n_chains, 1))

    # ----------------------------------------------------------------------------- state
    def state_dict(self, include_chains: bool = True) -> dict[str, Any]:
        """JSON-serialisable state (floats as Python floats, the RNG as its bit-generator state).

        ``include_chains=False`` leaves out everything per chain: the (K, d) positions, the log-densities and
        the acceptance counts (the scan keeps those in its records and rebuilds them on resume, so the
        checkpoint stays O(d^2) for any K and fits its fixed store slot).
        """
        state: dict[str, Any] = {
            "format": STATE_FORMAT, "version": STATE_VERSION,
            "config": self.config.to_dict(), "n_chains": self.n_chains, "dim": self.dim,
            "step": self.step, "log_scale": self.log_scale, "n_hist": self.n_hist,
            "mean_hist": self.mean_hist.tolist(), "m2_hist": self.m2_hist.tolist(), "cov0": self.cov0.tolist(),
            "n_proposed": self.n_proposed,
            "lower": None if self.lower is None else self.lower.tolist(),
            "upper": None if self.upper is None else self.upper.tolist(),
            "rng": _rng_state(self.rng),
        }
        if include_chains:
            state["x"] = self.x.tolist()
            state["log_p"] = [float(v) for v in self.log_p]
            state["n_accepted"] = self.n_accepted.tolist()
        return state

    @classmethod
    def from_state(cls, state: dict[str, Any], x: np.ndarray | None = None,
                   log_p: np.ndarray | None = None, n_accepted: np.ndarray | None = None) -> AdaptiveMetropolis:
        """Rebuild a sampler from :meth:`state_dict`; ``x``/``log_p``/``n_accepted`` (accepted proposals per
        chain) are needed when it holds no chains."""
        if state.get("format") != STATE_FORMAT or state.get("version") != STATE_VERSION:
            raise ValueError(f"sampler state: expected format {STATE_FORMAT!r} version {STATE_VERSION}, got "
                             f"{state.get('format')!r} version {state.get('version')!r}")
        x = np.asarray(state["x"] if x is None else x, dtype=np.float64)
        log_p = np.asarray(state["log_p"] if log_p is None else log_p, dtype=np.float64)
        if x.shape != (state["n_chains"], state["dim"]):
            raise ValueError(f"sampler state: chain positions have shape {x.shape}, the state has "
                             f"({state['n_chains']}, {state['dim']})")
        lower = None if state["lower"] is None else np.asarray(state["lower"])
        upper = None if state["upper"] is None else np.asarray(state["upper"])
        rng = np.random.default_rng()
        rng.bit_generator.state = state["rng"]
        out = cls(x, log_p, np.asarray(state["cov0"]), SamplerConfig(**state["config"]), rng, lower, upper)
        out.step = int(state["step"])
        out.log_scale = float(state["log_scale"])
        out.n_hist = int(state["n_hist"])
        out.mean_hist = np.asarray(state["mean_hist"], dtype=np.float64)
        out.m2_hist = np.asarray(state["m2_hist"], dtype=np.float64)
        counts = state.get("n_accepted", n_accepted)
        if counts is None:
            raise ValueError("sampler state holds no per-chain acceptance counts: pass n_accepted")
        out.n_accepted = np.asarray(counts, dtype=np.int64)
        if out.n_accepted.shape != (out.n_chains,):
            raise ValueError(f"sampler state: n_accepted has shape {out.n_accepted.shape}, expected ({out.n_chains},)")
        out.n_proposed = int(state["n_proposed"])
        return out


def _rng_state(rng: np.random.Generator) -> dict[str, Any]:
    """The generator's bit-generator state (plain ints and strings: JSON-serialisable)."""
    return dict(rng.bit_generator.state)


def _cholesky(cov: np.ndarray, what: str) -> np.ndarray:
    try:
        return np.linalg.cholesky(cov)
    except np.linalg.LinAlgError:
        raise ValueError(f"{what} is not symmetric positive definite") from None


def chain_moments(trace_x: np.ndarray, burn_in: int = 0) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Mean and variance of every coordinate over the chains, with their Monte-Carlo standard errors.

    trace_x : (n_steps + 1, K, d) states. The K chains (after ``burn_in`` steps) are treated as
    independent replicas: the error of the pooled mean is the spread of the per-chain means / sqrt(K)
    (valid whatever the autocorrelation inside a chain), likewise for the variance.
    Returns (mean (d,), mean_err (d,), var (d,), var_err (d,)).
    """
    x = np.asarray(trace_x)[burn_in:]
    k = x.shape[1]
    if k < 2:
        raise ValueError("chain_moments needs >= 2 chains to estimate the Monte-Carlo error")
    per_mean = x.mean(axis=0)  # (K, d)
    per_var = x.var(axis=0)
    mean = per_mean.mean(axis=0)
    grand = x.reshape(-1, x.shape[2])
    var = grand.var(axis=0)
    return mean, per_mean.std(axis=0, ddof=1) / math.sqrt(k), var, per_var.std(axis=0, ddof=1) / math.sqrt(k)
