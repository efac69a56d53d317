"""Non-MCMC designs over the Table 1 prior box: uniform, Latin hypercube, Sobol, Gaussian.

All designs live in the sampler coordinates: the 10 parameters of ``crprop.params.LOG_PARAM_NAMES``
(breaks as log10(R/MV)) inside ``crprop.params.LOG_PRIOR_BOX``. :func:`to_physical` converts to the
``PARAM_NAMES`` columns (breaks in MV) that ``PropagationParams.from_array`` and the mock store use.

A design is a deterministic function of (kind, n, seed[, centre, sigma]): a resumed or sharded run
regenerates the same points and takes its slice (:func:`design_slice`), so nothing but the cursor needs
checkpointing.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

import numpy as np
from scipy.stats import qmc

from crprop.params import LOG_PARAM_NAMES, LOG_PRIOR_BOX

DESIGNS: tuple[str, ...] = ("uniform", "lhs", "sobol", "gaussian")
"""Non-MCMC designs; 'mcmc' (crnet.scan.sampler) is the fifth scan design."""

GAUSSIAN_MAX_REDRAWS = 1000
"""Rounds of redrawing the Gaussian points that fell outside the box before giving up."""


def prior_box(names: Sequence[str] = LOG_PARAM_NAMES,
              box: Mapping[str, tuple[float, float, str]] = LOG_PRIOR_BOX) -> tuple[np.ndarray, np.ndarray]:
    """(lower (d,), upper (d,)) of the box in the order of ``names`` (default: log-break coordinates)."""
    lo = np.array([box[n][0] for n in names], dtype=np.float64)
    hi = np.array([box[n][1] for n in names], dtype=np.float64)
    return lo, hi


def to_physical(x_log: np.ndarray) -> np.ndarray:
    """(B, 10) log-break coordinates -> (B, 10) PARAM_NAMES columns (breaks 10^x MV)."""
    out = np.array(x_log, dtype=np.float64, copy=True, ndmin=2)
    out[:, 8:] = 10.0 ** out[:, 8:]
    return out


def to_log(params: np.ndarray) -> np.ndarray:
    """(B, 10) PARAM_NAMES columns (breaks in MV) -> log-break coordinates."""
    out = np.array(params, dtype=np.float64, copy=True, ndmin=2)
    if np.any(out[:, 8:] <= 0):
        raise ValueError("to_log: the break rigidities (columns 8, 9) must be > 0 MV")
    out[:, 8:] = np.log10(out[:, 8:])
    return out


def unit_design(kind: str, n: int, dim: int, seed: int) -> np.ndarray:
    """(n, dim) points in [0, 1)^dim: 'uniform' (iid), 'lhs' (Latin hypercube) or 'sobol' (scrambled).

    Sobol points are the first n of a scrambled sequence of 2^ceil(log2 n) (balanced when n is a power
    of 2; any prefix is still a low-discrepancy set).
    """
    if n < 0:
        raise ValueError(f"number of design points must be >= 0, got {n}")
    rng = np.random.default_rng(seed)
    if kind == "uniform":
        return rng.random((n, dim))
    if kind == "lhs":
        return qmc.LatinHypercube(dim, rng=rng).random(n) if n else np.zeros((0, dim))
    if kind == "sobol":
        if n == 0:
            return np.zeros((0, dim))
        m = max(int(math.ceil(math.log2(n))), 0)
        return qmc.Sobol(dim, scramble=True, rng=rng).random_base2(m)[:n]
    raise ValueError(f"unit_design: kind must be 'uniform', 'lhs' or 'sobol', got {kind!r}")


def gaussian_design(n: int, centre: np.ndarray, sigma: np.ndarray, seed: int | np.random.Generator,
                    lower: np.ndarray, upper: np.ndarray) -> np.ndarray:
    """(n, d) draws of N(centre, S) truncated to [lower, upper] (redrawing the outliers).

    sigma : (d,) standard deviations (S = diag(sigma^2)) or a (d, d) covariance S (positive definite).
    seed : int seed, or a numpy Generator that is used and advanced.
    """
    centre = np.asarray(centre, dtype=np.float64)
    sigma = np.asarray(sigma, dtype=np.float64)
    if sigma.ndim == 2:
        if sigma.shape != (centre.size, centre.size) or not np.all(np.isfinite(sigma)):
            raise ValueError(f"gaussian design: covariance must be a finite {centre.size}x{centre.size} matrix")
        try:
            chol = np.linalg.cholesky(sigma)
        except np.linalg.LinAlgError:
            raise ValueError("gaussian design: the covariance is not positive definite") from None
    else:
        sigma = np.broadcast_to(sigma, centre.shape)
        if np.any(sigma <= 0) or not np.all(np.isfinite(sigma)):
            raise ValueError(f"gaussian design: sigma must be finite and > 0, got {sigma}")
        chol = None
    if np.any(centre < lower) or np.any(centre > upper):
        raise ValueError("gaussian design: the centre lies outside the prior box")
    rng = np.random.default_rng(seed)

    def draw(m: int) -> np.ndarray:
        z = rng.standard_normal((m, centre.size))
        return centre + (sigma * z if chol is None else z @ chol.T)

    out = draw(n)
    for _ in range(GAUSSIAN_MAX_REDRAWS):
        bad = np.any((out < lower) | (out > upper), axis=1)
        if not bad.any():
            return out
        out[bad] = draw(int(bad.sum()))
    # each centre coordinate on a face of the box halves a draw's chance to land inside, whatever sigma: "reduce
    # sigma" alone could not help there (review by helper-111, session 23)
    names = LOG_PARAM_NAMES if centre.size == len(LOG_PARAM_NAMES) else [f"coordinate {i}" for i in range(centre.size)]
    on_face = [names[i] for i in np.flatnonzero((centre <= lower) | (centre >= upper))]
    face = (f"; the centre lies on the prior box's face in {on_face}, which halves the chance per coordinate "
            "whatever sigma: move the centre inside the box" if on_face else "")
    raise ValueError(f"gaussian design: too many draws outside the prior box; reduce sigma{face}")


def design_points(kind: str, n: int, seed: int, centre: np.ndarray | None = None,
                  sigma: np.ndarray | float | None = None) -> np.ndarray:
    """(n, 10) design points in log-break coordinates inside ``LOG_PRIOR_BOX``.

    kind : 'uniform' | 'lhs' | 'sobol' (over the whole box) or 'gaussian' (around ``centre``, given in
    log-break coordinates, with standard deviations ``sigma`` in the same coordinates).
    """
    lo, hi = prior_box()
    if kind == "gaussian":
        if centre is None or sigma is None:
            raise ValueError("the gaussian design needs a centre and sigma")
        return gaussian_design(n, np.asarray(centre, dtype=np.float64).reshape(lo.size), np.asarray(sigma),
                               seed, lo, hi)
    if kind not in DESIGNS:
        raise ValueError(f"design must be one of {DESIGNS}, got {kind!r}")
    return lo + (hi - lo) * unit_design(kind, n, lo.size, seed)


def design_slice(n_total: int, n_shards: int, shard: int) -> tuple[int, int]:
    """[start, stop) of shard ``shard`` when ``n_total`` points are split into contiguous near-equal parts."""
    if not 0 <= shard < n_shards:
        raise ValueError(f"shard {shard} outside 0 .. {n_shards - 1}")
    base, extra = divmod(n_total, n_shards)
    start = shard * base + min(shard, extra)
    return start, start + base + (1 if shard < extra else 0)
