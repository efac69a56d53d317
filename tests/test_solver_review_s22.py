"""Session-22 review of the solver core (review by helper-95, session 22):

* a halo whose only interior z node is z = 0 (z_h in (dz/2, 3dz/2), reachable on the CI grid, dz 1.3 kpc) had its
  two Shortley-Weller sides set one after the other, giving 2D/(dz h') instead of 2D/h'^2 (the 1-D quadratic's
  psi(0) off by 1.30 / 0.68 at z_h 1.0 / 1.9 kpc);
* mode 'exact' flagged a residual converged against max(tol, 1e-9) instead of the tolerance asked;
* build_operator's and propagate's input errors name the argument (dpdt_mev_s, z_half_kpc, gamma_s, psi0 keys,
  max_steps, backend).

All on grids of a few nodes: seconds."""

from __future__ import annotations

import re
import warnings

import numpy as np
import pytest

from crprop.constants import KPC_CM
from crprop.discretization import _vertical_coefficients_stretched, build_operator, vertical_coefficients
from crprop.galaxy import GalaxySetup
from crprop.grid import Grid
from crprop.operator import TransportOperator
from crprop.params import CRML_BASE
from crprop.propagate import propagate
from crprop.solvers import NonConvergenceWarning, solve_species

D_CM2_S = 1e28
ONE_NODE_GRID = dict(r_max_kpc=4.0, dr_kpc=2.0, z_half_kpc=1.3, dz_kpc=1.3, ekin_min_mev_per_n=10.0,
                     ekin_max_mev_per_n=1e4, ekin_factor=3.0)
"""z nodes -1.3, 0, 1.3 kpc: a halo z_h in (0.65, 1.95) kpc has the single interior node z = 0."""
THREE_POINT_EXACT = 1e-10
"""The three-point stencil is exact for the quadratic -D psi'' = Q, psi(+-z_h) = 0: psi(0) = Q z_h^2 / (2D) up to the
direct solve's round-off (the operator without r diffusion, losses or reacceleration)."""


def _one_node_grid() -> Grid:
    return Grid.regular(**ONE_NODE_GRID)


@pytest.mark.parametrize("z_halo_kpc", [1.0, 1.3, 1.9])
def test_single_interior_node_solves_the_quadratic_exactly(z_halo_kpc: float) -> None:
    grid = _one_node_grid()
    n_e = grid.shape[2]
    op = build_operator(grid, np.geomspace(100.0, 1e4, n_e), np.full((n_e, 1), D_CM2_S), z_half_kpc=z_halo_kpc)
    z_only = {name: getattr(op, name) for name in ("z_a1", "z_a2", "z_a3", "p_a1", "p_a2", "p_a3", "loss_a2",
                                                    "loss_a3", "gamma", "r_interior", "z_interior")}
    zero = np.zeros_like(op.r_a1)
    op_1d = TransportOperator(r_a1=zero, r_a2=zero, r_a3=zero, **z_only)  # no r diffusion: a 1-D problem in z
    assert op_1d.z_interior[:, 0].tolist() == [False, True, False]
    psi = solve_species(op_1d, np.ones(op_1d.shape), mode="exact").psi
    continuum = (z_halo_kpc * KPC_CM) ** 2 / (2.0 * D_CM2_S)
    # before session 22: ratios 1.30 (z_h 1.0) and 0.68 (z_h 1.9); z_h = dz was right (no Shortley-Weller row)
    assert psi[0, 1, :, 0] / continuum == pytest.approx(np.ones(n_e), rel=THREE_POINT_EXACT)


def test_single_interior_node_rows_equal_the_general_form() -> None:
    """The uniform grid's rows equal the stretched grid's general three-point form on the same nodes (to
    round-off), as on multi-node halos."""
    grid = _one_node_grid()
    zh = np.array([0.7, 1.0, 1.3, 1.9])
    dxx = np.full((grid.shape[2], zh.size), D_CM2_S)
    _, a2, _, interior = vertical_coefficients(grid, dxx, zh)
    _, a2_general, _, interior_general = _vertical_coefficients_stretched(grid, dxx, zh)
    assert np.array_equal(interior, interior_general)
    assert a2[1] == pytest.approx(a2_general[1], rel=1e-14)
    assert a2[1, 0] * (grid.dz_cm ** 2 / D_CM2_S) == pytest.approx(2.0 / (zh / grid.dz_kpc) ** 2, rel=1e-14)
    # multi-node halos on the paper's dz (interior rows; GALPROP's 1, 2, 1 rows and the Shortley-Weller rows)
    fine = Grid.regular(**{**ONE_NODE_GRID, "z_half_kpc": 6.0, "dz_kpc": 0.2})
    zh = np.array([1.0, 1.13, 3.9, 4.05, 5.97, 6.0])
    dxx = np.full((fine.shape[2], zh.size), D_CM2_S)
    _, a2, _, interior = vertical_coefficients(fine, dxx, zh)
    _, a2_general, _, interior_general = _vertical_coefficients_stretched(fine, dxx, zh)
    assert np.array_equal(interior, interior_general)
    rows = np.broadcast_to(interior[:, None, :], a2.shape)
    assert np.abs(a2 - a2_general)[rows].max() <= 1e-14 * np.abs(a2_general).max()


def test_exact_mode_is_judged_against_the_tolerance_asked() -> None:
    grid = _one_node_grid()
    n_e = grid.shape[2]
    op = build_operator(grid, np.geomspace(100.0, 1e4, n_e), np.full((n_e, 1), D_CM2_S), z_half_kpc=1.0)
    q = np.ones(op.shape)
    loose = solve_species(op, q, mode="exact", tol=1e-6)
    assert loose.converged.all() and loose.tol == 1e-6
    floor = float(loose.residual[0])
    assert 0.0 < floor < 1e-12  # the direct solve's round-off
    with pytest.warns(NonConvergenceWarning):
        tight = solve_species(op, q, mode="exact", tol=floor / 10)  # before session 22: converged (1e-9 floor)
    assert not tight.converged.any() and tight.tol == floor / 10


def test_operator_input_errors_name_the_argument() -> None:
    grid = _one_node_grid()
    n_r, n_z, n_e = grid.shape
    p = np.geomspace(100.0, 1e4, n_e)
    dxx = np.full((n_e, 2), D_CM2_S)
    with pytest.raises(ValueError, match=r"^dpdt_mev_s has shape \(3, 2, 8\), expected \(3, 3, 8\)"):
        build_operator(grid, p, dxx, dpdt_mev_s=np.zeros((n_r, n_z - 1, n_e)))
    with pytest.raises(ValueError, match=r"^z_half_kpc must be a scalar or have one value per model \(2\)"):
        build_operator(grid, p, dxx, z_half_kpc=np.array([1.0, 1.1, 1.2]))
    for bad in (np.nan, -1e-15):
        with pytest.raises(ValueError, match=r"^gamma_s must be finite and >= 0"):
            build_operator(grid, p, dxx, gamma_s=np.full((n_r, n_z, n_e), bad))
    op = build_operator(grid, p, dxx, z_half_kpc=1.0)  # one halo for both models
    assert op.z_interior[:, 0].tolist() == op.z_interior[:, 1].tolist() == [False, True, False]
    q = np.ones(op.shape)
    with pytest.raises(ValueError, match=r"^backend must be one of"):
        solve_species(op, q, mode="exact", backend="bogus")
    with pytest.raises(ValueError, match=r"^max_steps must be an integer >= 1 .*got 2.5"):
        solve_species(op, q, mode="fast", max_steps=2.5)


def test_a_warm_start_under_an_unknown_species_key_is_refused() -> None:
    setup = GalaxySetup.paper().with_changes(dr_kpc=4.0, dz_kpc=1.3, ekin_factor=3.0)
    n_species = len(setup.network.species)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", NonConvergenceWarning)
        with pytest.raises(ValueError, match=rf"^psi0 keys must be species indices 0..{n_species - 1} .*\[999\]"):
            propagate(setup, CRML_BASE, psi0={999: np.zeros(1)})


def test_a_z_step_below_the_gas_averaging_step_is_refused_where_it_is_set(tmp_path) -> None:
    """dz below GALPROP's 0.01 kpc gas sub-step was accepted by GalaxySetup and refused only when its tables were
    built, naming dzz_kpc (review by helper-106, session 22)."""
    from helpers_cli import assert_usage_error
    from typer.testing import CliRunner

    from crnet.cli import app
    from crnet.scan.models import GridConfig

    message = "dz_kpc must be >= 0.01 kpc (the gas is averaged over each z cell in sub-steps of 0.01 kpc"
    with pytest.raises(ValueError, match=re.escape(message)):
        GalaxySetup.paper().with_changes(dz_kpc=0.005)
    with pytest.raises(ValueError, match=re.escape(message)):
        GridConfig(dz_kpc=0.005)
    assert GalaxySetup.paper().with_changes(dz_kpc=0.01).dz_kpc == 0.01
    out = tmp_path / "s.h5"
    res = CliRunner().invoke(app, ["scan", "--out", str(out), "--design", "sobol", "--points", "2", "--dz", "0.005",
                                   "--no-progress"])
    assert_usage_error(res, "--dz must be >= 0.01 kpc")
    assert not out.exists()
