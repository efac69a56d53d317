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

from crprop.backends import array_module, get_backend
from crprop.constants import FLUX_CGS_MEV_TO_SI_GEV, R_SUN_KPC, Z_SUN_KPC
from crprop.discretization import build_operator
from crprop.galaxy import GalaxySetup
from crprop.grid import Grid
from crprop.params import PropagationParams
from crprop.physics.diffusion import diffusion_coefficient_pp, diffusion_coefficient_xx
from crprop.physics.injection import q_primary
from crprop.solvers import DEFAULT_MAX_STEPS, DEFAULT_TOL, NonConvergenceWarning, solve_species
from crprop.spectra import Spectra, concatenate_spectra

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
    """GALPROP's proton normalisation point: r weights at 8.5 kpc, z node int(-z_min/dz + 1e-6) (on any
    symmetric grid: the last node at or below z = 0), and the log-log energy interpolation (lower index,
    upper index, weight of the upper)."""
    if grid.z_uniform:
        iz = int(-grid.z_kpc[0] / grid.dz_kpc + 1e-6)
    else:
        iz = int(np.searchsorted(grid.z_kpc, 1e-6 * grid.dz_kpc, side="right") - 1)
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
    backend_options: dict | None = None,
    max_batch: int | None = None,
    z_extent_kpc: float | None = None,
    group_halos: bool = True,
):
    """Propagate B models; returns Spectra (and the dict species index -> psi if ``return_psi``).

    params : one or a list of PropagationParams (Table 1; validated against the prior box unless
    ``check_prior=False``). mode/backend/tol/max_steps: see crprop.solvers.solve_species.
    psi0 : warm start per species index (e.g. the previous MCMC state), arrays (n_r, n_z, n_E, B).
    Fluxes in the returned Spectra are at the Sun (r = 8.5 kpc, z = 0), m^-2 s^-1 sr^-1 (GeV/n)^-1.
    backend_options : options of a device backend (cupy: precision="float32", ...). On the GPU the
    whole network stays on the device: sources are accumulated there, psi is kept there (returned as
    CuPy arrays with ``return_psi``), and only the solar spectra are copied back.
    max_batch : models per solver call; a larger batch is propagated in consecutive chunks and the results
    concatenated. None: no limit on the CPU; on the GPU, as many as fit in the free device memory
    (:func:`device_batch_limit`), so e.g. 8192 models run as 3 chunks on an 80 GB H100.
    z_extent_kpc : halo height (kpc) the batch grid is built for; default the batch's largest z_h. It must be
    at least that; chunks of a split batch all use the whole batch's grid, so psi0 and return_psi agree.
    group_halos : solve models of similar halo height together (:func:`halo_groups`): a batch is otherwise solved
    on the z grid of its largest z_h, and an MCMC batch whose chains span z_h = 3-15 kpc pays for 15 kpc in every
    model. psi0 and the returned psi stay on the whole batch's grid (a group's grid is a centred subset; the rows
    outside a group's grid are zero, as the Dirichlet boundary makes them). Results equal the ungrouped solve up
    to the solver tolerance (every model stops at its own converged step, crprop.solvers.douglas.iterate).
    """
    plist = [p.validate(check_prior=check_prior) for p in _as_param_list(params)]
    arr = {name: np.array([getattr(p, name) for p in plist]) for name in plist[0].to_dict()}
    z_halo = arr["z_halo_kpc"]
    if z_extent_kpc is None:
        z_extent_kpc = float(z_halo.max())
    elif not z_extent_kpc >= z_halo.max():
        raise ValueError(f"z_extent_kpc = {z_extent_kpc} kpc must be >= the batch's largest z_halo_kpc "
                         f"({z_halo.max()} kpc)")
    grid = batch_grid(setup, z_extent_kpc)
    net = setup.network
    if psi0 is not None:  # a warm start under another key was ignored silently (review by helper-95, session 22)
        unknown = [k for k in psi0 if not (isinstance(k, int | np.integer) and 0 <= k < len(net.species))]
        if unknown:
            raise ValueError(f"psi0 keys must be species indices 0..{len(net.species) - 1} of the setup's network, "
                             f"got {unknown[:5]!r}")
    be = get_backend(backend)
    n_models = len(plist)
    if max_batch is not None and max_batch < 1:
        raise ValueError(f"max_batch must be >= 1 models, got {max_batch}")
    if group_halos and n_models > 1:
        groups = halo_groups(setup, z_halo, HALO_GROUP_MIN_MODELS.get(be.name, 1))
        if len(groups) > 1:
            return _propagate_groups(setup, plist, groups, grid, mode, backend, tol, max_steps, return_psi, psi0,
                                     backend_options, max_batch)
    limit = max_batch or (device_batch_limit(grid.shape, len(net.species)) if be.name == "cupy" else n_models)
    if n_models > limit:
        n_chunks = -(-n_models // limit)
        bounds = np.linspace(0, n_models, n_chunks + 1).round().astype(int)
        parts, psis = [], []
        for lo, hi in zip(bounds[:-1], bounds[1:], strict=True):
            start = None if psi0 is None else {k: v[..., lo:hi] for k, v in psi0.items()}
            out = propagate(setup, plist[lo:hi], mode, backend, tol, max_steps, False, return_psi, start,
                            backend_options, max_batch=hi - lo, z_extent_kpc=z_extent_kpc, group_halos=False)
            parts.append(out[0] if return_psi else out)
            if return_psi:
                psis.append({k: _host(v) for k, v in out[1].items()})
        spectra = concatenate_spectra(parts)
        if return_psi:
            return spectra, {k: np.concatenate([p[k] for p in psis], axis=-1) for k in psis[0]}
        return spectra
    tables = setup.tables(grid)
    opts = dict(backend_options or {})
    if be.name == "cupy":
        import cupy as xp

        opts.setdefault("keep_on_device", True)
    else:
        xp = np
    psi: dict[int, np.ndarray] = {}
    converged = np.ones(n_models, dtype=bool)
    residual = np.zeros(n_models)
    steps: dict[int, int] = {}
    src_space = xp.asarray(tables.source_spatial[:, :, None, None])
    n_pass, n_complete = setup.network_passes()
    sun = grid.sun_weights(R_SUN_KPC, Z_SUN_KPC)
    r_w, iz, k_norm, t_norm = normalisation_point(grid, setup.proton_norm_ekin_mev)
    at_sun: dict[int, np.ndarray] = {}
    norm_lo_hi = None
    blocks = _feedback_blocks(tables, net) if net.order == "parents_first" else {}
    last_use = _last_use(tables, net.solve_order, blocks) if (n_pass == 1 and not return_psi) else {}
    backend_used = be.name
    in_block = {int(s) for end, start in blocks.items() for s in net.solve_order[start: end + 1]}
    kept: dict[int, tuple] = {}  # a block species' operator and primary source, reused by every sweep

    def solve(s_idx: int) -> None:
        """Solve species ``s_idx`` with the sources of the species in ``psi`` (warm-started from its last psi)."""
        nonlocal converged, residual, norm_lo_hi, backend_used
        if s_idx in kept:
            op, q_prim = kept[s_idx]
        else:
            sp = tables.species[s_idx]
            dxx = diffusion_coefficient_xx(sp.kin.rigidity_mv, sp.kin.beta, arr["d0_1e28_cm2_s"] * 1e28,
                                           arr["delta"], arr["eta"], rigidity_break_mv=D_REFERENCE_RIGIDITY_MV)
            dpp = diffusion_coefficient_pp(sp.kin.p_mev, dxx, arr["v_alfven_km_s"], arr["delta"])
            op = build_operator(grid, sp.kin.p_mev, dxx, dpp, sp.dpdt_mev_s, sp.gamma_s, z_half_kpc=z_halo,
                                loss_scheme=setup.loss_scheme)
            q_prim = None
            if sp.abundance > 0:
                q_e = q_primary(sp.kin.rigidity_mv, sp.a, sp.z, sp.abundance, arr["nu1"], arr["nu2"], arr["nu3"],
                                arr["r_break1_mv"], arr["r_break2_mv"], form=setup.injection_form)
                q_prim = src_space * xp.asarray(q_e)[None, None]
            if s_idx in in_block:
                kept[s_idx] = op, q_prim
        q = xp.zeros(grid.shape + (n_models,))
        if q_prim is not None:
            q += q_prim
        # a block partner not solved yet in this call feeds from its warm start (fewer sweeps; helper-121)
        seeded = ({k: xp.asarray(v) for k, v in psi0.items() if k in in_block and k not in psi}
                  if in_block and psi0 else None)
        secondary = tables.secondary_source(s_idx, {**seeded, **psi} if seeded else psi, xp)
        if secondary is not None:
            q += secondary
        start = psi.get(s_idx) if s_idx in psi else (psi0 or {}).get(s_idx)
        res = solve_species(op, q, mode=mode, backend=backend, tol=tol, max_steps=max_steps,
                            ladder=setup.ladder, psi0=start, on_nonconverged="ignore",
                            backend_options=opts or None)
        del q
        psi[s_idx] = res.psi
        converged &= res.converged
        residual = np.maximum(residual, res.residual)
        steps[s_idx] = steps.get(s_idx, 0) + res.steps
        at_sun[s_idx] = _host(sum(w * res.psi[ir, jz] for ir, jz, w in sun))  # (n_E, B)
        if net.species[s_idx].z == 1 and net.species[s_idx].a == 1:
            norm_lo_hi = tuple(_host(sum(w * res.psi[ir, iz, kk] for ir, w in r_w)) for kk in (k_norm, k_norm + 1))
        backend_used = res.backend

    for iteration in range(n_pass):
        protons_only = n_pass - iteration > n_complete  # GALPROP: r_net_iter > network_iter_compl
        for pos, s_idx in enumerate(net.solve_order):
            s_idx = int(s_idx)
            if protons_only and (net.species[s_idx].z, net.species[s_idx].a) != (1, 1):
                continue
            solve(s_idx)
            if pos in blocks and not protons_only:  # a cycle closed: iterate its block (Gauss-Seidel) to tol
                change = _iterate_block([int(s) for s in net.solve_order[blocks[pos]: pos + 1]], solve, psi, xp,
                                        tol)
                converged &= change < tol
                residual = np.maximum(residual, change)
            for done in [i for i, last in last_use.items() if last == pos and i in psi]:
                del psi[done]  # no species solved later needs it: free (GPU) memory
    if norm_lo_hi is None:
        raise ValueError("the network has no 1H: GALPROP's normalisation needs protons (use_Z_1 = 1)")
    spectra = _spectra_at_sun(setup, grid, at_sun, norm_lo_hi, t_norm, converged, residual, mode, backend_used,
                              steps)
    if not converged.all():
        warnings.warn(f"{mode}: {int((~converged).sum())} of {n_models} models not converged "
                      f"(max residual {residual.max():.3g}, tol {tol:.1g}); see Spectra.converged/.residual",
                      NonConvergenceWarning, stacklevel=2)
    return (spectra, psi) if return_psi else spectra


Z_EXTENT_QUANTUM_KPC = 1.0
"""Batches whose largest halo differs from the galdef's get a z grid reaching the next multiple of this
(kpc): at most ~20 distinct grids over the prior, so the cached tables are reused across MCMC batches."""


DEVICE_MEMORY_FRACTION = 0.8
"""Share of the GPU's free memory (driver free + CuPy pool cache) that one propagate call plans to use."""
DEVICE_FIELDS_PER_MODEL = 8
"""float64 (n_r, n_z, n_E) fields per model besides the kept psi: solver workspace (psi, Q, residual, the
float32/64 correction and scaled source), the source being built and the secondary-source temporaries."""


def device_batch_limit(grid_shape: tuple[int, int, int], n_species: int, free_bytes: int | None = None) -> int:
    """Models per propagate call that fit on the GPU: every species' psi may be alive at once (a light daughter
    needs all heavier parents), plus DEVICE_FIELDS_PER_MODEL fields, all float64, within DEVICE_MEMORY_FRACTION of
    ``free_bytes`` (default: the current device's free memory plus what CuPy's pool holds unused)."""
    if free_bytes is None:
        import cupy

        free_bytes = cupy.cuda.Device().mem_info[0] + cupy.get_default_memory_pool().free_bytes()
    per_model = int(np.prod(grid_shape)) * 8 * (n_species + DEVICE_FIELDS_PER_MODEL)
    return max(1, int(DEVICE_MEMORY_FRACTION * free_bytes) // per_model)


HALO_GROUP_MIN_MODELS = {"cupy": 256, "numba": 8, "numpy": 1}
"""Smallest group :func:`halo_groups` forms per backend: the GPU needs a few hundred models per call to fill
the device (H100, full network: 49 models/s at B = 64, 77 at 512). numba's threads run over models: its cost per
model-species was 169 ms at B = 1 and 79.6 ms at B = 16 (12C, 2 cores, benchmarks/results/solver_speed_cpu.md);
8 is a middle value, not tuned (64 models spread over 2-12 kpc: 1.20x faster grouped, halo_groups_speed).
numpy pays a per-call overhead (one array operation per grid row in its line solves), so grouping wins only on
grids larger than the tests': 16 Sobol mocks, full network, 2 cores, groups of 1 vs one batch: 34.5 vs 16.4 s on
the CI grid (6, 33, 18), 180 vs 289 s on a dr 2 / dz 0.5 kpc / factor 1.5 grid (11, 81, 47); kept at 1 (the
reference backend is not tuned; numba is the CPU backend). Measured on the H100 with 512 posterior chain
states (z_h 1.3-18.1 kpc, benchmarks/results/pipeline_gpu_fit_h100.md): 256 (one group) 11.3 models/s,
64 (7 groups) 7.6, 32 (10 groups) 6.0; smaller GPU groups lose more to under-filled launches than they save
in cells."""


def halo_groups(setup: GalaxySetup, z_halo_kpc: np.ndarray, min_models: int = 1) -> list[np.ndarray]:
    """Model indices grouped by the z grid their halo needs (number of z nodes of :func:`batch_grid`), smallest
    grids first; a group with fewer than ``min_models`` is merged into the next larger one (the last one into its
    predecessor), so no group is smaller than that unless it is the only one."""
    z = np.asarray(z_halo_kpc, dtype=np.float64)
    # batch_grid's extents: the galdef's own grid, or the next multiple of Z_EXTENT_QUANTUM_KPC
    extent = np.where(np.abs(z - setup.z_halo_kpc) < 1e-9, setup.z_halo_kpc,
                      np.ceil(z / Z_EXTENT_QUANTUM_KPC - 1e-9) * Z_EXTENT_QUANTUM_KPC)
    uniq, inv = np.unique(extent, return_inverse=True)
    n_z = np.array([batch_grid(setup, float(u)).shape[1] for u in uniq])[inv]
    order = np.argsort(n_z, kind="stable")
    cuts = np.flatnonzero(np.diff(n_z[order])) + 1
    groups: list[np.ndarray] = []
    pending = np.empty(0, dtype=int)
    for part in np.split(order, cuts):
        pending = np.concatenate([pending, part])
        if pending.size >= min_models:
            groups.append(pending)
            pending = np.empty(0, dtype=int)
    if pending.size:
        if groups:
            groups[-1] = np.concatenate([groups[-1], pending])
        else:
            groups.append(pending)
    return groups


def _propagate_groups(setup, plist, groups, grid, mode, backend, tol, max_steps, return_psi, psi0, backend_options,
                      max_batch):
    """propagate() of each halo group on its own grid; Spectra (and psi on ``grid``) in the original model order."""
    parts, psi_out = [], {}
    for idx in groups:
        sub = [plist[i] for i in idx]
        g_grid = batch_grid(setup, max(p.z_halo_kpc for p in sub))
        off = _z_offset(grid, g_grid)
        rows = slice(off, off + g_grid.shape[1])
        start = None if psi0 is None else {k: v[:, rows][..., idx] for k, v in psi0.items()}
        out = propagate(setup, sub, mode, backend, tol, max_steps, False, return_psi, start, backend_options,
                        max_batch=max_batch, group_halos=False)
        if return_psi:
            out, psi_g = out
            for k, v in psi_g.items():
                if k not in psi_out:
                    xp = array_module(v)
                    psi_out[k] = xp.zeros(grid.shape + (len(plist),), dtype=v.dtype)
                psi_out[k][:, rows, :, idx] = v  # advanced index last: assigns per model
        parts.append(out)
    order = np.concatenate(groups)
    spectra = concatenate_spectra(parts).select(np.argsort(order))
    spectra.meta["halo_groups"] = [int(g.size) for g in groups]
    spectra.meta["grid_shape"] = grid.shape  # the batch's grid; each group ran on a centred subset of it
    return (spectra, psi_out) if return_psi else spectra


def _z_offset(grid: Grid, sub: Grid) -> int:
    """Row of ``grid`` where the centred subset ``sub`` (a smaller halo's grid) starts."""
    off = (grid.shape[1] - sub.shape[1]) // 2
    if off < 0 or not np.allclose(grid.z_kpc[off:off + sub.shape[1]], sub.z_kpc, atol=1e-9):
        raise RuntimeError("halo groups: a group's z nodes are not a centred subset of the batch grid")
    return off


def batch_grid(setup: GalaxySetup, z_halo_max_kpc: float) -> Grid:
    """The grid `propagate` uses for a batch whose largest halo is ``z_halo_max_kpc`` (kpc): the galdef's
    own grid when the halo matches it, else the galdef's z lattice up to the next multiple of
    Z_EXTENT_QUANTUM_KPC (a smaller batch grid is a centred subset of a larger one)."""
    if abs(z_halo_max_kpc - setup.z_halo_kpc) < 1e-9:
        return setup.grid()
    return setup.grid(float(np.ceil(z_halo_max_kpc / Z_EXTENT_QUANTUM_KPC - 1e-9) * Z_EXTENT_QUANTUM_KPC))


def _host(x) -> np.ndarray:
    """A numpy copy of a numpy or CuPy array."""
    return x.get() if hasattr(x, "get") else np.asarray(x)


NETWORK_BLOCK_MAX_SWEEPS = 40
"""Most Gauss-Seidel sweeps over a cycle of the network (:func:`_feedback_blocks`). The 26Al / 26Al* pair contracts
by about 0.35 per sweep at 1 MeV/n (helper-116, session 23), so 40 sweeps reach 1e-18: the cap only stops a block
that does not converge, whose models are then flagged not converged."""


def _feedback_blocks(tables, net) -> dict[int, int]:
    """{end: start} positions in ``net.solve_order`` of the blocks whose species feed each other: a parent solved
    after its daughter closes a cycle from the daughter's position to its own (in the parents_first order only the
    attach / strip pairs of a nucleus and its H-like ion, e.g. 26Al and 26Al*). Overlapping cycles are merged."""
    pos = {int(s): i for i, s in enumerate(net.solve_order)}
    spans = sorted((pos[d], pos[p]) for d, prod in enumerate(tables.production) for p in prod.parents
                   if pos[p] > pos[d])
    merged: list[list[int]] = []
    for lo, hi in spans:
        if merged and lo <= merged[-1][1]:
            merged[-1][1] = max(merged[-1][1], hi)
        else:
            merged.append([lo, hi])
    return {hi: lo for lo, hi in merged}


def _iterate_block(block: list[int], solve, psi: dict, xp, tol: float) -> np.ndarray:
    """Re-solve the species of ``block`` in order, each with its partners' latest psi, until no psi changes by
    ``tol`` or more of its largest value in a sweep (per model), at most :data:`NETWORK_BLOCK_MAX_SWEEPS` sweeps;
    returns that relative change of the last sweep, (B,). A change below tol bounds the distance to the block's
    fixed point by about tol, since the sweeps contract (by ~0.35 for 26Al / 26Al*)."""
    change = None
    for _ in range(NETWORK_BLOCK_MAX_SWEEPS):
        change = None
        for s_idx in block:
            old = psi[s_idx]
            solve(s_idx)
            new = psi[s_idx]
            scale = xp.max(xp.abs(new), axis=(0, 1, 2))
            rel = _host(xp.max(xp.abs(new - old), axis=(0, 1, 2)) / xp.where(scale > 0, scale, 1.0))
            change = rel if change is None else np.maximum(change, rel)
        if np.all(change < tol):
            break
    return change


def _last_use(tables, order, blocks: dict[int, int] | None = None) -> dict[int, int]:
    """Species index -> position in the solve order after which no later species needs its psi; a psi needed inside
    a block of :func:`_feedback_blocks` ({end: start}) is kept to the block's end, where the block is re-solved."""
    pos = {int(s): i for i, s in enumerate(order)}
    last = {int(s): pos[int(s)] for s in order}
    for d, prod in enumerate(tables.production):
        for parent in prod.parents:
            if pos[parent] < pos[d]:
                last[parent] = max(last[parent], pos[d])
    for end, start in (blocks or {}).items():
        for s, at in last.items():
            if start <= at < end:
                last[s] = end
    return last


def _spectra_at_sun(setup: GalaxySetup, grid: Grid, at_sun: dict[int, np.ndarray], norm_lo_hi: tuple,
                    t_norm: float, converged: np.ndarray, residual: np.ndarray, mode: str, backend: str,
                    steps: dict[int, int]) -> Spectra:
    """Normalise (GALPROP: 1H at proton_norm_Ekin, log-log in E) and convert to fluxes at the Sun.

    H-like ions (K-shell electron attached, e.g. 26Al*) are propagated but left out of the Spectra and of their
    element sums: crprop reports bare nuclei. At crml_base on the paper grid (Z <= 14 network, fast, numba; ratios of
    the at-Sun fluxes, measured in session 23 after helper-121's re-read corrected an earlier 6e-5): 26Al*/26Al <=
    2.85e-3 and 26Al*/Al <= 1.18e-4, both largest at 3 MeV/n; above 100 MeV/n <= 1.1e-4 and 1.2e-5."""
    net = setup.network
    lo, hi = norm_lo_hi
    vnorm = np.exp((1 - t_norm) * np.log(lo) + t_norm * np.log(hi))
    factor = setup.proton_norm_flux_cgs / vnorm  # (B,)
    keep = [i for i, s in enumerate(net.species) if s.k_electron == 0]
    flux = np.empty((factor.size, len(keep), grid.shape[2]))
    for out_i, s_idx in enumerate(keep):
        flux[:, out_i, :] = (net.species[s_idx].a * factor[None, :] * at_sun[s_idx]).T * FLUX_CGS_MEV_TO_SI_GEV
    meta = {"mode": mode, "backend": backend, "grid_shape": grid.shape, "normalisation_factor": factor,
            "steps_per_species": {net.species[i].name: n for i, n in steps.items()}}
    return Spectra(grid.ekin_mev_per_n / 1e3, net.z[keep], net.a[keep], flux, converged, residual, meta=meta)
