"""Solver settings and convergence flags that a walk-through (helper-87, session 21) broke from the CLI: a tolerance
>= 1 is met by the zero field before the first step (`crnet simulate --tol 2` wrote all-NaN spectra flagged
converged), a non-finite field must never count as converged, `crnet scan` reported its best chi2 over models that
all missed the tolerance, and `crnet fit` died with a traceback where the fit met a model it cannot differentiate."""

from __future__ import annotations

import numpy as np
import pytest
from helpers_problems import random_problem
from typer.testing import CliRunner

import crprop.solvers as solvers
from crnet.cli import app
from crprop.solvers import TOL_MAX, check_solver_settings, solve_species

TINY_GRID = ["--dr", "4", "--dz", "1.3", "--ekin-factor", "3", "--backend", "numba"]


def test_tolerances_above_the_cap_are_refused(tmp_path) -> None:
    check_solver_settings(tol=TOL_MAX)
    for tol in (2.0, 0.5, 1.01 * TOL_MAX):
        with pytest.raises(ValueError, match=r"tol must be in \(0, 0.01\]"):
            check_solver_settings(tol=tol)
    res = CliRunner().invoke(app, ["scan", "--out", str(tmp_path / "never.h5"), "--design", "sobol", "--points", "2",
                                   "--tol", "2", *TINY_GRID])
    assert res.exit_code == 2 and "--tol must be in (0, 0.01]" in res.output, res.output
    assert not (tmp_path / "never.h5").exists()


def test_a_non_finite_field_is_never_converged(monkeypatch) -> None:
    _, op, q = random_problem(seed=1, n_models=3)
    real = solvers.douglas.iterate

    def nan_in_model_1(*args):
        psi, res, steps, model_steps = real(*args)
        psi = psi.copy()
        psi[0, 0, 0, 1] = np.nan
        return psi, res, steps, model_steps

    monkeypatch.setattr(solvers.douglas, "iterate", nan_in_model_1)
    with pytest.warns(solvers.NonConvergenceWarning, match="1 of 3 models not converged"):
        out = solve_species(op, q, mode="fast", backend="numpy", tol=1e-6, max_steps=2000)
    assert out.converged.tolist() == [True, False, True]
    assert np.isinf(out.residual[1]) and np.all(out.residual[[0, 2]] <= 1e-6)


def test_scan_reports_unconverged_records_and_no_best_chi2_from_them(tmp_path) -> None:
    runner = CliRunner()
    args = ["scan", "--design", "sobol", "--points", "4", "--no-progress", *TINY_GRID]
    res = runner.invoke(app, [*args, "--out", str(tmp_path / "bad.h5"), "--max-steps", "1"])
    assert res.exit_code == 0, res.output
    assert "no converged record; 4 of the 4 new records NOT converged" in res.output
    res = runner.invoke(app, [*args, "--out", str(tmp_path / "good.h5")])
    assert res.exit_code == 0 and "(converged records)" in res.output and "NOT converged" not in res.output


def test_fit_that_cannot_differentiate_is_an_error_line(tmp_path, monkeypatch) -> None:
    import crnet.scan.fit as fit_module

    def fail(*args, **kwargs):
        raise fit_module.FitFailed("fit: the model at [...] did not converge or gave non-finite chi2")

    monkeypatch.setattr(fit_module, "fit_best", fail)
    res = CliRunner().invoke(app, ["fit", "--out", str(tmp_path / "f.json"), *TINY_GRID])
    assert res.exit_code == 1 and res.output.startswith("error: fit: the model at"), res.output
    assert not (tmp_path / "f.json").exists()


def test_training_on_a_store_without_converged_records_says_why(tmp_path) -> None:
    from helpers_store import write_synthetic_store

    from crnet.machines.training import TrainConfig, train

    store = tmp_path / "s.h5"
    write_synthetic_store(store, 20, seed=1, n_unconverged=20)
    with pytest.raises(ValueError, match=r"only 0 usable records .* of its 20 records, dropped: \{'not_converged': 20"):
        train(store, tmp_path / "a.pt", TrainConfig(machine="A", epochs=1, progress=False))


def test_flag_nonfinite_is_shared_by_every_backend(monkeypatch) -> None:
    """The CuPy backend (crprop.backends.cupy_backend.solve_species), run through its numpy emulation: a NaN in one
    model's psi from the device iteration is flagged not converged with an infinite residual, as on the CPU path."""
    import dataclasses

    from crprop.backends import cupy_backend

    _, op, q = random_problem(seed=1, n_models=3)
    real = cupy_backend._run_fast

    def nan_in_model_1(k, ws, *args):
        run = real(k, ws, *args)
        psi = np.array(run.psi if run.psi is not None else ws.psi, dtype=float, copy=True)
        psi[0, 0, 0, 1] = np.nan
        return dataclasses.replace(run, psi=psi)

    monkeypatch.setattr(cupy_backend, "_run_fast", nan_in_model_1)
    with pytest.warns(solvers.NonConvergenceWarning, match="1 of 3 models not converged"):
        out = cupy_backend.solve_species(op, q, "fast", 1e-6, max_steps=2000, emulate=True, precision="float64")
    assert out.backend.startswith("cupy-emulated")
    assert out.converged.tolist() == [True, False, True]
    assert np.isinf(out.residual[1]) and np.all(out.residual[[0, 2]] <= 1e-6)
