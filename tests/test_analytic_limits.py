"""Analytic limits of the discrete operator: Bessel-Fourier diffusion, losses, psi = Q tau, balance."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import integrate, special

from crprop.constants import KPC_CM
from crprop.discretization import build_operator
from crprop.grid import Grid
from crprop.solvers import solve_species

R_HALO_KPC = 20.0
Z_HALO_KPC = 3.9
SLAB_KPC = 0.2  # source in |z| < 0.2 kpc: exactly the two central cells of the paper grid (dz = 0.2)
D_CM2_S = 3e28
N_BESSEL_MODES = 400

DIFFUSION_SUN_TOL = 0.01
"""Issue requirement: within 1 % of the Bessel-Fourier series at the solar position (paper grid)."""
MIN_CONVERGENCE_ORDER = 1.8
"""Second-order scheme: the observed order under halving dr and dz must be close to 2."""
MAX_CONVERGENCE_ORDER = 2.3
"""... and not above it: an observed order well over 2 means the error no longer comes from the scheme (e.g. a
cancellation at the coarse step), so the measured number would not say what the test claims."""
AXIS_TOL = 0.02
"""On the axis (r = 0, z = 0) the paper grid's error is 1.02e-2 (session 20), above the Sun's 0.70 %: the r = 0 row is
GALPROP's (README, numerics review)."""
AXIS_MIN_ORDER = 1.7
"""... and it still converges at nearly second order there (measured 1.86-1.88): a row that lost consistency would
give an order near 1 or 0."""
FIRST_ORDER_BAND = (0.8, 1.3)
"""Observed order of the first-order (upwind1) loss stencil between Ekin factors 1.04 and 1.02: 1 up to the
next term of the error expansion at these steps."""


def _source_r(r_kpc):
    return 1.0 - (r_kpc / R_HALO_KPC) ** 2


def _series(r_kpc: np.ndarray, z_kpc: np.ndarray) -> np.ndarray:
    """Steady D lap psi = -S(r) 1(|z| < a) in the cylinder r < R, |z| < H with psi = 0 on its surface."""
    x = special.jn_zeros(0, N_BESSEL_MODES)
    k = x / (R_HALO_KPC * KPC_CM)
    a, h = SLAB_KPC * KPC_CM, Z_HALO_KPC * KPC_CM
    s_n = np.array([
        integrate.quad(lambda r, xn=xn: _source_r(r) * special.j0(xn * r / R_HALO_KPC) * r, 0, R_HALO_KPC,
                       limit=200)[0]
        for xn in x
    ]) * 2.0 / (R_HALO_KPC**2 * special.j1(x) ** 2)
    amp = 1.0 / (np.cosh(k * a) + np.sinh(k * a) * np.tanh(k * (h - a)))
    zc = np.abs(z_kpc)[:, None] * KPC_CM
    inside = s_n / (D_CM2_S * k**2) * (1 - amp * np.cosh(k * zc))
    outside = s_n / (D_CM2_S * k**2) * amp * np.sinh(k * a) / np.cosh(k * (h - a)) * np.sinh(k * (h - zc))
    fz = np.where(zc < a, inside, outside)  # (n_z, n_modes)
    return np.einsum("rn,zn->rz", special.j0(np.outer(r_kpc, x) / R_HALO_KPC), fz)


def _diffusion_problem(dr: float, dz: float):
    grid = Grid.regular(R_HALO_KPC, dr, Z_HALO_KPC + 0.5 * dz if dz < 0.2 else Z_HALO_KPC, dz,
                        1e3, 8e3, 2.0)
    n_r, n_z, n_e = grid.shape
    p = np.geomspace(1e3, 8e3, n_e)
    op = build_operator(grid, p, np.full((n_e, 1), D_CM2_S), z_half_kpc=Z_HALO_KPC)
    slab = (np.abs(grid.z_kpc) < SLAB_KPC).astype(float)
    q = (_source_r(grid.r_kpc)[:, None] * slab[None])[:, :, None, None] * np.ones((1, 1, n_e, 1))
    psi = solve_species(op, q, mode="exact").psi[:, :, 0, 0]
    return grid, psi


def _sun_value(grid: Grid, field: np.ndarray) -> float:
    return sum(w * field[i, j] for i, j, w in grid.sun_weights(8.5, 0.0))


def test_diffusion_matches_bessel_series_and_is_second_order():
    errors, axis_errors = [], []
    for dr, dz in ((1.0, 0.2), (0.5, 0.1), (0.25, 0.05)):
        grid, psi = _diffusion_problem(dr, dz)
        exact = _series(grid.r_kpc, grid.z_kpc)
        errors.append(abs(_sun_value(grid, psi) / _sun_value(grid, exact) - 1))
        mid = int(np.argmin(np.abs(grid.z_kpc)))
        axis_errors.append(abs(psi[0, mid] / exact[0, mid] - 1))
    print("relative error at the Sun for dr = 1, 0.5, 0.25 kpc:", errors)
    assert errors[0] < DIFFUSION_SUN_TOL
    orders = np.log2(np.array(errors[:-1]) / np.array(errors[1:]))
    print("observed orders:", orders)
    assert orders.min() > MIN_CONVERGENCE_ORDER
    axis_orders = np.log2(np.array(axis_errors[:-1]) / np.array(axis_errors[1:]))
    print("relative error at the axis (r = 0, z = 0):", axis_errors, "orders:", axis_orders)
    assert axis_errors[0] < AXIS_TOL and axis_orders.min() > AXIS_MIN_ORDER


def _local_grid(factor: float) -> Grid:
    return Grid.regular(4.0, 1.0, 1.2, 0.4, 10.0, 1e4, factor)


LOSS_ONLY_TOL = 0.03
"""Upwind losses are first order in the momentum step: the scheme is a left Riemann sum of the
injection integral, relative error ~ (alpha - 1)/2 * dp/p ~ 1.5-2 % for an Ekin factor 1.02."""


def _losses_only(factor: float):
    grid = _local_grid(factor)
    n_r, n_z, n_e = grid.shape
    p = np.sqrt(grid.ekin_mev_per_n * (grid.ekin_mev_per_n + 2 * 938.0))
    b_loss, beta_loss, alpha = 1e-13, 0.3, 2.5  # |dp/dt| = b p^beta, Q = p^-alpha
    dpdt = np.broadcast_to(b_loss * p**beta_loss, (n_r, n_z, n_e)).copy()
    op = build_operator(grid, p, np.full((n_e, 1), 1e18), dpdt_mev_s=dpdt)  # diffusion negligible
    q = np.broadcast_to((p**-alpha)[None, None, :, None], (n_r, n_z, n_e, 1)).copy()
    psi = solve_species(op, q, mode="exact").psi[1, n_z // 2, :, 0]
    # Steady state of d(|pdot| psi)/dp = -Q on [p, p_max]: |pdot| psi = (p^(1-a) - p_max^(1-a)) / (a - 1)
    exact = (p ** (1 - alpha) - p[-1] ** (1 - alpha)) / (alpha - 1) / (b_loss * p**beta_loss)
    keep = slice(0, int(0.7 * n_e))  # away from the truncated top of the grid
    return float(np.abs(psi[keep] / exact[keep] - 1).max())


def test_losses_only_power_law():
    err_fine = _losses_only(1.02)
    err_coarse = _losses_only(1.04)
    assert err_fine < LOSS_ONLY_TOL
    order = np.log(err_coarse / err_fine) / np.log(np.log(1.04) / np.log(1.02))
    assert FIRST_ORDER_BAND[0] < order < FIRST_ORDER_BAND[1]  # first-order upwinding


SECOND_ORDER_LOSS_ALPHA = 4.0
"""Source index of the upwind2 order test. GALPROP's top row (copied from the row below, psi beyond the grid = 0)
adds one first-order cell, q(p_max) dp, whose share of b psi falls as (p/p_max)^(alpha-1): with alpha = 2.5 it
still sets the error at factor 1.02 in the lower 40 % of the grid (observed order 1.59), with alpha = 4 it is
below the second-order error there (observed 1.92; alpha = 6: 1.91)."""

UPWIND2_GAIN = 10.0
"""At Ekin factor 1.02 the second-order stencil is 27x closer to the exact spectrum than the first-order one
(8.4e-4 vs 2.3e-2, nodes 1 to 40 % of the grid); asked: at least 10x."""

EXACT_LOSSES_TOL = 1e-9
"""Residual asked of the direct solve of the losses-only problems: its round-off floor there is 5.8e-10 (upwind2 at
Ekin factor 1.02, session 22; until then mode 'exact' was judged against max(tol, 1e-9) whatever tol was asked)."""

DEFECT_CORRECTION_TOL = 1e-8
"""The fast (Douglas) iteration solves with the first-order rows and takes the second-order residual to 1e-11:
its psi equals the exact solve of the second-order operator to ~1e-12 times the conditioning."""


def _losses_only_error(factor: float, scheme: str, alpha: float, mode: str = "exact", backend: str = "numpy"):
    """Max relative error of psi against the exact power-law solution on nodes 1 .. 40 % of the grid (node 0
    copies row 1's coefficients, GALPROP's boundary row), and the solve's result."""
    grid = _local_grid(factor)
    n_r, n_z, n_e = grid.shape
    p = np.sqrt(grid.ekin_mev_per_n * (grid.ekin_mev_per_n + 2 * 938.0))
    b_loss, beta_loss = 1e-13, 0.3
    dpdt = np.broadcast_to(b_loss * p**beta_loss, (n_r, n_z, n_e)).copy()
    op = build_operator(grid, p, np.full((n_e, 1), 1e18), dpdt_mev_s=dpdt, loss_scheme=scheme)
    q = np.broadcast_to((p**-alpha)[None, None, :, None], (n_r, n_z, n_e, 1)).copy()
    res = solve_species(op, q, mode=mode, backend=backend, tol=1e-11 if mode == "fast" else EXACT_LOSSES_TOL,
                        max_steps=2000)
    assert res.converged.all(), res.residual
    psi = res.psi[1, n_z // 2, :, 0]
    exact = (p ** (1 - alpha) - p[-1] ** (1 - alpha)) / (alpha - 1) / (b_loss * p**beta_loss)
    keep = slice(1, int(0.4 * n_e))
    return float(np.abs(psi[keep] / exact[keep] - 1).max()), res


def test_second_order_losses_converge_at_order_two():
    alpha = SECOND_ORDER_LOSS_ALPHA
    err_coarse, _ = _losses_only_error(1.04, "upwind2", alpha)
    err_fine, exact = _losses_only_error(1.02, "upwind2", alpha)
    order = np.log(err_coarse / err_fine) / np.log(np.log(1.04) / np.log(1.02))
    assert MIN_CONVERGENCE_ORDER < order < MAX_CONVERGENCE_ORDER
    first, _ = _losses_only_error(1.02, "upwind1", alpha)
    assert first > UPWIND2_GAIN * err_fine
    # Douglas with the first-order rows in the line solves and the second-order residual (defect correction)
    for backend in ("numpy", "numba"):
        err, fast = _losses_only_error(1.02, "upwind2", alpha, mode="fast", backend=backend)
        assert fast.converged.all()
        np.testing.assert_allclose(fast.psi, exact.psi, rtol=DEFECT_CORRECTION_TOL, atol=0)


def test_second_order_losses_refused_by_galprop_time_marching():
    grid = _local_grid(1.2)
    n_r, n_z, n_e = grid.shape
    p = np.sqrt(grid.ekin_mev_per_n * (grid.ekin_mev_per_n + 2 * 938.0))
    dpdt = np.full((n_r, n_z, n_e), 1e-10)
    op = build_operator(grid, p, np.full((n_e, 1), 1e28), dpdt_mev_s=dpdt, loss_scheme="upwind2")
    assert op.high_order_losses and not build_operator(grid, p, np.full((n_e, 1), 1e28), dpdt_mev_s=dpdt
                                                       ).high_order_losses
    q = np.ones(op.shape)
    for backend in ("numpy", "numba"):
        with pytest.raises(ValueError, match="mode 'galprop'.*upwind2"):
            solve_species(op, q, mode="galprop", backend=backend)
    from crprop.backends import cupy_backend, numba_backend, numpy_backend

    for sweep in (numpy_backend.cn_sweep, numba_backend.cn_sweep, cupy_backend.cn_sweep):
        with pytest.raises(ValueError, match="cn_sweep.*upwind2"):
            sweep(op, "p", 1e12, q, q)
    with pytest.raises(ValueError, match="mode 'galprop'.*upwind2"):
        cupy_backend.solve_species(op, q, mode="galprop", emulate=True)
    with pytest.raises(ValueError, match="loss_scheme must be one of"):
        build_operator(grid, p, np.full((n_e, 1), 1e28), dpdt_mev_s=dpdt, loss_scheme="upwind3")


PSI_Q_TAU_TOL = 1e-6
"""psi = Q tau where escape is negligible (D tiny): only round-off and ~1e-9 leakage remain."""


def test_catastrophic_losses_only_psi_equals_q_tau():
    grid = _local_grid(2.0)
    n_r, n_z, n_e = grid.shape
    rng = np.random.default_rng(5)
    gamma = rng.uniform(1e-15, 1e-13, (n_r, n_z, n_e))
    p = np.geomspace(100.0, 1e5, n_e)
    op = build_operator(grid, p, np.full((n_e, 1), 1e15), gamma_s=gamma)
    q = rng.uniform(1, 2, (n_r, n_z, n_e, 1))
    psi = solve_species(op, q, mode="fast", backend="numba", tol=1e-12).psi[..., 0]
    interior = op.interior_mask()[..., 0, 0]
    expect = q[..., 0] / gamma
    assert np.abs(psi[interior] / expect[interior] - 1).max() < PSI_Q_TAU_TOL


BALANCE_TOL = 1e-8
"""Injection = escape + catastrophic losses to the solver tolerance asked (1e-11) times conditioning."""


def test_particle_balance():
    """Sum_i V_i Q_i = Sum_i V_i gamma_i psi_i + flux into the psi = 0 boundaries.

    Volume weights of GALPROP's cylindrical stencil: V_i = r_i dr for i > 0 and dr^2/4 on the axis
    (with those weights the r stencil is exactly conservative: V_i a3_i = V_{i+1} a1_{i+1}).
    """
    grid = Grid.regular(10.0, 1.0, 2.0, 0.2, 1e3, 1e4, 2.0)
    n_r, n_z, n_e = grid.shape
    rng = np.random.default_rng(9)
    p = np.geomspace(1e3, 1e4, n_e)
    dxx = rng.uniform(1e28, 5e28, (n_e, 1))
    gamma = rng.uniform(1e-16, 1e-14, (n_r, n_z, n_e))
    op = build_operator(grid, p, dxx, gamma_s=gamma)
    q = rng.uniform(0, 1, (n_r, n_z, n_e, 1)) * op.interior_mask()
    psi = solve_species(op, q, mode="fast", backend="numba", tol=1e-11, max_steps=3000).psi[..., 0]
    vol_r = grid.r_kpc * grid.dr_kpc
    vol_r[0] = grid.dr_kpc**2 / 4.0
    vol = vol_r[:, None, None] * np.ones((1, n_z, n_e))
    injected = (vol * q[..., 0]).sum(axis=(0, 1))
    lost = (vol * gamma * psi).sum(axis=(0, 1))
    escape_r = vol[-2] * op.r_a3[-2, :, 0][None] * psi[-2]  # into r = R_h
    escape_z = vol[:, 1] * op.z_a1[1, :, 0][None] * psi[:, 1] + vol[:, -2] * op.z_a3[-2, :, 0][None] * psi[:, -2]
    escaped = escape_r.sum(axis=0) + escape_z.sum(axis=0)
    assert np.abs((lost + escaped) / injected - 1).max() < BALANCE_TOL
    assert (escaped > 0).all() and (lost > 0).all()


SMOOTH_SLOPE_TOL = 0.03
"""Relative change of d psi / d z_h between neighbouring halo heights: ~1 % from curvature (measured),
whereas snapping the boundary to nodes makes the slope jump between 0 and ~3x its mean."""


def test_halo_between_nodes_is_continuous_and_converges():
    """Halo boundaries between grid nodes (Shortley-Weller): psi grows smoothly with z_h, and `fast`
    converges also when z_h sits just beyond a node (the stiff case that once stalled the iteration)."""
    grid = Grid.regular(20.0, 2.0, 4.5, 0.3, 1e3, 1e4, 2.0)
    n_r, n_z, n_e = grid.shape
    z_halo = np.array([3.9, 3.95, 4.0, 4.05, 4.1, 4.15, 4.2, 4.206, 4.25, 4.3, 4.35, 4.4])
    b = z_halo.size
    op = build_operator(grid, np.geomspace(1e3, 1e4, n_e), np.full((n_e, b), D_CM2_S), z_half_kpc=z_halo)
    q = np.zeros(grid.shape + (b,))
    q[:, np.abs(grid.z_kpc) < 0.3] = 1.0
    exact = solve_species(op, q, mode="exact").psi
    centre = exact[4, n_z // 2, 0, :]
    slope = np.diff(centre) / np.diff(z_halo)
    assert np.all(slope > 0)
    assert np.abs(np.diff(slope)).max() < SMOOTH_SLOPE_TOL * slope.max()
    fast = solve_species(op, q, mode="fast", backend="numba", tol=1e-8, max_steps=400)
    assert fast.converged.all() and fast.steps < 400
