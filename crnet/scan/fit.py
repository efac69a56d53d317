"""Best fit of chi^2_tot over the 10 Table-1 parameters and its Laplace covariance (a start for the scan).

Why: the paper's scan (CosRayMC + GALPROP) walks Metropolis chains in from the prior box; their early
states (the burn-in) are not samples of chi2_tot / 10 and it takes thousands of steps per chain before
they are. On one GPU session crnet can afford tens of steps per chain, so it finds the minimum first and
starts the chains from the Laplace approximation of the tempered posterior around it — the usual
"small ball around the maximum a posteriori" initialisation of ensemble samplers (emcee's documentation).
The samples the machines learn from are still the Metropolis chains' own; the fit only shortens the
burn-in. Chain 0 starts exactly at the best fit, so the store holds the minimum.

Method: least squares on the normalised data residuals r(theta) (chi2_tot = |r|^2 with the four
normalisations profiled at every theta, ``crnet.likelihood``), trust-region reflective inside the prior
box (``scipy.optimize.least_squares``, method 'trf'), in the sampler's coordinates (breaks as
log10(R/MV), ``crprop.params.LOG_PRIOR_BOX``) scaled by the box widths. The Jacobian is by forward
differences with all d perturbed models propagated in ONE batched solver call per iteration (backward
at the upper box edge).

Covariance: C = (J^T J)^-1 at the minimum (Gauss-Newton Hessian; the Delta chi2 = 1 ellipsoid). The
start dispersion of the chains is N(x_best, T C) truncated to the box (T = the scan temperature, 10) and
the initial proposal covariance (2.38^2 / d) T C (Gelman, Roberts & Gilks 1996). Directions the data do
not constrain (tiny eigenvalues of J^T J, e.g. along the D0 - z_h degeneracy) are capped at a standard
deviation of MAX_START_STD_FRACTION of the box width.
"""

from __future__ import annotations

import json
import time
import warnings
from dataclasses import MISSING, asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

import numpy as np
from scipy import optimize

from crnet.json_files import read_json_object
from crnet.paths import atomic_write_text
from crnet.scan.designs import prior_box, to_log, to_physical
from crprop.params import CRML_BASE, LOG_PARAM_NAMES, PARAM_NAMES

FAILED_RESIDUAL = 1.0e6
"""Every normalised residual of a model that did not converge or gave a non-finite chi^2: a cost no real model
reaches (chi^2 ~ 4e14 over the paper's 397 points), so least_squares rejects the step that led there."""
FD_STEP_FRACTION = 1.0e-3
"""Forward-difference step, fraction of each box width. The fast solver's relative residual 1e-6 leaves a flux
error ~5e-7 (benchmarks/results/gpu_solver_gap.md), so a derivative of ln(flux) per box width carries an absolute
noise ~5e-7 / 1e-3 = 5e-4: 1e-3 relative for a parameter that moves the fluxes by 50 % across its box, more for
weaker ones. The noise only affects the trust-region steps; the minimum is set by the residuals themselves."""

MAX_START_STD_FRACTION = 0.2
"""Largest standard deviation of the start dispersion (after the temperature), fraction of the box width:
caps the directions the data constrain weakly (tempered_covariance)."""

MAX_LAPLACE_STD_FRACTION = 1.0
"""Largest Delta chi2 = 1 standard deviation stored in C, fraction of the box width: a direction the data do not
constrain at all (zero eigenvalue of J^T J) gets the prior box's scale instead of an infinite variance."""

FIT_FORMAT = "crnet-fit"
FIT_VERSION = 1


class FitFailed(RuntimeError):
    """The fit cannot go on: the model where a Jacobian is needed did not converge or gave a non-finite chi2.
    `crnet fit` prints it as an error line (exit 1) instead of a traceback (walk-through by helper-87, session 21)."""


@dataclass
class FitConfig:
    """Settings of :func:`fit_best`.

    start : (10,) PARAM_NAMES values (breaks in MV) where the fit starts; None = crprop.params.CRML_BASE
        (chi2_tot = 11,797 on the 'paper' data set, crnet fast mode, paper grid).
    max_evaluations : cap on least_squares' residual evaluations (each Jacobian costs 10 more models).
    ftol, xtol : least_squares' relative tolerances on chi^2 and on the step (1e-4: Delta chi2 ~0.04 at
        chi2 ~ 400, far below the 1 sigma threshold of 15.9).

    No temperature: the fit finds x_best and the untempered C; the scan tempers C with its own T when it starts
    (:meth:`FitResult.scan_start`). (A ``temperature`` here was validated and then unused, so `crnet fit
    --temperature` changed nothing; walk-through, session 18.)
    """

    start: list[float] | None = None
    max_evaluations: int = 60
    ftol: float = 1.0e-4
    xtol: float = 1.0e-4

    def __post_init__(self) -> None:
        if self.start is not None and len(self.start) != len(PARAM_NAMES):
            raise ValueError(f"FitConfig.start must hold the {len(PARAM_NAMES)} PARAM_NAMES values, "
                             f"got {len(self.start)}")
        if self.max_evaluations < 1:
            raise ValueError(f"FitConfig.max_evaluations must be >= 1 (residual evaluations), got "
                             f"{self.max_evaluations}")
        if not (self.ftol > 0 and self.xtol > 0):
            raise ValueError("FitConfig.ftol and xtol must be > 0")


@dataclass
class FitResult:
    """Outcome of :func:`fit_best`.

    params : {PARAM_NAMES name: value} at the minimum (breaks in MV); x_log : the same in log-break
        coordinates. chi2 : chi2_tot there; norms : profiled normalisations (q_C, xi_Li, xi_Be, qO/qC).
    covariance_log : (10, 10) C = (J^T J)^-1 in log-break coordinates (Delta chi2 = 1); no direction wider
        than MAX_LAPLACE_STD_FRACTION of the box.
    success : least_squares reached ftol/xtol (not only the evaluation cap) and the final model converged.
    n_evaluations : residual evaluations; n_models : models propagated (with the Jacobians).
    history : chi2_tot of every residual evaluation, in order.
    setup : what the chi2 was computed with: {'grid': GridConfig settings, 'dataset', 'mode'} (empty in fit files
        written before it was recorded); `crnet scan --from-fit` refuses a scan of another setup (:meth:`check_setup`).
    """

    params: dict[str, float]
    x_log: list[float]
    chi2: float
    norms: list[float]
    covariance_log: list[list[float]]
    success: bool
    status: int
    message: str
    n_evaluations: int
    n_models: int
    wall_s: float
    history: list[float] = field(default_factory=list)
    start: list[float] = field(default_factory=list)
    solver_converged: bool = True
    setup: dict[str, Any] = field(default_factory=dict)

    def check_setup(self, grid: dict[str, Any], dataset: str, what: str = "--from-fit") -> None:
        """ValueError naming ``what`` and the differing entries when this fit was made with another grid or data set
        than the scan it would start (its best fit and covariance belong to that other chi2 surface). The solver
        mode is recorded but not compared: converged modes agree to their tolerance on one grid (and `crnet fit`
        has no --mode). A fit file that records no setup passes."""
        if not self.setup:
            return
        current = {"grid": _grid_settings(grid), "dataset": dataset}
        recorded = {**self.setup, "grid": _grid_settings(self.setup["grid"])} if "grid" in self.setup else self.setup
        diff = [k for k in ("grid", "dataset") if k in recorded and recorded[k] != current[k]]
        if diff:
            detail = "; ".join(f"{k}: fit {recorded[k]!r}, scan {current[k]!r}" for k in diff)
            raise ValueError(f"{what}: the fit was made with another {', '.join(diff)} than this scan ({detail}); "
                             "fit again with the scan's options")

    @property
    def covariance(self) -> np.ndarray:
        """C (Delta chi2 = 1, not tempered) as a (10, 10) array, log-break coordinates."""
        return np.asarray(self.covariance_log, dtype=np.float64)

    def param_array(self) -> np.ndarray:
        """(10,) PARAM_NAMES values (breaks in MV)."""
        return np.array([self.params[n] for n in PARAM_NAMES], dtype=np.float64)

    def scan_start(self, temperature: float) -> tuple[list[float], list[list[float]]]:
        """(start, start_cov) for :class:`crnet.scan.runner.ScanConfig`: the best fit and T C (capped)."""
        return [float(v) for v in self.param_array()], tempered_covariance(self.covariance, temperature).tolist()

    def to_json(self) -> dict[str, Any]:
        return {"format": FIT_FORMAT, "version": FIT_VERSION, **asdict(self)}

    def save(self, path: Path | str) -> Path:
        return atomic_write_text(path, json.dumps(self.to_json(), indent=2))

    @classmethod
    def load(cls, path: Path | str) -> FitResult:
        """The fit result written by :meth:`save` (``crnet fit --out``); ValueError naming the file for anything else:
        binary or unreadable, JSON that is not an object, another format, unknown or missing keys, a bad covariance."""
        path = Path(path)
        raw = read_json_object(path, "crnet fit file", hint="`crnet fit --out` writes one", bad="not a")
        unknown = sorted(set(raw) - {f.name for f in fields(cls)} - {"format", "version"})
        if unknown:
            raise ValueError(f"{path}: not a crnet fit file written by `crnet fit` (unknown key(s) {unknown})")
        if raw.get("format") != FIT_FORMAT:
            raise ValueError(f"{path}: format {raw.get('format')!r}, expected {FIT_FORMAT!r}")
        raw.pop("format"), raw.pop("version", None)
        # a TypeError traceback from cls(**raw) or later from scan_start otherwise (review by helper-85, session 21)
        required = [f.name for f in fields(cls) if f.default is MISSING and f.default_factory is MISSING]
        absent = [n for n in required if n not in raw]
        if absent:
            raise ValueError(f"{path}: crnet fit file without {absent}; `crnet fit --out` writes every one")
        params = raw["params"]
        if not isinstance(params, dict):
            raise ValueError(f"{path}: params must be an object of parameter name -> value, got "
                             f"{type(params).__name__}")
        missing = [n for n in PARAM_NAMES if n not in params]
        if missing:
            raise ValueError(f"{path}: params lacks {missing}")
        bad = [n for n in PARAM_NAMES if isinstance(params[n], bool) or not isinstance(params[n], (int, float))
               or not np.isfinite(params[n])]
        if bad:
            raise ValueError(f"{path}: params {bad} must be finite numbers, got {[params[n] for n in bad]}")
        cov = np.asarray(raw.get("covariance_log"), dtype=np.float64)
        if cov.shape != (len(PARAM_NAMES),) * 2 or not np.all(np.isfinite(cov)):
            raise ValueError(f"{path}: covariance_log must be a finite {len(PARAM_NAMES)}x{len(PARAM_NAMES)} matrix")
        return cls(**raw)


def tempered_covariance(cov_log: np.ndarray, temperature: float) -> np.ndarray:
    """T C with every eigen-direction's standard deviation capped at MAX_START_STD_FRACTION of the box
    (widths measured along the direction in box-scaled coordinates)."""
    lo, hi = prior_box()
    w = hi - lo
    cu = temperature * np.asarray(cov_log, dtype=np.float64) / np.outer(w, w)
    cu = 0.5 * (cu + cu.T)
    lam, vec = np.linalg.eigh(cu)
    lam = np.clip(lam, 0.0, MAX_START_STD_FRACTION**2)
    return (vec * lam) @ vec.T * np.outer(w, w)


def laplace_covariance(jac_scaled: np.ndarray, widths: np.ndarray) -> np.ndarray:
    """(J^T J)^-1 in log-break coordinates from the Jacobian in box-scaled coordinates; eigen-directions wider
    than MAX_LAPLACE_STD_FRACTION of the box are set to that width."""
    jtj = jac_scaled.T @ jac_scaled
    lam, vec = np.linalg.eigh(0.5 * (jtj + jtj.T))
    inv = 1.0 / np.maximum(lam, 1.0 / MAX_LAPLACE_STD_FRACTION**2)
    cu = (vec * inv) @ vec.T
    return cu * np.outer(widths, widths)


def check_fit_start(start: Any, name: str = "fit start") -> np.ndarray:
    """``start`` (the 10 PARAM_NAMES values, breaks in MV) in log-break coordinates (:func:`to_log`), checked as
    :func:`fit_best` needs it: 10 finite values strictly inside the prior box. ValueError otherwise, its message
    beginning with ``name`` (what the caller calls the start: 'fit start', '<config>: [fit] start', ...)."""
    values = np.asarray(start, dtype=np.float64)
    if values.shape != (len(PARAM_NAMES),):
        raise ValueError(f"{name}: must hold the {len(PARAM_NAMES)} values {list(PARAM_NAMES)}, got "
                         f"{np.atleast_1d(values).tolist()}")
    if not np.all(np.isfinite(values)):
        bad = [n for n, v in zip(PARAM_NAMES, values, strict=True) if not np.isfinite(v)]
        raise ValueError(f"{name}: must be {len(PARAM_NAMES)} finite values; not finite: {bad}, got {values.tolist()}")
    breaks = values.copy()
    breaks[8:][breaks[8:] <= 0] = np.nan  # non-positive breaks (refused by to_log): outside the box, named below
    x0 = to_log(breaks[None])[0]
    lo, hi = prior_box()
    bad = [n for n, v, a, b in zip(PARAM_NAMES, x0, lo, hi, strict=True) if not (np.isfinite(v) and a < v < b)]
    if bad:
        raise ValueError(f"{name}: {bad} must lie strictly inside the prior box (crprop.params.PRIOR_BOX; breaks in "
                         f"MV), got {values.tolist()}")
    return x0


def fit_best(model: Any, config: FitConfig | None = None, progress: bool = True) -> FitResult:
    """Minimise chi2_tot of ``model`` (a :class:`crnet.scan.models.PropagateModel`, whose ``evaluate``
    returns residuals) over the prior box; see the module docstring."""
    cfg = config or FitConfig()
    lo, hi = prior_box()
    w = hi - lo
    start = np.asarray(cfg.start if cfg.start is not None else CRML_BASE.as_vector(), dtype=np.float64)
    x0 = check_fit_start(start)
    u0 = (x0 - lo) / w
    history: list[float] = []
    last: dict[str, Any] = {"key": None}  # the last residual evaluation (least_squares asks jac at that point)
    counts = {"models": 0}
    t0 = time.perf_counter()

    def run(u_rows: np.ndarray):
        ev = model.evaluate(to_physical(lo + w * np.clip(u_rows, 0.0, 1.0)), None, residuals=True)
        counts["models"] += u_rows.shape[0]
        if ev.residuals is None:
            raise TypeError("fit_best: model.evaluate(..., residuals=True) returned no residuals")
        return ev

    def point(u: np.ndarray):
        key = np.asarray(u, dtype=np.float64).tobytes()
        if key != last["key"]:
            ev = run(u[None])
            r = ev.residuals[0]
            failed = not ev.converged[0] or not np.all(np.isfinite(r))
            if failed:
                warnings.warn(f"fit: model at {to_physical(lo + w * u)[0].tolist()} did not converge or gave "
                              "non-finite chi2; the step is rejected", stacklevel=2)
                r = np.full_like(r, FAILED_RESIDUAL)
            last.update(key=key, value=(r, ev), failed=failed)
            history.append(float(ev.chi2[0]))
            if progress:
                print(f"fit: evaluation {len(history):3d}  chi2_tot {history[-1]:.2f}  "
                      f"best {min(history):.2f}  ({time.perf_counter() - t0:.0f} s)", flush=True)
        return last["value"]

    def fun(u: np.ndarray) -> np.ndarray:
        return point(u)[0]

    def jac(u: np.ndarray) -> np.ndarray:
        r0 = point(u)[0]
        if last["failed"]:
            raise FitFailed(f"fit: the model at {to_physical(lo + w * u)[0].tolist()} did not converge or gave "
                            "non-finite chi2, so no Jacobian can be taken there; start the fit elsewhere (`crnet fit "
                            "--start`, FitConfig.start) or on a grid where it converges")
        h = FD_STEP_FRACTION
        steps = np.where(u + h <= 1.0, h, -h)
        ev = run(u[None, :] + np.diag(steps))
        diff = ev.residuals - r0[None, :]
        bad = ~ev.converged | ~np.all(np.isfinite(diff), axis=1)
        if bad.any():  # retry those parameters with the opposite step, where it stays inside the box
            flip = np.flatnonzero(bad & (u - steps >= 0.0) & (u - steps <= 1.0))
            if flip.size:
                steps[flip] = -steps[flip]
                ev2 = run(u[None, :] + np.diag(steps)[flip])
                diff[flip] = ev2.residuals - r0[None, :]
                bad[flip] = ~ev2.converged | ~np.all(np.isfinite(diff[flip]), axis=1)
            if bad.any():
                names = [LOG_PARAM_NAMES[i] for i in np.flatnonzero(bad)]
                warnings.warn(f"fit: finite-difference models for {names} did not converge on either side; their "
                              "Jacobian columns are set to zero (those parameters do not move in this step)",
                              stacklevel=2)
                diff[bad] = 0.0
        return (diff / steps[:, None]).T

    res = optimize.least_squares(fun, u0, jac=jac, bounds=(0.0, 1.0), method="trf", x_scale=1.0,
                                 ftol=cfg.ftol, xtol=cfg.xtol, gtol=1e-10, max_nfev=cfg.max_evaluations)
    u_best = np.clip(res.x, 0.0, 1.0)
    r_best, ev_best = point(u_best)
    cov = laplace_covariance(jac(u_best), w)
    x_best = lo + w * u_best
    phys = to_physical(x_best[None])[0]
    return FitResult(
        params={n: float(v) for n, v in zip(PARAM_NAMES, phys, strict=True)}, x_log=x_best.tolist(),
        chi2=float(ev_best.chi2[0]), norms=[float(v) for v in ev_best.norms[0]], covariance_log=cov.tolist(),
        success=bool(res.status > 0 and ev_best.converged[0]), status=int(res.status), message=str(res.message),
        n_evaluations=len(history), n_models=counts["models"], wall_s=time.perf_counter() - t0,
        history=history, start=[float(v) for v in start], solver_converged=bool(ev_best.converged[0]),
        setup=_model_setup(model))


def _grid_settings(grid: dict[str, Any]) -> dict[str, Any]:
    """``grid`` (GridConfig settings) with explicit paper values dropped, as GridConfig spells them (fit files of
    session 18 recorded e.g. {'loss_scheme': 'upwind1'}); a dict of other keys is compared as it is."""
    from crnet.scan.models import normalised_grid

    return {key: value for key, value in normalised_grid(grid).items() if value is not None}


def _model_setup(model: Any) -> dict[str, Any]:
    """{'grid', 'dataset', 'mode'} of a PropagateModel (JSON-ready); empty for a model without them (a test double)."""
    grid = getattr(model, "grid_config", None)
    if grid is None or not hasattr(model, "dataset"):
        return {}
    return json.loads(json.dumps({"grid": grid.settings(), "dataset": model.dataset, "mode": model.mode}))
