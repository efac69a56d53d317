"""Small synthetic transport problems shared by the solver tests."""

from __future__ import annotations

import numpy as np

from crprop.constants import NUCLEON_MASS_KINEMATICS_MEV
from crprop.discretization import build_operator
from crprop.grid import Grid


def small_grid() -> Grid:
    """6 x 8 x 10 grid: r 0..5 kpc, z +-1.4 kpc (dz 0.4), Ekin 10 MeV/n .. 2.6e4 MeV/n (x2.4)."""
    return Grid.regular(r_max_kpc=5.0, dr_kpc=1.0, z_half_kpc=1.4, dz_kpc=0.4,
                        ekin_min_mev_per_n=10.0, ekin_max_mev_per_n=2.6e4, ekin_factor=2.4)


def proton_momentum(grid: Grid) -> np.ndarray:
    e = grid.ekin_mev_per_n
    return np.sqrt(e * (e + 2 * NUCLEON_MASS_KINEMATICS_MEV))


def random_problem(seed: int = 0, n_models: int = 3, grid: Grid | None = None, loss_scheme: str = "upwind1"):
    """Random positive coefficients with diffusion, reacceleration, losses, fragmentation and decay.

    Rates are of the Galactic orders (D ~ 1e28 cm^2/s, gamma ~ 1e-15..1e-14 s^-1) so that every
    process matters. loss_scheme: the momentum-loss stencil (crprop.discretization.LOSS_SCHEMES).
    Returns (grid, operator, source).
    """
    rng = np.random.default_rng(seed)
    grid = grid or small_grid()
    n_r, n_z, n_e = grid.shape
    p = proton_momentum(grid)
    dxx = 1e28 * rng.uniform(0.5, 3.0, n_models)[None] * (p[:, None] / 1e3) ** rng.uniform(0.3, 0.6, n_models)
    v_a = 3e6 * rng.uniform(0.5, 1.5, n_models)[None]
    dpp = p[:, None] ** 2 * v_a**2 / dxx * 0.3
    gas = rng.uniform(0.2, 1.5, (n_r, n_z)) * np.exp(-np.abs(grid.z_kpc)[None] / 0.5)
    dpdt = gas[..., None] * 3e-13 * (p / 1e3)[None, None] ** -0.5
    gamma = gas[..., None] * rng.uniform(3e-15, 1e-14) + 2e-15 * (1e3 / p)[None, None]  # frag + decay-like
    op = build_operator(grid, p, dxx, dpp, dpdt, gamma, loss_scheme=loss_scheme)
    q = rng.uniform(0.5, 1.0, (n_r, n_z, n_e, n_models)) * np.exp(-np.abs(grid.z_kpc))[None, :, None, None]
    q *= (p / 1e3)[None, None, :, None] ** -2.3
    return grid, op, q


def relative_error(x: np.ndarray, ref: np.ndarray, floor: float = 1e-6) -> float:
    """Max |x/ref - 1| over cells with ref > floor * max(ref) (per model)."""
    worst = 0.0
    for b in range(ref.shape[-1]):
        m = ref[..., b] > floor * ref[..., b].max()
        worst = max(worst, float(np.abs(x[..., b][m] / ref[..., b][m] - 1).max()))
    return worst


def galprop_c12_problem(internals_dir):
    """GALPROP's own 12C inputs for crml_base (../shared/reference/galprop-internals): the operator (B = 1),
    the source Q (primary + secondary, (n_r, n_z, n_E, 1)) and GALPROP's psi after its ladder (n_r, n_z, n_E)."""
    g = np.load(internals_dir / "crml_base" / "grid_gas_source.npz")
    s = np.load(internals_dir / "crml_base" / "species.npz")
    ps = np.load(internals_dir / "crml_base" / "psi_selected.npz")
    i = list(s["names"]).index("Carbon_12")
    grid = Grid(g["r_kpc"], g["z_kpc"], g["Ekin_MeV_per_n"])
    gamma = g["n_H_target"][..., None] * s["frag_rate_per_n_H_target"][i][None, None] + s["decay_rate_s"][i]
    op = build_operator(grid, s["p_MeV"][i], s["Dxx_cm2_s"][i][:, None], s["Dpp_MeV2_s"][i][:, None],
                        s["dpdt_f32"][i].astype(np.float64), gamma)
    q = (ps["primary_source_C12"] + ps["secondary_source_C12"])[..., None]
    return op, q, ps["psi_raw_C12"]


def halo_problem(z_half_kpc, seed: int):
    """(operator, source) on :func:`small_grid` with one model per halo half-height in ``z_half_kpc`` (kpc), so the
    Dirichlet z masks differ between models: random diffusion (D ~ 1e28 cm^2/s), reacceleration, losses and
    fragmentation, and a source ~ p^-2.3."""
    rng = np.random.default_rng(seed)
    grid = small_grid()
    n_r, n_z, n_e = grid.shape
    n_b = len(z_half_kpc)
    p = proton_momentum(grid)
    dxx = 1e28 * rng.uniform(0.5, 3.0, n_b)[None] * (p[:, None] / 1e3) ** 0.4
    dpp = p[:, None] ** 2 * 3e6**2 / dxx * 0.3
    gas = rng.uniform(0.2, 1.5, (n_r, n_z))
    dpdt = gas[..., None] * 3e-13 * (p / 1e3)[None, None] ** -0.5
    gamma = gas[..., None] * 5e-15 + 2e-15 * (1e3 / p)[None, None]
    op = build_operator(grid, p, dxx, dpp, dpdt, gamma, z_half_kpc=np.array(z_half_kpc))
    q = rng.uniform(0.5, 1.0, (n_r, n_z, n_e, n_b)) * (p / 1e3)[None, None, :, None] ** -2.3
    return op, q


BACKEND_ROUND_OFF = 1e-13
"""numba vs numpy, max |difference| / max |numpy| within each (energy, model) slice. Both run the same float64
recurrences; the numba kernels sum the p rows' diagonal as (p2 + l2) + gamma (numpy p2 + (l2 + gamma)) and assemble
the Crank-Nicolson right-hand side in another order, so results differ by round-off that the recurrences carry: at
most 2e-15 measured on these problems (single sweeps 5e-16, 36 galprop steps 1.9e-15, fast to 1e-8 1.6e-15).
1e-13 leaves a 50x margin over that for other problems.
tests/test_solver_core.py's BACKEND_EQUALITY (1e-10 of the field's overall maximum) is 5 decades looser and, psi
spanning ~20 decades over energy, blind to the high-energy slices."""


def slice_error(a: np.ndarray, ref: np.ndarray) -> float:
    """max over (energy, model) slices of max |a - ref| / max |ref| in the slice."""
    scale = np.abs(ref).max(axis=(0, 1))
    return float((np.abs(a - ref).max(axis=(0, 1)) / np.where(scale > 0, scale, 1.0)).max())
