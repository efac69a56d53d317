"""crprop's stretched-halo z grid: lattice, stencil exactness, gas columns, and the full network against the
uniform (GALPROP) grid."""

from __future__ import annotations

import warnings

import numpy as np
import pytest

from crprop.backends import cupy_available
from crprop.discretization import vertical_coefficients
from crprop.galaxy import GalaxySetup
from crprop.grid import Grid
from crprop.params import PropagationParams
from crprop.physics.gas import gas_maps
from crprop.propagate import batch_grid, normalisation_point, propagate
from crprop.solvers import NonConvergenceWarning

STRETCH = {"z_uniform_half_kpc": 1.5, "z_stretch_factor": 1.15, "dz_max_kpc": 1.0}

STENCIL_RTOL = 1e-10
"""The non-uniform three-point stencil (and its Shortley-Weller boundary rows) differentiates a quadratic
exactly; only round-off (~1e-13 relative) remains."""

GAS_COLUMN_RTOL = 1e-5
"""Vertical gas column (sum of cell averages x cell widths) on the stretched grid against the uniform one: both
integrate the same point models over the same extent with 0.01-kpc sub-steps. Measured: HI 6.9e-9, H2 3e-14,
HII 1.7e-6 (its 1 kpc scale-height component reaches the widened cells)."""

FLUX_RTOL = 1e-3
"""Element fluxes at the Sun (0.05-3000 GeV/n), stretched against uniform grid, on this test's coarse grid
(dr 2 kpc, Ekin factor 2): measured at most 6.8e-4 (Li). On the paper grid the full network differs by at most
1.5e-3 (10B at z_h = 4 kpc; B/C at most 6.6e-4 at z_h 4 / 9 / 17.6 kpc) and 1.6e-3 on 512 posterior-like models
(benchmarks/results/stretched_halo_speed_cupy_float32_512.md). Data errors are >= 1-2 %."""


def _setup(**changes) -> GalaxySetup:
    return GalaxySetup.paper().with_changes(**changes)


def test_lattice_keeps_the_disc_and_stretches_the_halo():
    uniform, stretched = _setup(), _setup(**STRETCH)
    g = stretched.grid(18.0)
    z, steps = g.z_kpc, np.diff(g.z_kpc)
    assert not g.z_uniform and g.z_half_kpc >= 18.0
    np.testing.assert_allclose(z, -z[::-1], atol=1e-12)
    core = np.abs(z) <= 1.5 + 1e-9
    assert np.allclose(z[core], uniform.grid(18.0).z_kpc[np.abs(uniform.grid(18.0).z_kpc) <= 1.5 + 1e-9])
    assert np.allclose(steps[(np.abs(z[:-1]) < 1.4) & (np.abs(z[1:]) < 1.4)], 0.2)
    ratio = steps[1:] / steps[:-1]
    assert np.all(ratio <= 1.15 + 1e-9) and np.all(ratio >= 1 / 1.15 - 1e-9)
    assert steps.max() <= 1.0 + 1e-9
    assert g.shape[1] <= uniform.grid(18.0).shape[1] / 2.5  # 60 against 182 nodes
    small = batch_grid(stretched, 7.2)
    off = (g.shape[1] - small.shape[1]) // 2
    np.testing.assert_allclose(g.z_kpc[off:off + small.shape[1]], small.z_kpc, atol=1e-9)  # centred subset
    assert g.dz_kpc == pytest.approx(0.2)
    iz = normalisation_point(g, 1e5)[1]
    assert z[iz] == pytest.approx(-0.1)  # GALPROP's normalisation node, as on the uniform paper grid


@pytest.mark.parametrize("field, value, match", [
    ("z_stretch_factor", 1.0, "z_stretch_factor"), ("z_stretch_factor", 2.5, "z_stretch_factor"),
    ("dz_max_kpc", 0.1, "dz_max_kpc"), ("z_uniform_half_kpc", 0.05, "z_uniform_half_kpc")])
def test_bad_stretch_settings_name_the_field(field, value, match):
    with pytest.raises(ValueError, match=match):
        _setup(**{**STRETCH, field: value}).grid(10.0)


def test_grid_rejects_asymmetric_or_abrupt_non_uniform_z():
    r, e = np.arange(5.0), np.geomspace(1.0, 1e3, 8)
    with pytest.raises(ValueError, match="symmetric"):
        Grid(r, np.array([-1.0, -0.5, 0.0, 0.6, 1.0]), e)
    with pytest.raises(ValueError, match="neighbouring z steps"):
        Grid(r, np.array([-3.5, -0.5, -0.25, 0.0, 0.25, 0.5, 3.5]), e)


@pytest.mark.parametrize("z_halo", [18.0, 17.37, 9.0, 1.3])
def test_stencil_is_exact_for_the_quadratic_halo_profile(z_halo):
    """-D psi'' = q with psi(+-z_h) = 0 has psi = q (z_h^2 - z^2) / 2D: every interior row of A_z reproduces q."""
    g = _setup(**STRETCH).grid(18.0)
    d = np.array([[3e28, 1e29]])  # cm^2/s, (n_E = 1, B = 2)
    a1, a2, a3, interior = vertical_coefficients(g, d, np.full(2, z_halo))
    zc = g.z_kpc * g.dz_cm / g.dz_kpc  # cm
    zh = z_halo * g.dz_cm / g.dz_kpc
    q = 1.0
    psi = np.where(interior, q * (zh**2 - zc[:, None] ** 2) / (2.0 * d[0]), 0.0)  # (n_z, B)
    lhs = a2[:, 0] * psi
    lhs[1:] -= a1[1:, 0] * psi[:-1]
    lhs[:-1] -= a3[:-1, 0] * psi[1:]
    np.testing.assert_allclose(lhs[interior], q, rtol=STENCIL_RTOL)
    assert interior.sum(axis=0)[0] < g.shape[1]


def test_gas_column_is_kept_on_wide_cells():
    u = _setup().grid(12.0)
    s = _setup(**STRETCH).grid(12.0)
    gu = gas_maps(u.r_kpc, u.z_kpc, u.dz_kpc)
    lo, hi = s.z_cell_bounds_kpc
    gs = gas_maps(s.r_kpc, s.z_kpc, s.dz_kpc, cell_bounds_kpc=(lo, hi))
    for name in ("n_HI", "n_H2", "n_HII"):
        col_u = getattr(gu, name).sum(axis=1) * u.dz_kpc
        col_s = (getattr(gs, name) * (hi - lo)[None]).sum(axis=1)
        m = col_u > 1e-6 * col_u.max()
        np.testing.assert_allclose(col_s[m], col_u[m], rtol=GAS_COLUMN_RTOL, err_msg=name)


def test_network_fluxes_match_the_uniform_grid():
    params = [PropagationParams(7.38, 0.426, -1.16, 24.7, 8.97, 0.826, 2.379, 2.238, 1390.0, 2.5e5),
              PropagationParams(13.0, 0.426, -1.16, 24.7, 16.4, 0.826, 2.379, 2.238, 1390.0, 2.5e5)]
    coarse = {"ekin_factor": 2.0, "dr_kpc": 2.0}
    with warnings.catch_warnings():
        warnings.simplefilter("error", NonConvergenceWarning)
        ref = propagate(_setup(**coarse), params, backend="numba")
        new = propagate(_setup(**coarse, **STRETCH), params, backend="numba")
    assert new.converged.all() and ref.converged.all()
    e = ref.ekin_gev_per_n
    m = (e > 0.05) & (e < 3e3)
    worst = 0.0
    for el in ("Li", "Be", "B", "C", "O"):
        rel = np.abs(new.flux(el)[:, m] / ref.flux(el)[:, m] - 1.0)
        worst = max(worst, float(rel.max()))
        assert rel.max() < FLUX_RTOL, el
    assert worst > 1e-6  # the grids differ: a zero difference would mean the stretch was not applied


GPU_OK, GPU_WHY = cupy_available()


@pytest.mark.gpu
@pytest.mark.skipif(not GPU_OK, reason=f"no CUDA GPU for CuPy: {GPU_WHY}")
def test_cupy_equals_numba_on_a_stretched_grid():
    """The CUDA sweeps read per-row z coefficients: on a stretched grid fp64 must still equal numba."""
    params = [PropagationParams(7.38, 0.426, -1.16, 24.7, 8.97, 0.826, 2.379, 2.238, 1390.0, 2.5e5),
              PropagationParams(13.0, 0.426, -1.16, 24.7, 16.4, 0.826, 2.379, 2.238, 1390.0, 2.5e5)]
    setup = _setup(ekin_factor=2.0, dr_kpc=2.0, **STRETCH)
    cpu = propagate(setup, params, backend="numba", tol=1e-10, max_steps=3000)
    gpu = propagate(setup, params, backend="cupy", tol=1e-10, max_steps=3000, backend_options={"precision": "float64"})
    for el in ("B", "C", "O"):
        np.testing.assert_allclose(gpu.flux(el), cpu.flux(el), rtol=GPU_CPU_RTOL, err_msg=el)


GPU_CPU_RTOL = 1e-8
"""Both iterate to a relative residual of 1e-10; the fluxes then agree to ~1e-9 (float64 on both sides)."""


def test_galaxy_setup_refuses_non_positive_steps():
    """A zero step was a ZeroDivisionError inside GalaxySetup.grid(), a negative one a message about the z lattice
    (walk-through, session 19): the setup itself names the field, for every way a setup is made (GridConfig and the
    galdef reader check their own inputs; with_changes in Python checks nothing else)."""
    import pytest

    from crprop.galaxy import GalaxySetup

    paper = GalaxySetup.paper()
    for name, value in (("dz_kpc", 0.0), ("dr_kpc", -1.0), ("r_max_kpc", float("nan"))):
        with pytest.raises(ValueError, match=f"{name} must be a finite positive number"):
            paper.with_changes(**{name: value})
    with pytest.raises(ValueError, match="ekin_factor must be a finite number > 1"):
        paper.with_changes(ekin_factor=1.0)
    with pytest.raises(ValueError, match=r"z_uniform_half_kpc must be >= dz_kpc \(0.2 kpc\), got 0.1"):
        paper.with_changes(z_uniform_half_kpc=0.1).grid()
    with pytest.raises(ValueError, match=r"dz_max_kpc must be >= dz_kpc \(0.2 kpc\), got 0.1"):
        paper.with_changes(z_uniform_half_kpc=1.0, dz_max_kpc=0.1).grid()
    with pytest.raises(ValueError, match=r"z_stretch_factor must lie in \(1, 2\]"):
        paper.with_changes(z_uniform_half_kpc=1.0, z_stretch_factor=2.5).grid()
