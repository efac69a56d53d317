"""Silberberg & Tsao semi-empirical partial cross sections (code YIELDX of Dec 1999, NRL).

Port of GALPROP's ``YIELDX_011000_imos.f`` (R. Silberberg, C.H. Tsao, A.F. Barghouty 1998,
ApJ 501, 911; NAG-compatibility edits by I. Moskalenko) for projectiles with Z_i <= 16:
the driver ``YIELDX`` with its channel-specific renormalisations, ``YIELD1`` (fragments Z_j <= 5),
``YIELD2`` (5 <= Z_i <= 16, Z_j >= 5) and ``PXN`` ((p, xn) charge exchange, Z_j = Z_i + 1).
The heavy-projectile branches (``YIELD3`` / ``YIELD4`` and the Z_i > 20 revisions of ``YIELD1``)
are not ported: :func:`yieldx` raises ValueError for projectiles with Z_i > 16.

The Fortran is single precision (REAL*4, implicit integer I-N); the port computes in double
precision with the energy rounded to float32 as GALPROP passes it (relative differences ~1e-6).
Energies in MeV/n, cross sections in mb; vectorised over energy.
"""

from __future__ import annotations

import numpy as np

MAX_Z_PROJECTILE = 16
"""Heaviest projectile charge covered by the ported YIELD1 / YIELD2 / PXN branches."""

# CJ(JA, JZ) correction factors (DATA statements), by fragment charge: {JA: factor}, default 1
_CJ_YIELD1 = {2: {6: 0.60}, 3: {7: 1.80, 8: 0.70, 9: 3.00}, 4: {7: 0.95, 9: 0.65, 10: 1.30},
              5: {8: 0.20, 10: 0.70, 11: 1.70}}
_CJ_YIELD2 = {5: {8: 0.20, 10: 0.70, 11: 1.70}, 6: {10: 0.60}, 7: {13: 0.39, 15: 2.00}, 8: {15: 1.20},
              10: {19: 0.60, 21: 0.83}, 11: {22: 1.20}}


def _cj(table: dict[int, dict[int, float]], ja: int, jz: int) -> float:
    return table.get(jz, {}).get(ja, 1.0)


def _parity(n: int) -> int:
    """1 for odd, 0 for even (the imos replacement of ``JN .AND. 1``)."""
    return 0 if n // 2 * 2 == n else 1


def _h3(ei: np.ndarray) -> np.ndarray:
    """Low-energy threshold factor H3 = 1 - exp(-(E/25)^4) below 80 MeV/n, in single precision as in the
    Fortran (the float32 cancellation matters, relatively, at a few MeV/n)."""
    r = ei.astype(np.float32) / np.float32(25.0)
    r2 = r * r
    x = r2 * r2  # gfortran evaluates **4 as (r*r)*(r*r)
    expf = np.exp(-x.astype(float)).astype(np.float32)  # correctly rounded single-precision exp
    h3 = (np.float32(1.0) - expf).astype(float)
    return np.where(ei < 80.0, h3, 1.0)


def _fe_low(ei: np.ndarray) -> np.ndarray:
    """Low-energy enhancement 1 + 2.1 exp(-(E/100)^2) + 0.4 exp(-E/350) of neutron-stripping channels."""
    return 1.0 + 2.1 * np.exp(-((ei / 100.0) ** 2)) + 0.4 * np.exp(-ei / 350.0)


def _ss(ai: float, zi: float, s: float, c: float) -> float:
    r = ai / zi
    return s - c * (r - 2.0) ** 1.4 if r >= 2.0 else s + c * (2.0 - r) ** 1.4


def _yield1(iz: int, ia: int, jz: int, ja: int, ej: np.ndarray) -> np.ndarray:
    """YIELD1: fragments of charge 2..5 (light fragments), projectile Z <= 28 part."""
    qc, ql, b = 13.0, 13.0, 1.15
    pc, pl = 0.0, 0.16
    rc, rl, ru = 1.80, 10.7, 0.25
    s, c, t = 0.54, 0.32, 0.003
    ai, zi, aj, zj = float(ia), float(iz), float(ja), float(jz)
    cj = _cj(_CJ_YIELD1, ja, jz)
    kn = (ia - iz) - (ja - jz)
    jp = iz - jz + 1
    mn, mz = _parity(ja - jz), _parity(jz)
    pn = 0.9 - 0.1 * mn if (mz == 1 and mn <= 1) else 1.15
    ec = max(68.7 * ai**0.866, 1250.0)
    ei = np.minimum(ej, ec)
    h3 = _h3(ei)
    if not (jp > 2 or kn > 1):
        cx, ct = 1.0, 1.0
        if jz == 4 and ja == 9:
            cx = cj / pn
        if ai / zi > 2.0:
            ct = (zi - 2.0) / ((ai - zi) - 2.0)
        if zi > 5 or ct > 1.0 or ai - zi <= 2.0:
            ct = 1.0
        if jp <= 1 and kn <= 1:
            qn = 24.0 * (1.0 + 0.01 * ai) if ai <= 40.0 else 1.02 * (ai - 7.0)
            if ai >= 63.0:
                qn = 57.0
            fe = np.where(ei < 2500.0, _fe_low(ei) * h3, 1.0)
            qh = qn * cx
            return np.where(ei < ec, qh * fe, qh)
        if jp > 1 and kn == 0:
            fe = np.where(ej < 2500.0, (1.0 - np.exp(-((ej / 230.0) ** 2)) + 2.2 * np.exp(-ej / 75.0)
                                        + 0.33 * np.exp(-(((ej - 900.0) / 500.0) ** 2))) * h3, 1.0)
            return 21.0 * cx * ct * fe
    # label 3 / 5: general formula (projectile Z < 29)
    fz = 1.0
    if ia <= 34:
        if ia >= 14 and ja == 6 and jz == 2:
            fz = 1.0 + 0.1 * (ia - 14)
    elif ia < 64:
        if ja == 6 and jz == 2:
            fz = 3.0 * (1.0 + 0.02 * (ia - 34))
        if ja == 6 and jz == 3:
            fz = 1.0 + 0.02 * (ia - 34)
        if ja == 7 and jz <= 4:
            fz = 1.0 + 0.01 * (ia - 34)
    aa = ai - aj
    ae = 31.5 + 0.052 * (ai - 36.0) * (np.log(ei) - 3.17)
    da = np.where(aa > ae, ae, aa)
    low = ei < 1250.0
    q1 = np.where(low, ql * np.exp(b * (1.0 - 0.0008 * ei)), qc)
    pe = np.where(low, pl * (1.0 - 0.0008 * ei), pc)
    re = np.where(low, rl / ei**ru, rc)
    ss = _ss(ai, zi, s, c)
    za = (zj - (ss - t * aj) * aj) ** 2
    qr = q1 * np.exp(-pe * da - re * za) * fz * cj
    if jp == 3 and kn == 0:
        return 1.5 * qr
    return qr


def _yield2(iz: int, ia: int, jz: int, ja: int, ej: np.ndarray) -> np.ndarray:
    """YIELD2: 5 <= Z_i <= 16 and fragments 5 <= Z_j <= Z_i."""
    pc, pl, pu = 0.075, 2.60, 0.50
    s, c = 0.502, 0.26
    rc, rl, ru = 1.60, 10.2, 0.26
    t = 0.0005
    ai, zi, aj, zj = float(ia), float(iz), float(ja), float(jz)
    cj = _cj(_CJ_YIELD2, ja, jz)
    mn, mz = _parity(ja - jz), _parity(jz)
    pn = 0.9 - 0.1 * mn if (mz == 1 and mn <= 1) else 1.15
    ec = max(68.7 * ai**0.866, 1250.0)
    ei = np.minimum(ej, ec)
    h3 = _h3(ei)
    kn = (ia - iz) - (ja - jz)
    jp = iz - jz + 1
    cx = cj if ((jz == 7 and ja == 13) or (jz == 10 and ja == 19)) else 1.0
    ct = (zi - 2.0) / ((ai - zi) - 2.0) if (ai - zi) != 2.0 else np.inf
    if zi > 5.0 or ct > 1.0:
        ct = 1.0
    if jp <= 1 and kn == 1:
        fe = np.where(ei < 2500.0, _fe_low(ei) * h3, 1.0)
        qh = 24.0 * (1.0 + 0.01 * ai) * cx
        qj = np.where(ei < ec, qh * fe, qh)
    elif jp == 2 and kn == 0:
        fe = np.where(ej < 2500.0, (1.0 - np.exp(-((ej / 230.0) ** 2)) + 2.2 * np.exp(-ej / 75.0)
                                    + 0.33 * np.exp(-(((ej - 900.0) / 500.0) ** 2))) * h3, 1.0)
        qj = 21.0 * cx * ct * fe
    else:  # label 3: general formula
        f1 = 1.0 - 0.3 * np.log(ai / 20.0)
        pe0 = 0.77 / ai ** (2.0 / 3.0) if ec > 1250.0 else pc
        pe = np.where(ei < ec, pl / ei**pu, pe0)
        re = np.where(ei < 1250.0, rl / ei**ru, rc)
        ss = _ss(ai, zi, s, c)
        za = (zj - (ss - t * aj) * aj) ** 2
        q1 = 27.6 * (ai ** (2.0 / 3.0) - 1.0) * f1 * pe * re**0.5 / (1.0 - np.exp(-pe * ai))
        qj = q1 * np.exp(-pe * (ai - aj)) * np.exp(-re * za) * cj * pn
        if jp >= 3 and kn == 0:
            qj = qj * min(0.0022 * aj * aj, 1.0)
            if jp == 4:
                qj = np.minimum(qj, 0.5)
    # label 10
    if iz >= 14:
        boost = 1.0 + 0.12 * (iz - 13) * np.exp(-(((ei - 500.0) / 350.0) ** 2))
        qj = np.where(ei >= 500.0, qj * (1.0 + 0.12 * (iz - 13)), np.where(ei >= 200.0, qj * boost, qj))
    if jp == 2 and kn == 1 and iz >= 12:
        qj = qj * 1.7
    if float(np.float32(aj) / np.float32(zj)) - 1.0e-7 > float(np.float32(1.8)) or iz > 10:
        return qj
    return qj * (0.5 if (jp == 1 and kn == 2) else 0.3)


def _pxn(z: float, a: float, x: float, e: np.ndarray) -> np.ndarray:
    """PXN: (p, xn) reactions producing the isobar neighbour Z + 1 (light targets, Z < 39)."""
    ei = 500.0 + 300.0 * x
    base = -(abs(6.9 - x) ** 2.8) / 67.45
    q1 = 3.3 * np.exp(base - 90.0 * x**2.35 * abs(2.5 - a / z) ** 5)
    qa = 3.3 * np.exp(base - 0.04638 * x**2.35)
    qb = 3.3 * np.exp(base)
    if 2.28 <= a / z <= 2.50:
        q1 = qa ** ((2.5 - a / z) / 0.22) * qb ** ((a / z - 2.28) / 0.22)
    if a / z > 2.5:
        q1 = qb
    qi = q1
    xz = ((a - z) - x + 1.0) / z
    q2 = 0.5 * np.exp(-90.0 * abs(1.5 - xz) ** 5)
    if xz <= 1.2:
        qi = min(q1, q2)
    bb = max(a, 35.0)
    fx = (12.0 + 0.1 * x) * x - (1.0 - 1.0 / x**0.5) * bb ** (2.0 / 3.0)
    alogy = np.minimum((1.0 + 1.5 * x) * np.log(np.abs(e / fx)), 10.0)
    f1 = 1.0 - np.exp(-np.exp(alogy))
    cc = max(1.0 + 0.03 * x * (a - 208.0), 1.0)
    d = 27.5 - 0.1 * (a + (200.0 - a) / x**0.5)
    if (1.0 - x) * (208.0 - a) > 0:
        d -= 0.03 * (1.0 - x) * (208.0 - a)
    f2 = 3500.0 / cc * np.exp(-0.6 * x - 0.5 * (((e - d) - 5.0 * x**1.34) / (6.0 - 2.5 / x**4)) ** 2) * (
        1.0 - np.exp(-((0.03 * a / (2.0 - 1.0 / x**4)) ** 3))
    )
    g = 0.01 * (a - 208.0) if a >= 208.0 else 0.0
    f3 = (1300.0 / (e + 20.0 * x**1.5 / e)) ** (1.3 - g)
    fh = (1300.0 / (ei + 20.0 * x**1.5 / ei)) ** (1.3 - g)
    qj = np.where(e >= ei, fh * qi, f1 * (f2 + f3) * qi)
    if z == 6.0 and a - x + 1.0 == 13.0:
        qj = qj * 0.4
    if z == 3.0 and a - x + 1.0 == 9.0:
        qj = qj * 0.65
    return qj


def yieldx(iz: int, ia: int, jz: int, ja: int, ej: np.ndarray | float) -> np.ndarray:
    """Silberberg-Tsao cross section (mb) of p + (iz, ia) -> (jz, ja) at ``ej`` MeV/n (array).

    Zero where YIELDX returns zero (fragment Z <= 1, A_j > A_i, ...). ValueError for projectiles
    with Z > 16 (YIELD3/YIELD4 branches, not ported).
    """
    ej = np.asarray(ej, dtype=np.float32).astype(float)
    zero = np.zeros_like(ej)
    if iz * ia == jz * ja:
        return zero
    ij = iz - jz
    nn = (ia - iz) - (ja - jz)
    if ia < ja or iz > 92 or iz <= 2:
        return zero
    if ij < -1 or nn < 0 or jz <= 1:
        return zero
    if ij != -1 and iz - jz > ia - ja:
        return zero
    if iz > MAX_Z_PROJECTILE:
        raise ValueError(
            f"Silberberg-Tsao cross sections are ported for projectile Z <= {MAX_Z_PROJECTILE}, got Z={iz}"
        )
    if ij == -1 and ia >= ja:
        return _pxn(float(iz), float(ia), float(nn), ej)
    qj = zero
    if jz <= 4:
        qj = _yield1(iz, ia, jz, ja, ej)
    if iz == 6:
        qj = np.where((ej > 200.0) & (ej <= 400.0), qj * (1.0 - 0.002 * (ej - 200.0)), qj)
        qj = np.where((ej > 400.0) & (ej <= 1000.0), qj * 0.6, qj)
        qj = np.where((ej > 1000.0) & (ej <= 5000.0), qj * (0.6 + 0.0001 * (ej - 1000.0)), qj)
    if jz >= 5 and 5 <= iz <= 16:
        qj = _yield2(iz, ia, jz, ja, ej)
    fac = 1.0
    fac *= {(6, 12, 4, 8): 1.8, (7, 14, 6, 12): 1.8, (7, 14, 6, 13): 0.5, (8, 16, 6, 12): 1.8,
            (8, 16, 7, 14): 1.8, (8, 16, 7, 15): 1.5}.get((iz, ia, jz, ja), 1.0)
    if iz in (8, 10) and iz * 2 == ia and ja - 2 * jz >= 2 and jz >= 5:
        fac *= 0.7
    if 9 <= iz <= 16 and 2 * jz - ja == 1 and jz >= 9:
        fac *= 0.7
    if 6 <= iz <= 11 and 2 * jz - ja == 2 and jz >= 9:
        fac *= 0.4
    if 10 <= iz <= 13 and jz in (6, 8) and jz * 2 == ja:
        fac *= 2.0
    if (iz, ia) in ((10, 20), (12, 24)) and jz == 7 and ja in (14, 15):
        fac *= 1.5
    if 10 <= iz <= 16 and jz == 9:
        fac *= 0.8
    if iz in (12, 14) and 2 * iz == ia:
        if iz - jz == 2 and ia - ja == 4:
            fac *= 1.6
        if iz - jz == 1 and ia - ja == 1:
            fac *= 1.6
    if iz == 16 and ia == 32:
        fac *= {(2, 4): 1.6, (1, 1): 1.2, (1, 2): 0.8, (3, 5): 1.4, (4, 8): 1.4, (8, 16): 1.4}.get(
            (iz - jz, ia - ja), 1.0)
    if iz == 6 and 3 <= jz <= 4:
        fac *= 1.4
    qj = qj * fac
    if jz == 5:
        q1 = _yield1(iz, ia, jz, ja, ej)
        qj = np.sqrt(q1 * qj)
        qj = qj * {(7, 14, 5, 10): 1.8, (6, 12, 5, 10): 1.3, (6, 12, 5, 11): 1.3}.get((iz, ia, jz, ja), 1.0)
        return qj
    late = {(14, 28, 12, 26): 1.3, (12, 24, 12, 23): 1.4, (10, 20, 10, 19): 1.3, (10, 20, 9, 19): 1.2,
            (8, 16, 7, 14): 0.8, (8, 16, 6, 14): 1.2, (6, 12, 4, 10): 1.5}
    return qj * late.get((iz, ia, jz, ja), 1.0)
