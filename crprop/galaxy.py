"""The Galaxy a batch of models is propagated in: everything except the Table 1 parameters.

`GalaxySetup` holds the grid recipe, the nuclear network, source abundances and distribution, the
interstellar gas options, cross-section choices, normalisation and time ladder — read from a GALPROP
galdef (:meth:`GalaxySetup.from_galdef`) or the paper's galdef shipped with the package
(:meth:`GalaxySetup.paper`). `SpeciesTables` caches what does not depend on the parameters
(kinematics, loss and fragmentation maps, production cross sections) for one grid.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from importlib import resources
from pathlib import Path

import numpy as np

from crprop.constants import C_CM_S, MB_CM2, YEAR_S
from crprop.galprop.galdef import TOTAL_CROSS_SECTION_MODELS, Galdef, read_galdef
from crprop.grid import Grid
from crprop.nuclear.inelastic import loss_cross_sections
from crprop.nuclear.production import production_table
from crprop.nuclear.species import Network, build_network
from crprop.physics.gas import GasMaps, gas_maps
from crprop.physics.kinematics import Kinematics, nucleus_kinematics
from crprop.physics.losses import loss_coefficients, momentum_loss_rate
from crprop.physics.source import source_distribution_from_parameters
from crprop.solvers.galprop_cn import TimeLadder

PAPER_GALDEF = "galdef_54_crml"
"""The CR-ML galdef (Tsai et al. 2022), shipped in crprop/data/galdef (see crprop/data/PROVENANCE.md)."""



@dataclass(frozen=True, eq=False)
class GalaxySetup:
    """Non-parameter inputs of a propagation run (see module docstring). Units in field names."""

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
    ladder: TimeLadder = field(default_factory=TimeLadder)
    fragmentation: bool = True
    momentum_losses: bool = True
    radioactive_decay: bool = True
    k_capture: bool = True
    _cache: dict = field(default_factory=dict, compare=False, repr=False, hash=False)

    # ------------------------------------------------------------------ construction
    @classmethod
    def from_galdef(cls, galdef: Galdef | str | Path, order: str | None = None) -> GalaxySetup:
        """Setup with GALPROP's semantics for this galdef.

        The solve order is GALPROP v54's single heavy-to-light pass (``order="galprop_v54"``) unless
        ``order`` says otherwise: with ``network_iterations = 1`` 10B is then solved before 10Be and
        misses its decay feed, exactly as GALPROP does; ``= 2`` repeats the pass with every source known.
        """
        g = galdef if isinstance(galdef, Galdef) else read_galdef(galdef)
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
        return replace(self, **changes)

    # ------------------------------------------------------------------ grids
    @property
    def z_halo_kpc(self) -> float:
        """Halo half-height of the galdef grid, kpc."""
        return -self.z_min_kpc

    def grid(self, z_halo_max_kpc: float | None = None) -> Grid:
        """Grid whose z nodes (on the galdef's lattice, spacing dz) reach the largest halo asked for.

        With ``None`` this is the galdef grid itself. Otherwise the galdef's z lattice is extended or
        cut at the first node at or beyond ``z_halo_max_kpc``; models with a smaller halo get their
        boundary inside the grid (crprop.discretization.vertical_coefficients).
        """
        dz = self.dz_kpc
        top = self.z_halo_kpc if z_halo_max_kpc is None else float(z_halo_max_kpc)
        if not (np.isfinite(top) and top > 0):
            raise ValueError(f"z_halo_max_kpc must be > 0 kpc, got {z_halo_max_kpc}")
        offset = self.z_halo_kpc - dz * np.floor(self.z_halo_kpc / dz + 1e-9)  # lattice z = +-(offset + k dz)
        if offset < 1e-9 or offset > dz - 1e-9:
            offset = 0.0
        n_top = max(int(np.ceil((top - offset) / dz - 1e-6)), 1)
        z_pos = offset + dz * np.arange(n_top + 1)
        z = np.concatenate([-z_pos[::-1], z_pos[1:] if offset == 0.0 else z_pos])
        e_grid = Grid.regular(self.r_max_kpc, self.dr_kpc, 1.0, 1.0, self.ekin_min_mev_per_n,
                              self.ekin_max_mev_per_n, self.ekin_factor)
        return Grid(e_grid.r_kpc, np.round(z, 12), e_grid.ekin_mev_per_n)

    def tables(self, grid: Grid) -> SpeciesTables:
        """Parameter-independent tables on ``grid`` (cached on this setup)."""
        key = hash(grid)
        if key not in self._cache:
            self._cache.clear()  # one grid at a time: tables are ~30 MB for the paper network
            self._cache[key] = SpeciesTables(self, grid)
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
    """Secondary production into one daughter: rate per unit parent density, (n_r, n_z, n_E) maps."""

    parents: list[int]
    rates_s: list[np.ndarray]  # each (n_r, n_z, n_E): multiply psi_parent to get Q_daughter


class SpeciesTables:
    """All parameter-independent tables of a setup on a grid (cached per grid)."""

    def __init__(self, setup: GalaxySetup, grid: Grid) -> None:
        self.setup = setup
        self.grid = grid
        self.gas: GasMaps = gas_maps(grid.r_kpc, grid.z_kpc, grid.dz_kpc, setup.x_co, he_h_ratio=setup.he_h_ratio)
        self.source_spatial = source_distribution_from_parameters(grid.r_kpc, grid.z_kpc, setup.source_parameters)
        net = setup.network
        e = grid.ekin_mev_per_n
        self.species: list[SpeciesTable] = []
        for s in net.species:
            kin = nucleus_kinematics(s.z, s.a, e)
            if setup.momentum_losses:
                coeffs = loss_coefficients(kin, he_h_ratio=setup.he_h_ratio)
                dpdt = momentum_loss_rate(coeffs, self.gas.n_H_neutral, self.gas.n_HII)
            else:
                dpdt = np.zeros(grid.shape)
            gamma = np.zeros(grid.shape)
            if setup.fragmentation:
                sig_h, sig_he = loss_cross_sections(s.z, s.a, e, model=setup.inelastic_model,
                                                    kcapture=setup.k_capture and s.isotope.kcapture,
                                                    k_electron=s.k_electron)
                frag = kin.beta * C_CM_S * (sig_h + setup.he_h_ratio * sig_he) * MB_CM2
                gamma += self.gas.n_H_target[..., None] * frag[None, None]
            if setup.radioactive_decay and s.t_half_yr > 0:
                gamma += (np.log(2.0) / (kin.gamma * s.t_half_yr * YEAR_S))[None, None]
            abundance = float(setup.abundances.get((s.z, s.a), 0.0)) if s.k_electron == 0 else 0.0
            self.species.append(SpeciesTable(s.z, s.a, kin, dpdt, gamma, abundance))
        self.production: list[Production] = [Production([], []) for _ in net.species]
        self._build_production()
        self._device_rates: dict[str, list[list]] = {}

    def production_rates(self, xp) -> list[list]:
        """Per daughter, the production rate maps as arrays of module ``xp`` (numpy, or cupy: uploaded once)."""
        if xp is np:
            return [p.rates_s for p in self.production]
        key = xp.__name__
        if key not in self._device_rates:
            self._device_rates[key] = [[xp.asarray(r) for r in p.rates_s] for p in self.production]
        return self._device_rates[key]

    def _build_production(self) -> None:
        setup, grid, net = self.setup, self.grid, self.setup.network
        e = grid.ekin_mev_per_n
        n_h = self.gas.n_H_target[..., None]
        if setup.fragmentation:
            table = production_table(net, e, model=setup.production_model, he_h_ratio=setup.he_h_ratio,
                                     k_capture=setup.k_capture)
            for p, d, sig in zip(table.parent, table.daughter, table.sigma_eff_mb, strict=True):
                beta_p = self.species[p].kin.beta
                rate = n_h * (sig * MB_CM2 * beta_p * C_CM_S)[None, None]
                self.production[d].parents.append(int(p))
                self.production[d].rates_s.append(rate)
        if setup.radioactive_decay:
            for dec in net.decays:
                kin_p = self.species[dec.parent].kin
                rate = dec.branching * np.log(2.0) / (kin_p.gamma * dec.t_half_yr * YEAR_S)
                self.production[dec.daughter].parents.append(dec.parent)
                self.production[dec.daughter].rates_s.append(np.broadcast_to(rate[None, None], grid.shape))
