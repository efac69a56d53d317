"""Solver core: fast and galprop modes against the exact sparse solve; numba against numpy; errors."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
from helpers_problems import random_problem, relative_error, small_grid

from crprop.backends import numba_backend, numpy_backend
from crprop.discretization import build_operator
from crprop.grid import Grid
from crprop.solvers import NonConvergenceWarning, TimeLadder, solve_species

FAST_VS_EXACT = 1e-6
"""Issue requirement: `fast` within 1e-6 relative of the exact steady state (cells psi > 1e-6 max)."""
FAST_TEST_TOL = 1e-10
"""Residual asked of `fast` in these tests, small enough that round-off, not iteration, limits it."""
BACKEND_EQUALITY = 1e-10
"""numba must equal the numpy reference to round-off (issue: 1e-10)."""


@pytest.fixture(scope="module")
def problem():
    return random_problem(seed=1, n_models=3)


@pytest.fixture(scope="module")
def exact_solution(problem):
    _, op, q = problem
    res = solve_species(op, q, mode="exact")
    assert res.converged.all()
    assert res.residual.max() < 1e-12
    return res.psi


@pytest.mark.parametrize("backend", ["numpy", "numba"])
def test_fast_matches_exact(problem, exact_solution, backend):
    _, op, q = problem
    res = solve_species(op, q, mode="fast", backend=backend, tol=FAST_TEST_TOL, max_steps=2000)
    assert res.converged.all(), res.residual
    assert res.residual.max() <= FAST_TEST_TOL
    assert relative_error(res.psi, exact_solution) < FAST_VS_EXACT


GALPROP_LADDER_ERROR = (0.03, 0.3)
"""GALPROP's default 240-step ladder stops short of the steady state: on the small random problem its psi is 9.9e-2
off the direct solution (residual 0.06-0.08), measured in session 13. The band says 'short of it, by the known
amount', catching both a ladder that converges (a different procedure) and one that diverges."""


def test_galprop_mode_reports_its_error(problem, exact_solution, capsys):
    _, op, q = problem
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", NonConvergenceWarning)
        res = solve_species(op, q, mode="galprop", backend="numba")
    assert res.steps == 240
    err = relative_error(res.psi, exact_solution)
    print(f"galprop-mode error vs exact on the small random problem: {err:.3e}, residual {res.residual}")
    # The converged flag must be the honest comparison of the residual with the tolerance.
    assert np.array_equal(res.converged, res.residual <= res.tol)
    assert GALPROP_LADDER_ERROR[0] < err < GALPROP_LADDER_ERROR[1]


def test_galprop_more_steps_reduce_error(problem, exact_solution):
    """The ladder with more repeats per level approaches the exact steady state (GALPROP's tconv runs)."""
    _, op, q = problem
    errs = []
    for repeat in (20, 200):
        res = solve_species(op, q, mode="galprop", backend="numba", ladder=TimeLadder(repeat=repeat),
                            on_nonconverged="ignore")
        errs.append(relative_error(res.psi, exact_solution, floor=1e-3))
    assert errs[1] < errs[0]


@pytest.mark.parametrize("mode", ["fast", "galprop"])
def test_numba_equals_numpy(problem, mode):
    _, op, q = problem
    kw = dict(mode=mode, tol=1e-8, on_nonconverged="ignore", ladder=TimeLadder(repeat=3))
    a = solve_species(op, q, backend="numpy", **kw)
    b = solve_species(op, q, backend="numba", **kw)
    assert a.steps == b.steps
    assert np.abs(a.psi - b.psi).max() <= BACKEND_EQUALITY * np.abs(a.psi).max()


@pytest.mark.parametrize("direction", ["r", "z", "p"])
def test_numba_primitives_equal_numpy(problem, direction):
    _, op, q = problem
    tau = np.random.default_rng(3).uniform(1e12, 1e15, op.shape[2:])
    for raw in (False, True):
        a = numpy_backend.solve(op, direction, tau, q, raw=raw)
        b = numba_backend.solve(op, direction, tau, q, raw=raw)
        assert np.abs(a - b).max() <= BACKEND_EQUALITY * np.abs(a).max()
    a = numpy_backend.residual(op, q, q * 0.3)
    b = numba_backend.residual(op, q, q * 0.3)
    assert np.abs(a - b).max() <= BACKEND_EQUALITY * np.abs(a).max()


def test_nonconverged_is_never_silent(problem):
    _, op, q = problem
    with pytest.warns(NonConvergenceWarning, match="not converged"):
        res = solve_species(op, q, mode="fast", backend="numpy", max_steps=2)
    assert not res.converged.any()
    assert (res.residual > res.tol).all()
    with pytest.raises(RuntimeError, match="not converged"):
        solve_species(op, q, mode="fast", backend="numpy", max_steps=2, on_nonconverged="raise")


def test_warm_start_needs_fewer_steps(problem, exact_solution):
    _, op, q = problem
    cold = solve_species(op, q, mode="fast", backend="numba", tol=1e-8)
    warm = solve_species(op, q, mode="fast", backend="numba", tol=1e-8, psi0=exact_solution * 1.01)
    assert warm.converged.all() and warm.steps < cold.steps


@pytest.mark.parametrize("backend", ["numpy", "numba"])
def test_each_model_stops_at_its_own_step(backend):
    """Per-model stop: in a batch whose models converge at different steps, every model's psi, residual and step
    equal those of that model solved alone (models are independent), and the batch's step count is its slowest
    model's. The old all-models stop would give the early models extra steps (and different psi)."""
    _, op, q = random_problem(seed=5, n_models=6)
    batch = solve_species(op, q, mode="fast", backend=backend, tol=1e-8)
    assert batch.converged.all()
    assert len(set(batch.model_steps.tolist())) > 1, batch.model_steps  # the test needs a spread
    assert batch.steps == batch.model_steps.max()
    for b in range(op.n_models):
        alone = solve_species(op.select([b]), q[..., b:b + 1], mode="fast", backend=backend, tol=1e-8)
        assert alone.steps == batch.model_steps[b]
        assert alone.residual[0] == pytest.approx(batch.residual[b], rel=BACKEND_EQUALITY)
        assert np.abs(alone.psi[..., 0] - batch.psi[..., b]).max() <= BACKEND_EQUALITY * np.abs(alone.psi).max()


def test_nonconverged_models_keep_iterating_to_max_steps():
    """A model that never meets tol is iterated to max_steps and flagged, while the others stop early."""
    _, op, q = random_problem(seed=5, n_models=6)
    first = solve_species(op, q, mode="fast", backend="numpy", tol=1e-8)
    cap = int(np.sort(first.model_steps)[-2]) + 1  # model_steps = updates before the stop: all but the slowest
    assert np.sum(first.model_steps >= cap) == 1  # exactly one model is cut off
    with pytest.warns(NonConvergenceWarning, match="1 of 6 models not converged"):
        res = solve_species(op, q, mode="fast", backend="numpy", tol=1e-8, max_steps=cap)
    slow = int(np.argmax(first.model_steps))
    assert res.steps == cap and res.model_steps[slow] == cap
    assert not res.converged[slow] and res.residual[slow] > 1e-8
    assert np.array_equal(np.delete(res.model_steps, slow), np.delete(first.model_steps, slow))


# ---------------------------------------------------------------------------------------- bad input
def _pieces():
    grid = small_grid()
    p = np.sqrt(grid.ekin_mev_per_n * (grid.ekin_mev_per_n + 1876.0))
    dxx = np.full((grid.shape[2], 2), 1e28)
    return grid, p, dxx


def test_nan_diffusion_names_field():
    grid, p, dxx = _pieces()
    dxx[3, 1] = np.nan
    with pytest.raises(ValueError, match="dxx_cm2_s"):
        build_operator(grid, p, dxx)


def test_negative_diffusion_names_field():
    grid, p, dxx = _pieces()
    dxx[0, 0] = -1.0
    with pytest.raises(ValueError, match="dxx_cm2_s"):
        build_operator(grid, p, dxx)


def test_non_monotonic_grid():
    with pytest.raises(ValueError, match="z_kpc.*strictly increasing"):
        Grid(np.arange(5.0), np.array([-1.0, 0.5, 0.0, 1.0]), np.geomspace(1, 1e3, 8))
    grid, p, dxx = _pieces()
    with pytest.raises(ValueError, match="p_mev"):
        build_operator(grid, p[::-1], dxx)


def test_mismatched_shapes():
    grid, p, dxx = _pieces()
    with pytest.raises(ValueError, match="dxx_cm2_s"):
        build_operator(grid, p, dxx[:-1])
    op = build_operator(grid, p, dxx)
    with pytest.raises(ValueError, match="source has shape"):
        solve_species(op, np.ones(grid.shape + (3,)))
    with pytest.raises(ValueError, match="dpp_mev2_s"):
        build_operator(grid, p, dxx, dpp_mev2_s=np.ones((grid.shape[2], 3)))


def test_empty_batch():
    grid, p, dxx = _pieces()
    with pytest.raises(ValueError, match="empty batch"):
        build_operator(grid, p, dxx[:, :0])


def test_bad_mode_and_backend(problem):
    _, op, q = problem
    with pytest.raises(ValueError, match="mode must be one of"):
        solve_species(op, q, mode="slow")
    with pytest.raises(ValueError, match="backend must be one of"):
        solve_species(op, q, backend="fortran")


def test_numba_thomas_scratch_is_reused_by_smaller_batches():
    from crprop.backends.numba_backend import _Workspace

    ws = _Workspace()
    big = ws.get((3, 5, 4, 8))
    small = ws.get((3, 5, 4, 2))  # a re-packed batch: views into the same buffers, nothing allocated
    assert small.zc.shape == (3, 5, 8) and small.pd.shape == (3, 4, 2) and small.rc.shape == (5, 3, 8)
    assert all(a.flags.c_contiguous for a in (small.zc, small.pc, small.rd))
    assert np.shares_memory(big.zc, small.zc) and np.shares_memory(big.rd, small.rd)
    larger = ws.get((3, 5, 4, 16))  # a larger shape grows the buffers once
    assert larger.zc.shape == (3, 5, 64) and not np.shares_memory(larger.zc, big.zc)
    assert np.shares_memory(ws.get((3, 5, 4, 8)).zc, larger.zc)
