"""crnet.scan.fit: least-squares best fit with profiled normalisations, its Laplace covariance, and the scan
started from it (start_cov)."""

from __future__ import annotations

import json

import numpy as np
import pytest
from typer.testing import CliRunner

from crnet.cli import app
from crnet.scan.designs import prior_box, to_log, to_physical
from crnet.scan.fit import MAX_START_STD_FRACTION, FitConfig, FitResult, fit_best, tempered_covariance
from crnet.scan.models import Evaluation, FunctionModel
from crnet.scan.runner import ScanConfig, run_scan

BEST_LOG = np.array([5.0, 0.45, -1.0, 30.0, 6.0, 0.8, 2.4, 2.2, 3.1, 5.6])
"""Minimum of the linear test problem (log-break coordinates, inside the box)."""

FIT_X_TOL = 1e-6
"""Box-scaled distance within which a linear least-squares problem must be solved (finite differences are
exact for a linear residual up to rounding; trf stops on xtol 1e-4 relative, which it beats by far here
because Gauss-Newton lands on the minimum in one step)."""


class LinearResiduals:
    """r(x) = A (u - u*) + r0 in box-scaled coordinates u: chi2 = |r0|^2 + |A (u - u*)|^2 when r0 is
    orthogonal to A's columns; exact Jacobian A / width, covariance (A^T A)^-1 * width^2."""

    def __init__(self, rng: np.random.Generator, n_points: int = 40) -> None:
        lo, hi = prior_box()
        self.lo, self.w = lo, hi - lo
        self.u_best = (BEST_LOG - lo) / self.w
        self.a = rng.normal(size=(n_points, 10)) * np.linspace(1.0, 50.0, 10)
        q, _ = np.linalg.qr(np.column_stack([self.a, rng.normal(size=n_points)]))
        self.r0 = 3.0 * q[:, -1]  # orthogonal to the columns of A: chi2_min = 9
        self.calls = 0

    def evaluate(self, params: np.ndarray, slots=None, residuals: bool = False) -> Evaluation:
        self.calls += 1
        u = (to_log(params) - self.lo) / self.w
        r = (u - self.u_best) @ self.a.T + self.r0
        n = r.shape[0]
        return Evaluation(np.zeros((n, 1, 1)), (r**2).sum(axis=1), np.ones((n, 4)), np.ones(n, bool), np.zeros(n),
                          residuals=r if residuals else None)


def test_fit_recovers_minimum_and_covariance_of_a_linear_problem():
    model = LinearResiduals(np.random.default_rng(0))
    res = fit_best(model, FitConfig(start=list(to_physical(BEST_LOG[None] + 0.03 * (prior_box()[1] -
                                                                                      prior_box()[0]))[0])),
                   progress=False)
    lo, hi = prior_box()
    u = (np.asarray(res.x_log) - lo) / (hi - lo)
    assert np.max(np.abs(u - model.u_best)) < FIT_X_TOL
    assert res.chi2 == pytest.approx(9.0, rel=1e-9)
    assert res.success and res.solver_converged
    w = hi - lo
    cov_true = np.linalg.inv(model.a.T @ model.a) * np.outer(w, w)
    # every direction of this A is constrained far better than the cap, so C = (J^T J)^-1 exactly
    np.testing.assert_allclose(res.covariance, cov_true, rtol=1e-5, atol=1e-12 * np.abs(cov_true).max())
    # each Jacobian is one batched call of the 10 forward-difference models
    assert res.n_models == model.calls + 10 * (model.calls - res.n_evaluations) - (model.calls - res.n_evaluations)


class FailsAboveBestDelta(LinearResiduals):
    """The linear problem, but every model with delta above its best value fails to converge (NaN residuals):
    the forward-difference step of delta at the minimum lands there."""

    def __init__(self, rng: np.random.Generator) -> None:
        super().__init__(rng)
        self.failed = 0  # models that failed so far

    def evaluate(self, params: np.ndarray, slots=None, residuals: bool = False) -> Evaluation:
        ev = super().evaluate(params, slots, residuals)
        fail = (to_log(params)[:, 1] - self.lo[1]) / self.w[1] > self.u_best[1] + 1e-12
        ev.converged[fail] = False
        self.failed += int(fail.sum())
        if ev.residuals is not None:
            ev.residuals[fail] = np.nan
        return ev


def test_fit_jacobian_steps_around_failed_models():
    """A failed finite-difference model is retried on the other side: the minimum and the covariance are the
    linear problem's; a start that fails is refused with a clear error, not differenced against a penalty."""
    model = FailsAboveBestDelta(np.random.default_rng(0))
    lo, hi = prior_box()
    w = hi - lo
    res = fit_best(model, FitConfig(start=list(to_physical(BEST_LOG[None] - 0.03 * w)[0])), progress=False)
    assert model.failed >= 1  # the forward step of delta at the minimum failed and was taken backwards
    u = (np.asarray(res.x_log) - lo) / w
    assert np.max(np.abs(u - model.u_best)) < FIT_X_TOL
    cov_true = np.linalg.inv(model.a.T @ model.a) * np.outer(w, w)
    np.testing.assert_allclose(res.covariance, cov_true, rtol=1e-5, atol=1e-12 * np.abs(cov_true).max())
    with pytest.raises(RuntimeError, match="no Jacobian can be taken there"), pytest.warns(UserWarning):
        fit_best(model, FitConfig(start=list(to_physical(BEST_LOG[None] + 0.03 * w)[0])), progress=False)


def test_tempered_covariance_caps_unconstrained_directions():
    lo, hi = prior_box()
    w = hi - lo
    cov = np.diag((0.01 * w) ** 2)
    cov[4, 4] = (3.0 * w[4]) ** 2  # z_h unconstrained: std 3 box widths
    t = tempered_covariance(cov, 10.0)
    std = np.sqrt(np.diag(t)) / w
    assert std[4] == pytest.approx(MAX_START_STD_FRACTION, rel=1e-9)
    assert std[0] == pytest.approx(0.01 * np.sqrt(10.0), rel=1e-9)


def test_fit_result_roundtrip_and_bad_files(tmp_path):
    model = LinearResiduals(np.random.default_rng(1))
    res = fit_best(model, FitConfig(start=list(to_physical(BEST_LOG[None])[0]), max_evaluations=3), progress=False)
    path = res.save(tmp_path / "fit.json")
    back = FitResult.load(path)
    assert back.params == res.params and back.chi2 == res.chi2
    start, cov = back.scan_start(10.0)
    np.testing.assert_allclose(start, to_physical(np.asarray(res.x_log)[None])[0])
    raw = json.loads(path.read_text())
    raw["covariance_log"] = [[1.0]]
    (tmp_path / "bad.json").write_text(json.dumps(raw))
    with pytest.raises(ValueError, match="covariance_log"):
        FitResult.load(tmp_path / "bad.json")
    (tmp_path / "junk.json").write_text("{")
    with pytest.raises(ValueError, match=r"junk\.json: not a crnet fit file \(Expecting .*: line 1 column 2"):
        FitResult.load(tmp_path / "junk.json")
    with pytest.raises(ValueError, match="strictly inside"):
        fit_best(model, FitConfig(start=[1.0, 0.45, -1.0, 30.0, 6.0, 0.8, 2.4, 2.2, 1e3, 4e5]), progress=False)


def _gauss_scan_model() -> FunctionModel:
    def simulate(params: np.ndarray) -> Evaluation:
        n = params.shape[0]
        return Evaluation(np.zeros((n, 1, 3)), np.zeros(n), np.ones((n, 4)), np.ones(n, bool), np.zeros(n))

    return FunctionModel(simulate, ["C"], np.array([1.0, 2.0, 3.0]))


def test_scan_start_cov_draws_the_laplace_start(tmp_path):
    lo, hi = prior_box()
    w = hi - lo
    centre = BEST_LOG
    std = 0.02 * w
    corr = np.eye(10)
    corr[0, 4] = corr[4, 0] = 0.9  # the D0 - z_h degeneracy
    cov = corr * np.outer(std, std)
    cfg = ScanConfig(n_chains=4000, n_steps=0, start=list(to_physical(centre[None])[0]), start_cov=cov.tolist(),
                     seed=3)
    run_scan(tmp_path / "s.h5", cfg, model=_gauss_scan_model(), progress=False)
    from crnet.store import MockStore

    with MockStore.open(tmp_path / "s.h5", "r") as st:
        x = to_log(st.read("params"))
        chain = st.read("chain")
    np.testing.assert_allclose(x[chain == 0][0], centre, rtol=1e-12)
    assert np.all((x >= lo) & (x <= hi))
    sample_corr = np.corrcoef(x[:, 0], x[:, 4])[0, 1]
    assert sample_corr == pytest.approx(0.9, abs=0.02)  # 4000 draws: sd of r ~ 0.003
    np.testing.assert_allclose(x.std(axis=0) / std, 1.0, atol=0.06)  # sd of a sample sd ~ 1.1 %
    with pytest.raises(ValueError, match="positive definite"):
        ScanConfig(start=cfg.start, start_cov=(-np.eye(10)).tolist())
    with pytest.raises(ValueError, match=r"^start_cov needs a start \(the centre of the chains' starts\)$"):
        ScanConfig(start_cov=cov.tolist())


def test_cli_fit_then_scan_from_fit(tmp_path):
    """The real model (tiny grid): a few least-squares evaluations lower chi2 from crml_base's, and a scan
    started from the result begins at the best fit."""
    runner = CliRunner()
    grid = ["--dr", "4", "--dz", "1.3", "--ekin-factor", "3", "--backend", "numba", "--z-uniform-half", "2.6",
            "--dz-max", "2.0"]
    res = runner.invoke(app, ["fit", "--out", str(tmp_path / "fit.json"), "--max-evaluations", "3",
                              "--no-progress"] + grid)
    assert res.exit_code in (0, 1), res.output  # 1 = evaluation cap reached (reported, file still written)
    fit = FitResult.load(tmp_path / "fit.json")
    assert fit.n_evaluations == 3 and fit.history[-1] < fit.history[0] / 2
    assert fit.chi2 == pytest.approx(min(fit.history), rel=1e-12)
    res = runner.invoke(app, ["scan", "--out", str(tmp_path / "s.h5"), "--chains", "3", "--steps", "1",
                              "--from-fit", str(tmp_path / "fit.json"), "--no-progress"] + grid)
    assert res.exit_code == 0, res.output
    from crnet.store import MockStore

    with MockStore.open(tmp_path / "s.h5", "r") as st:
        first = st.read("chi2")[st.read("chain") == 0][0]
        grid_meta = st.attrs()["grid"]
    assert first == pytest.approx(fit.chi2, rel=1e-6)  # same stretched grid in fit and scan
    assert (grid_meta["z_uniform_half_kpc"], grid_meta["dz_max_kpc"]) == (2.6, 2.0)
    # the fit records its setup; a scan of another grid or data set is refused before any work (walk-through,
    # session 18: it ran from another chi2 surface's best fit without a word), and an unconverged fit is named
    assert fit.setup["dataset"] == "paper" and fit.setup["mode"] == "fast"
    assert (fit.setup["grid"]["z_uniform_half_kpc"], fit.setup["grid"]["dz_max_kpc"]) == (2.6, 2.0)
    assert ("warning: --from-fit" in res.output) == (not fit.success)
    for other, fragment in ((grid[:-4], "another grid than this scan (grid: fit {"),
                            (grid + ["--dataset", "ams02-2021"],
                             "another dataset than this scan (dataset: fit 'paper', scan 'ams02-2021')")):
        res = runner.invoke(app, ["scan", "--out", str(tmp_path / "s2.h5"), "--chains", "3", "--steps", "1",
                                  "--from-fit", str(tmp_path / "fit.json"), "--no-progress"] + other)
        assert res.exit_code == 2 and f"error: --from-fit: the fit was made with {fragment}" in res.output, res.output
        assert not (tmp_path / "s2.h5").exists()
