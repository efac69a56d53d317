"""GALPROP's isotopic production cross section ``isotope_cs`` (galtoolslib ``nuc_package.cc``).

p + (Z_i, A_i) -> (Z_f, A_f) + X in mb, at kinetic energy E (MeV/n), chosen by ``kopt``
(``cross_section_option % 100``):

* ``12`` / ``22``: the **evaluated table** ``eval_iso_cs.dat`` when it has the channel
  (:func:`eval_cs`: log-linear in E between grid points, **0 below the lowest** tabulated energy,
  the **highest-energy value above** the table), otherwise option 11 / 21;
* ``11`` / ``21``: a **fit** from ``p_cs_fits.dat`` when a positive one exists,
  sigma = a [1 + sin(b log10(E)^c) exp(-d (E - g))] (0 below E_min); a negative first parameter
  selects the method for that channel (-1 Webber, -2 Silberberg-Tsao, -3 constant fitted to
  data, -10 / -20 Webber / ST renormalised). A = 10 and 11 fragments use the isobaric fits when
  present (10B = isobar(10) - 10Be, 10C = 0; 11B = isobar(11), 11C = 11Be = 0);
* ``10`` / ``20``: the Webber (:mod:`crprop.nuclear.webber93`) or Silberberg-Tsao
  (:mod:`crprop.nuclear.silberberg_tsao`) formula multiplied by the least-squares factor
  a = sum(f y / err^2) / sum(f^2 / err^2) over the measurements of ``isotope_cs.dat`` (1 if none);
* ``1`` / ``2``: the bare formula; ``3``: constant fitted to the data; ``0``: best of the two
  renormalised formulae by chi^2.

Two GALPROP details are reproduced: only the first 941 rows of ``eval_iso_cs.dat`` are read (its
declared size), and the fit-table scan skips its last row and, after a negative-parameter match,
the row that follows (pointer bookkeeping of the C++ loop).
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cache, lru_cache

import numpy as np

from crprop.nuclear.galprop_data import galprop_table, inuc_array
from crprop.nuclear.silberberg_tsao import yieldx
from crprop.nuclear.webber93 import wsigma

KOPT_VALUES = (0, 1, 2, 3, 10, 11, 12, 20, 21, 22)
"""Valid ``kopt`` (GALPROP cross_section_option modulo 100)."""


def _fnuc(z: int, a: int) -> int:
    return 100 * z + a


@dataclass(frozen=True)
class _Channel:
    energy: np.ndarray
    sigma: np.ndarray


@lru_cache(maxsize=1)
def _eval_channels() -> dict[tuple[int, int], _Channel]:
    """Evaluated channels: distinct grid energies (ascending) and the value of the first row listing
    each energy (GALPROP's scan keeps the first of repeated energies)."""
    tab = galprop_table("eval_iso_cs.dat")[0]
    a1, a2 = inuc_array(tab[:, 0]), inuc_array(tab[:, 1])
    out: dict[tuple[int, int], _Channel] = {}
    for key in dict.fromkeys(zip(a1.tolist(), a2.tolist(), strict=True)):
        m = (a1 == key[0]) & (a2 == key[1])
        energy, first = np.unique(tab[m, 2].astype(float), return_index=True)
        out[key] = _Channel(energy, tab[m, 3].astype(float)[first])
    return out


def has_eval(za1: int, za2: int) -> bool:
    """True if ``eval_iso_cs.dat`` (as read by GALPROP) has channel 100 Z + A: za1 -> za2."""
    return (za1, za2) in _eval_channels()


def eval_cs(emev: np.ndarray, za1: int, za2: int) -> np.ndarray:
    """GALPROP ``eval_cs``: evaluated cross section (mb) of channel za1 -> za2 (100 Z + A codes).

    Log10(E)-linear interpolation between the nearest grid points below / above (first occurrence
    of repeated energies); 0 below the lowest grid energy; the value at the highest grid energy above it.
    KeyError if the channel is not tabulated.
    """
    ch = _eval_channels()[(za1, za2)]
    e = np.atleast_1d(np.asarray(emev, dtype=float))
    n = ch.energy.size
    lo = np.searchsorted(ch.energy, e, side="right") - 1  # largest grid energy <= E
    hi = np.searchsorted(ch.energy, e, side="left")  # smallest grid energy >= E
    lo_c, hi_c = np.clip(lo, 0, n - 1), np.clip(hi, 0, n - 1)
    x0, y0 = ch.energy[lo_c], ch.sigma[lo_c]
    x1, y1 = ch.energy[hi_c], ch.sigma[hi_c]
    with np.errstate(divide="ignore", invalid="ignore"):
        interp = y0 + (np.log10(e) - np.log10(x0)) * (y1 - y0) / (np.log10(x1) - np.log10(x0))
    out = np.where(hi >= n, y0, np.where(x1 == x0, y1, interp))
    return np.where(lo < 0, 0.0, out)


@lru_cache(maxsize=1)
def _fit_codes() -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    tab = galprop_table("p_cs_fits.dat")[0]
    return inuc_array(tab[:, 0]), inuc_array(tab[:, 1]), tab[:, 2:8].astype(float)


@cache
def _fit_lookup(za1: int, za2: int) -> tuple[tuple[float, ...] | None, int | None]:
    """Scan ``p_cs_fits.dat`` as the C++ loop does: (positive fit parameters, or None; kopt override)."""
    c1, c2, params = _fit_codes()
    n = c1.size
    ptr = 0
    kopt_new: int | None = None
    for _ in range(n - 1):
        if za1 == c1[ptr] and za2 == c2[ptr]:
            b = params[ptr]
            ptr += 1
            if b[0] >= 0.0:
                return tuple(b.tolist()), kopt_new
            kopt_new = int(-b[0] + 0.1)
        ptr += 1
        if ptr >= n:
            break
    return None, kopt_new


def _fit_value(b: tuple[float, ...], emev: np.ndarray) -> np.ndarray:
    b32 = np.asarray(b, dtype=np.float32).astype(float)
    above = emev >= b32[5]
    e = np.where(above, emev, max(b32[5], 10.0))  # fit only evaluated where used (E >= E_min)
    val = b32[0] * (1.0 + np.sin(b32[1] * np.log10(e) ** b32[2]) * np.exp(-b32[3] * (e - b32[4])))
    return np.where(above, np.maximum(0.0, val), 0.0)


@lru_cache(maxsize=1)
def _measurements() -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    tab = galprop_table("isotope_cs.dat")[0]
    codes = np.stack([inuc_array(tab[:, 0]), inuc_array(tab[:, 1])], axis=1)
    err = tab[:, 4].astype(np.float32)
    err = np.where(err < 0, -err * tab[:, 3], err).astype(np.float32)  # relative -> absolute
    return codes, tab[:, 2:4].astype(np.float32), err


@cache
def renormalisation(iz: int, ia: int, izf: int, iaf: int, kopt: int) -> tuple[tuple[float, float, float], int,
                                                                          tuple[float, ...]]:
    """Least-squares factors (Webber, ST, const), number of data points and the chi^2 sums T[0..10]
    of ``isotope_cs`` for channel (iz, ia) -> (izf, iaf), from ``isotope_cs.dat`` (float32 sums)."""
    codes, ey, err = _measurements()
    m = (codes[:, 0] == _fnuc(iz, ia)) & (codes[:, 1] == _fnuc(izf, iaf))
    t = np.zeros(11, dtype=np.float32)
    a = [1.0, 1.0, 0.0]
    n_pts = int(m.sum())
    if n_pts:
        ej = ey[m, 0].astype(float)
        y = ey[m, 1]
        err2 = (err[m] ** 2).astype(np.float32)
        zeros = np.zeros(n_pts, np.float32)
        f1 = wsigma(iz, ia, izf, iaf, ej).astype(np.float32) if kopt // 10 != 2 else zeros
        f2 = yieldx(iz, ia, izf, iaf, ej).astype(np.float32) if kopt // 10 != 1 else zeros
        for k in range(n_pts):
            terms = (f1[k] * y[k] / err2[k], f1[k] * f1[k] / err2[k], f2[k] * y[k] / err2[k],
                     f2[k] * f2[k] / err2[k], y[k] / err2[k], np.float32(1.0) / err2[k],
                     y[k] * y[k] / err2[k], np.float32(2.0) * f1[k] * y[k] / err2[k], f1[k] * f1[k] / err2[k],
                     np.float32(2.0) * f2[k] * y[k] / err2[k], f2[k] * f2[k] / err2[k])
            t = (t + np.array(terms, dtype=np.float32)).astype(np.float32)
        for j in range(3):
            if t[2 * j + 1] != 0.0:
                a[j] = float(np.float32(t[2 * j] / t[2 * j + 1]))
    return (a[0], a[1], a[2]), n_pts, tuple(float(v) for v in t)


def isotope_cs(
    emev: np.ndarray | float, iz: int, ia: int, izf: int, iaf: int, kopt: int = 12
) -> tuple[np.ndarray, int]:
    """GALPROP ``isotope_cs``: (sigma in mb at ``emev`` MeV/n, method code).

    ``emev``: kinetic energy per nucleon (MeV/n), scalar or array. Method code (the ``kopt`` that
    finally produced the value): 12 / 22 evaluated table; -11 / -21 fit (also for the A = 10, 11
    isobaric-fit cases); 10 / 11 renormalised Webber; 20 / 21 renormalised Silberberg-Tsao; 1 / 2 bare
    Webber / ST; 3 constant fitted to data; for the kopt = 0 algorithm 1 (Webber) or 2 (ST) when
    chosen by chi^2, else the number of data points (0 or 1).
    """
    if kopt not in KOPT_VALUES:
        raise ValueError(f"kopt must be one of {KOPT_VALUES}, got {kopt}")
    e = np.atleast_1d(np.asarray(emev, dtype=float))
    info = kopt
    if kopt in (1, 2):
        return _formula(kopt, iz, ia, izf, iaf, e), info
    a1, a2 = _fnuc(iz, ia), _fnuc(izf, iaf)
    if kopt in (12, 22):
        if has_eval(a1, a2):
            return np.maximum(0.0, eval_cs(e, a1, a2)), info
        kopt -= 1
    if kopt in (11, 21):
        if izf != 0:
            if iaf == 10:  # B10 = isobar(10) - Be10, C10 = 0 when the isobaric fit exists
                b0, j = isotope_cs(e, iz, ia, 0, iaf, 21)
                if j == -21:
                    if a2 == 510:
                        be10, _ = isotope_cs(e, iz, ia, 4, iaf, 21)
                        return np.maximum(0.0, b0 - be10), j
                    if izf > 5:
                        return np.zeros_like(e), j
            if iaf == 11:  # B11 = isobar(11), C11 = Be11 = 0 when the isobaric fit exists
                b0, j = isotope_cs(e, iz, ia, 0, iaf, 21)
                if j == -21:
                    return (np.maximum(0.0, b0) if a2 == 511 else np.zeros_like(e)), j
        fit, kopt_new = _fit_lookup(a1, a2)
        if fit is not None:
            return _fit_value(fit, e), -kopt
        if kopt_new is not None:
            kopt = kopt_new
        if izf == 0:
            return np.zeros_like(e), kopt
    if kopt in (1, 2):
        return _formula(kopt, iz, ia, izf, iaf, e), kopt
    (aw, ast, aconst), n_pts, t = renormalisation(iz, ia, izf, iaf, kopt)
    if kopt == 3 and aconst != 0.0:
        return np.full_like(e, aconst), kopt
    if kopt // 10 == 1:
        return np.maximum(0.0, wsigma(iz, ia, izf, iaf, e) * aw), kopt
    if kopt // 10 == 2:
        return np.maximum(0.0, yieldx(iz, ia, izf, iaf, e) * ast), kopt
    # kopt = 0 (or 3 without data): choose the best approximation
    if n_pts < 2:
        cs = aw * wsigma(iz, ia, izf, iaf, e)
        cs_st = ast * yieldx(iz, ia, izf, iaf, e)
        out = np.where(cs <= 0.0, cs_st, cs)
        return np.maximum(0.0, out), n_pts
    xi1 = t[6] - aw * t[7] + aw * aw * t[8]
    xi2 = t[6] - ast * t[9] + ast * ast * t[10]
    if xi1 < xi2:
        return np.maximum(0.0, aw * wsigma(iz, ia, izf, iaf, e)), 1
    return np.maximum(0.0, ast * yieldx(iz, ia, izf, iaf, e)), 2


def _formula(kopt: int, iz: int, ia: int, izf: int, iaf: int, e: np.ndarray) -> np.ndarray:
    if kopt == 1:
        return np.maximum(0.0, wsigma(iz, ia, izf, iaf, e))
    return np.maximum(0.0, yieldx(iz, ia, izf, iaf, e))
