"""The Galaxy a batch of models is propagated in: everything except the Table 1 parameters.

`GalaxySetup` holds the grid recipe, the nuclear network, source abundances and distribution, the
interstellar gas options, cross-section choices, normalisation and time ladder — read from a GALPROP
galdef (:meth:`GalaxySetup.from_galdef`) or the paper's galdef shipped with the package
(:meth:`GalaxySetup.paper`). `SpeciesTables` caches what does not depend on the parameters
(kinematics, loss and fragmentation maps, production cross sections) for one grid.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from importlib import resources
from pathlib import Path

import numpy as np

from crprop.constants import C_CM_S, MB_CM2, YEAR_S
from crprop.discretization import check_loss_scheme
from crprop.galprop.galdef import TOTAL_CROSS_SECTION_MODELS, Galdef, read_galdef, symmetric_halo_kpc
from crprop.galprop.galdef_keys import default_network_iter_compl
from crprop.grid import Grid, check_energy_factor, check_positive, check_stretch_factor, check_stretched_halo
from crprop.nuclear.inelastic import loss_cross_sections
from crprop.nuclear.pp_fusion import pp_fusion_kernel
from crprop.nuclear.production import production_table
from crprop.nuclear.species import Network, build_network, fusion_link
from crprop.physics.gas import GasMaps, check_gas_z_step, gas_maps
from crprop.physics.kinematics import Kinematics, nucleus_kinematics
from crprop.physics.losses import loss_coefficients, momentum_loss_rate
from crprop.physics.source import source_distribution_from_parameters
from crprop.solvers.galprop_cn import TimeLadder

TABLE_CACHE_GRIDS = 8
"""Spatial tables (gas, loss and fragmentation maps) kept per setup: 28 MB for the paper grid (40 z nodes), 143 MB
at z_h = 20 kpc (202 nodes). propagate's halo groups solve one grid per group (2048 chains spread over 2-15 kpc:
6 groups), and rebuilding a grid's tables costs 0.1 s, so the cache holds more grids than one batch needs."""

PAPER_GALDEF = "galdef_54_crml"
"""The CR-ML galdef (Tsai et al. 2022), shipped in crprop/data/galdef (see crprop/data/PROVENANCE.md)."""



@dataclass(frozen=True, eq=False)
class GalaxySetup:
    """Non-parameter inputs of a propagation run (see module docstring). Units in field names.

    loss_scheme: the momentum-loss stencil, 'upwind1' (GALPROP's, the default) or crnet's second-order
    'upwind2' (crprop.discretization.LOSS_SCHEMES; modes 'fast' and 'exact')."""

    r_max_kpc: float
    dr_kpc: float
    dz_kpc: float
    z_min_kpc: float
    ekin_min_mev_per_n: float
    ekin_max_mev_per_n: float
    ekin_factor: float
    network: Network
    abundances: dict[tuple[int, int], float]
    source_parameters: tuple[float, ...]
    he_h_ratio: float = 0.11
    x_co: float = 1.9e20
    inelastic_model: str = "barashenkov_polanski"
    production_model: str = "galprop12"
    injection_form: str = "galprop"
    proton_norm_ekin_mev: float = 1.0e5
    proton_norm_flux_cgs: float = 4.45e-9
    network_iterations: int = 1
    network_iter_compl: int | None = None
    network_iter_sec: int | None = None
    ladder: TimeLadder = field(default_factory=TimeLadder)
    fragmentation: bool = True
    momentum_losses: bool = True
    radioactive_decay: bool = True
    k_capture: bool = True
    z_uniform_half_kpc: float | None = None
    z_stretch_factor: float = 1.15
    dz_max_kpc: float = 1.0
    loss_scheme: str = "upwind1"
    _cache: dict = field(default_factory=dict, init=False, compare=False, repr=False, hash=False)
    """Tables built from this setup's physics fields (:meth:`tables`). Not an init field, so a setup made by
    :meth:`with_changes` (``dataclasses.replace``) starts with an empty cache instead of sharing this one: the
    cache keys hold only the grids, and a changed physics field (losses, fragmentation, cross sections, gas, ...)
    must never be served the old tables."""

    def network_passes(self) -> tuple[int, int]:
        """(passes, complete passes) over the network, as GALPROP v54's propagate_particles: max(network_iterations,
        network_iter_compl, network_iter_sec) passes, of which only the last ``network_iter_compl`` propagate every
        species; the earlier ones propagate 1H alone (for which they change nothing, but the first complete pass
        then has the protons' p + p -> d pi+ source for 2H even in GALPROP's 2H-before-1H order). None means
        GALPROP's own default for an unset galdef key: network_iter_compl = min(network_iterations, 2)
        (:func:`crprop.galprop.galdef_keys.default_network_iter_compl`; until session 16 None meant "every pass
        complete", which differed from GALPROP from 3 iterations on) and network_iter_sec adds no pass."""
        compl = (default_network_iter_compl(self.network_iterations) if self.network_iter_compl is None
                 else self.network_iter_compl)
        passes = max(1, self.network_iterations, compl, self.network_iter_sec or 0)
        return passes, min(compl, passes)

    def __post_init__(self) -> None:
        if self.network_iter_compl is not None and self.network_iter_compl < 1:
            raise ValueError(f"GalaxySetup.network_iter_compl must be >= 1 (complete passes; 0 would never propagate "
                             f"a nucleus), got {self.network_iter_compl}")
        for name in ("r_max_kpc", "dr_kpc", "dz_kpc", "ekin_min_mev_per_n", "ekin_max_mev_per_n"):
            check_positive(name, getattr(self, name))  # here, not as a ZeroDivisionError inside grid() (walk-through)
        check_gas_z_step("dz_kpc", self.dz_kpc)
        check_energy_factor(self.ekin_factor)
        check_loss_scheme(self.loss_scheme)

    # ------------------------------------------------------------------ construction
    @classmethod
    def from_galdef(cls, galdef: Galdef | str | Path, order: str | None = None) -> GalaxySetup:
        """Setup with GALPROP's semantics for this galdef.

        The solve order is GALPROP v54's single heavy-to-light pass (``order="galprop_v54"``) unless
        ``order`` says otherwise: with ``network_iterations = 1`` 10B is then solved before 10Be and
        misses its decay feed, exactly as GALPROP does; ``network_iter_compl = 2`` repeats the pass with every
        source known (:meth:`network_passes`: passes beyond network_iter_compl propagate only 1H, as in GALPROP).
        """
        g = galdef if isinstance(galdef, Galdef) else read_galdef(galdef)
        symmetric_halo_kpc(g)
        network = build_network(
            max_z=int(g["max_Z"]), use_z=g.elements(), t_half_limit_yr=float(g["t_half_limit"]),
            k_capture=bool(g["K_capture"]), order=order or "galprop_v54",
        )
        return cls(
            r_max_kpc=float(g["r_max"]), dr_kpc=float(g["dr"]), dz_kpc=float(g["dz"]),
            z_min_kpc=float(g["z_min"]),
            ekin_min_mev_per_n=float(g["Ekin_min"]), ekin_max_mev_per_n=float(g["Ekin_max"]),
            ekin_factor=float(g["Ekin_factor"]),
            network=network,
            abundances=dict(g.isotopic_abundances()),
            source_parameters=tuple(g.source_parameters()),
            he_h_ratio=float(g["He_H_ratio"]), x_co=float(g["X_CO"]),
            inelastic_model=TOTAL_CROSS_SECTION_MODELS[int(g["total_cross_section"])],
            proton_norm_ekin_mev=float(g["proton_norm_Ekin"]),
            proton_norm_flux_cgs=float(g["proton_norm_flux"]),
            network_iterations=int(g["network_iterations"]),
            network_iter_compl=int(g["network_iter_compl"]), network_iter_sec=int(g["network_iter_sec"]),
            ladder=TimeLadder(float(g["start_timestep"]), float(g["timestep_factor"]),
                              int(g["timestep_repeat"]), float(g["end_timestep"])),
            fragmentation=bool(g["fragmentation"]), momentum_losses=bool(g["momentum_losses"]),
            radioactive_decay=bool(g["radioactive_decay"]), k_capture=bool(g["K_capture"]),
        )

    @classmethod
    def paper(cls, order: str = "parents_first") -> GalaxySetup:
        """The paper's setup (CR-ML galdef), by default with parents solved before daughters."""
        return cls.from_galdef(paper_galdef_path(), order=order)

    def with_changes(self, **changes) -> GalaxySetup:
        """A copy with the given fields changed; its tables are built anew (no cache is shared)."""
        return replace(self, **changes)

    def with_half_lives(self, half_lives_yr: Mapping[str, float]) -> GalaxySetup:
        """A copy whose network uses other half-lives (years) for the named beta emitters, e.g.
        ``setup.with_half_lives(MEASURED_HALF_LIVES_YR)`` (crprop.nuclear.decay) for the laboratory 10Be
        half-life instead of GALPROP's 1.60 Myr (crprop.nuclear.species.Network.with_half_lives)."""
        return self.with_changes(network=self.network.with_half_lives(half_lives_yr))

    # ------------------------------------------------------------------ grids
    @property
    def z_halo_kpc(self) -> float:
        """Halo half-height of the galdef grid, kpc."""
        return -self.z_min_kpc

    def grid(self, z_halo_max_kpc: float | None = None) -> Grid:
        """Grid whose z nodes (on the galdef's lattice, spacing dz) reach the largest halo asked for.

        With ``None`` this is the galdef grid itself (on a stretched lattice: the lattice up to the first node
        at or beyond the galdef's z_h, whose boundary then falls between nodes). Otherwise the galdef's z
        lattice is extended or cut at the first node at or beyond ``z_halo_max_kpc``; models with a smaller
        halo get their boundary inside the grid (crprop.discretization.vertical_coefficients).

        Stretched halo (crnet's option, off by default): with ``z_uniform_half_kpc`` set, the lattice keeps the
        galdef's step dz up to |z| = z_uniform_half_kpc and then widens each step by ``z_stretch_factor`` up to
        ``dz_max_kpc`` (kpc). The disc, where the gas, the sources and the Sun are, is then gridded exactly as
        GALPROP grids it, while the source-free outer halo, where psi falls smoothly to zero, costs far fewer
        nodes (z_h = 18 kpc: 60 nodes instead of 182 with 1.5 kpc / 1.15 / 1 kpc). Every lattice is fixed per
        setup, so a smaller halo's grid stays a centred subset of a larger one (halo groups, warm starts).
        """
        dz = self.dz_kpc
        top = self.z_halo_kpc if z_halo_max_kpc is None else float(z_halo_max_kpc)
        if not (np.isfinite(top) and top > 0):
            raise ValueError(f"z_halo_max_kpc must be > 0 kpc, got {z_halo_max_kpc}")
        # A symmetric uniform lattice has a node at z = 0 or nodes at +-dz/2: take the one the galdef's own
        # grid (-z_h .. z_h in steps of dz) is on; if it is on neither, nodes at +-dz/2 (halo between nodes).
        frac = (self.z_halo_kpc / dz) % 1.0
        offset = 0.0 if min(frac, 1.0 - frac) < 0.25 else 0.5 * dz
        z_pos = self._z_lattice(offset, top)
        z = np.concatenate([-z_pos[::-1], z_pos[1:] if offset == 0.0 else z_pos])
        e_grid = Grid.regular(self.r_max_kpc, self.dr_kpc, 1.0, 1.0, self.ekin_min_mev_per_n,
                              self.ekin_max_mev_per_n, self.ekin_factor)
        return Grid(e_grid.r_kpc, np.round(z, 12), e_grid.ekin_mev_per_n)

    def _z_lattice(self, offset: float, top: float) -> np.ndarray:
        """Non-negative z nodes (kpc) from ``offset`` up to the first node at or beyond ``top``."""
        dz = self.dz_kpc
        if self.z_uniform_half_kpc is None:
            n_top = max(int(np.ceil((top - offset) / dz - 1e-6)), 1)
            return offset + dz * np.arange(n_top + 1)
        z_u, fac, dz_max = float(self.z_uniform_half_kpc), float(self.z_stretch_factor), float(self.dz_max_kpc)
        check_stretched_halo(z_u, dz_max, dz)
        check_stretch_factor(fac)
        nodes = [offset]
        step = dz
        while nodes[-1] < top - 1e-6 * dz:
            if nodes[-1] + 1e-6 * dz >= z_u:
                step = min(step * fac, dz_max)
            nodes.append(nodes[-1] + step)
        if len(nodes) < 2:
            nodes.append(offset + dz)
        return np.array(nodes)

    def tables(self, grid: Grid) -> SpeciesTables:
        """Parameter-independent tables on ``grid``, cached on this setup: the energy-grid part once
        (cross sections are the slow part), the spatial maps for the last TABLE_CACHE_GRIDS grids."""
        e_key = ("energy", grid.ekin_mev_per_n.tobytes())
        if e_key not in self._cache:
            self._cache[e_key] = energy_tables(self, grid.ekin_mev_per_n)
        key = ("grid", hash(grid))
        if key in self._cache:
            self._cache[key] = self._cache.pop(key)  # most recently used last
        else:
            grids = [k for k in self._cache if k[0] == "grid"]
            for old in grids[: max(0, len(grids) - TABLE_CACHE_GRIDS + 1)]:
                del self._cache[old]
            self._cache[key] = SpeciesTables(self, grid, self._cache[e_key])
        return self._cache[key]


def paper_galdef_path() -> Path:
    """Path of the packaged CR-ML galdef."""
    return Path(str(resources.files("crprop") / "data" / "galdef" / PAPER_GALDEF))


@dataclass
class SpeciesTable:
    """Parameter-independent arrays of one species on one grid."""

    z: int
    a: int
    kin: Kinematics
    dpdt_mev_s: np.ndarray  # (n_r, n_z, n_E) momentum-loss rate, MeV/c per s
    gamma_s: np.ndarray  # (n_r, n_z, n_E) fragmentation + decay rate, s^-1
    abundance: float


@dataclass
class Production:
    """Secondary production into one daughter, separable in space and energy.

    Spallation: Q_d += n_H_target(r, z) * Sum_p gas_rates[p](E) psi_p  (gas_rates in cm^3 s^-1);
    decay:      Q_d += Sum_p decay_rates[p](E) psi_p                   (s^-1, uniform in space);
    fusion:     Q_d += n_H_target(r, z) * Sum_j fusion_kernel[E, j] psi_p(E_j)  (2H from p + p -> d pi+,
                the only term that couples energies; crprop.nuclear.pp_fusion).
    """

    gas_parents: list[int] = field(default_factory=list)
    gas_rates: list[np.ndarray] = field(default_factory=list)
    decay_parents: list[int] = field(default_factory=list)
    decay_rates: list[np.ndarray] = field(default_factory=list)
    fusion_parent: int | None = None
    fusion_kernel: np.ndarray | None = None  # (n_E, n_E) cm^3 s^-1

    @property
    def parents(self) -> list[int]:
        return self.gas_parents + self.decay_parents + ([] if self.fusion_parent is None else [self.fusion_parent])


@dataclass
class EnergyTables:
    """Per species, what depends on the energy grid only (computed once per setup and energy grid)."""

    kin: list[Kinematics]
    loss_coeffs: list
    frag_per_n_h: list[np.ndarray]  # (n_E,) s^-1 per cm^-3
    decay_rate: list[np.ndarray]  # (n_E,) s^-1
    production: list[Production]


def energy_tables(setup: GalaxySetup, ekin_mev_per_n: np.ndarray) -> EnergyTables:
    """Kinematics, loss coefficients, fragmentation and production cross sections on an energy grid."""
    net = setup.network
    e = np.asarray(ekin_mev_per_n, dtype=np.float64)
    kins, coeffs, frags, decays = [], [], [], []
    for s in net.species:
        kin = nucleus_kinematics(s.z, s.a, e)
        kins.append(kin)
        coeffs.append(loss_coefficients(kin, he_h_ratio=setup.he_h_ratio) if setup.momentum_losses else None)
        frag = np.zeros_like(e)
        if setup.fragmentation:
            sig_h, sig_he = loss_cross_sections(s.z, s.a, e, model=setup.inelastic_model,
                                                kcapture=setup.k_capture and s.isotope.kcapture,
                                                k_electron=s.k_electron)
            frag = kin.beta * C_CM_S * (sig_h + setup.he_h_ratio * sig_he) * MB_CM2
        frags.append(frag)
        decay = np.zeros_like(e)
        if setup.radioactive_decay and s.t_half_yr > 0:
            decay = np.log(2.0) / (kin.gamma * s.t_half_yr * YEAR_S)
        decays.append(decay)
    production = [Production() for _ in net.species]
    if setup.fragmentation:
        table = production_table(net, e, model=setup.production_model, he_h_ratio=setup.he_h_ratio,
                                 k_capture=setup.k_capture)
        for p, d, sig in zip(table.parent, table.daughter, table.sigma_eff_mb, strict=True):
            production[d].gas_parents.append(int(p))
            production[d].gas_rates.append(sig * MB_CM2 * kins[p].beta * C_CM_S)
        fusion = fusion_link(net.species)
        if fusion is not None:  # GALPROP's deuterium fusion source
            production[fusion[1]].fusion_parent = fusion[0]
            production[fusion[1]].fusion_kernel = pp_fusion_kernel(e)
    if setup.radioactive_decay:
        for dec in net.decays:
            production[dec.daughter].decay_parents.append(dec.parent)
            production[dec.daughter].decay_rates.append(dec.branching * decays[dec.parent])
    return EnergyTables(kins, coeffs, frags, decays, production)


class SpeciesTables:
    """All parameter-independent tables of a setup on a grid: energy tables plus the spatial maps."""

    def __init__(self, setup: GalaxySetup, grid: Grid, etables: EnergyTables) -> None:
        self.setup = setup
        self.grid = grid
        self.gas: GasMaps = gas_maps(grid.r_kpc, grid.z_kpc, grid.dz_kpc, setup.x_co, he_h_ratio=setup.he_h_ratio,
                                     cell_bounds_kpc=None if grid.z_uniform else grid.z_cell_bounds_kpc)
        self.source_spatial = source_distribution_from_parameters(grid.r_kpc, grid.z_kpc, setup.source_parameters)
        n_h = self.gas.n_H_target[..., None]
        self.species: list[SpeciesTable] = []
        for i, s in enumerate(setup.network.species):
            if etables.loss_coeffs[i] is not None:
                dpdt = momentum_loss_rate(etables.loss_coeffs[i], self.gas.n_H_neutral, self.gas.n_HII)
            else:
                dpdt = np.zeros(grid.shape)
            gamma = n_h * etables.frag_per_n_h[i][None, None] + etables.decay_rate[i][None, None]
            abundance = float(setup.abundances.get((s.z, s.a), 0.0)) if s.k_electron == 0 else 0.0
            self.species.append(SpeciesTable(s.z, s.a, etables.kin[i], dpdt, gamma, abundance))
        self.production = etables.production
        self._device: dict[str, tuple] = {}

    def device_arrays(self, xp) -> tuple:
        """(n_H_target (n_r, n_z, 1, 1), gas rates, decay rates) as arrays of module ``xp`` (cached)."""
        key = xp.__name__
        if key not in self._device:
            self._device[key] = (
                xp.asarray(self.gas.n_H_target[:, :, None, None]),
                [[xp.asarray(r[:, None]) for r in p.gas_rates] for p in self.production],
                [[xp.asarray(r[:, None]) for r in p.decay_rates] for p in self.production],
                [None if p.fusion_kernel is None else xp.asarray(p.fusion_kernel) for p in self.production],
            )
        return self._device[key]

    def secondary_source(self, s_idx: int, psi: dict, xp) -> object | None:
        """Q of species s_idx from the parents already in ``psi`` (None when there is none)."""
        n_h, gas_rates, decay_rates, fusion_kernels = self.device_arrays(xp)
        prod = self.production[s_idx]
        gas = None
        for parent, rate in zip(prod.gas_parents, gas_rates[s_idx], strict=True):
            if parent in psi:
                term = rate * psi[parent]  # (n_E, 1) * (n_r, n_z, n_E, B)
                gas = term if gas is None else gas + term
        if prod.fusion_parent is not None and prod.fusion_parent in psi:
            term = xp.einsum("kj,rzjb->rzkb", fusion_kernels[s_idx], psi[prod.fusion_parent])
            gas = term if gas is None else gas + term
        q = None if gas is None else n_h * gas
        for parent, rate in zip(prod.decay_parents, decay_rates[s_idx], strict=True):
            if parent in psi:
                term = rate * psi[parent]
                q = term if q is None else q + term
        return q
