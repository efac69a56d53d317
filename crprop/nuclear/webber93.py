"""Webber, Kish & Schrier semi-empirical partial cross sections (WNEWTR code of 8/19/93).

Port of GALPROP's ``WNEWTR_FUNC_aws.f`` (functions ``WSIGMA``, ``SIGMA``, ``EDEP``) with the
parameter file ``WNEWTR_082693.CDR.dat`` (read as Fortran list-directed input: five comment lines,
the reference energy, then the SIGMAzf/N0/DELTAzf table by Z_f, the energy-dependence table by
Delta Z (EM, DEM, M, EN, DEN, N, B, EO, DEO, O) and the Be special table (BEEN, BEDEN, BEN, BEB);
only the number of rows announced before each table is read, so Be rows 11 and 12 stay zero).

``wsigma(zi, ai, zf, af, e)`` returns the cross section in mb of p + (zi, ai) -> (zf, af) at
kinetic energy ``e`` (MeV/n, array). It is zero for Z_f < 4. The code works in double precision;
its single-precision literals are taken as exact decimals here (relative differences ~1e-7).
"""

from __future__ import annotations

from functools import lru_cache

import numpy as np

from crprop.nuclear.galprop_data import GALPROP_SUBDIR, data_path


@lru_cache(maxsize=1)
def _params() -> dict[str, np.ndarray]:
    lines = data_path(f"{GALPROP_SUBDIR}/WNEWTR_082693.CDR.dat").read_text().splitlines()[5:]
    pos = 1  # line 0: reference energy (400 MeV/n), unused by SIGMA
    sigmazf, n0, deltazf = np.zeros(101), np.zeros(101), np.zeros(101)
    n_rows = int(lines[pos].split()[0])
    for k in range(n_rows):
        t = lines[pos + 1 + k].split()
        i = int(t[0])
        sigmazf[i], n0[i], deltazf[i] = float(t[1]), float(t[2]), float(t[3])
    pos += 1 + n_rows
    n_rows = int(lines[pos].split()[0])
    edep = np.zeros((21, 10))
    for k in range(n_rows):
        edep[k] = [float(v) for v in lines[pos + 1 + k].split()[:10]]
    pos += 1 + n_rows
    n_rows = int(lines[pos].split()[0])
    be = np.zeros((14, 4))
    for k in range(n_rows):
        be[k] = [float(v) for v in lines[pos + 1 + k].split()[:4]]
    return {"sigmazf": sigmazf, "n0": n0, "deltazf": deltazf, "edep": edep, "be": be}


def _odd(zi: int, zf: int) -> float:
    """Odd-even / shell correction factor ODD of SIGMA."""
    table = {
        9: {1: 0.78, 2: 0.65},
        26: {8: 0.93, 10: 0.90, 12: 0.60},
        20: {5: 1.20, 6: 1.20, 7: 1.15},
        18: {2: 0.90, 4: 1.10},
        16: {4: 1.18, 7: 1.50},
        14: {3: 0.70, 4: 0.84, 7: 0.80},
        13: {1: 0.83, 2: 0.60},
        12: {1: 1.10, 3: 1.18, 7: 1.45},
        11: {1: 0.81, 2: 0.78},
        10: {3: 1.25},
        8: {1: 1.08, 2: 0.93},
        7: {1: 1.07, 2: 0.80},
    }
    return table.get(zi, {}).get(zi - zf, 1.0)


_NBAR_SHIFT = {4: 0.27, 5: 0.36, 6: 0.10, 7: 0.12, 8: -0.15, 9: -0.05, 10: 0.27, 11: 0.05, 12: 0.02,
               14: -0.08, 16: -0.05, 17: -0.03, 19: 0.23, 24: -0.24}


def edep(e: np.ndarray, zi: int, zf: int) -> np.ndarray:
    """Energy-dependence factor EDEP(E, Z_i, Z_f) of the Webber formula (E in MeV/n)."""
    p = _params()
    e = np.asarray(e, dtype=float)
    dz = int(np.float32(zi - zf) * np.float32(np.float32(26.0) / np.float32(zi)) ** np.float32(0.5))
    dz = min(dz, 18)
    g, h, ho = (zi / 26.0) ** 2.5, (zi / 26.0) ** 1.4, (zi / 26.0) ** 0.4
    if zi > 26:
        g = h = ho = 1.0
    if zf == 4:  # special case for Be
        dzb = min(zi - zf, 12)
        been, beden, ben, beb = p["be"][dzb]
        tempa = np.full_like(e, -700.0) if beden == 0.0 else np.maximum(-((e - been) ** 2) / beden**2, -700.0)
        nterm = ben * np.exp(tempa) if ben != 0.0 else 0.0
        bterm = np.where((e < 4000.0) & (e > 2000.0), beb * (e - 2000.0) / 2000.0, 0.0)
        return 1.0 + nterm + bterm
    em, dem, m, en, den, n, b, eo, deo, o = p["edep"][dz]
    tempa = np.maximum(-((e - em) ** 2) / dem**2, -700.0)
    tempb = np.maximum(-((e - en) ** 2) / den**2, -700.0)
    tempc = np.full_like(e, -700.0) if deo == 0.0 else np.maximum(-((e - eo) ** 2) / deo**2, -700.0)
    mterm = m * g * np.exp(tempa)
    nterm = np.zeros_like(e) if n == 0.0 else np.where(e <= en, n * h, n * h * np.exp(tempb))
    oterm = o * ho * np.exp(tempc) if o != 0.0 else 0.0
    temp = np.minimum((e - 2000.0) / 2000.0, 1.0)
    bterm = (zi / 26.0) * b * temp if zi < 26 else b * temp
    return 1.0 + mterm + nterm + bterm + oterm


def _sigma_energy_independent(zi: int, ai: int, zf: int, af: int) -> tuple[float, bool]:
    """Energy-independent part of SIGMA: (value, valid). ``valid`` False means SIGMA = 0."""
    p = _params()
    if zf < 4 or zi < zf or (zi == zf and ai <= af) or af >= ai or ai - af < zi - zf:
        return 0.0, False
    odd = _odd(zi, zf)
    sigmazf_f = 36.0 if (zf == 4 and zi == 5) else (16.40 if zf == 4 else p["sigmazf"][zf])
    nzi, nzf = ai - 2 * zi, af - 2 * zf
    dzf = 0.32 * zf**0.390 + (0.20 if zf == 4 else 0.0)
    if zi == zf:  # neutron stripping
        if ai - af == 1:
            temp = (zi - (15.0 + 2.0 * nzi)) / 15.0
            if temp < 0.0 or zi < 15:
                temp = 0.0
            sig = (1.0 - temp) * (4.0 + 0.6 * nzi) * (5.0 + 0.25 * zi)
            sig *= max(zi - 26.0, 1.0)
            if zi == 7:
                sig *= 0.35 + nzi / 3.0
            return sig, True
        if ai - af == 2:
            return 1.8 * (1.0 + (11.4 - zi**0.7) * nzi) * max(zi - 26.0, 1.0), True
        if ai - af == 3:
            return 0.3 * (1.0 + (7.5 - zi**0.5) * nzi), True
        if ai - af >= 4:
            return 0.0, False
    elif zi - zf == 1 and ai - af == 1:  # proton stripping (1)
        sig = (0.78 if zf == 5 else 0.50) * odd * sigmazf_f * (0.70 - 0.05 * nzi)
        return sig * (0.4 if zi == 7 else 1.0), True
    elif zi - zf == 2 and ai - af == 2:  # proton stripping (2)
        temp = max(2.5 * (zf + 2.0) - 23.0, 0.0)
        return (1.85 + temp) * (1.0 - 0.23 * nzi), True
    # normal case: SIGMA0 * F(A_f)
    if p["deltazf"][zf] == 0.0:
        # the Fortran leaves SIGMA0 undefined here (Z_f > 27); no Webber value exists
        return 0.0, False
    sigma0 = odd * sigmazf_f * np.exp(-abs(nzi - p["n0"][zf]) / 8.5) * np.exp(-(zi - zf) / p["deltazf"][zf])
    f2 = max(zf - zi + 10.0, 0.0)
    f3 = max(zf - 18.0, 0.0)
    if zf % 2 == 1:
        temp = -0.07 * nzi * (28.0 - zi) / 10.0 if zf in (11, 13, 15) else 0.0
        f2 = f2**1.4
        nbar = (0.0400 + 0.0065 * nzi) * zf**1.2 + 0.06 * f3**0.3 + nzi * ((28.0 - zi) / 820.0) * f2 + temp
    else:
        temp = 0.0
        if zi >= 18 and zf in (12, 14, 16):
            temp = 0.06 * ((nzi + 36.0) / 10.0) * (28.0 - zi) / 10.0
        temp2 = 0.0 if zf in (4, 10) else -0.08
        nbar = (temp2 + (0.0040 + 0.0009 * nzi) * zf**2 - 0.22 * f3**0.5
                + nzi * ((28.0 - zi) / 820.0) * f2 + temp)
    nbar += _NBAR_SHIFT.get(zf, 0.0)
    f = np.exp(-((nzf - nbar) ** 2) / (2.0 * dzf**2.0)) / (dzf * (2.0 * 3.1415) ** 0.5)
    return sigma0 * f, True


def sigma(zi: int, ai: int, zf: int, af: int, e: np.ndarray) -> np.ndarray:
    """Webber's SIGMA(ZI, AI, ZF, AF, E) in mb (E in MeV/n, array)."""
    e = np.asarray(e, dtype=float)
    base, valid = _sigma_energy_independent(zi, ai, zf, af)
    if not valid:
        return np.zeros_like(e)
    e2000, e600 = np.array([2000.0]), np.array([600.0])
    sig = base * edep(e, zi, zf) * (edep(e2000, zi, zf)[0] / edep(e600, zi, zf)[0])
    nzi = ai - 2 * zi
    temp = 0.0
    if not (zi <= 9 or zf == 4) and nzi <= 4:
        temp = 1.0 - nzi / 4.0
    if ai - af == 2 and zi - zf == 1:  # special case for 1p + 1n
        sig = sig + 1.6 * (zi - 9.0) * temp
    if af == 10 and zf == 4 and zi >= 7:
        sig = sig * 3.3
    return sig


def wsigma(zi: int, ai: int, zf: int, af: int, e: np.ndarray | float) -> np.ndarray:
    """GALPROP ``wsigma_cc``: Webber cross section (mb); 7Be includes the unbound 8Be channel."""
    e = np.asarray(e, dtype=float)
    if (zi == 4 and ai == 8) or (zf == 4 and af == 8):
        return np.zeros_like(e)
    if zf == 4 and af == 7:
        return sigma(zi, ai, zf, af, e) + sigma(zi, ai, zf, af + 1, e)
    return sigma(zi, ai, zf, af, e)
