"""The smallest tau spread a machine that follows the spectra can reach, and how far predictions are from the truth.

Eq. 4.4's tau = (theta' - theta) / |theta| compares two predictions: theta from a test pseudo-spectrum and
theta' from a pseudo-spectrum of theta's re-simulation. For a machine that is unbiased near theta (its mean
prediction from spectra simulated at theta is theta), theta' - theta is its estimation error at theta, so the
spread of tau_i is bounded below by sigma_i / |theta_i|, with sigma_i from the linearised Gauss-Markov bound
(the best linear unbiased estimator) for the pseudo-experiment noise:

    C = (J_perp^T J_perp / s^2)^-1,   sigma_i = sqrt(C_ii).

J (5 n_E x 10) is the derivative of the log fluxes of Li, Be, B, C, O in every energy bin (the information
the eight input channels carry) with respect to the ten parameters in LOG_PARAM_NAMES coordinates (breaks
as log10(R/MV), the coordinates of Eq. 4.4 here); J_perp is J with its mean over all rows removed (the global
scale q_C is re-profiled on every pseudo-spectrum, so a common factor carries no information); s^2 is the
variance of log(1 + eps), eps ~ U(-a, a), the paper's pseudo-experiment noise (a = 0.05), independent per
element and bin.

Caveats. The bound is local (one parameter point; tau is pooled over the test set) and linear: Gauss-Markov
binds every *linear* unbiased estimator whatever the noise's shape, and for Gaussian noise of the same variance
it is the Cramer-Rao bound of every unbiased one. Uniform noise has hard edges, which a non-linear estimator
could in principle exploit; a network fed with noisy features is not expected to, but that is not measured.
So a tau interval much *narrower* than this floor suggests a biased machine: one that predicts from the
distribution of its training set (the prior) rather than from the spectrum, where tau no longer measures how
well it inverts the propagation. :func:`truth_accuracy` checks that directly on the test pseudo-data, whose
true parameters are known (slope of prediction on truth well below 1).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from crnet.features import FEATURE_SPECIES, species_rows
from crnet.pseudodata import PAPER_MAX_RELATIVE
from crnet.scan.designs import to_log
from crprop.params import LOG_PARAM_NAMES, LOG_PRIOR_BOX

FLOOR_STEP_FRACTION = 0.01
"""Central-difference step of the Jacobian, as a fraction of each LOG_PRIOR_BOX width. At the session-4 best fit
(paper grid, stretched halo, numba) halving it changes every parameter's floor by at most 0.25 %
(benchmarks/tau_floor.py, benchmarks/results/tau_floor_numba_stretched.md)."""

NULL_EIGENVALUE_RTOL = 1e-12
"""Eigenvalues of the Fisher matrix below this fraction of the largest are directions the spectra do not
constrain: a parameter that loads on one of them gets an infinite floor."""

NULL_LOADING = 1e-6
"""Smallest |eigenvector component| that counts as a parameter loading on an unconstrained direction."""



def log_noise_variance(max_relative: float = PAPER_MAX_RELATIVE) -> float:
    """Variance of log(1 + eps) for eps ~ U(-a, a), a = ``max_relative`` (dimensionless), in closed form."""
    a = float(max_relative)
    if not 0.0 < a < 1.0:
        raise ValueError(f"max_relative must lie in (0, 1), got {max_relative}")

    def primitive(p: int, x: float) -> float:  # antiderivative of log(x)^p, p = 1, 2
        lx = np.log(x)
        return x * (lx - 1.0) if p == 1 else x * (lx * lx - 2.0 * lx + 2.0)

    lo, hi = 1.0 - a, 1.0 + a
    m1 = (primitive(1, hi) - primitive(1, lo)) / (2.0 * a)
    m2 = (primitive(2, hi) - primitive(2, lo)) / (2.0 * a)
    return float(m2 - m1 * m1)


@dataclass(frozen=True)
class TauFloor:
    """The floor at one parameter point: ``x_log`` (10,) LOG_PARAM_NAMES coordinates, ``sigma_log`` (10,)
    bound on the standard deviation of an unbiased estimate in those coordinates (inf for parameters on
    directions the spectra do not constrain), ``covariance_log`` (10, 10) the inverse over the constrained ones,
    ``max_relative`` the noise half-width, ``n_data`` the number of noisy numbers (5 x n_E), ``jacobian``
    (n_data, 10) d log(flux) / d x_log when computed here (not kept in caches)."""

    x_log: np.ndarray
    sigma_log: np.ndarray
    covariance_log: np.ndarray
    max_relative: float
    n_data: int
    jacobian: np.ndarray | None = None

    @property
    def tau_percent(self) -> np.ndarray:
        """(10,) half-width of the 68 % tau interval of an efficient unbiased machine, percent (NaN where the
        parameter is 0 and tau is undefined)."""
        scale = np.abs(self.x_log)
        return np.divide(100.0 * self.sigma_log, scale, out=np.full_like(scale, np.nan), where=scale > 0)

    def as_dict(self) -> dict:
        return {"x_log": dict(zip(LOG_PARAM_NAMES, map(float, self.x_log), strict=True)),
                "sigma_log": dict(zip(LOG_PARAM_NAMES, map(float, self.sigma_log), strict=True)),
                "tau_percent": dict(zip(LOG_PARAM_NAMES, map(float, self.tau_percent), strict=True)),
                "max_relative": self.max_relative, "n_data": self.n_data}


def floor_from_jacobian(jacobian: np.ndarray, x_log: np.ndarray,
                        max_relative: float = PAPER_MAX_RELATIVE) -> TauFloor:
    """The bound (module docstring) from a Jacobian (n_data, 10) of log fluxes at ``x_log`` (10,)."""
    j = np.asarray(jacobian, dtype=np.float64)
    x = np.asarray(x_log, dtype=np.float64)
    if j.ndim != 2 or j.shape[1] != len(LOG_PARAM_NAMES) or x.shape != (len(LOG_PARAM_NAMES),):
        raise ValueError(f"jacobian must be (n_data, 10) and x_log (10,), got {j.shape} and {x.shape}")
    if not np.all(np.isfinite(j)):
        raise ValueError("jacobian: non-finite derivatives (a flux vanished or a solve failed)")
    j_perp = j - j.mean(axis=0)
    fisher = j_perp.T @ j_perp / log_noise_variance(max_relative)
    w, v = np.linalg.eigh(fisher)
    good = w > NULL_EIGENVALUE_RTOL * max(float(w.max()), 0.0)
    cov = (v[:, good] / w[good]) @ v[:, good].T
    sigma = np.sqrt(np.clip(np.diag(cov), 0.0, None))
    unconstrained = np.any(np.abs(v[:, ~good]) > NULL_LOADING, axis=1) if (~good).any() else np.zeros(x.size, bool)
    sigma = np.where(unconstrained, np.inf, sigma)
    return TauFloor(x, sigma, cov, float(max_relative), int(j.shape[0]), j)


def stencil(x_log: np.ndarray, step_fraction: float = FLOOR_STEP_FRACTION) -> tuple[np.ndarray, np.ndarray]:
    """(21, 10) LOG_PARAM_NAMES points: ``x_log``, then for each parameter its upper and lower neighbour
    (``step_fraction`` of the box width, one-sided where the box ends), and (10,) the distances between them."""
    x = np.asarray(x_log, dtype=np.float64)
    lo = np.array([LOG_PRIOR_BOX[n][0] for n in LOG_PARAM_NAMES])
    hi = np.array([LOG_PRIOR_BOX[n][1] for n in LOG_PARAM_NAMES])
    if x.shape != lo.shape or np.any(x < lo) or np.any(x > hi):
        raise ValueError("x_log must be 10 LOG_PARAM_NAMES values inside LOG_PRIOR_BOX")
    if not 0.0 < step_fraction < 0.5:
        raise ValueError(f"step_fraction must lie in (0, 0.5), got {step_fraction}")
    h = step_fraction * (hi - lo)
    points, dist = [x], np.empty(x.size)
    for i in range(x.size):
        up, down = x.copy(), x.copy()
        up[i], down[i] = min(x[i] + h[i], hi[i]), max(x[i] - h[i], lo[i])
        points += [up, down]
        dist[i] = up[i] - down[i]
    return np.array(points), dist


def jacobian_from_fluxes(feature_flux: np.ndarray, dist: np.ndarray) -> np.ndarray:
    """(m, 10) d log(flux) / d x_log from the (21, 5, n_E) feature-element fluxes of :func:`stencil`'s points.

    Rows (element, energy bin) whose flux is not positive and finite at every stencil point are left out: they
    have no logarithm and carry no information; m = 5 n_E when every flux is positive."""
    f = np.asarray(feature_flux, dtype=np.float64)
    keep = np.all(np.isfinite(f) & (f > 0), axis=0).ravel()
    logs = np.log(np.where(f > 0, f, 1.0))
    cols = [(logs[1 + 2 * i] - logs[2 + 2 * i]).ravel()[keep] / dist[i] for i in range(dist.size)]
    return np.stack(cols, axis=1)


def tau_floor(model, params: np.ndarray, max_relative: float = PAPER_MAX_RELATIVE,
              step_fraction: float = FLOOR_STEP_FRACTION) -> TauFloor:
    """The floor at ``params`` (10,) PARAM_NAMES units (breaks in MV): propagates the 21 points of
    :func:`stencil` with ``model`` (a :class:`crnet.scan.models.PropagateModel`) in one batch.

    Raises RuntimeError when a solve did not converge (a Jacobian from unconverged fluxes would be noise).
    """
    return tau_floors(model, np.asarray(params, dtype=np.float64).reshape(1, -1), max_relative, step_fraction)[0]


def tau_floors(model, params: np.ndarray, max_relative: float = PAPER_MAX_RELATIVE,
               step_fraction: float = FLOOR_STEP_FRACTION) -> list[TauFloor]:
    """:func:`tau_floor` at each row of ``params`` (m, 10; PARAM_NAMES units), the 21 m stencil solves in one
    batch (one GPU call fills the device). Raises RuntimeError naming the rows whose stencil did not converge."""
    p = np.asarray(params, dtype=np.float64)
    if p.ndim != 2 or p.shape[1] != len(LOG_PARAM_NAMES) or p.shape[0] < 1:
        raise ValueError(f"params must be (m >= 1, 10) PARAM_NAMES values, got shape {p.shape}")
    x_logs = to_log(p)
    stencils = [stencil(x, step_fraction) for x in x_logs]
    phys = np.concatenate([pts for pts, _ in stencils])
    phys[:, 8:] = 10.0 ** phys[:, 8:]
    ev = model.evaluate(phys)
    n_pts = stencils[0][0].shape[0]
    bad = np.flatnonzero(~np.asarray(ev.converged).reshape(-1, n_pts).all(axis=1))
    if bad.size:
        raise RuntimeError(f"tau floor: the stencil solves of point(s) {bad.tolist()} did not all converge")
    rows = species_rows(model.species, FEATURE_SPECIES)
    flux = ev.flux[:, rows, :].reshape(p.shape[0], n_pts, len(rows), -1)
    return [floor_from_jacobian(jacobian_from_fluxes(flux[k], dist), x_logs[k], max_relative)
            for k, (_, dist) in enumerate(stencils)]


def oracle_predictions(truth: np.ndarray, covariance_log: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """(n, 10) predictions of an efficient unbiased machine: ``truth`` (n, 10; PARAM_NAMES units, breaks in MV)
    plus a draw of N(0, C) in LOG_PARAM_NAMES coordinates, returned in PARAM_NAMES units. ``covariance_log`` is
    one floor covariance C (10, 10) for every row, or one per row (n, 10, 10): the floor at each row's centre.

    Re-simulated and scored like a machine's predictions, they give the Table 4 shares that a machine at the
    floor reaches on the same test centres (the "unbiased-floor oracle" row of the report). C is zero along
    directions the spectra do not constrain (the oracle knows the truth there), and the bound is linear and
    local. A machine that scores well above the oracle leans on its training distribution (compare the accuracy
    table): Table 4 rewards that, tau does not measure it.
    """
    t = np.asarray(truth, dtype=np.float64)
    n_par = len(LOG_PARAM_NAMES)
    if t.ndim != 2 or t.shape[1] != n_par:
        raise ValueError(f"truth must be (n, 10) PARAM_NAMES values, got shape {t.shape}")
    cov = np.asarray(covariance_log, dtype=np.float64)
    if cov.shape == (n_par, n_par):
        cov = np.broadcast_to(cov, (t.shape[0], n_par, n_par))
    if cov.shape != (t.shape[0], n_par, n_par) or not np.all(np.isfinite(cov)):
        raise ValueError(f"covariance_log must be finite, (10, 10) or (n, 10, 10) with n = {t.shape[0]}, "
                         f"got shape {cov.shape}")
    w, v = np.linalg.eigh(cov)
    root = v * np.sqrt(np.clip(w, 0.0, None))[:, None, :]  # root @ root.T == C for each row (PSD by construction)
    y = to_log(t) + np.einsum("nij,nj->ni", root, rng.standard_normal(t.shape))
    y[:, 8:] = 10.0 ** y[:, 8:]
    return y


def centre_labels(truth: np.ndarray) -> np.ndarray:
    """(n,) label of each prediction's central spectrum: rows with identical true parameters share a centre."""
    return np.unique(np.asarray(truth, dtype=np.float64), axis=0, return_inverse=True)[1].reshape(-1)


MIN_DISTINCT_TRUTHS_FOR_SLOPE = 5
"""Distinct test truths below which :func:`truth_accuracy` gives no slope (review of session 14: on the CPU-scale
run's 2 centres the printed slopes ranged from -2.8 to 5.0)."""


def truth_accuracy(theta: np.ndarray, truth: np.ndarray) -> dict[str, dict[str, float]]:
    """Per parameter: the median and 68 % interval (percent) of (prediction - truth) / |truth|, and the slope of
    prediction against truth over the test set (cov / var: 1 = follows the truth, 0 = ignores the spectrum),
    over rows with finite values. ``theta`` and ``truth`` (n, 10) are in PARAM_NAMES units (breaks in MV); the
    comparison is made in LOG_PARAM_NAMES coordinates (breaks as log10(R/MV)), as Eq. 4.4's tau.

    Also gives ``n`` and ``n_distinct_truths`` (the test pseudo-spectra share their central spectra). With fewer
    than :data:`MIN_DISTINCT_TRUTHS_FOR_SLOPE` distinct truths the slope is NaN: over two centres it is the ratio of
    two mean differences, not a measure of how the machine follows the truth.
    """
    from crnet.evaluate.tables import INTERVAL_PERCENTILES

    p, t = to_log(np.asarray(theta, dtype=np.float64)), to_log(np.asarray(truth, dtype=np.float64))
    if p.shape != t.shape:
        raise ValueError(f"theta and truth must have the same shape, got {p.shape} and {t.shape}")
    ok = np.all(np.isfinite(p), axis=1) & np.all(np.isfinite(t), axis=1)
    p, t = p[ok], t[ok]
    n_distinct = int(centre_labels(t).max()) + 1 if t.size else 0
    out = {}
    for j, name in enumerate(LOG_PARAM_NAMES):
        if p.shape[0] < 2:
            out[name] = {"median": float("nan"), "plus": float("nan"), "minus": float("nan"),
                         "slope": float("nan"), "n": int(p.shape[0]), "n_distinct_truths": n_distinct}
            continue
        err = 100.0 * (p[:, j] - t[:, j]) / np.abs(t[:, j])  # signed as the shift, like tau (relative_change)
        lo, med, hi = np.percentile(err, [INTERVAL_PERCENTILES[0], 50.0, INTERVAL_PERCENTILES[1]])
        var = float(np.var(t[:, j]))
        slope = (float(np.cov(p[:, j], t[:, j], bias=True)[0, 1] / var)
                 if var > 0 and n_distinct >= MIN_DISTINCT_TRUTHS_FOR_SLOPE else float("nan"))
        out[name] = {"median": float(med), "plus": float(hi - med), "minus": float(med - lo), "slope": slope,
                     "n": int(p.shape[0]), "n_distinct_truths": n_distinct}
    return out
