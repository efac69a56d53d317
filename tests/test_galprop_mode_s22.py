"""`galprop` mode (GALPROP's raw Crank-Nicolson ladder): independent of the batch, and of a warm start for models
without a source (review by helper-95, session 22).

A: GALPROP's z grid ends at the model's halo boundary. In a crprop batch a model's halo may end inside the batch's
grid (a taller-halo model shares it); the raw z sweeps solved the Dirichlet rows beyond the boundary node too, and
they coupled to it: the same model differed by 2.4e-3 of its largest psi between the two grids (numpy). Now a
Dirichlet row couples only to unknowns (TransportOperator.raw_z_coefficients) on every backend.
B: a warm-started model whose source is zero came back as its warm start, flagged converged (its residual has no
scale); it must come back as its steady state, 0, as `fast` mode does (douglas.has_source).
"""

from __future__ import annotations

import warnings

import numpy as np
import pytest
from helpers_problems import halo_problem, proton_momentum

from crprop.backends import cupy_backend
from crprop.discretization import build_operator
from crprop.grid import Grid
from crprop.solvers import TimeLadder, solve_species

SWEEP_ROUND_OFF = 1e-12
"""max |psi_batch - psi_alone| / max psi_alone of one model: the two runs solve the same rows in the model's halo,
but the Thomas recurrences run over lines of different lengths (the batch's grid is taller), so the results agree
to the round-off of the sweeps (measured 4.4e-16 numpy and emulation, 8.7e-16 numba; before the fix: 2.4e-3)."""

LADDER = TimeLadder(start_yr=1e8, factor=0.25, repeat=4, end_yr=1e4)  # 7 levels x 4 steps: seconds on 2 cores
Z_HALO = 1.2  # kpc, the model under test; the taller one has 2.0 (the batch grid's edge)


def _problem(z_grid: float, z_halos: list[float]):
    """Operator and source on a grid to +-z_grid kpc, one model per halo height, the same physics per model
    (D, reacceleration, gas, source depend on (r, z, E) only), so a model's rows in its halo are the same on
    any grid that holds them."""
    g = Grid.regular(r_max_kpc=5.0, dr_kpc=1.0, z_half_kpc=z_grid, dz_kpc=0.4, ekin_min_mev_per_n=10.0,
                     ekin_max_mev_per_n=2.6e4, ekin_factor=2.4)
    p = proton_momentum(g)
    nb = len(z_halos)
    dxx = 1e28 * (p[:, None] / 1e3) ** 0.4 * np.ones(nb)
    dpp = p[:, None] ** 2 * 3e6**2 / dxx * 0.3
    gas = np.exp(-np.abs(g.z_kpc) / 0.3)[None, :] * np.ones((g.shape[0], 1))
    op = build_operator(g, p, dxx, dpp, gas[..., None] * 3e-13 * (p / 1e3)[None, None] ** -0.5,
                        gas[..., None] * 5e-15 * np.ones(g.shape[2]), z_half_kpc=np.asarray(z_halos))
    q = (p / 1e3)[None, None, :, None] ** -2.3 * np.ones(op.shape)
    return g, op, q


def _solve(backend: str, op, q, **kw):
    kw = dict(mode="galprop", ladder=LADDER, on_nonconverged="ignore", **kw)
    if backend == "emulation":
        return cupy_backend.solve_species(op, q, emulate=True, precision="float64", **kw)
    return solve_species(op, q, backend=backend, **kw)


@pytest.fixture(scope="module")
def alone_and_batch():
    g0, op0, q0 = _problem(Z_HALO, [Z_HALO])  # the halo boundary is the grid's edge (GALPROP's own grid)
    g1, op1, q1 = _problem(2.0, [Z_HALO, 2.0])  # the same model beside a taller halo: its boundary is inside
    off = int(np.flatnonzero(np.isclose(g1.z_kpc, g0.z_kpc[0]))[0])
    assert np.allclose(g1.z_kpc[off:off + g0.shape[1]], g0.z_kpc)
    return (op0, q0), (op1, q1), off, g0.shape[1]


@pytest.mark.parametrize("backend", ["numpy", "numba", "emulation"])
def test_galprop_mode_model_independent_of_batch(alone_and_batch, backend):
    (op0, q0), (op1, q1), off, nz = alone_and_batch
    alone = _solve(backend, op0, q0).psi[..., 0]
    batch = _solve(backend, op1, q1).psi
    inside = batch[:, off:off + nz, :, 0]
    assert np.abs(inside - alone).max() <= SWEEP_ROUND_OFF * np.abs(alone).max()
    outside = np.ones(batch.shape[1], bool)
    outside[off:off + nz] = False
    assert np.all(batch[:, outside, :, 0] == 0.0)  # beyond the model's halo: Dirichlet, psi = 0


def test_raw_z_rows_cut_only_outward_couplings(alone_and_batch):
    """On the model's own grid the raw rows drop nothing a sweep reads; in the batch, the boundary rows lose their
    outward coupling and the rows beyond lose both; unknowns' rows are the operator's."""
    (op0, _), (op1, _), off, nz = alone_and_batch
    for op in (op0, op1):
        z1, z2, z3 = op.raw_z_coefficients()
        assert np.array_equal(z2, op.z_a2)
        assert np.array_equal(z1[1:], np.where(op.raw_z_keep()[0][1:, None, :] > 0, op.z_a1[1:], 0.0))
    z1, _, z3 = op0.raw_z_coefficients()
    assert np.array_equal(z1[1:], op0.z_a1[1:]) and np.array_equal(z3[:-1], op0.z_a3[:-1])
    z1, _, z3 = op1.raw_z_coefficients()
    top, bottom = off + nz - 1, off  # model 0's boundary nodes in the batch grid
    assert np.all(z3[top:, :, 0] == 0) and np.all(z1[: bottom + 1, :, 0] == 0)
    assert np.all(z3[top - 1, :, 0] > 0) and np.all(z1[bottom + 1, :, 0] > 0)
    assert np.array_equal(z1[..., 1][1:], op1.z_a1[..., 1][1:])  # the tall model: its boundary is the grid's edge


@pytest.mark.parametrize("backend", ["numpy", "numba", "emulation"])
def test_galprop_warm_start_of_source_free_model_is_zero(backend):
    op, q = halo_problem([1.4, 1.0], seed=7)
    q2 = q.copy()
    q2[..., 1] = 0.0  # model 1 has no source: its steady state is psi = 0
    psi0 = solve_species(op, q, mode="exact").psi  # a warm start far from 0 for model 1
    ladder = TimeLadder(start_yr=1e4, factor=0.25, repeat=1, end_yr=1e4)  # one step: psi stays near psi0 before
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        kw = dict(mode="galprop", psi0=psi0, ladder=ladder, tol=1e-6, on_nonconverged="ignore")
        if backend == "emulation":
            res = cupy_backend.solve_species(op, q2, emulate=True, **kw)
        else:
            res = solve_species(op, q2, backend=backend, **kw)
    assert np.all(res.psi[..., 1] == 0.0)
    assert res.converged[1] and res.residual[1] == 0.0
    assert np.abs(res.psi[..., 0]).max() > 0  # model 0 still marched from its warm start
