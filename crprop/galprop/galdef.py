"""GALPROP v54 galdef files: reader and writer with GALPROP's semantics, strict about what crprop runs.

File format (``Galdef::read_galdef_parameter``): each line starts with a key token; GALPROP scans the
file for the *first* line whose first whitespace-delimited token equals the key and parses the value
with ``sscanf("%22c%le")``, i.e. from column 23 on (``=`` sits in column 22); the rest of the line is a
comment. Keys are case sensitive; a missing key keeps GALPROP's default; an unknown key is silently
ignored by GALPROP.

crprop reads ``key = value  comment`` lines the same way, and in addition

* takes the first occurrence of a repeated key and records a warning (:attr:`Galdef.warnings`);
* rejects (:class:`GaldefError`, a ``ValueError``) an unknown key, a value of the wrong type, a value
  GALPROP would read differently (not at its fixed column, or ``key=value`` with no space, which GALPROP
  does not recognise), and physics crprop does not reproduce (see :mod:`crprop.galprop.galdef_keys`);
* rejects a key line holding a character that Python takes for whitespace but C's sscanf does not (\\x1c-\\x1f,
  \\x85, \\xa0; :func:`crprop.galprop.galdef_values.check_c_whitespace`), where the two would read different values;
* keeps every line verbatim (header lines such as ``1234567890123456789012`` and
  ``======================value``, blank lines, comments, ignored keys) so that writing reproduces the file.

Public API: :func:`read_galdef`, :func:`parse_galdef`, :func:`write_galdef`, :class:`Galdef`
(typed access, :meth:`Galdef.grid`, :meth:`Galdef.with_overrides`), :class:`GaldefGrid`.
"""

from __future__ import annotations

import difflib
import math
import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from types import MappingProxyType
from typing import Any

import numpy as np

from crprop.constants import NUCLEON_MASS_KINEMATICS_MEV
from crprop.galprop.galdef_keys import (
    REGISTRY,
    TOTAL_CROSS_SECTION_MODELS,
    TOTAL_CROSS_SECTION_TRIPATHI,
    Derived,
    GaldefError,
    KeyClass,
    KeySpec,
    key_spec,
)
from crprop.galprop.galdef_values import DECIMAL_NUMBER, FLOAT_LIST, check_c_whitespace, parse_value
from crprop.physics._checks import as_real

__all__ = [
    "Galdef",
    "GaldefEntry",
    "GaldefError",
    "GaldefGrid",
    "KeyClass",
    "DECIMAL_NUMBER",
    "MAX_Z_SUPPORTED",
    "TOTAL_CROSS_SECTION_MODELS",
    "parse_galdef",
    "read_galdef",
    "write_galdef",
]

MAX_Z_SUPPORTED = 14
"""Heaviest element crprop's nuclear network covers."""

GRID_RATIO_SLACK = 1e-6
"""Slack, in steps, of (r_max - r_min)/dr and (z_max - z_min)/dz from a whole number before they count as not
whole (decimal galdef values such as 3.9 / 0.2 are not exact in binary)."""

SYMMETRIC_HALO_RTOL = 1e-9
"""z_max and -z_min count as equal to this relative tolerance (crprop solves a halo symmetric about the disc)."""

GALPROP_VALUE_COLUMN = 22
"""GALPROP parses a value from this 0-based column on (``sscanf(input, "%22c%le")``)."""

_KEY_LINE = re.compile(r"^\s*([A-Za-z_][A-Za-z0-9_]*)\s*=(.*)$")


@dataclass(frozen=True)
class GaldefEntry:
    """First occurrence of a key: typed ``value``, its text ``raw``, 0-based ``line_index``, ``comment``."""

    key: str
    value: Any
    raw: str
    line_index: int
    comment: str


@dataclass(frozen=True)
class GaldefGrid:
    """Grid numbers of a galdef, with GALPROP's node counts.

    Units: r_min, r_max, dr, z_min, z_max, dz in kpc; Ekin_min, Ekin_max in MeV per nucleon;
    Ekin_factor dimensionless. Node counts (Particle.cc): n_r = int((r_max - r_min)/dr + 1.5),
    n_z = int((z_max - z_min)/dz + 1.5), n_E = int(ln(Ekin_max/Ekin_min)/ln(Ekin_factor) + 1.9).
    """

    r_min: float
    r_max: float
    dr: float
    z_min: float
    z_max: float
    dz: float
    Ekin_min: float
    Ekin_max: float
    Ekin_factor: float

    @property
    def n_r(self) -> int:
        return int((self.r_max - self.r_min) / self.dr + 1.5)

    @property
    def n_z(self) -> int:
        return int((self.z_max - self.z_min) / self.dz + 1.5)

    @property
    def n_E(self) -> int:
        return int(math.log(self.Ekin_max / self.Ekin_min) / math.log(self.Ekin_factor) + 1.9)

    def r_kpc(self) -> np.ndarray:
        """Radial nodes r_min + i dr, kpc."""
        return self.r_min + np.arange(self.n_r) * self.dr

    def z_kpc(self) -> np.ndarray:
        """Vertical nodes z_min + i dz, kpc (as GALPROP: no node at z = 0 when z_min/dz is half-integer)."""
        return self.z_min + np.arange(self.n_z) * self.dz

    def ekin_mev_per_n(self) -> np.ndarray:
        """Kinetic energy per nucleon Ekin_min * Ekin_factor**i, MeV/n (the top node may exceed Ekin_max)."""
        return self.Ekin_min * self.Ekin_factor ** np.arange(self.n_E)

    def max_rigidity_mv(self, max_a_over_z: float = 3.0) -> float:
        """Upper bound of the rigidity on the grid, MV, for nuclei with A/|Z| <= ``max_a_over_z``."""
        e = float(self.ekin_mev_per_n()[-1])
        return max_a_over_z * math.sqrt(e * (e + 2.0 * NUCLEON_MASS_KINEMATICS_MEV))

    def to_grid(self) -> Any:
        """The :class:`crprop.grid.Grid` with these nodes."""
        from crprop.grid import Grid

        return Grid(self.r_kpc(), self.z_kpc(), self.ekin_mev_per_n())


def _format_value(spec: KeySpec, value: Any) -> str:
    """Text GALPROP parses back to ``value`` (shortest exact repr for floats)."""
    key = spec.name
    if spec.vtype == "int":
        if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
            raise GaldefError(f"{key}: expected an integer, got {value!r}", key)
        return f"{int(value):03d}" if key == "cross_section_option" else str(int(value))
    if spec.vtype == "float":
        if isinstance(value, bool) or not isinstance(value, (int, float, np.integer, np.floating)):
            raise GaldefError(f"{key}: expected a number, got {value!r}", key)
        return repr(float(value))
    if spec.vtype == "floats":
        arr, _ = as_real(value) if isinstance(value, list | tuple | np.ndarray) else (None, None)
        if arr is None or arr.ndim != 1 or not arr.size or not np.isfinite(arr).all():
            raise GaldefError(f"{key}: expected a non-empty sequence of finite numbers (written comma-separated), "
                              f"got {value!r}", key)
        return ",".join(repr(float(v)) for v in arr)
    text = str(value)
    if spec.vtype == "str" and (not text or any(c.isspace() for c in text)):
        raise GaldefError(f"{key}: expected one token without whitespace, got {value!r}", key)
    if "\n" in text:
        raise GaldefError(f"{key}: value must not contain a newline", key)
    return text



@dataclass(frozen=True)
class Galdef:
    """A parsed galdef: raw lines (for round-tripping) plus typed, validated first-occurrence values.

    Typed access: ``galdef["D0_xx"]`` or ``galdef.D0_xx`` give the effective value GALPROP uses (the
    file's value, else GALPROP's default; units as in :mod:`crprop.galprop.galdef_keys`).
    ``entries`` holds only the keys set in the file; ``warnings`` the non-fatal findings.
    """

    lines: tuple[str, ...]
    entries: Mapping[str, GaldefEntry]
    warnings: tuple[str, ...]
    source: str | None = None

    def __hash__(self) -> int:
        return hash(self.lines)

    def __reduce__(self) -> tuple[Any, tuple[str, str | None]]:
        """Pickle as text (re-parsed on load), so galdefs travel to worker processes."""
        return (parse_galdef, (self.to_text(), self.source))

    # ------------------------------------------------------------------------------ typed access
    def __getitem__(self, key: str) -> Any:
        entry = self.entries.get(key)
        if entry is not None:
            return entry.value
        spec = key_spec(key)
        if spec is None:
            raise KeyError(_unknown_message(key))
        if isinstance(spec.default, Derived):
            return spec.default.fn(self.__getitem__)
        if spec.default is None:
            raise KeyError(f"{key} is not set in the galdef and GALPROP v54 has no default for it")
        return spec.default

    def __getattr__(self, name: str) -> Any:
        if name.startswith("__") or key_spec(name) is None:
            raise AttributeError(name)
        try:
            return self[name]
        except KeyError as exc:
            raise AttributeError(str(exc)) from None

    def __contains__(self, key: object) -> bool:
        return key in self.entries

    def __iter__(self) -> Iterator[str]:
        return iter(self.entries)

    def __len__(self) -> int:
        return len(self.entries)

    def get(self, key: str, default: Any = None) -> Any:
        """Effective value of ``key``, or ``default`` when it is neither set nor has a GALPROP default."""
        try:
            return self[key]
        except KeyError:
            return default

    def is_set(self, key: str) -> bool:
        """Whether the file sets ``key``."""
        return key in self.entries

    def raw(self, key: str) -> str:
        """The value text of ``key`` as written in the file (first occurrence)."""
        return self.entries[key].raw

    def as_dict(self) -> dict[str, Any]:
        """Typed values of the keys set in the file, in file order."""
        return {k: e.value for k, e in self.entries.items()}

    @property
    def header(self) -> tuple[str, ...]:
        """Lines before the first key line (GALPROP's ruler and title lines)."""
        first = min((e.line_index for e in self.entries.values()), default=len(self.lines))
        return self.lines[:first]

    @property
    def title(self) -> str | None:
        """The ``Title`` line's text, if any."""
        return self.entries["Title"].value if "Title" in self.entries else None

    def classification(self, key: str) -> KeyClass:
        """How crprop treats ``key`` (IMPLEMENTED / UNSUPPORTED / IGNORED)."""
        spec = key_spec(key)
        if spec is None:
            raise KeyError(_unknown_message(key))
        return spec.klass

    # --------------------------------------------------------------------------------- helpers
    def grid(self) -> GaldefGrid:
        """Grid numbers (kpc, MeV/n) with GALPROP's node counts."""
        names = ("r_min", "r_max", "dr", "z_min", "z_max", "dz", "Ekin_min", "Ekin_max", "Ekin_factor")
        return GaldefGrid(**{n: float(self[n]) for n in names})

    def elements(self) -> tuple[int, ...]:
        """Charges Z the run includes: use_Z_Z == 1 for Z <= max_Z."""
        return tuple(z for z in range(1, int(self["max_Z"]) + 1) if self[f"use_Z_{z}"] == 1)

    def isotopic_abundances(self) -> dict[tuple[int, int], float]:
        """Source abundances {(Z, A): value} GALPROP reads (relative to 1H = 1.06e6), non-zero ones only.

        GALPROP reads ``iso_abundance_ZZ_AAA`` for included elements and 2Z-2 <= A < 2.5Z+4.2 only.
        """
        out: dict[tuple[int, int], float] = {}
        for z in self.elements():
            for a in _mass_range(z):
                value = float(self[f"iso_abundance_{z:02d}_{a:03d}"])
                if value != 0.0:
                    out[(z, a)] = value
        return out

    def source_parameters(self) -> tuple[float, ...]:
        """The 10 ``source_parameters_i`` (z scale kpc, alpha, beta, r_max kpc, r_const kpc, r_off kpc...)."""
        return tuple(float(self[f"source_parameters_{i}"]) for i in range(10))

    # ------------------------------------------------------------------------------ writing
    def to_text(self) -> str:
        """The galdef text (every original line, overrides applied in place)."""
        return "\n".join(self.lines) + "\n"

    def with_overrides(self, overrides: Mapping[str, Any] | None = None, /, **keys: Any) -> Galdef:
        """A new Galdef with keys set: the first occurrence's value is replaced in place (its comment is
        kept); keys not in the file are appended at the end. The result is re-parsed and re-validated,
        so setting unsupported physics raises :class:`GaldefError`.
        """
        updates = dict(overrides or {})
        updates.update(keys)
        lines = list(self.lines)
        for key, value in updates.items():
            spec = key_spec(key)
            if spec is None:
                raise GaldefError(_unknown_message(key), key)
            text = _format_value(spec, value)
            entry = self.entries.get(key)
            comment = f"   {entry.comment}" if entry is not None and entry.comment else ""
            line = f"{key:<{GALPROP_VALUE_COLUMN - 2}} = {text}{comment}"
            if len(key) > GALPROP_VALUE_COLUMN - 2:
                raise GaldefError(f"{key}: key longer than GALPROP's 21-character key field", key)
            if entry is not None:
                lines[entry.line_index] = line
            else:
                lines.append(line)
        return parse_galdef("\n".join(lines), source=self.source)


def _mass_range(z: int) -> range:
    """Mass numbers GALPROP v54 scans for element z: 2z-2 <= A < 2.5z+4.2."""
    return range(2 * z - 2, math.ceil(2.5 * z + 4.2))


def _unknown_message(key: str) -> str:
    close = difflib.get_close_matches(key, list(REGISTRY), n=1)
    hint = f" (did you mean {close[0]!r}?)" if close else ""
    return f"unknown galdef key {key!r}{hint}: GALPROP v54 does not read it (it would be silently ignored)"


def parse_galdef(text: str, source: str | None = None) -> Galdef:
    """Parse galdef ``text`` (see module docstring for the rules); ``source`` names it in messages."""
    where = f" in {source}" if source else ""
    lines = tuple(line.rstrip("\r") for line in text.split("\n"))
    if lines and lines[-1] == "":
        lines = lines[:-1]
    entries: dict[str, GaldefEntry] = {}
    warnings: list[str] = []
    for idx, line in enumerate(lines):
        lineno = idx + 1
        if not line.strip():
            continue
        m = _KEY_LINE.match(line)
        first_token = line.split()[0]
        if m is None:
            if key_spec(first_token) is not None:
                raise GaldefError(f"line {lineno}{where}: key {first_token} is not followed by '='",
                                  first_token)
            if entries:
                warnings.append(f"line {lineno}: not a 'key = value' line, ignored: {line.strip()!r}")
            continue
        key, rest = m.group(1), m.group(2)
        spec = key_spec(key)
        if spec is None:
            raise GaldefError(f"line {lineno}{where}: {_unknown_message(key)}", key)
        if first_token != key:
            raise GaldefError(f"line {lineno}{where}: GALPROP does not recognise {first_token!r}: "
                              f"write '{key} = ...' with whitespace before '='", key)
        if key in entries:
            warnings.append(f"line {lineno}: {key} repeated; GALPROP uses the first occurrence "
                            f"(line {entries[key].line_index + 1}: {entries[key].raw}), "
                            f"ignores {rest.split()[:1]}")
            continue
        try:
            value, raw, comment = parse_value(spec, rest, f"line {lineno}{where}")
        except GaldefError:
            if spec.read_by_galprop:  # a character sscanf does not skip is then the clearer reason
                check_c_whitespace(line, key, f"line {lineno}{where}")
            raise
        if spec.read_by_galprop:  # Python splits key and value where GALPROP's sscanf would not; a comment after
            # the value is read by neither (review by helper-104, session 22: a comment's no-break space was refused)
            check_c_whitespace(line[:line.rfind(comment)] if comment else line, key, f"line {lineno}{where}")
        if spec.vtype != "text":
            galprop_text = line[GALPROP_VALUE_COLUMN:]
            galprop_tokens = galprop_text.split()
            galprop_token = galprop_tokens[0] if galprop_tokens else ""
            listed = FLOAT_LIST.match(galprop_text) if spec.vtype == "floats" else None
            if listed is not None:
                galprop_token = listed.group(1)
            if galprop_token != raw:
                raise GaldefError(
                    f"line {lineno}{where}: {key}: GALPROP reads the value from column "
                    f"{GALPROP_VALUE_COLUMN + 1} on and would see {galprop_token!r}, not {raw!r}; "
                    f"put '=' in column {GALPROP_VALUE_COLUMN}", key)
        entries[key] = GaldefEntry(key, value, raw, idx, comment)
    frozen_entries = MappingProxyType(entries)
    warnings.extend(_validate(Galdef(lines, frozen_entries, (), source), where))
    return Galdef(lines, frozen_entries, tuple(warnings), source)


def _fail(spec: KeySpec, value: Any, supported: str, galdef: Galdef, where: str) -> GaldefError:
    origin = "" if galdef.is_set(spec.name) else " (GALPROP's default: the key is absent)"
    head = f"{spec.name} = {value!r}{origin}{where}"
    if spec.klass is KeyClass.IMPLEMENTED:
        return GaldefError(f"{head}: crprop supports {supported} ({spec.doc})", spec.name)
    if spec.klass is KeyClass.UNSUPPORTED:
        return GaldefError(f"{head}: crprop does not implement {spec.doc}; supported: {supported}", spec.name)
    return GaldefError(f"{head}: GALPROP v54 needs {supported}", spec.name)


def _check_spec(spec: KeySpec, galdef: Galdef, where: str) -> None:
    try:
        value = galdef[spec.name]
    except KeyError:
        if spec.galprop_required and spec.klass is not KeyClass.IGNORED:
            raise GaldefError(f"{spec.name} is missing{where}: GALPROP v54 stops without it",
                              spec.name) from None
        return
    if isinstance(value, float) and not math.isfinite(value) and spec.klass is not KeyClass.IGNORED:
        raise _fail(spec, value, "a finite value", galdef, where)
    if spec.allowed is not None and value not in spec.allowed:
        raise _fail(spec, value, " or ".join(repr(a) for a in spec.allowed), galdef, where)
    if spec.check is not None:
        message = spec.check(value)
        if message is not None:
            raise _fail(spec, value, message, galdef, where)


GRID_STEP_KEYS: Mapping[str, tuple[str, str]] = MappingProxyType({"dr": ("r_min", "r_max"), "dz": ("z_min", "z_max")})
"""Galdef grid steps (kpc) -> the (lower, upper) keys of the range they divide."""


def grid_step_note(g: Galdef, step: str, value: float | None = None) -> str | None:
    """The warning of :func:`parse_galdef` (:attr:`Galdef.warnings`) when the step ``step`` ('dr' or 'dz',
    :data:`GRID_STEP_KEYS`) does not divide its range into a whole number of steps, or None when it does.
    ``value``: the step actually used, kpc, where a caller replaces the galdef's (crnet simulate --dr / --dz); None =
    the galdef's own. The same text as the galdef's warning for the same value, so that a caller can tell the note
    of the step it replaced (walk-through by helper-87, session 21: a galdef's dz = 5 was warned about under
    --dz 1.3)."""
    lo, hi = GRID_STEP_KEYS[step]
    size = g[step] if value is None else value
    steps = (g[hi] - g[lo]) / size
    if abs(steps - round(steps)) <= GRID_RATIO_SLACK:
        return None
    return (f"({hi} - {lo}) / {step} = {steps:.6g} is not a whole number: GALPROP's nodes are {lo} + i {step} for "
            f"i < int(that + 1.5), so the last one is not at {hi} = {g[hi]} kpc")


def _validate(g: Galdef, where: str) -> list[str]:
    """Per-key and cross-key checks; returns warnings, raises GaldefError."""
    warnings: list[str] = []
    for spec in REGISTRY.values():
        _check_spec(spec, g, where)
        if spec.galprop_required and spec.klass is KeyClass.IGNORED and not g.is_set(spec.name):
            warnings.append(f"{spec.name} is missing: GALPROP v54 would stop (crprop does not need it)")
        if spec.note_if_set is not None and g.is_set(spec.name):
            note = spec.note_if_set(g[spec.name])
            if note:
                warnings.append(f"{spec.name} = {g[spec.name]} {note}")
    for key in g.entries:
        if key not in REGISTRY:
            spec = key_spec(key)
            assert spec is not None
            _check_spec(spec, g, where)
    for lo, hi, unit in (("r_min", "r_max", "kpc"), ("z_min", "z_max", "kpc"),
                         ("Ekin_min", "Ekin_max", "MeV/n"), ("end_timestep", "start_timestep", "yr")):
        if not g[lo] < g[hi]:
            raise GaldefError(f"{lo} = {g[lo]} {unit} must be below {hi} = {g[hi]} {unit}{where}", lo)
    if not g["z_min"] < 0 < g["z_max"]:
        raise GaldefError(f"z_min = {g['z_min']} and z_max = {g['z_max']} kpc{where}: the halo must enclose the disc "
                          "(z_min < 0 < z_max)", "z_min")
    if not g["nuc_rigid_br0"] <= g["nuc_rigid_br"] <= g["nuc_rigid_br2"]:
        raise GaldefError("injection breaks must satisfy nuc_rigid_br0 <= nuc_rigid_br <= nuc_rigid_br2, got "
                          f"{g['nuc_rigid_br0']}, {g['nuc_rigid_br']}, {g['nuc_rigid_br2']} MV{where}",
                          "nuc_rigid_br")
    if g["diff_reacc"] == 1 and g["v_Alfven"] > 0 and not 0 < g["D_g_1"] < 2:
        raise GaldefError(f"D_g_1 = {g['D_g_1']}{where}: reacceleration (D_pp ~ 1/(delta (4 - delta^2)"
                          f" (4 - delta))) needs 0 < D_g_1 < 2", "D_g_1")
    grid = g.grid()
    for step in GRID_STEP_KEYS:
        note = grid_step_note(g, step)
        if note is not None:
            warnings.append(note)
    if grid.n_r < 3 or grid.n_z < 3 or grid.n_E < 3:
        raise GaldefError(f"grid {grid.n_r} x {grid.n_z} x {grid.n_E} (r, z, E){where}: need >= 3 nodes each",
                          "dr")
    top = float(grid.ekin_mev_per_n()[-1])
    if not g["Ekin_min"] <= g["proton_norm_Ekin"] <= top:
        raise GaldefError(f"proton_norm_Ekin = {g['proton_norm_Ekin']} MeV lies outside the energy grid "
                          f"[{g['Ekin_min']}, {top:.6g}] MeV/n{where}", "proton_norm_Ekin")
    max_z = int(g["max_Z"])
    used = g.elements()
    if not used:
        raise GaldefError(f"no element selected (use_Z_1 .. use_Z_{max_z} are all 0){where}", "max_Z")
    if max(used) > MAX_Z_SUPPORTED:
        raise GaldefError(f"use_Z_{max(used)} = 1{where}: crprop's network covers Z <= {MAX_Z_SUPPORTED}",
                          f"use_Z_{max(used)}")
    for key in g.entries:
        m = re.fullmatch(r"iso_abundance_([0-9]{2})_([0-9]{3})", key)
        if m and int(m.group(1)) in used and int(m.group(2)) not in _mass_range(int(m.group(1))):
            warnings.append(f"{key} is outside the mass range GALPROP v54 reads for Z = {int(m.group(1))}; "
                            "ignored")
    if g["total_cross_section"] == TOTAL_CROSS_SECTION_TRIPATHI:
        warnings.append("total_cross_section = 3 selects crprop's Tripathi cross sections; GALPROP v54 would "
                        "use BP01 (its default branch)")
    return warnings


def read_galdef(path: str | Path) -> Galdef:
    """Read and validate a galdef file (GALPROP v54 semantics, crprop's strictness): :func:`parse_galdef`."""
    path = Path(path)
    try:
        text = path.read_text(encoding="latin-1")
    except OSError as exc:
        raise GaldefError(f"cannot read galdef {path}: {exc}") from exc
    return parse_galdef(text, source=str(path))


def write_galdef(galdef: Galdef, path: str | Path) -> Path:
    """Write ``galdef`` (all original lines, overrides in place) to ``path``; returns the path."""
    path = Path(path)
    path.write_text(galdef.to_text(), encoding="latin-1")
    return path


def symmetric_halo_kpc(g: Galdef) -> float:
    """The halo half-height z_max = -z_min of ``g``, kpc; GaldefError naming z_min when the halo is not symmetric
    about the disc (GALPROP allows that, crprop's solver does not)."""
    z_min, z_max = float(g["z_min"]), float(g["z_max"])
    if not math.isclose(z_max, -z_min, rel_tol=SYMMETRIC_HALO_RTOL):
        raise GaldefError(f"z_min = {z_min}, z_max = {z_max} kpc: crprop solves a halo symmetric about the disc "
                          "(z_max = -z_min)", "z_min")
    return z_max
