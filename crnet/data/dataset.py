"""Data blocks (one species from one experiment) and data sets (what a chi^2 is computed against).

Every block is expressed in kinetic energy per nucleon (GeV/n) with fluxes in
m^-2 s^-1 sr^-1 (GeV/n)^-1. Errors: statistical and systematic parts are carried separately (lower
and upper magnitudes, converted with the same Jacobian as the flux); the chi^2 uses
``sigma = sqrt(stat^2 + sys^2)`` of the symmetrised parts — the convention of the CR-ML arrays
(e.g. Voyager B at 8.75 MeV/n: sqrt(0.381^2 + 0.107^2) = 0.39574, the value in B_Voyager.npy).
Tables that only give a total error store it as the systematic part with zero statistical part.

A block is either already a local-interstellar spectrum (``lis=True``: Voyager 1 beyond the
heliopause, or data "corrected to LIS" as in the CR-ML paper) or top-of-atmosphere data that the
model must be force-field modulated to; a data set then says how the potential phi (MV) is treated.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from crnet.data.kinematics import convert_x_to_ekn, effective_mass_number
from crnet.data.table import LEPTON_SPECIES, NAMED_SPECIES, MeasurementTable, _err, read_table
from crprop.spectra import SYMBOL_TO_Z

LIS_MARKERS: tuple[str, ...] = (r"phi\s*=\s*0(?:\.0*)?(?![\d.])", r"no solar modulation", r"\bunmodulated",
                                 r"(?<![\w-])corrected to lis\b")
"""Patterns (regular expressions, matched in the lower-cased metadata) that mark a table as an interstellar
(unmodulated) spectrum. ``phi = 0`` must be a zero, not the start of 'phi = 0.55'; a marker preceded by a
negation ('NOT corrected to LIS', 'not unmodulated') does not count (:data:`LIS_NEGATION`). An explicit
``# lis: true|false`` metadata line overrides the markers."""
PHI_SAME_PERIOD_MV = 1.0
"""Top-of-atmosphere blocks whose attached phi (``DataBlock.phi_mv``, MV) differ by more than this come from
different modulation periods; the blocks under one :class:`Modulation` (one period of a Dataset) must not mix
them."""
LIS_MARKER_KEYS: tuple[str, ...] = ("dataset", "experiment", "data_taking_period", "period", "crdb_phi_MV",
                                     "modulation")
"""The metadata lines searched for :data:`LIS_MARKERS`: those that describe this table's own measurement (where and
when it was taken, its modulation). Free text about other things - 'note', 'reference', 'upstream',
'transformation' - is not searched: a note such as 'to compare with the unmodulated LIS apply a force field' made a
top-of-atmosphere file interstellar and dropped its phi (walk-through, session 19)."""
LIS_NEGATION = re.compile(r"\b(?:not|never|nor)[\s,]+(?:(?:yet|however|been|fully|entirely)[\s,]+)?$")
"""A marker whose preceding text ends with this is negated: the negation must govern the marker itself ('not',
'not yet', 'not, however,', 'never been'), so that 'not applied, phi = 0' or 'not applicable, unmodulated' stay
interstellar (review of session 21 by helper-92: a looser rule, any two words after 'not', flipped them). 'uncorrected'
and 'un-corrected to LIS' are no marker (:data:`LIS_MARKERS`), and 'to be corrected to LIS' is a future correction
(:data:`LIS_FUTURE`) (review by helper-84, session 21: each made a top-of-atmosphere file interstellar, its model
compared unmodulated. For scale, measured in session 23: crml_base on the paper grid against AMS-02 PhysRep 2021 C
alone gives chi2 14800 at phi = 0 against 1535 at its profiled phi, 900 MV: `crnet simulate --galdef
crprop/data/galdef/galdef_54_crml`, then crnet.likelihood.chi2 of its spectra against dataset_from_files([the C file],
modulation=Modulation(650, nuisance=True, bounds_mv=(200, 1200))), with and without phi_mv=0)."""
LIS_FUTURE = re.compile(r"\bto be\s+$")
"""Before 'corrected to LIS' only: 'to be corrected to LIS later' negates it, 'assumed to be phi = 0' affirms."""


@dataclass(frozen=True, eq=False)
class DataBlock:
    """Measured flux of one species from one experiment and period, in GeV/n.

    Attributes
    ----------
    label : short unique name, e.g. 'B AMS-02'.
    species : element symbol ('B') or isotope label ('10Be') compared with ``Spectra.flux(species)``.
    experiment, period, reference, source : provenance (``period`` = data-taking period).
    ekin_gev_per_n : (n,) kinetic energy per nucleon, GeV/n.
    flux : (n,) m^-2 s^-1 sr^-1 (GeV/n)^-1.
    stat_lo, stat_hi, sys_lo, sys_hi : (n,) error magnitudes, same units as flux.
    lis : True if the data are an interstellar spectrum (no modulation applied to the model).
    phi_mv : force-field potential attached to the data-taking period, MV (None if unknown / LIS).
    lines : (n,) line of each point in ``source`` (CSV) or its index (arrays), for messages.
    x_native, x_native_kind, a_eff : x as published (R in GV, E_k in GeV or E_kn in GeV/n) and the
        mean mass number used to convert it (None when no conversion was needed).
    """

    label: str
    species: str
    experiment: str
    ekin_gev_per_n: np.ndarray
    flux: np.ndarray
    stat_lo: np.ndarray
    stat_hi: np.ndarray
    sys_lo: np.ndarray
    sys_hi: np.ndarray
    lis: bool
    period: str = ""
    reference: str = ""
    source: str = ""
    phi_mv: float | None = None
    lines: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=np.int64))
    x_native: np.ndarray | None = None
    x_native_kind: str = "Ekn"
    a_eff: float | None = None

    def __post_init__(self) -> None:
        n = np.asarray(self.flux).shape
        if n in ((), (0,)):
            raise ValueError(f"data block {self.label!r}: no data points (an empty block, e.g. after an energy cut, "
                             "must be left out of the data set)")
        names = ("ekin_gev_per_n", "flux", "stat_lo", "stat_hi", "sys_lo", "sys_hi")
        for name in names:
            arr = np.array(getattr(self, name), dtype=np.float64)  # private read-only copy
            if arr.ndim != 1 or arr.shape != n:
                raise ValueError(f"data block {self.label!r}: {name} has shape {arr.shape}, expected {n}")
            arr.setflags(write=False)
            object.__setattr__(self, name, arr)
        lines = np.asarray(self.lines, dtype=np.int64)
        if lines.shape != n:
            lines = np.arange(n[0], dtype=np.int64)
        object.__setattr__(self, "lines", lines)
        if self.species not in SYMBOL_TO_Z and not _is_isotope(self.species):
            raise ValueError(
                f"data block {self.label!r}: species {self.species!r} is not an element or isotope"
            )
        for name in names:
            arr = getattr(self, name)
            bad = ~np.isfinite(arr) | (arr < 0) | ((arr <= 0) if name == "ekin_gev_per_n" else False)
            self._raise_at(bad, name, "must be finite and >= 0 (energies > 0)")
        self._raise_at(self.sigma <= 0, "sigma", "total error sqrt(stat^2+sys^2) is zero; chi^2 undefined")
        if self.phi_mv is not None and (not np.isfinite(self.phi_mv) or self.phi_mv < 0):
            raise ValueError(f"data block {self.label!r}: phi_mv must be finite and >= 0, got {self.phi_mv}")

    def _raise_at(self, bad: np.ndarray, column: str, message: str) -> None:
        if np.any(bad):
            i = int(np.flatnonzero(bad)[0])
            raise ValueError(
                f"{self.source or self.label}: line {int(self.lines[i])}, column '{column}': "
                f"{message} (value {float(getattr(self, column)[i])!r})"
            )

    @property
    def n_points(self) -> int:
        return int(self.flux.size)

    @property
    def sigma(self) -> np.ndarray:
        """Total 1-sigma error used in the chi^2: sqrt(stat^2 + sys^2) of symmetrised parts."""
        return np.hypot(0.5 * (self.stat_lo + self.stat_hi), 0.5 * (self.sys_lo + self.sys_hi))


def _is_isotope(label: str) -> bool:
    digits = label[: len(label) - len(label.lstrip("0123456789"))]
    return bool(digits) and label[len(digits) :] in SYMBOL_TO_Z


def table_is_lis(table: MeasurementTable) -> bool:
    """Whether a table's metadata marks it as an unmodulated interstellar spectrum: an explicit ``lis: true`` /
    ``lis: false`` line, else a non-negated :data:`LIS_MARKERS` phrase in a :data:`LIS_MARKER_KEYS` line."""
    explicit = table.meta.get("lis")
    if explicit is not None:
        value = explicit.strip().lower()
        if value not in ("true", "false"):
            raise ValueError(f"{table.path}: metadata 'lis' must be 'true' or 'false', got {explicit!r}")
        return value == "true"
    text = " ".join(table.meta[key] for key in LIS_MARKER_KEYS if key in table.meta).lower()
    for pattern in LIS_MARKERS:
        for match in re.finditer(pattern, text):
            before = text[: match.start()]
            future = match.group().startswith("corrected") and LIS_FUTURE.search(before)
            if not (LIS_NEGATION.search(before) or future):
                return True
    return False


def block_from_table(
    table: MeasurementTable,
    *,
    label: str | None = None,
    experiment: str | None = None,
    lis: bool | None = None,
    phi_mv: float | None = None,
    isotope_mix: Mapping[int, float] | None = None,
) -> DataBlock:
    """Turn a flux table into a DataBlock in GeV/n (rigidity / per-particle energy converted).

    ``experiment`` defaults to the table's metadata; ``lis`` to what the metadata say (``table_is_lis``);
    ``phi_mv`` (MV) to a constant ``crdb_phi_MV`` column if present; ``isotope_mix``
    ({A: number fraction}) to ``DEFAULT_ISOTOPE_MIX`` of the element.
    """
    if table.quantity != "flux":
        raise ValueError(f"{table.path}: is a {table.quantity} table; only fluxes enter the chi^2")
    species = table.species
    if species is None or species not in SYMBOL_TO_Z:
        raise ValueError(f"{table.path}: {_species_problem(table)}")
    a_eff = None if table.x_kind == "Ekn" else effective_mass_number(species, isotope_mix)
    ekn, factor = convert_x_to_ekn(table.x_rep, table.x_kind, species, a_eff or 1.0)
    is_lis = table_is_lis(table) if lis is None else lis
    if phi_mv is None and not is_lis and PHI_COLUMN in table.extra:  # an interstellar block has no phi
        phi_mv = _phi_from_column(table)
    return DataBlock(
        label=label or f"{species} {Path(table.path).stem}",
        species=species,
        experiment=experiment or table.experiment,
        ekin_gev_per_n=ekn,
        flux=table.value * factor,
        stat_lo=table.stat_lo * factor,
        stat_hi=table.stat_hi * factor,
        sys_lo=table.sys_lo * factor,
        sys_hi=table.sys_hi * factor,
        lis=is_lis,
        period=table.data_taking_period,
        reference=table.reference,
        source=table.path,
        phi_mv=None if is_lis else phi_mv,
        lines=table.lines,
        x_native=table.x_rep.copy(),
        x_native_kind=table.x_kind,
        a_eff=a_eff,
    )


PHI_COLUMN = "crdb_phi_MV"
"""Extra CSV column giving the force-field phi (MV) that CRDB attaches to each row's sub-experiment; a block takes it
as its ``phi_mv`` when every row gives the same value (:func:`_phi_from_column`)."""


def _phi_from_column(table: MeasurementTable) -> float:
    """The one phi (MV) of a top-of-atmosphere table's :data:`PHI_COLUMN`. ValueError naming the file, line and
    column for an empty cell, a negative phi or a second value: a negative phi surfaced as DataBlock's 'phi_mv must be
    finite and >= 0, got -5.0' without line or column, and an empty cell or mixed values dropped the phi without a
    word (walk-through by helper-87, session 21)."""
    col = table.extra[PHI_COLUMN]
    lines = table.lines if table.lines.shape == col.shape else np.arange(1, col.size + 1)
    for i, value in enumerate(col):
        line = int(lines[i])
        if not np.isfinite(value):  # read_table refuses NaN / inf text: an empty cell
            raise _err(table.path, line, PHI_COLUMN, "empty field: the column gives the force-field phi (MV) of "
                                                     "every row; fill it, or remove the column")
        if value < 0:
            raise _err(table.path, line, PHI_COLUMN, f"phi {value:g} MV is negative; a force-field potential is "
                                                     ">= 0 MV")
        if value != col[0]:
            raise _err(table.path, line, PHI_COLUMN,
                       f"phi {value:g} MV differs from {col[0]:g} MV on line {int(lines[0])}: a block has one "
                       "modulation period (one phi); split the file by period, or from Python pass phi_mv= to "
                       "block_from_table")
    return float(col[0])


def _species_problem(table: MeasurementTable) -> str:
    """Why a flux table's species is not a nuclear element, and how to fix it from the CLI (the file name) and from
    Python: the hint was only 'pass species= to read_table' (walk-through by helper-87, session 21)."""
    name = Path(table.path).name
    rename = (f"rename the file so that one '_'-separated part of its name is the element, an element symbol "
              f"('B', 'C', 'O', ...) or one of {', '.join(repr(w) for w in NAMED_SPECIES)} (e.g. "
              f"'MyExp_B_Ekn.csv'), or, from Python, pass species= to crnet.data.read_table")
    if table.species is None:
        return f"the species could not be inferred from the file name {name!r} (no element or several); {rename}"
    if table.species in LEPTON_SPECIES.values() or "/" in table.species:
        return (f"species {table.species!r} (from the file name {name!r}) is not a nuclear element; only nuclear "
                f"fluxes enter the chi^2 as data blocks; if the file holds a nuclear flux, {rename}")
    return (f"species {table.species!r} is not a nuclear element: pass an element symbol ('B', 'C', ...) as "
            "species= to crnet.data.read_table")  # infer_species gives elements, ratios or leptons: species= gave it


@dataclass(frozen=True)
class Modulation:
    """How the force-field potential phi (MV) of the top-of-atmosphere blocks is treated.

    ``phi_mv`` is the fixed value (or, with ``nuisance=True``, only a reference value) and
    ``bounds_mv`` the range over which a nuisance phi is profiled.
    """

    phi_mv: float
    nuisance: bool = False
    bounds_mv: tuple[float, float] = (0.0, 1500.0)

    def __post_init__(self) -> None:
        lo, hi = self.bounds_mv
        if not (np.isfinite(self.phi_mv) and self.phi_mv >= 0):
            raise ValueError(f"Modulation.phi_mv must be finite and >= 0 MV, got {self.phi_mv}")
        if not (0 <= lo < hi and np.isfinite(hi)):
            raise ValueError(f"Modulation.bounds_mv must satisfy 0 <= lo < hi < inf, got {self.bounds_mv}")


@dataclass(frozen=True, eq=False)
class Dataset:
    """A named collection of DataBlocks plus the treatment of solar modulation.

    ``modulation`` is required when any block is top-of-atmosphere (``lis=False``). It is either one
    :class:`Modulation` applied to every top-of-atmosphere block (one data-taking period), or a mapping
    ``{period: Modulation}`` with one force-field potential per solar-modulation period: a block belongs to
    the entry whose key equals its ``DataBlock.period`` (e.g. AMS-02 2011-2018 and ACE-CRIS 2009-2010 with
    their own phi). Every top-of-atmosphere block must find its period, and every period must have a block.
    The normalisations (q_C and the ratios) stay common to all periods.
    """

    name: str
    description: str
    blocks: tuple[DataBlock, ...]
    modulation: Modulation | Mapping[str, Modulation] | None = None
    provenance: str = ""

    def __post_init__(self) -> None:
        object.__setattr__(self, "blocks", tuple(self.blocks))
        if not self.blocks:
            raise ValueError(f"data set {self.name!r} has no data blocks")
        labels = [b.label for b in self.blocks]
        if len(set(labels)) != len(labels):
            raise ValueError(f"data set {self.name!r}: block labels are not unique: {labels}")
        if self.needs_modulation and self.modulation is None:
            toa = [b.label for b in self.blocks if not b.lis]
            raise ValueError(f"data set {self.name!r}: top-of-atmosphere blocks {toa} need a Modulation")
        if self.modulation is not None and not self.needs_modulation:
            # the phi would be dropped without a word: more likely a file read as interstellar by mistake
            raise ValueError(f"data set {self.name!r}: a modulation is given, but every block is an interstellar "
                             f"spectrum ({[b.label for b in self.blocks]}); leave the modulation out, or mark "
                             "top-of-atmosphere files with a '# lis: false' metadata line")
        if isinstance(self.modulation, Mapping):
            self._check_periods()
            return
        if self.modulation is not None and not isinstance(self.modulation, Modulation):
            raise ValueError(f"data set {self.name!r}: modulation must be a Modulation or a mapping "
                             f"{{period: Modulation}}, got {type(self.modulation).__name__}")
        self._check_same_phi([b for b in self.blocks if not b.lis], "")

    def _check_periods(self) -> None:
        mods = dict(self.modulation)
        if not mods:
            raise ValueError(f"data set {self.name!r}: the modulation mapping {{period: Modulation}} is empty")
        for key, mod in mods.items():
            if not isinstance(key, str) or not isinstance(mod, Modulation):
                raise ValueError(f"data set {self.name!r}: modulation entries must be str -> Modulation, got "
                                 f"{key!r} -> {type(mod).__name__}")
        object.__setattr__(self, "modulation", mods)
        toa = [b for b in self.blocks if not b.lis]
        for b in toa:
            if b.period not in mods:
                raise ValueError(f"data set {self.name!r}: block {b.label!r} has period {b.period!r}, which is not "
                                 f"a key of the modulation mapping (keys: {list(mods)})")
        for key in mods:
            members = [b for b in toa if b.period == key]
            if not members:
                raise ValueError(f"data set {self.name!r}: modulation period {key!r} has no top-of-atmosphere "
                                 "block (a block belongs to the period equal to its DataBlock.period)")
            self._check_same_phi(members, key)

    def _check_same_phi(self, blocks: Sequence[DataBlock], period: str) -> None:
        periods = {b.label: b.phi_mv for b in blocks if b.phi_mv is not None}
        if periods and max(periods.values()) - min(periods.values()) > PHI_SAME_PERIOD_MV:
            where = f" of period {period!r}" if period else ""
            raise ValueError(
                f"data set {self.name!r}: its top-of-atmosphere blocks{where} carry different force-field potentials "
                f"{ {k: round(v) for k, v in periods.items()} } (MV, from their files): they come from different "
                "solar-modulation periods, but one Modulation applies to all of them. Give the data set one "
                "Modulation per period (modulation={period: Modulation}, keys = DataBlock.period), or give the "
                "blocks you mean to modulate together one phi_mv (block_from_table(..., phi_mv=...))"
            )

    @property
    def periods(self) -> dict[str, Modulation]:
        """The modulation periods in order: {period: Modulation}. A single Modulation is the one period ''
        (every top-of-atmosphere block); {} when no block needs modulation."""
        if not self.needs_modulation or self.modulation is None:
            return {}
        if isinstance(self.modulation, Modulation):
            return {"": self.modulation}
        return dict(self.modulation)

    def period_of(self, block: DataBlock) -> str | None:
        """Key in :attr:`periods` of a top-of-atmosphere block (None for an interstellar one)."""
        if block.lis:
            return None
        return "" if isinstance(self.modulation, Modulation) else block.period

    @property
    def n_points(self) -> int:
        return sum(b.n_points for b in self.blocks)

    @property
    def species(self) -> list[str]:
        """Species measured, in order of first appearance."""
        return list(dict.fromkeys(b.species for b in self.blocks))

    @property
    def needs_modulation(self) -> bool:
        return any(not b.lis for b in self.blocks)

    def energy_range(self) -> tuple[float, float]:
        """Smallest and largest data energy, GeV/n."""
        lo = min(float(b.ekin_gev_per_n.min()) for b in self.blocks)
        hi = max(float(b.ekin_gev_per_n.max()) for b in self.blocks)
        return lo, hi


def dataset_from_files(
    paths: Sequence[Path | str],
    *,
    name: str = "custom",
    description: str = "",
    modulation: Modulation | Mapping[str, Modulation] | None = None,
    isotope_mix: Mapping[str, Mapping[int, float]] | None = None,
) -> Dataset:
    """Build a Dataset from commented-CSV flux files (see ``crnet.data.table``).

    Top-of-atmosphere files need ``modulation`` (one Modulation, or {data_taking_period: Modulation} for files
    from several solar-modulation periods; see :class:`Dataset`); ``isotope_mix`` maps element -> {A: fraction}.
    """
    blocks = []
    for p in paths:
        table = read_table(p)
        mix = (isotope_mix or {}).get(table.species or "")
        blocks.append(block_from_table(table, label=f"{table.species} {Path(p).stem}", isotope_mix=mix))
    return Dataset(
        name=name,
        description=description or f"{len(blocks)} files",
        blocks=tuple(blocks),
        modulation=modulation,
    )
