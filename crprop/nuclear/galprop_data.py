"""Readers for the GALPROP nuclear data files shipped in ``crprop/data/cross_sections/``.

GALPROP's ``read_nucdata`` (nuc_package.cc) format, used by ``nucdata.dat``, ``isotope_cs.dat``,
``eval_iso_cs.dat`` and ``p_cs_fits.dat``:

* every line whose **first character is not white space** is a comment (``"``, ``$``, ``*``, ...);
* the first non-comment line holds three integers ``n0 n1 n2``: ``n0`` numbers per row, ``n1`` rows
  per block, ``n2`` blocks (``nucdata.dat`` has two blocks: the NDS network ``ksp = 0`` and the
  Garcia-Munoz et al. 1987 network ``ksp = 1``);
* after it, every non-comment line starts a row: ``n0`` numbers are read (the stream may run onto
  the following line), the remainder of the line (``! reference``) is ignored;
* reading stops after ``n0 * n1 * n2`` numbers: **rows beyond the declared size are ignored**
  (``eval_iso_cs.dat`` declares 941 rows and holds 1086; GALPROP uses the first 941 only).

Nuclei are written ``Z.AA`` (``6.12`` = 12C, ``0.10`` = isobar A = 10); GALPROP decodes them with
``inuc(x) = int(100 x + 0.1)`` = ``100 Z + A``. Values are stored as float32 as in GALPROP.

``barpol_protons.dat`` is the proton block of the Barashenkov & Polanski CROSEC table ``barpol.dat``
(fixed-width ``51I5`` rows: energy, 24 elastic, a dummy, energy, 24 non-elastic cross sections in mb).
"""

from __future__ import annotations

from functools import cache
from importlib import resources
from pathlib import Path

import numpy as np

GALPROP_SUBDIR = "cross_sections/galprop"
DRAGON2_SUBDIR = "cross_sections/dragon2"
USINE_SUBDIR = "cross_sections/usine"


def data_path(relative: str) -> Path:
    """Absolute path of a file inside the installed ``crprop/data`` directory (no download ever)."""
    path = Path(str(resources.files("crprop").joinpath("data", *relative.split("/"))))
    if not path.is_file():
        raise FileNotFoundError(f"crprop data file missing: {path}")
    return path


def inuc(x: float) -> int:
    """GALPROP's ``inuc``: decode ``Z.AA`` (float32) into ``100 Z + A`` as the C++ does (100 x, + 0.1)."""
    return int(float(np.float32(100.0) * np.float32(x)) + 0.1)


def inuc_array(x: np.ndarray) -> np.ndarray:
    """Vectorised :func:`inuc` (int64 array of ``100 Z + A``)."""
    prod = np.float32(100.0) * np.asarray(x, dtype=np.float32)
    return (prod.astype(np.float64) + 0.1).astype(np.int64)


def _tokens_before_comment(line: str) -> list[str]:
    return line.split("!", 1)[0].split()


def read_galprop_table(path: Path) -> np.ndarray:
    """Read a GALPROP ``read_nucdata`` file into a float32 array of shape ``(n2, n1, n0)``.

    Follows the C++ stream logic described in the module docstring (comment rule, size limit).
    """
    lines = path.read_text(encoding="latin-1").splitlines()
    i = 0
    while i < len(lines) and (lines[i] == "" or not lines[i][0].isspace()):
        if lines[i] == "":  # an empty line starts a "data" read in C++; the dims never follow one
            raise ValueError(f"{path}: empty line before the array dimensions")
        i += 1
    dims = [int(t) for t in _tokens_before_comment(lines[i])[:3]]
    n0, n1, n2 = dims
    size = n0 * n1 * n2
    values: list[float] = []
    i += 1
    while len(values) < size and i < len(lines):
        line = lines[i]
        i += 1
        if line != "" and not line[0].isspace():
            continue  # comment line
        row: list[float] = [float(t) for t in _tokens_before_comment(line)][:n0]
        while len(row) < n0:  # C++ ``>>`` continues on the next line(s)
            if i >= len(lines):
                raise ValueError(f"{path}: truncated row")
            row.extend(float(t) for t in _tokens_before_comment(lines[i])[: n0 - len(row)])
            i += 1
        values.extend(row)
    if len(values) < size:
        raise ValueError(f"{path}: expected {size} numbers, found {len(values)}")
    return np.asarray(values[:size], dtype=np.float32).reshape(n2, n1, n0)


@cache
def galprop_table(name: str) -> np.ndarray:
    """Cached float32 array of one GALPROP data file (``nucdata.dat``, ``isotope_cs.dat``, ...)."""
    return read_galprop_table(data_path(f"{GALPROP_SUBDIR}/{name}"))


@cache
def barpol_protons() -> tuple[np.ndarray, np.ndarray]:
    """Barashenkov-Polanski proton-nucleus non-elastic cross sections.

    Returns ``(energy_mev, sigma_nonel_mb)`` with shapes ``(62,)`` (proton kinetic energy, MeV) and
    ``(62, 24)`` (mb, one column per CROSEC target mass ``BP_TARGET_A``). As in CROSEC's SIGTAP2 the
    last three energies of the block are written in GeV and converted to MeV here.
    """
    lines = data_path(f"{GALPROP_SUBDIR}/barpol_protons.dat").read_text().splitlines()
    rows = [ln for ln in lines[2:] if ln.strip()]
    n_e = int(lines[0][9:12])  # FORMAT(8I3,...): N, NS, NE(1..4) -> NE(2) = protons
    if len(rows) != n_e:
        raise ValueError(f"barpol_protons.dat: {len(rows)} rows, header says {n_e}")
    energy = np.empty(n_e)
    sig = np.empty((n_e, 24))
    for k, row in enumerate(rows):
        fields = [int(row[5 * j : 5 * j + 5]) for j in range(51)]
        energy[k] = fields[0] * (1000 if k >= n_e - 3 else 1)
        sig[k] = fields[27:51]
    return energy, sig


BP_TARGET_A = np.array(
    [1.0, 2.0, 4.0, 6.90, 9.01, 12.00, 14.00, 16.00, 23.00, 26.98, 32.08, 40.08,
     47.90, 55.85, 63.50, 79.90, 95.94, 112.40, 118.7, 137.34, 183.85, 207.19, 238.03, 250.0],
    dtype=np.float32,
).astype(np.float64)
"""CROSEC (BLOCK DATA ASIG, AAI1) target mass numbers of the nucleon table columns. The Fortran DATA
literals are single precision (stored in REAL*8), hence the float32 rounding."""
