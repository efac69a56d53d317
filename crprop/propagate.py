"""Propagate a batch of models through the nuclear network: Params -> Spectra.

For every species in the setup's solve order: build the transport operator from the parameters
(D_xx, D_pp) and the parameter-independent tables (losses, fragmentation, decay), add the primary
source and the secondary sources of the species already solved, solve, and keep psi. Afterwards the
fluxes are normalised as GALPROP does (1H at ``proton_norm_Ekin`` to ``proton_norm_flux`` at the
normalisation node, one factor for all species) and read off at the Sun.
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence

import numpy as np

from crprop.constants import FLUX_CGS_MEV_TO_SI_GEV, R_SUN_KPC, Z_SUN_KPC
from crprop.discretization import build_operator
from crprop.galaxy import GalaxySetup
from crprop.grid import Grid
from crprop.params import PropagationParams
from crprop.physics.diffusion import diffusion_coefficient_pp, diffusion_coefficient_xx
from crprop.physics.injection import q_primary
from crprop.solvers import DEFAULT_MAX_STEPS, DEFAULT_TOL, NonConvergenceWarning, solve_species
from crprop.spectra import Spectra

D_REFERENCE_RIGIDITY_MV = 4.0e3
"""The paper's D0 is quoted at R = 4 GV (galdef D_rigid_br)."""


def _as_param_list(params: PropagationParams | Sequence[PropagationParams]) -> list[PropagationParams]:
    if isinstance(params, PropagationParams):
        return [params]
    out = list(params)
    if not out:
        raise ValueError("params: empty batch (no models to propagate)")
    for i, p in enumerate(out):
        if not isinstance(p, PropagationParams):
            raise ValueError(f"params[{i}] must be a PropagationParams, got {type(p).__name__}")
    return out


def normalisation_point(grid: Grid, ekin_mev: float) -> tuple[list[tuple[int, float]], int, int, float]:
    """GALPROP's proton normalisation point: r weights at 8.5 kpc, z node int(-z_min/dz + 1e-6),
    and the log-log energy interpolation (lower index, upper index, weight of the upper)."""
    iz = int(-grid.z_kpc[0] / grid.dz_kpc + 1e-6)
    r_w = {}
    for ir, _, w in grid.sun_weights(R_SUN_KPC, grid.z_kpc[iz]):
        r_w[ir] = r_w.get(ir, 0.0) + w
    e = grid.ekin_mev_per_n
    if not (e[0] <= ekin_mev <= e[-1]):
        raise ValueError(f"proton_norm_Ekin = {ekin_mev} MeV outside the energy grid [{e[0]}, {e[-1]}] MeV/n")
    k = min(int(np.searchsorted(e, ekin_mev, side="right") - 1), e.size - 2)
    t = np.log(ekin_mev / e[k]) / np.log(e[k + 1] / e[k])
    return list(r_w.items()), iz, k, float(t)


def propagate(
    setup: GalaxySetup,
    params: PropagationParams | Sequence[PropagationParams],
    mode: str = "fast",
    backend: str = "auto",
    tol: float = DEFAULT_TOL,
    max_steps: int = DEFAULT_MAX_STEPS,
    check_prior: bool = True,
    return_psi: bool = False,
    psi0: dict[int, np.ndarray] | None = None,
):
    """Propagate B models; returns Spectra (and the dict species index -> psi if ``return_psi``).

    params : one or a list of PropagationParams (Table 1; validated against the prior box unless
    ``check_prior=False``). mode/backend/tol/max_steps: see crprop.solvers.solve_species.
    psi0 : warm start per species index (e.g. the previous MCMC state), arrays (n_r, n_z, n_E, B).
    Fluxes in the returned Spectra are at the Sun (r = 8.5 kpc, z = 0), m^-2 s^-1 sr^-1 (GeV/n)^-1.
    """
    plist = [p.validate(check_prior=check_prior) for p in _as_param_list(params)]
    arr = {name: np.array([getattr(p, name) for p in plist]) for name in plist[0].to_dict()}
    z_halo = arr["z_halo_kpc"]
    grid = setup.grid(float(z_halo.max()))
    tables = setup.tables(grid)
    net = setup.network
    n_models = len(plist)
    psi: dict[int, np.ndarray] = {}
    converged = np.ones(n_models, dtype=bool)
    residual = np.zeros(n_models)
    steps: dict[int, int] = {}
    src_space = tables.source_spatial[:, :, None, None]
    for iteration in range(max(1, setup.network_iterations)):
        for s_idx in net.solve_order:
            s_idx = int(s_idx)
            sp = tables.species[s_idx]
            dxx = diffusion_coefficient_xx(sp.kin.rigidity_mv, sp.kin.beta, arr["d0_1e28_cm2_s"] * 1e28,
                                           arr["delta"], arr["eta"], rigidity_break_mv=D_REFERENCE_RIGIDITY_MV)
            dpp = diffusion_coefficient_pp(sp.kin.p_mev, dxx, arr["v_alfven_km_s"], arr["delta"])
            op = build_operator(grid, sp.kin.p_mev, dxx, dpp, sp.dpdt_mev_s, sp.gamma_s, z_half_kpc=z_halo)
            q = np.zeros(grid.shape + (n_models,))
            if sp.abundance > 0:
                q_e = q_primary(sp.kin.rigidity_mv, sp.a, sp.z, sp.abundance, arr["nu1"], arr["nu2"], arr["nu3"],
                                arr["r_break1_mv"], arr["r_break2_mv"], form=setup.injection_form)
                q += src_space * q_e[None, None]
            prod = tables.production[s_idx]
            for parent, rate in zip(prod.parents, prod.rates_s, strict=True):
                if parent in psi:
                    q += rate[..., None] * psi[parent]
            start = psi.get(s_idx) if iteration > 0 else (psi0 or {}).get(s_idx)
            res = solve_species(op, q, mode=mode, backend=backend, tol=tol, max_steps=max_steps,
                                ladder=setup.ladder, psi0=start, on_nonconverged="ignore")
            psi[s_idx] = res.psi
            converged &= res.converged
            residual = np.maximum(residual, res.residual)
            steps[s_idx] = steps.get(s_idx, 0) + res.steps
    spectra = _spectra_at_sun(setup, grid, psi, converged, residual, mode, res.backend, steps)
    if not converged.all():
        warnings.warn(f"{mode}: {int((~converged).sum())} of {n_models} models not converged "
                      f"(max residual {residual.max():.3g}, tol {tol:.1g}); see Spectra.converged/.residual",
                      NonConvergenceWarning, stacklevel=2)
    return (spectra, psi) if return_psi else spectra


def _spectra_at_sun(setup: GalaxySetup, grid: Grid, psi: dict[int, np.ndarray], converged: np.ndarray,
                    residual: np.ndarray, mode: str, backend: str, steps: dict[int, int]) -> Spectra:
    net = setup.network
    try:
        i_h = net.index(1, 1)
    except ValueError:
        raise ValueError("the network has no 1H: GALPROP's normalisation needs protons (use_Z_1 = 1)") from None
    r_w, iz, k, t = normalisation_point(grid, setup.proton_norm_ekin_mev)
    p_h = psi[i_h]
    lo = sum(w * p_h[ir, iz, k] for ir, w in r_w)
    hi = sum(w * p_h[ir, iz, k + 1] for ir, w in r_w)
    vnorm = np.exp((1 - t) * np.log(lo) + t * np.log(hi))
    factor = setup.proton_norm_flux_cgs / vnorm  # (B,)
    sun = grid.sun_weights(R_SUN_KPC, Z_SUN_KPC)
    keep = [i for i, s in enumerate(net.species) if s.k_electron == 0]
    flux = np.empty((factor.size, len(keep), grid.shape[2]))
    for out_i, s_idx in enumerate(keep):
        at_sun = sum(w * psi[s_idx][ir, jz] for ir, jz, w in sun)  # (n_E, B)
        flux[:, out_i, :] = (net.species[s_idx].a * factor[None, :] * at_sun).T * FLUX_CGS_MEV_TO_SI_GEV
    meta = {"mode": mode, "backend": backend, "grid_shape": grid.shape, "normalisation_factor": factor,
            "steps_per_species": {net.species[i].name: n for i, n in steps.items()}}
    return Spectra(grid.ekin_mev_per_n / 1e3, net.z[keep], net.a[keep], flux, converged, residual, meta=meta)
