"""Tabulated cumulative production cross sections on H (DRAGON2 data files).

* ``"webber03"``: ``dragon2/webber_xsec.dat`` -- Webber, Soutoul, Kish & Rockstroh 2003 (ApJS 144,
  153) partial cross sections as used by DRAGON2's *Webber03* option. First column ``AAZZaazz``
  (parent A, Z, fragment A, Z), then sigma (mb) at 15 energies given in the header row
  (10 MeV/n - 9 GeV/n). Fragments Z >= 4 are isotopic and cumulative (no short-lived fragment appears:
  12C -> 11B holds 11B + 11C). The file's rows to Z <= 2 ('1H', '4He', and Z = 0) are inclusive nucleon and
  alpha *yields*, not isotopic production (at 9 GeV/n 12C -> '1H' is 360 mb and 16O -> '4He' 324 mb, above
  sigma_inel(p + 12C) = 251 mb and sigma_inel(p + 16O) = 317 mb): they are not read (WEBBER03_MIN_FRAGMENT_Z), and
  those channels keep GALPROP's cross sections.
* ``"evoli19"``: ``dragon2/crxsecs_fragmentation_Evoli2019_cumulative_modified.dat`` -- DRAGON2
  default (Evoli et al. 2019, PRD 99, 103023), fits to data with ghosts summed, rows
  ``Parent(Z.AA) Daughter(Z.AA) E(MeV/n) sigma_H(mb) err ref`` on a log grid 10 MeV/n - 1 PeV/n.
  187 channels (Li-O parents, 20Ne, 24Mg, 28Si, 32S, 56Fe main channels).

:func:`table_sigma` interpolates linearly in ln(E) and holds the **first / last tabulated value
constant outside the table** (below 10 MeV/n, above 9 GeV/n resp. 1 PeV/n).
"""

from __future__ import annotations

from functools import lru_cache

import numpy as np

from crprop.nuclear.galprop_data import DRAGON2_SUBDIR, data_path, inuc

TABLE_MODELS = ("webber03", "evoli19")

WEBBER03_MIN_FRAGMENT_Z: int = 3
"""Lightest fragment charge read from the Webber 2003 table (module docstring: its H and He rows are yields)."""


@lru_cache(maxsize=1)
def _webber03() -> tuple[np.ndarray, dict[tuple[int, int], np.ndarray]]:
    lines = data_path(f"{DRAGON2_SUBDIR}/webber_xsec.dat").read_text().split("\n")
    header = lines[0].split()
    energy = np.array([float(v) for v in header[1:]])
    table: dict[tuple[int, int], np.ndarray] = {}
    for ln in lines[1:]:
        tok = ln.split()
        if len(tok) != len(header):
            continue
        code = tok[0]
        ap, zp, af, zf = int(code[0:2]), int(code[2:4]), int(code[4:6]), int(code[6:8])
        if zf < WEBBER03_MIN_FRAGMENT_Z:
            continue
        table[(100 * zp + ap, 100 * zf + af)] = np.array([float(v) for v in tok[1:]])
    return energy, table


@lru_cache(maxsize=1)
def _evoli19() -> dict[tuple[int, int], tuple[np.ndarray, np.ndarray]]:
    rows: dict[tuple[int, int], list[tuple[float, float]]] = {}
    with open(data_path(f"{DRAGON2_SUBDIR}/crxsecs_fragmentation_Evoli2019_cumulative_modified.dat")) as fh:
        for ln in fh:
            if not ln[:1].isspace():
                continue
            tok = ln.split()
            key = (inuc(float(tok[0])), inuc(float(tok[1])))
            rows.setdefault(key, []).append((float(tok[2]), float(tok[3])))
    out = {}
    for key, vals in rows.items():
        arr = np.array(sorted(vals))
        out[key] = (arr[:, 0], arr[:, 1])
    return out


def table_channels(model: str) -> set[tuple[int, int]]:
    """Tabulated channels (100 Z_p + A_p, 100 Z_d + A_d) of a table model."""
    if model == "webber03":
        return set(_webber03()[1])
    if model == "evoli19":
        return set(_evoli19())
    raise ValueError(f"unknown table model {model!r}; allowed: {', '.join(TABLE_MODELS)}")


def table_sigma(model: str, za_parent: int, za_daughter: int, ekin_mev_per_n: np.ndarray) -> np.ndarray:
    """Cumulative p + parent -> daughter cross section (mb) from a table model at E (MeV/n).

    Linear in ln E, constant beyond the tabulated energy range. KeyError if the channel is absent.
    """
    e = np.log(np.asarray(ekin_mev_per_n, dtype=float))
    if model == "webber03":
        energy, table = _webber03()
        sig = table[(za_parent, za_daughter)]
    elif model == "evoli19":
        energy, sig = _evoli19()[(za_parent, za_daughter)]
    else:
        raise ValueError(f"unknown table model {model!r}; allowed: {', '.join(TABLE_MODELS)}")
    return np.interp(e, np.log(energy), sig)
