"""GALPROP v54's finite-difference coefficients for the transport operator (solver-numerics §1.2).

Inputs are physical coefficients; output is a :class:`~crprop.operator.TransportOperator`.
Shapes: per-model tables in momentum are (n_E, B) (model index last), shared maps are (n_r, n_z, n_E).
"""

from __future__ import annotations

import numpy as np

from crprop.constants import KPC_CM
from crprop.grid import Grid
from crprop.operator import TransportOperator

# A z node counts as lying on the halo boundary when it is within this fraction of dz of |z| = z_h
# (grid nodes are computed from decimal steps, so z_h = 3.9 sits at 3.9000000000000004).
_ON_BOUNDARY_FRACTION = 1e-6


def _as_model_table(name: str, arr: np.ndarray, n_e: int) -> np.ndarray:
    arr = np.asarray(arr, dtype=np.float64)
    if arr.ndim == 1:
        arr = arr[:, None]
    if arr.ndim != 2 or arr.shape[0] != n_e:
        raise ValueError(f"{name} must have shape (n_E={n_e}, B), got {arr.shape}")
    if arr.shape[1] == 0:
        raise ValueError(f"{name}: empty batch (B = 0 models)")
    if not np.all(np.isfinite(arr)):
        raise ValueError(f"{name} contains NaN or inf")
    return arr


def _no_interior_node_message(model: int, z_halo_kpc: float, dz_kpc: float, z_nearest_kpc: float) -> str:
    """The refusal of a halo with no interior z node, in the terms a user sets (walk-through by helper-87, session 21:
    it said only 'z_half_kpc = 5.89 leaves no interior z node', from inside a scan)."""
    return (f"model {model}: its halo z_halo_kpc = {z_halo_kpc:.4g} kpc leaves no interior z node on this grid: the "
            f"z step dz is {dz_kpc:g} kpc and the node nearest the disc lies at |z| = {z_nearest_kpc:g} kpc, but the "
            "halo boundary must lie more than half a step beyond a node. Use a z step dz <= "
            f"{z_halo_kpc:.4g} kpc (the galdef's dz; crnet: --dz or [scan.grid] dz_kpc) or a larger z_halo_kpc")


def _z_steps(z_kpc: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(h_lo, h_hi, h_out) per z node, kpc: the step to the node below (the first node: its own step), to the node
    above (the last: its own), and away from the plane (the interior rule of :func:`vertical_coefficients`)."""
    steps = np.diff(z_kpc)
    h_lo = np.concatenate([[steps[0]], steps])
    h_hi = np.concatenate([steps, [steps[-1]]])
    return h_lo, h_hi, np.where(z_kpc >= 0.0, h_hi, h_lo)


def _interior_nodes(z_kpc: np.ndarray, h_out_kpc: np.ndarray | float, zh_kpc: np.ndarray, dz_kpc: float) -> np.ndarray:
    """(n_z, B) mask of the z nodes interior to each model's halo: the node's distance to |z| = z_h exceeds (1/2 - the
    on-boundary fraction) of its outward step ``h_out_kpc`` (dz on a uniform grid); ValueError naming z_halo_kpc and
    ``dz_kpc`` for a model left without one. The one statement of the rule, which :func:`smallest_halo_kpc` inverts."""
    h_out = np.broadcast_to(np.asarray(h_out_kpc, dtype=np.float64), z_kpc.shape)
    interior = (zh_kpc[None, :] - np.abs(z_kpc)[:, None]) > (0.5 - _ON_BOUNDARY_FRACTION) * h_out[:, None]
    if not interior.any(axis=0).all():
        bad = int(np.nonzero(~interior.any(axis=0))[0][0])
        raise ValueError(_no_interior_node_message(bad, zh_kpc[bad], dz_kpc, float(np.abs(z_kpc).min())))
    return interior


def smallest_halo_kpc(z_kpc: np.ndarray) -> float:
    """The halo half-height (kpc) at or below which the z nodes ``z_kpc`` (a symmetric lattice: a Grid's, uniform or
    stretched) hold no interior node, by :func:`vertical_coefficients`' rule (a node is interior when its distance to
    |z| = z_h exceeds (1/2 - the on-boundary fraction) of its outward step). A model's z_halo_kpc must lie above it.

    On the lattices of crprop.galaxy.GalaxySetup.grid the nearest node to the disc is at z = 0 or at |z| = dz/2,
    so this is about dz/2 or dz: a z step dz <= z_h always leaves an interior node, one up to 2 z_h only with a
    node at z = 0 (walk-through by helper-87, session 21: a 100 kpc dz failed only inside the scan)."""
    z = np.asarray(z_kpc, dtype=np.float64)
    return float(np.min(np.abs(z) + (0.5 - _ON_BOUNDARY_FRACTION) * _z_steps(z)[2]))


def radial_coefficients(grid: Grid, dxx_cm2_s: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """GALPROP's cylindrical r stencil, each (n_r, n_E, B) in s^-1.

    i = 0 (axis): a1 = 0, a2 = a3 = 2D/dr^2; i > 0: a1 = D/dr^2 (1 - dr/2r), a2 = 2D/dr^2,
    a3 = D/dr^2 (1 + dr/2r). D is the spatial diffusion coefficient in cm^2/s, shape (n_E, B).
    """
    k = dxx_cm2_s[None] / grid.dr_cm**2
    r = grid.r_kpc
    geo_lo = np.zeros_like(r)
    geo_up = np.full_like(r, 2.0)
    geo_lo[1:] = 1.0 - grid.dr_kpc / (2.0 * r[1:])
    geo_up[1:] = 1.0 + grid.dr_kpc / (2.0 * r[1:])
    a2 = np.broadcast_to(2.0 * k, (r.size,) + k.shape[1:]).copy()
    return geo_lo[:, None, None] * k, a2, geo_up[:, None, None] * k


def vertical_coefficients(
    grid: Grid, dxx_cm2_s: np.ndarray, z_half_kpc: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """z stencil with the halo boundary psi = 0 at |z| = z_h of each model: (a1, a2, a3, interior).

    Coefficients are (n_z, n_E, B) in s^-1, ``interior`` is (n_z, B). Where z_h falls on a node the
    stencil is GALPROP's (a1 = a3 = D/dz^2, a2 = 2D/dz^2, boundary node fixed to 0). Otherwise (models of
    one batch with different halo heights share the grid) the outermost interior node is the one whose
    distance h' to the boundary lies in [dz/2, 3dz/2), and it uses the Shortley-Weller stencil
    a_centre = 2D/(dz(dz+h')), a2 = 2D/(dz h'): second-order accurate, continuous in z_h, and never
    stiffer than 4D/dz^2 (a boundary just beyond a node, h' -> 0, would make the row arbitrarily stiff
    and stall the pseudo-time iteration). Nodes between that node and z_h are held at psi = 0. A halo whose
    only interior node is z = 0 has the boundary h' away on both sides: a2 = 2D/h'^2.
    """
    zh = np.asarray(z_half_kpc, dtype=np.float64).reshape(-1)
    n_b = dxx_cm2_s.shape[1]
    if zh.size == 1:
        zh = np.full(n_b, zh[0])
    if zh.shape != (n_b,):
        raise ValueError(f"z_half_kpc must be a scalar or have one value per model ({n_b}), got {zh.shape}")
    if not np.all(np.isfinite(zh)) or np.any(zh <= 0):
        raise ValueError("z_half_kpc must be finite and > 0 kpc")
    if not grid.z_uniform:  # the general form equals GALPROP's rows only to round-off: uniform grids keep them
        return _vertical_coefficients_stretched(grid, dxx_cm2_s, zh)
    dz = grid.dz_kpc
    z = grid.z_kpc
    if np.any(zh > grid.z_half_kpc + (0.5 - _ON_BOUNDARY_FRACTION) * dz):
        raise ValueError(f"z_half_kpc up to {zh.max()} exceeds the grid's halo {grid.z_half_kpc} kpc")
    n_z = z.size
    interior = _interior_nodes(z, dz, zh, dz)
    # Geometric factors in units of D/dz^2, (n_z, B), from each node's distances to its neighbours below and above
    # (units of dz): 1 (GALPROP's rows, g = 1, 2, 1 exactly), or h' to the boundary at the outermost interior
    # nodes (Shortley-Weller: 2/(h_dn (h_dn + h_up)), 2/(h_dn h_up), 2/(h_up (h_dn + h_up)), the boundary side's
    # coupling 0). A halo with one interior node (z = 0) has the boundary on both sides: g2 = 2/h'^2 (setting the
    # two sides one after the other gave 2/h': the 1-D quadratic's psi(0) off by 1.30 / 0.68 at z_h 1.0 / 1.9 kpc on
    # the CI grid's dz 1.3 kpc, tests/test_solver_review_s22.py; review by helper-95, session 22). Vectorised over
    # models: this runs for every species of every batch.
    h_dn = np.ones((n_z, n_b))
    h_up = np.ones((n_z, n_b))
    cols = np.arange(n_b)
    top = n_z - 1 - np.argmax(interior[::-1], axis=0)
    bottom = np.argmax(interior, axis=0)
    boundary_up = np.zeros((n_z, n_b), dtype=bool)
    boundary_dn = np.zeros((n_z, n_b), dtype=bool)
    for j, h, at_boundary in ((top, h_up, boundary_up), (bottom, h_dn, boundary_dn)):
        h_prime = (zh - np.abs(z[j])) / dz  # in units of dz, in [1/2, 3/2)
        sw = np.abs(h_prime - 1.0) >= _ON_BOUNDARY_FRACTION
        h[j[sw], cols[sw]] = h_prime[sw]
        at_boundary[j[sw], cols[sw]] = True
    g1 = np.where(boundary_dn, 0.0, 2.0 / (h_dn * (h_dn + h_up)))
    g3 = np.where(boundary_up, 0.0, 2.0 / (h_up * (h_dn + h_up)))
    g2 = 2.0 / (h_dn * h_up)
    k = dxx_cm2_s[None] / grid.dz_cm**2  # (1, n_E, B)
    return g1[:, None, :] * k, g2[:, None, :] * k, g3[:, None, :] * k, interior


def _vertical_coefficients_stretched(
    grid: Grid, dxx_cm2_s: np.ndarray, zh: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """vertical_coefficients on a non-uniform (stretched-halo) z grid.

    Row j with steps h- = z_j - z_{j-1}, h+ = z_{j+1} - z_j is the conservative three-point form on the cell
    [z_j - h-/2, z_j + h+/2]: a1 = 2D/(h-(h- + h+)), a3 = 2D/(h+(h- + h+)), a2 = a1 + a3 (GALPROP's row when
    h- = h+). A node is interior when its distance to |z| = z_h exceeds half its outward step; the outermost
    interior node replaces its outward step by that distance h' (Shortley-Weller, as on a uniform grid), so
    h' lies in [h_out/2, h_out + h_next/2) and the row is never stiffer than 4D/h_out^2.
    """
    z = grid.z_kpc
    n_z, n_b = z.size, zh.size
    h_lo, h_hi, h_out = _z_steps(z)
    if np.any(zh > grid.z_half_kpc + (0.5 - _ON_BOUNDARY_FRACTION) * h_out[-1]):
        raise ValueError(f"z_half_kpc up to {zh.max()} exceeds the grid's halo {grid.z_half_kpc} kpc")
    dist = zh[None, :] - np.abs(z)[:, None]  # (n_z, B), kpc
    interior = _interior_nodes(z, h_out, zh, grid.dz_kpc)
    lo = np.broadcast_to(h_lo[:, None], (n_z, n_b)).copy()
    hi = np.broadcast_to(h_hi[:, None], (n_z, n_b)).copy()
    cols = np.arange(n_b)
    top = n_z - 1 - np.argmax(interior[::-1], axis=0)
    bottom = np.argmax(interior, axis=0)
    hi[top, cols] = dist[top, cols]
    lo[bottom, cols] = dist[bottom, cols]
    g1 = 2.0 / (lo * (lo + hi) * KPC_CM**2)  # cm^-2, (n_z, B)
    g3 = 2.0 / (hi * (lo + hi) * KPC_CM**2)
    g2 = g1 + g3
    g3[top, cols] = 0.0  # the neighbour across the boundary is psi = 0
    g1[bottom, cols] = 0.0
    d = dxx_cm2_s[None]
    return g1[:, None, :] * d, g2[:, None, :] * d, g3[:, None, :] * d, interior


LOSS_SCHEMES = ("upwind1", "upwind2")
"""Momentum-loss stencils. ``upwind1``: GALPROP's first-order upwind difference (the default: crprop reproduces
GALPROP). ``upwind2``: crnet's second-order one-sided three-point difference on the non-uniform momentum grid
(rows k, k+1, k+2), an option for the low-energy spectra, where the first-order scheme on the paper grid is
7-11 % high near 0.1 GeV/n (benchmarks/results/grid_sensitivity.md; with upwind2 0.9-2.3 %, loss_scheme.md).
Its k+2 coupling is not tridiagonal,
and its tridiagonal part alone is no usable preconditioner (its upper bidiagonal amplifies by 4/3 per row), so
the Douglas iteration solves with the first-order stencil and evaluates the residual with the second-order one
(defect correction: the fixed point is still A psi = Q with the second-order A). The exact mode assembles it, the
CUDA kernels take its rows as separate residual tables; GALPROP's time marching (mode 'galprop') refuses it."""


def check_loss_scheme(loss_scheme: str) -> None:
    """ValueError unless ``loss_scheme`` is one of :data:`LOSS_SCHEMES`."""
    if loss_scheme not in LOSS_SCHEMES:
        raise ValueError(f"loss_scheme must be one of {LOSS_SCHEMES} (momentum-loss stencil; 'upwind1' = GALPROP's), "
                         f"got {loss_scheme!r}")


def momentum_coefficients(
    p_mev: np.ndarray, dpp_mev2_s: np.ndarray, dpdt_mev_s: np.ndarray, loss_scheme: str = "upwind1"
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray, tuple[np.ndarray, ...] | None]:
    """GALPROP's reacceleration ("alternative scheme #2") and an upwind loss stencil in momentum.

    p_mev (n_E,) total momentum in MeV/c; dpp_mev2_s (n_E, B) D_pp in (MeV/c)^2/s; dpdt_mev_s
    (n_r, n_z, n_E) momentum-loss rate b = |dp/dt| >= 0 in MeV/c per s; loss_scheme one of LOSS_SCHEMES.
    Returns the reacceleration rows (p_a1, p_a2, p_a3) of shape (n_E, B), GALPROP's first-order loss rows
    (loss_a2, loss_a3) of shape (n_r, n_z, n_E): loss_a2 = b_k/h1, loss_a3 = b_k+1/h1 with h1 = p_k+1 - p_k,
    and, for upwind2, the second-order rows (a2, a3, a4), each (n_r, n_z, n_E), else None; all in s^-1.
    The loss term -d(b psi)/dp of A psi at row k is ``a2 psi_k - a3 psi_k+1 + a4 psi_k+2``; upwind2 (rows
    k <= n-3; row n-2 keeps the first-order row): a2 = b_k (2 h1 + h2)/(h1 (h1 + h2)),
    a3 = b_k+1 (h1 + h2)/(h1 h2), a4 = b_k+2 h1/(h2 (h1 + h2)) with h2 = p_k+2 - p_k+1.
    Rows k = 0 and k = n-1 copy their neighbours (GALPROP).
    """
    check_loss_scheme(loss_scheme)
    p = np.asarray(p_mev, dtype=np.float64)
    n = p.size
    if n < 4 or not np.all(np.diff(p) > 0):
        raise ValueError("p_mev must be strictly increasing with at least 4 nodes (MeV/c)")
    d = _as_model_table("dpp_mev2_s", dpp_mev2_s, n)
    dpdt = np.asarray(dpdt_mev_s, dtype=np.float64)
    if dpdt.ndim != 3 or dpdt.shape[2] != n:
        raise ValueError(f"dpdt_mev_s must have shape (n_r, n_z, n_E={n}), got {dpdt.shape}")
    if not np.all(np.isfinite(dpdt)) or np.any(dpdt < 0):
        raise ValueError("dpdt_mev_s must be finite and >= 0 (a loss rate, MeV/c per s)")
    k = np.arange(1, n - 1)
    pk, pm, pp = p[k][:, None], p[k - 1][:, None], p[k + 1][:, None]
    dk, dm = d[k], d[k - 1]
    a1 = np.empty_like(d)
    a2 = np.empty_like(d)
    a3 = np.empty_like(d)
    a1[k] = (-(dk - dm) / (pk - pm) + 2 * dk / (pp - pm) + 2 * dm / pm) / (pk - pm)
    a2[k] = (-(dk - dm) / (pk - pm) ** 2 + 2 * dk / (pp - pm) * (1 / (pp - pk) + 1 / (pk - pm))
             + 2 * dk / ((pk - pm) * pk))
    a3[k] = 2 * dk / ((pp - pm) * (pp - pk))
    for arr in (a1, a2, a3):
        arr[0] = arr[1]
        arr[n - 1] = arr[n - 2]
    dp_up = p[k + 1] - p[k]
    l2 = np.empty_like(dpdt)
    l3 = np.empty_like(dpdt)
    l2[..., k] = dpdt[..., k] / dp_up
    l3[..., k] = dpdt[..., k + 1] / dp_up
    for arr in (l2, l3):
        arr[..., 0] = arr[..., 1]
        arr[..., n - 1] = arr[..., n - 2]
    if loss_scheme == "upwind1":
        return a1, a2, a3, l2, l3, None
    # rows n-2 and n-1 keep the first-order values of l2, l3 (and a4 = 0); row 0 copies the new row 1
    res_a2, res_a3, res_a4 = l2.copy(), l3.copy(), np.zeros_like(dpdt)
    j = np.arange(1, n - 2)
    h1, h2 = p[j + 1] - p[j], p[j + 2] - p[j + 1]
    res_a2[..., j] = dpdt[..., j] * (2 * h1 + h2) / (h1 * (h1 + h2))
    res_a3[..., j] = dpdt[..., j + 1] * (h1 + h2) / (h1 * h2)
    res_a4[..., j] = dpdt[..., j + 2] * h1 / (h2 * (h1 + h2))
    for arr in (res_a2, res_a3, res_a4):
        arr[..., 0] = arr[..., 1]
    return a1, a2, a3, l2, l3, (res_a2, res_a3, res_a4)


def build_operator(
    grid: Grid,
    p_mev: np.ndarray,
    dxx_cm2_s: np.ndarray,
    dpp_mev2_s: np.ndarray | None = None,
    dpdt_mev_s: np.ndarray | None = None,
    gamma_s: np.ndarray | None = None,
    z_half_kpc: np.ndarray | float | None = None,
    loss_scheme: str = "upwind1",
) -> TransportOperator:
    """Assemble the operator of one species for B models on ``grid``.

    p_mev (n_E,) total momentum (MeV/c); dxx_cm2_s (n_E, B) spatial diffusion (cm^2/s);
    dpp_mev2_s (n_E, B) momentum diffusion ((MeV/c)^2/s, None = no reacceleration);
    dpdt_mev_s (n_r, n_z, n_E) momentum-loss rate (MeV/c per s, None = no losses);
    gamma_s (n_r, n_z, n_E) catastrophic loss rate, fragmentation + decay (s^-1, None = none);
    z_half_kpc halo half-height per model (kpc, default: the grid's);
    loss_scheme the momentum-loss stencil (LOSS_SCHEMES: 'upwind1' = GALPROP's, 'upwind2' = second order).
    """
    n_r, n_z, n_e = grid.shape
    dxx = _as_model_table("dxx_cm2_s", dxx_cm2_s, n_e)
    if np.any(dxx <= 0):
        raise ValueError("dxx_cm2_s must be > 0 (cm^2/s)")
    dpp = np.zeros_like(dxx) if dpp_mev2_s is None else _as_model_table("dpp_mev2_s", dpp_mev2_s, n_e)
    if dpp.shape != dxx.shape:
        raise ValueError(f"dpp_mev2_s has shape {dpp.shape}, expected {dxx.shape} like dxx_cm2_s")
    if np.any(dpp < 0):
        raise ValueError("dpp_mev2_s must be >= 0 ((MeV/c)^2/s)")
    # the shared tables checked here, naming the argument (review by helper-95, session 22: a wrong dpdt shape was
    # reported as TransportOperator.loss_a2's, a NaN gamma as TransportOperator.gamma)
    dpdt = np.zeros((n_r, n_z, n_e)) if dpdt_mev_s is None else np.asarray(dpdt_mev_s, dtype=np.float64)
    if dpdt.shape != (n_r, n_z, n_e):
        raise ValueError(f"dpdt_mev_s has shape {dpdt.shape}, expected {(n_r, n_z, n_e)} (n_r, n_z, n_E of the grid)")
    gamma = np.zeros((n_r, n_z, n_e)) if gamma_s is None else np.asarray(gamma_s, dtype=np.float64)
    if gamma.shape != (n_r, n_z, n_e):
        raise ValueError(f"gamma_s has shape {gamma.shape}, expected {(n_r, n_z, n_e)}")
    if not np.all(np.isfinite(gamma)) or np.any(gamma < 0):
        raise ValueError("gamma_s must be finite and >= 0 (a catastrophic loss rate, s^-1)")
    p = np.asarray(p_mev, dtype=np.float64)
    if p.shape != (n_e,):
        raise ValueError(f"p_mev has shape {p.shape}, expected ({n_e},) like the grid's energies")
    r_a1, r_a2, r_a3 = radial_coefficients(grid, dxx)
    zh = grid.z_half_kpc if z_half_kpc is None else z_half_kpc
    z_a1, z_a2, z_a3, z_int = vertical_coefficients(grid, dxx, zh)  # its checks name z_half_kpc
    p_a1, p_a2, p_a3, l2, l3, high = momentum_coefficients(p, dpp, dpdt, loss_scheme)
    r_int = np.ones(n_r, dtype=bool)
    r_int[-1] = False
    res_loss = {} if high is None else dict(zip(("res_loss_a2", "res_loss_a3", "res_loss_a4"), high, strict=True))
    return TransportOperator(r_a1, r_a2, r_a3, z_a1, z_a2, z_a3, p_a1, p_a2, p_a3, l2, l3, gamma,
                             r_interior=r_int, z_interior=z_int, **res_loss)
