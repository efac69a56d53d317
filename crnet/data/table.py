"""Reader for the commented-CSV measurement format of ``../shared/data`` (and of crnet's shipped copies).

Format (see ``../shared/data/PROVENANCE.md`` section 1):

* leading ``# key: value`` lines are metadata (``data_taking_period``, ``reference``, ``dataset`` ...);
* one comma-separated header row
  ``<X>_low_<U>, <X>_high_<U>, <X>_rep_<U>, flux|ratio, stat_err_lo, stat_err_hi, sys_err_lo, sys_err_hi
  [, extra ...]`` with ``<X>_<U>`` one of ``R_GV`` (rigidity, GV), ``Ekn_GeVn`` (kinetic energy per
  nucleon, GeV/n), ``Ek_GeV`` (kinetic energy per particle, GeV) or ``E_GeV`` (total energy, GeV);
* fluxes in m^-2 s^-1 sr^-1 per unit of x (GV^-1, (GeV/n)^-1 or GeV^-1), ratios dimensionless,
  errors as positive magnitudes in the same units; empty bin edges mean "not available".

A leading UTF-8 byte-order mark is dropped. Every defect (missing column, unparsable or NaN number, a
number with '_' digit grouping, negative error, energies not strictly increasing ...) raises
``ValueError`` naming the file, the 1-based line number and the column. Unit metadata that contradict the
format are refused too, since the numbers would otherwise be read in the wrong unit: a ``# flux units:`` line
contradicting :data:`FLUX_UNITS` of the x variable (e.g. ``(MeV/n)^-1`` or ``cm^-2``), a ``# ratio units:``
line other than 'dimensionless', a flux-units line on a ratio table (or the reverse), and a ``# x: ... [unit]``
line whose unit is not the one the x columns carry.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from crprop.galprop.galdef import DECIMAL_NUMBER
from crprop.spectra import SYMBOL_TO_Z

X_COLUMN = re.compile(r"^(R|Ekn|Ek|E)_(low|high|rep)_(GV|GeVn|GeV)$")
"""Header pattern of the three x columns."""

X_UNITS: dict[str, str] = {"R": "GV", "Ekn": "GeVn", "Ek": "GeV", "E": "GeV"}
"""Unit that each x variable must carry in its column name."""

X_UNIT_LABELS: dict[str, str] = {"R": "GV", "Ekn": "GeV/n", "Ek": "GeV", "E": "GeV"}
"""Unit of each x variable as written for a reader (and in the ``# x: ... [unit]`` metadata line)."""

FLUX_UNITS: dict[str, str] = {kind: f"m^-2 s^-1 sr^-1 {f'({unit})' if '/' in unit else unit}^-1"
                               for kind, unit in X_UNIT_LABELS.items()}
"""Flux unit the format requires for each x variable (per unit of x, e.g. 'm^-2 s^-1 sr^-1 (GeV/n)^-1'); a
``# flux units:`` metadata line must not contradict it (other spellings pass; text after a ';' is a note)."""

UPPER_LIMIT_COLUMN = re.compile(r"upper|limit|^ul$", re.IGNORECASE)
"""Header names that flag upper-limit rows (refused: the chi^2 treats every row as a measurement)."""

ERROR_COLUMNS: tuple[str, ...] = ("stat_err_lo", "stat_err_hi", "sys_err_lo", "sys_err_hi")

NAMED_SPECIES: dict[str, str] = {
    "proton": "H",
    "p": "H",
    "helium": "He",
    "lithium": "Li",
    "beryllium": "Be",
    "boron": "B",
    "carbon": "C",
    "nitrogen": "N",
    "oxygen": "O",
}
"""Species words used in file names besides element symbols."""

LEPTON_SPECIES: dict[str, str] = {
    "electron_plus_positron": "e-+e+",
    "positron_fraction": "e+/(e-+e+)",
    "electron": "e-",
    "positron": "e+",
}
"""Lepton file-name fragments (longest first) and the species label given to them."""


def _err(path: Path | str, line: int, column: str, message: str) -> ValueError:
    return ValueError(f"{path}: line {line}, column '{column}': {message}")


def infer_species(path: Path | str) -> str | None:
    """Species from a file name such as ``AMS02_PhysRep2021_B_R.csv`` ('B') or ``..._BoverC_R.csv`` ('B/C').

    Returns an element symbol, a ratio 'X/Y', a lepton label, or None when the name is ambiguous.
    """
    stem = Path(path).stem
    for frag, label in LEPTON_SPECIES.items():
        if frag in stem:
            return label
    tokens = stem.split("_")
    for i, tok in enumerate(tokens):
        m = re.fullmatch(r"([A-Z][a-z]?|p)over([A-Z][a-z]?)", tok)
        if m:
            return f"{NAMED_SPECIES.get(m.group(1), m.group(1))}/{m.group(2)}"
        if tok == "over" and 0 < i < len(tokens) - 1:
            num, den = tokens[i - 1], tokens[i + 1]
            return f"{NAMED_SPECIES.get(num, num)}/{NAMED_SPECIES.get(den, den)}"
    found = {NAMED_SPECIES.get(t, t) for t in tokens} & set(SYMBOL_TO_Z)
    return found.pop() if len(found) == 1 else None


@dataclass(frozen=True, eq=False)
class MeasurementTable:
    """One measured spectrum or ratio, exactly as written in its file (no unit conversion).

    Attributes
    ----------
    path : source file.
    meta : the ``# key: value`` header lines.
    x_kind : 'R' (rigidity, GV), 'Ekn' (GeV/n), 'Ek' (GeV per particle) or 'E' (total energy, GeV).
    x_low, x_high, x_rep : (n,) bin edges (NaN where not given) and representative value, in x's unit.
    quantity : 'flux' (m^-2 s^-1 sr^-1 per unit of x) or 'ratio' (dimensionless).
    value, stat_lo, stat_hi, sys_lo, sys_hi : (n,) central values and error magnitudes.
    extra : further columns (float arrays; NaN where empty).
    species : element symbol, ratio 'X/Y' or lepton label; None if it could not be inferred.
    lines : (n,) 1-based line number of each row in the file.
    """

    path: str
    meta: dict[str, str]
    x_kind: str
    x_low: np.ndarray
    x_high: np.ndarray
    x_rep: np.ndarray
    quantity: str
    value: np.ndarray
    stat_lo: np.ndarray
    stat_hi: np.ndarray
    sys_lo: np.ndarray
    sys_hi: np.ndarray
    extra: dict[str, np.ndarray] = field(default_factory=dict)
    species: str | None = None
    lines: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=np.int64))

    @property
    def n_points(self) -> int:
        return int(self.x_rep.size)

    @property
    def x_unit(self) -> str:
        return X_UNITS[self.x_kind]

    @property
    def data_taking_period(self) -> str:
        return self.meta.get("data_taking_period", "")

    @property
    def reference(self) -> str:
        return self.meta.get("reference", "")

    @property
    def experiment(self) -> str:
        return self.meta.get("experiment", self.meta.get("dataset", Path(self.path).stem))

    def stat_err(self) -> np.ndarray:
        """Symmetrised statistical error (mean of lower and upper), same units as ``value``."""
        return 0.5 * (self.stat_lo + self.stat_hi)

    def sys_err(self) -> np.ndarray:
        """Symmetrised systematic error (mean of lower and upper), same units as ``value``."""
        return 0.5 * (self.sys_lo + self.sys_hi)

    def total_err(self) -> np.ndarray:
        """sqrt(stat^2 + sys^2) of the symmetrised errors (the CR-ML paper's convention)."""
        return np.hypot(self.stat_err(), self.sys_err())


NUMBER_TEXT = re.compile(rf"{DECIMAL_NUMBER.pattern}|[+-]?(nan|inf|infinity)", re.IGNORECASE | re.ASCII)
"""What a number field may hold: a plain ASCII decimal (the NaN / inf words are matched so that their own
message names them). Python's float() also takes '1_0' (= 10) and non-ASCII digits such as '１', neither of
which a data file means."""


def _parse_float(text: str, path: Path, line: int, column: str, required: bool) -> float:
    text = text.strip()
    if text == "":
        if required:
            raise _err(path, line, column, "empty field (a value is required here)")
        return math.nan
    if "_" in text:
        raise _err(path, line, column, f"{text!r} contains '_': digit-group underscores are not allowed in "
                                       "numbers (Python's float() would read '1_0' as 10)")
    if not NUMBER_TEXT.fullmatch(text):
        raise _err(path, line, column, f"cannot parse {text!r} as a number (plain ASCII decimal such as "
                                       "'1.5e-3' expected)")
    val = float(text)  # NUMBER_TEXT matched: float() reads it
    if math.isnan(val):
        raise _err(path, line, column, "value is NaN")
    if math.isinf(val):
        raise _err(path, line, column, "value is infinite")
    return val


def read_table(path: Path | str, species: str | None = None) -> MeasurementTable:
    """Read and validate one commented-CSV measurement file.

    Parameters
    ----------
    path : the ``.csv`` file.
    species : override of the species inferred from the file name (element symbol such as 'B').

    Raises
    ------
    ValueError naming file, line and column for: missing/unknown columns, wrong field count,
    unparsable/NaN/infinite numbers, negative errors, non-positive x, negative fluxes,
    x_rep not strictly increasing, x_rep outside its bin, or unit metadata (``# flux units:``,
    ``# ratio units:``, ``# x: ... [unit]``) that contradict the columns.
    """
    path = Path(path)
    if path.is_dir():
        raise ValueError(f"{path}: is a directory, not a data file")
    if not path.is_file():
        raise ValueError(f"{path}: no such data file")
    try:
        # utf-8-sig drops one leading byte-order mark (which would otherwise glue itself to the first
        # line and turn a '#' metadata line or the header row into garbage); a BOM anywhere else stays
        # and is refused as not being part of a number or a column name.
        text = path.read_text(encoding="utf-8-sig").splitlines()
    except UnicodeDecodeError as exc:
        raise ValueError(f"{path}: not a UTF-8 text file (byte {exc.start}: {exc.reason}); data files are "
                         "commented CSV in UTF-8") from None
    meta: dict[str, str] = {}
    meta_lines: dict[str, int] = {}
    header: list[str] | None = None
    header_line = 0
    rows: list[tuple[int, list[str]]] = []
    for lineno, raw in enumerate(text, start=1):
        stripped = raw.strip()
        if stripped.startswith("#"):
            if header is None:
                key, sep, val = stripped[1:].partition(":")
                if sep:  # '# key: value'; other comment lines are free text
                    key, val = key.strip(), val.strip()
                    if key in meta and meta[key] != val:
                        raise _err(path, lineno, key, f"metadata key given twice with different values "
                                                      f"({meta[key]!r}, then {val!r})")
                    meta[key] = val
                    meta_lines.setdefault(key, lineno)
                continue
            raise _err(path, lineno, "-", "comment line after the header row")
        if not stripped:
            continue
        if header is None:
            header, header_line = [h.strip() for h in stripped.split(",")], lineno
        else:
            rows.append((lineno, raw.split(",")))
    if header is None:
        raise ValueError(f"{path}: no header row (every line is a comment or empty)")
    if len(set(header)) != len(header):
        raise _err(path, header_line, ",".join(header), "duplicate column names")
    for name in header:
        if UPPER_LIMIT_COLUMN.search(name):
            raise _err(path, header_line, name, "upper limits are not supported: every row would enter the chi^2 "
                                                "as a measurement (remove the limit rows and the column)")

    x_cols: dict[str, str] = {}
    kinds = set()
    for name in header:
        m = X_COLUMN.match(name)
        if m:
            kind, role, unit = m.groups()
            if X_UNITS[kind] != unit:
                raise _err(path, header_line, name, f"x variable {kind} must be in {X_UNITS[kind]}")
            x_cols[role] = name
            kinds.add(kind)
    for role in ("low", "high", "rep"):
        if role not in x_cols:
            raise _err(
                path,
                header_line,
                f"<X>_{role}_<U>",
                f"missing column (need one of R_{role}_GV, Ekn_{role}_GeVn, Ek_{role}_GeV, E_{role}_GeV)",
            )
    if len(kinds) != 1:
        raise _err(path, header_line, ",".join(x_cols.values()), "x columns use different variables")
    quantity = "flux" if "flux" in header else "ratio" if "ratio" in header else ""
    if not quantity:
        raise _err(path, header_line, "flux|ratio", "missing column (need 'flux' or 'ratio')")
    for col in ERROR_COLUMNS:
        if col not in header:
            raise _err(path, header_line, col, "missing column")
    if not rows:
        raise ValueError(f"{path}: header on line {header_line} but no data rows")

    required = {x_cols["rep"], quantity, *ERROR_COLUMNS}
    values: dict[str, list[float]] = {name: [] for name in header}
    lines: list[int] = []
    for lineno, fields in rows:
        if len(fields) != len(header):
            raise _err(path, lineno, "-", f"{len(fields)} fields, the header has {len(header)}")
        for name, fld in zip(header, fields, strict=True):
            values[name].append(_parse_float(fld, path, lineno, name, name in required))
        lines.append(lineno)
    arr = {name: np.asarray(v, dtype=np.float64) for name, v in values.items()}
    line_arr = np.asarray(lines, dtype=np.int64)

    def check(name: str, bad: np.ndarray, message: str) -> None:
        if np.any(bad):
            i = int(np.flatnonzero(bad)[0])
            raise _err(path, int(line_arr[i]), name, message.format(v=float(arr[name][i])))

    for col in ERROR_COLUMNS:
        check(col, arr[col] < 0, "negative error {v!r} (errors are magnitudes, must be >= 0)")
    check(quantity, arr[quantity] < 0, "negative " + quantity + " {v!r}")
    rep = arr[x_cols["rep"]]
    check(x_cols["rep"], rep <= 0, "non-positive x value {v!r}")
    lo, hi = arr[x_cols["low"]], arr[x_cols["high"]]
    has_edges = np.isfinite(lo) & np.isfinite(hi)
    check(x_cols["low"], np.isfinite(lo) != np.isfinite(hi), "bin edge {v!r} given without its partner edge")
    check(x_cols["high"], has_edges & (hi <= lo), "bin upper edge {v!r} is not above the lower edge")
    check(x_cols["low"], has_edges & (lo <= 0), "non-positive bin edge {v!r} (energies and rigidities are > 0)")
    check(x_cols["rep"], has_edges & ((rep < lo) | (rep > hi)), "x value {v!r} lies outside its bin edges")
    if np.all(has_edges):
        # Binned data: rows sorted by lower edge. Bins from different instruments may overlap
        # (Voyager 1 telescopes), so x_rep itself need not increase, but a bin may not repeat.
        check(
            x_cols["low"],
            np.concatenate([[False], np.diff(lo) < 0]),
            "rows must be sorted by energy: lower edge {v!r} is below the previous row's",
        )
        same = np.concatenate([[False], (np.diff(lo) == 0) & (np.diff(hi) == 0)])
        check(x_cols["low"], same, "bin starting at {v!r} repeats the previous row's bin")
    else:
        check(
            x_cols["rep"],
            np.concatenate([[False], np.diff(rep) <= 0]),
            "x values must be strictly increasing; {v!r} does not exceed the previous row",
        )

    kind = kinds.pop()
    _check_unit_metadata(path, meta, meta_lines, kind, quantity)
    extra = {
        name: arr[name]
        for name in header
        if name not in x_cols.values() and name != quantity and name not in ERROR_COLUMNS
    }
    return MeasurementTable(
        path=str(path),
        meta=meta,
        x_kind=kind,
        x_low=lo,
        x_high=hi,
        x_rep=rep,
        quantity=quantity,
        value=arr[quantity],
        stat_lo=arr["stat_err_lo"],
        stat_hi=arr["stat_err_hi"],
        sys_lo=arr["sys_err_lo"],
        sys_hi=arr["sys_err_hi"],
        extra=extra,
        species=species if species is not None else infer_species(path),
        lines=line_arr,
    )


PER_NUCLEON_SPELLINGS: tuple[str, ...] = ("gev/nucleon", "gev/nucl", "gev/nuc", "gev/amu", "gev/u", "gevn")
"""Spellings of GeV per nucleon (lower case, no spaces) read as 'gev/n' when unit metadata are compared."""


def _normalised_unit(text: str) -> str:
    """A unit text without its note (after ';'), in lower case, without spaces, per-nucleon spellings as 'gev/n'."""
    unit = "".join(text.split(";")[0].split()).lower()
    for spelling in PER_NUCLEON_SPELLINGS:
        unit = unit.replace(spelling, "gev/n")
    return unit.replace("gev/n.", "gev/n")


def _flux_unit_contradiction(unit: str, kind: str) -> str | None:
    """What in a normalised flux unit contradicts the format's unit for x variable ``kind`` (None: nothing). Only
    contradictions are refused (an area in cm, an energy in MeV / TeV / keV, per particle for a per-nucleon table,
    per GV for a table in energy or the reverse); other spellings of the right unit pass."""
    if "cm" in unit:
        return "an area in cm (the format's fluxes are per m^2)"
    for prefix in ("kev", "mev", "tev"):
        if prefix in unit:
            return f"an energy in {prefix[0].upper()}eV (the format's energies are in GeV)"
    for prefix in ("kv", "mv", "tv"):  # a rigidity in other than GV (review by helper-84, session 21)
        if re.search(rf"(?<![a-z]){prefix}(?![a-z])", unit):
            return f"a rigidity in {prefix[0].replace('m', 'M').replace('t', 'T')}V (the format's rigidities are in GV)"
    per_gv, per_gevn = "gv" in unit, "gev/n" in unit
    per_gev = "gev" in unit.replace("gev/n", "")
    if kind == "R" and (per_gevn or per_gev):
        return "a flux per energy, but x is rigidity (fluxes per GV)"
    if kind == "Ekn" and (per_gv or (per_gev and not per_gevn)):
        return "a flux per GV or per particle energy, but x is kinetic energy per nucleon (fluxes per GeV/n)"
    if kind in ("Ek", "E") and (per_gv or per_gevn):
        return "a flux per GV or per GeV/n, but x is energy per particle (fluxes per GeV)"
    return None


def _check_unit_metadata(path: Path, meta: dict[str, str], meta_lines: dict[str, int], kind: str,
                         quantity: str) -> None:
    """ValueError naming file, line and key when the unit metadata contradict the x columns / the quantity. Keys are
    matched without regard to case, 'flux unit', 'flux_units' and 'flux-units' as 'flux units'."""
    keys = {re.sub(r"^(flux|ratio) units?$", r"\1 units", " ".join(re.sub(r"[_-]", " ", k.lower()).split())): k
            for k in meta}
    other = "ratio units" if quantity == "flux" else "flux units"
    if other in keys:
        raise _err(path, meta_lines[keys[other]], keys[other], f"metadata {keys[other]!r} on a {quantity} table "
                                                               f"(column '{quantity}'); one of them is wrong")
    if quantity == "flux" and "flux units" in keys:
        key = keys["flux units"]
        given = meta[key].split(";")[0].strip()
        why = _flux_unit_contradiction(_normalised_unit(given), kind)
        if why is not None:
            raise _err(path, meta_lines[key], key,
                       f"{given!r} is {why}: a table with x = {kind} [{X_UNIT_LABELS[kind]}] must give fluxes in "
                       f"{FLUX_UNITS[kind]} (convert the flux and error columns, e.g. x1000 from (MeV/n)^-1 to "
                       "(GeV/n)^-1, x1e4 from cm^-2 to m^-2)")
    if quantity == "ratio" and "ratio units" in keys:
        key = keys["ratio units"]
        given = meta[key].split(";")[0].strip()
        if given.lower() != "dimensionless":
            raise _err(path, meta_lines[key], key, f"{given!r}; ratios must be dimensionless")
    x_key = keys.get("x")
    brackets = re.findall(r"\[([^\]]*)\]", meta.get(x_key, "")) if x_key else []
    if brackets and _normalised_unit(brackets[-1]) != _normalised_unit(X_UNIT_LABELS[kind]):
        raise _err(path, meta_lines[x_key], x_key, f"metadata unit [{brackets[-1]}] (the line's last [...]) "
                                                   f"contradicts the x columns, which are {kind} in "
                                                   f"{X_UNIT_LABELS[kind]} (column names {kind}_*_{X_UNITS[kind]})")
