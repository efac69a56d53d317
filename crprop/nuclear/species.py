"""Isotope table and propagated nuclear network, as GALPROP v54 builds them (``create_gcr.cc``).

Candidates: for every charge Z <= ``max_z`` with ``use_z[Z]`` set, the mass numbers
2Z - 2 <= A < 2.5 Z + 4.2 for which GALPROP's decay network (:func:`crprop.nuclear.decay.nucdata`)
says the bare nucleus *and* the H-like ion are stable or long-lived. A candidate is propagated
unless its half-life is positive and shorter than ``t_half_limit_yr``; the H-like ion (K-shell
electron attached) is a separate species only when ``k_capture`` is on, its half-life differs from
the bare one and is not shorter than the limit (none for the usual 1e4 yr limit: 7Be* lives 0.29 yr).
Shorter-lived nuclei are "ghosts": they are folded into the production cross sections
(:mod:`crprop.nuclear.production`).

Species are indexed as GALPROP's ``gcr[]`` array: Z ascending, A ascending (K-electron state first
when present). Two solve orders are available:

* ``"parents_first"`` (default): A descending; at equal A every decay / K-capture parent before its
  daughter (e.g. 10Be before 10B, 7Be before 7Li); remaining ties by descending index; and 1H before 2H,
  which p + p -> d pi+ feeds from 1H (the network's one source that goes up in A; 1H has no parent in the
  network). One pass then has every source but one: the bare nucleus and its H-like ion, when both are
  propagated (26Al / 26Al* in the default Z <= 14 network; 7Be* or 22Na* below their half-lives' limits), feed
  each other by electron attachment and stripping, a cycle no order breaks. crprop.propagate iterates each such
  block to convergence in the pass (review by helper-116, session 23: one pass left 26Al 54 % low at 1 MeV/n on
  the tiny grid).
  So ``network_iterations = 2`` changes nothing;
* ``"galprop_v54"``: GALPROP v54's single pass in descending index order (24, 23, ..., 0 for the
  CR-ML network), in which 10B (index 7) is solved *before* 10Be (index 6) so the 10Be -> 10B decay
  source is zero in that pass.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, replace

import numpy as np

from crprop.constants import YEAR_S
from crprop.nuclear.decay import _follow_long_lived, nucdata

ELEMENT_NAMES: tuple[str, ...] = (
    "Hydrogen", "Helium", "Lithium", "Beryllium", "Boron", "Carbon", "Nitrogen", "Oxygen", "Fluorine",
    "Neon", "Sodium", "Magnesium", "Aluminium", "Silicon", "Phosphorus", "Sulphur", "Chlorine", "Argon",
    "Potassium", "Calcium", "Scandium", "Titanium", "Vanadium", "Chromium", "Manganese", "Iron", "Cobalt",
    "Nickel", "Copper", "Zinc",
)
"""Element names used in GALPROP species names (``create_gcr.cc``), index Z - 1."""

ELEMENT_SYMBOLS: tuple[str, ...] = (
    "H", "He", "Li", "Be", "B", "C", "N", "O", "F", "Ne", "Na", "Mg", "Al", "Si", "P", "S", "Cl", "Ar",
    "K", "Ca", "Sc", "Ti", "V", "Cr", "Mn", "Fe", "Co", "Ni", "Cu", "Zn",
)

MAX_Z_NUCDATA = 28
"""Heaviest charge of GALPROP's decay network (Ni; A <= 64)."""

SOLVE_ORDERS = ("parents_first", "galprop_v54")
"""Allowed values of ``build_network(order=...)``."""

CRML_USE_Z: tuple[int, ...] = (1, 3, 4, 5, 6, 7, 8, 10, 12, 14)
"""Charges switched on (``use_Z_*``) in the CR-ML galdef (``galdef_54_crml_base``), max_Z = 14."""


@dataclass(frozen=True)
class Isotope:
    """A stable or long-lived nucleus of GALPROP's decay network.

    ``t_half_yr``: half-life of the bare nucleus in years (0 = stable);
    ``t_half_k_yr``: half-life with one K-shell electron attached (years; equals ``t_half_yr`` when
    electron capture plays no role); ``decays_to``: (Z, A) of the long-lived decay product of the bare
    nucleus, ``decays_to_k`` that of the H-like ion (None when stable); ``branching``: branching
    ratio of those decays (GALPROP: 1).
    """

    z: int
    a: int
    t_half_yr: float
    t_half_k_yr: float
    decays_to: tuple[int, int] | None
    decays_to_k: tuple[int, int] | None
    branching: float = 1.0

    @property
    def kcapture(self) -> bool:
        """GALPROP's K-capture flag: the H-like ion decays differently (electron capture, e.g. 7Be)."""
        return self.t_half_yr != self.t_half_k_yr

    @property
    def name(self) -> str:
        """GALPROP species name, e.g. ``Beryllium_10``."""
        return f"{ELEMENT_NAMES[self.z - 1]}_{self.a}"

    @property
    def symbol(self) -> str:
        """Short name, e.g. ``10Be``."""
        return f"{self.a}{ELEMENT_SYMBOLS[self.z - 1]}"

    @property
    def decay_mode(self) -> str:
        """'stable', 'beta-', '2beta-', 'beta+' or '2beta+' for the bare nucleus."""
        return _mode(self.z, self.decays_to, ec=False) if self.t_half_yr > 0 else "stable"

    @property
    def decay_mode_k(self) -> str:
        """Decay mode of the H-like ion: 'EC' (electron capture) when it differs from the bare one."""
        if self.t_half_k_yr <= 0:
            return "stable"
        return _mode(self.z, self.decays_to_k, ec=self.kcapture and self.decays_to_k is not None)


def _mode(z: int, daughter: tuple[int, int] | None, ec: bool) -> str:
    if daughter is None:
        return "stable"
    dz = daughter[0] - z
    if dz < 0 and ec:
        return "EC"
    if dz > 0:
        return "beta-" if dz == 1 else f"{dz}beta-"
    return "beta+" if dz == -1 else f"{-dz}beta+"


def _long_lived_daughter(z: int, a: int, k_electron: int) -> tuple[int, int] | None:
    """Stable / long-lived nucleus reached by the decay of the long-lived (z, a), via nucdata."""
    zd, ad, _, _, to = _follow_long_lived(z, a, k_electron)
    return (zd, ad) if to > 0 else None


def isotope(z: int, a: int) -> Isotope | None:
    """The :class:`Isotope` (Z, A) if GALPROP treats it as stable or long-lived, else None."""
    bare = nucdata(z, a, z, a, k_electron=0)
    kel = nucdata(z, a, z, a, k_electron=1)
    if bare.branching == 0.0 or kel.branching == 0.0:
        return None
    return Isotope(
        z=z,
        a=a,
        t_half_yr=bare.t_half_s / YEAR_S,
        t_half_k_yr=kel.t_half_s / YEAR_S,
        decays_to=_long_lived_daughter(z, a, 0),
        decays_to_k=_long_lived_daughter(z, a, 1),
    )


def mass_range(z: int) -> range:
    """GALPROP's candidate mass numbers for charge z: 2z - 2 <= A < 2.5 z + 4.2."""
    a_max = int(np.ceil(2.5 * z + 4.2))  # A < 2.5 z + 4.2 (never an integer)
    return range(max(2 * z - 2, 1), a_max)


def isotope_table(max_z: int = 14) -> list[Isotope]:
    """All stable and long-lived nuclei with 1 <= Z <= max_z (any half-life), Z then A ascending."""
    if not 1 <= max_z <= MAX_Z_NUCDATA:
        raise ValueError(f"max_z must be in 1..{MAX_Z_NUCDATA}, got {max_z}")
    out = []
    for z in range(1, max_z + 1):
        for a in mass_range(z):
            iso = isotope(z, a)
            if iso is not None:
                out.append(iso)
    return out


@dataclass(frozen=True)
class Species:
    """A propagated species: an isotope and its K-shell electron state (0 bare, 1 H-like ion).

    ``t_half_yr`` is the half-life of this state (0 = stable) in years.
    """

    isotope: Isotope
    k_electron: int
    t_half_yr: float

    @property
    def z(self) -> int:
        """Charge number."""
        return self.isotope.z

    @property
    def a(self) -> int:
        """Mass number."""
        return self.isotope.a

    @property
    def name(self) -> str:
        """GALPROP species name (``*`` appended for the H-like ion)."""
        return self.isotope.name + ("*" if self.k_electron else "")


@dataclass(frozen=True)
class Decay:
    """Radioactive decay source between two propagated species (indices into ``Network.species``).

    The source is BR * psi_parent * ln2 / (gamma t_half) with the parent's own half-life
    (``Network.species[parent].t_half_yr``, years): nucdata gives the same half-life for the parent and for
    each of its decay links, and :func:`build_network` checks that, so it is kept in one place.
    """

    parent: int
    daughter: int
    branching: float


@dataclass(frozen=True)
class Network:
    """Propagated species in GALPROP ``gcr[]`` order, solve order and radioactive-decay links."""

    species: tuple[Species, ...]
    solve_order: np.ndarray
    decays: tuple[Decay, ...]
    t_half_limit_yr: float
    order: str = "parents_first"
    """The solve order's name (:data:`SOLVE_ORDERS`): crprop.propagate iterates the attach / strip cycles of
    ``parents_first`` to convergence, and leaves ``galprop_v54`` as GALPROP's single pass."""

    @property
    def names(self) -> list[str]:
        """GALPROP names (``Hydrogen_1``, ...)."""
        return [s.name for s in self.species]

    @property
    def z(self) -> np.ndarray:
        """Charge numbers, shape (n_species,)."""
        return np.array([s.z for s in self.species])

    @property
    def a(self) -> np.ndarray:
        """Mass numbers, shape (n_species,)."""
        return np.array([s.a for s in self.species])

    @property
    def t_half_yr(self) -> np.ndarray:
        """Half-lives in years (0 = stable), shape (n_species,)."""
        return np.array([s.t_half_yr for s in self.species])

    @property
    def kcapture_flag(self) -> np.ndarray:
        """1 for species whose H-like ion decays by electron capture (GALPROP ``t_half[0] != t_half[1]``)."""
        return np.array([int(s.isotope.kcapture) for s in self.species])

    def index(self, z: int, a: int, k_electron: int = 0) -> int:
        """Index of species (z, a, k_electron); ValueError if not propagated."""
        for i, s in enumerate(self.species):
            if (s.z, s.a, s.k_electron) == (z, a, k_electron):
                return i
        raise ValueError(f"species Z={z} A={a} K={k_electron} is not in the network")

    def isotopes(self) -> list[tuple[int, int]]:
        """(Z, A) of the propagated species."""
        return [(s.z, s.a) for s in self.species]

    def with_half_lives(self, half_lives_yr: Mapping[str, float]) -> Network:
        """This network with other half-lives (years) for the named beta emitters, e.g. ``{"10Be": 1.387e6}``
        (:data:`crprop.nuclear.decay.MEASURED_HALF_LIVES_YR`): the species' decay loss and every decay source
        it feeds change together; species, links and solve order stay.

        Refused (ValueError naming the nucleus): a nucleus not propagated or stable, an electron-capture
        nuclide (its bare and H-like half-lives differ, and one number cannot say which is meant), and a
        half-life that is not finite, not positive, or below the network's ``t_half_limit_yr`` (the nucleus
        would have been a ghost, folded into the cross sections, not a propagated species).
        """
        new_t: dict[tuple[int, int], float] = {}
        by_symbol = {s.isotope.symbol: s for s in self.species}
        for symbol, t_yr in half_lives_yr.items():
            s = by_symbol.get(symbol)
            if s is None:
                radioactive = sorted(k for k, v in by_symbol.items() if v.t_half_yr > 0)
                raise ValueError(f"half-life override {symbol!r}: not a propagated nucleus of this network "
                                 f"(propagated radioactive: {radioactive})")
            if s.t_half_yr <= 0:
                raise ValueError(f"half-life override {symbol!r}: the nucleus is stable in GALPROP's decay network")
            if s.isotope.kcapture:
                raise ValueError(f"half-life override {symbol!r}: electron-capture nuclide (bare "
                                 f"{s.isotope.t_half_yr:.4g} yr, H-like {s.isotope.t_half_k_yr:.4g} yr); not supported")
            t = float(t_yr)
            if not (np.isfinite(t) and t >= self.t_half_limit_yr):
                raise ValueError(f"half-life override {symbol!r} = {t_yr!r} yr: must be finite and >= the "
                                 f"network's t_half_limit_yr = {self.t_half_limit_yr:.4g} yr")
            new_t[(s.z, s.a)] = t
        species = tuple(replace(s, t_half_yr=new_t[(s.z, s.a)]) if (s.z, s.a) in new_t else s for s in self.species)
        return replace(self, species=species)  # decay links read the parent's half-life (Decay)


def _use_z_set(max_z: int, use_z: Iterable[int] | Mapping[int, bool] | None) -> set[int]:
    if use_z is None:
        return set(range(1, max_z + 1))
    if isinstance(use_z, Mapping):
        return {int(z) for z, on in use_z.items() if on}
    return {int(z) for z in use_z}


def build_network(
    max_z: int = 14,
    use_z: Iterable[int] | Mapping[int, bool] | None = None,
    t_half_limit_yr: float = 1.0e4,
    k_capture: bool = True,
    order: str = "parents_first",
) -> Network:
    """Propagated network for a galdef-like selection (``max_Z``, ``use_Z_*``, ``t_half_limit``).

    ``use_z``: charges to include (iterable, or {Z: flag}); None = all Z <= max_z.
    ``t_half_limit_yr``: nuclei with 0 < t_1/2 < limit (years) are not propagated (ghosts).
    ``k_capture``: GALPROP's ``K_capture`` switch (H-like ions as separate species when long-lived).
    ``order``: ``"parents_first"`` or ``"galprop_v54"`` (see module docstring).
    """
    if order not in SOLVE_ORDERS:
        raise ValueError(f"unknown solve order {order!r}; allowed: {', '.join(SOLVE_ORDERS)}")
    zs = _use_z_set(max_z, use_z)
    species: list[Species] = []
    for iso in isotope_table(max_z):
        if iso.z not in zs:
            continue
        for k_el in ((1, 0) if k_capture else (0,)):
            t_half = iso.t_half_k_yr if k_el else iso.t_half_yr
            if 0.0 < t_half < t_half_limit_yr:
                continue
            if k_el and not iso.kcapture:
                continue
            species.append(Species(iso, k_el, t_half))
    decays = _decay_links(species, t_half_limit_yr)
    solve = _solve_order(species, decays, order, k_capture)
    return Network(tuple(species), solve, tuple(decays), float(t_half_limit_yr), order)


def _decay_links(species: list[Species], t_half_limit_yr: float) -> list[Decay]:
    """Decay sources as in ``gen_secondary_source``: parent (A >= A_d, different nucleus) decaying
    directly (no intermediate long-lived nucleus) into the daughter, with t_half > 0."""
    out = []
    for i, p in enumerate(species):
        for j, d in enumerate(species):
            if p.a < d.a or (p.z, p.a) == (d.z, d.a):
                continue
            res = nucdata(p.z, p.a, d.z, d.a, k_electron=p.k_electron)
            if res.branching != 0.0 and res.t_half_s != 0.0 and res.long_lived == (0, 0):
                if not np.isclose(res.t_half_s / YEAR_S, p.t_half_yr, rtol=1e-12, atol=0.0):
                    raise RuntimeError(f"nucdata: decay {p.name} -> {d.name} has t_half {res.t_half_s / YEAR_S:.6g} yr "
                                       f"but {p.name} itself {p.t_half_yr:.6g} yr; Decay assumes they agree")
                out.append(Decay(i, j, res.branching))
    return out


def _kcapture_links(species: list[Species], t_half_limit_yr: float) -> list[tuple[int, int]]:
    """Pairs (parent, daughter) fed by K-electron attachment + fast electron capture (e.g. 7Be -> 7Li)."""
    out = []
    for i, p in enumerate(species):
        for j, d in enumerate(species):
            if p.a != d.a or p.z == d.z:
                continue
            res = nucdata(p.z, p.a, d.z, d.a, k_electron=1)
            if res.branching != 0.0 and 0.0 < res.t_half_s / YEAR_S < t_half_limit_yr:
                out.append((i, j))
    return out


def fusion_link(species: list[Species]) -> tuple[int, int] | None:
    """(1H, 2H) indices when both are propagated: p + p -> d pi+ feeds 2H from 1H (crprop.nuclear.pp_fusion),
    the network's one source that goes up in A; None otherwise."""
    index = {(s.z, s.a): i for i, s in enumerate(species) if s.k_electron == 0}
    if (1, 1) in index and (1, 2) in index:
        return index[(1, 1)], index[(1, 2)]
    return None


def _solve_order(species: list[Species], decays: list[Decay], order: str, k_capture: bool) -> np.ndarray:
    n = len(species)
    if order == "galprop_v54":
        return np.arange(n - 1, -1, -1)
    # Explicit sources: decay, K-capture and fusion. Spallation feeds lighter species from any heavier one,
    # so a species waits for every heavier species too, except 1H: no production model makes protons
    # (tests/test_nuclear.py), which lets it precede 2H for the fusion source.
    edges = {(d.parent, d.daughter) for d in decays}
    if k_capture:
        edges |= set(_kcapture_links(species, np.inf))
    fusion = fusion_link(species)
    if fusion is not None:
        edges.add(fusion)
    parents = {i: {p for p, d in edges if d == i and p != i} for i in range(n)}
    no_spallation_parent = {fusion[0]} if fusion is not None else set()
    remaining = set(range(n))
    out: list[int] = []
    while remaining:
        a_max = max(species[i].a for i in remaining)
        ready = [i for i in remaining if not parents[i] & remaining
                 and (species[i].a == a_max or i in no_spallation_parent)]
        if not ready:
            raise ValueError(f"circular decay dependency among {sorted(species[i].name for i in remaining)}")
        pick = max(ready, key=lambda i: (species[i].a, i))  # heaviest first, then by descending index
        out.append(pick)
        remaining.remove(pick)
    return np.array(out)
