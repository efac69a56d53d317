"""GALPROP's nuclear decay network (``nucdata`` of galtoolslib ``nuc_package.cc``, I. Moskalenko).

:func:`nucdata` is a line-by-line port. For a nucleus (Z, A) it follows the decay chain down to a
stable or long-lived nucleus and returns the branching ratio into a requested final nucleus:

* outside the proton / neutron drip "boundary" nuclei (:data:`BOUNDARY`) the nucleus emits
  neutrons (A reduced to the right boundary of its Z) or protons (moved to the left boundary of
  its neutron number);
* nuclei listed in ``nucdata.dat`` (block ``ksp = 0``, compiled from Nuclear Data Sheets) decay
  through their special channels (up to 3 products, 4 generations, p/n/alpha emission);
* every other nucleus beta-decays along its isobar to the stable range ``STABLE[A]`` (Z_min, Z_max);
* the long-lived nuclei of :data:`LONG_LIVED` (t_1/2 >~ 1 yr) stop the chain; their half-life is
  returned. Each has a value for the bare nucleus and one for the nucleus with one K-shell
  electron (H-like ion); for electron-capture nuclides GALPROP doubles the laboratory value since
  only one K electron is present.

The tables below are the data blocks of ``nuc_package.cc`` (GALPROP v54 source as in github
suvoooo/GALPROP_Local_Sources @ 91e853708f8b205d22ce5f5dc8ef9eea812f3b4a); ``nucdata.dat`` is read
from ``crprop/data/cross_sections/galprop``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from functools import cache, lru_cache

import numpy as np

from crprop.constants import YEAR_S
from crprop.nuclear.galprop_data import galprop_table, inuc

# Isobars: (Z_min, Z_mid, Z_max) of the stable / long-lived range for A = 1..64 (``stable[64][3]``).
STABLE: tuple[tuple[int, int, int], ...] = (
    (1, 0, 1), (1, 0, 1), (1, 0, 2), (2, 0, 2),
    (0, 0, 0), (3, 0, 3), (3, 0, 4), (0, 0, 0),
    (4, 0, 4), (4, 0, 5), (5, 0, 5), (6, 0, 6),
    (6, 0, 6), (6, 0, 7), (7, 0, 7), (8, 0, 8),
    (8, 0, 8), (8, 0, 8), (9, 0, 9), (10, 0, 10),
    (10, 0, 10), (10, 0, 11), (11, 0, 11), (12, 0, 12),
    (12, 0, 12), (12, 0, 13), (13, 0, 13), (14, 0, 14),
    (14, 0, 14), (14, 0, 14), (15, 0, 15), (14, 0, 16),
    (16, 0, 16), (16, 0, 16), (17, 0, 17), (16, 17, 18),
    (17, 0, 18), (18, 0, 18), (18, 0, 19), (18, 19, 20),
    (19, 0, 20), (18, 0, 20), (20, 0, 20), (20, 0, 22),
    (21, 0, 21), (20, 0, 22), (22, 0, 22), (20, 0, 22),
    (22, 0, 23), (22, 23, 24), (23, 0, 24), (24, 0, 24),
    (24, 0, 25), (24, 25, 26), (25, 0, 26), (26, 0, 28),
    (26, 0, 27), (26, 0, 28), (27, 0, 28), (26, 27, 28),
    (28, 0, 28), (28, 0, 28), (28, 0, 29), (28, 0, 28),
)

# Long-lived nuclei: (Z.AA, t_1/2 [yr], daughter Z.AA) for the bare nucleus and for the H-like ion
# (``longliv[25][2][3]``; laboratory EC half-lives, doubled in :func:`_long_lived` as GALPROP does).
_LONG_LIVED_RAW: tuple[tuple[tuple[float, float, float], tuple[float, float, float]], ...] = (
    ((1.03, 12.33, 2.03), (1.03, 12.33, 2.03)),        # 3H  (b-) 3He
    ((4.07, 0.0, 4.07), (4.07, 0.1459, 3.07)),         # 7Be (EC) 7Li
    ((4.10, 1.60e6, 5.10), (4.10, 1.60e6, 5.10)),      # 10Be(b-) 10B
    ((6.14, 5.73e3, 7.14), (6.14, 5.73e3, 7.14)),      # 14C (b-) 14N
    ((11.22, 4.80e3, 10.22), (11.22, 2.60e0, 10.22)),  # 22Na(b+ / EC) 22Ne
    ((13.26, 9.10e5, 12.26), (13.26, 4.075e6, 12.26)),  # 26Al(b+ / EC) 26Mg
    ((14.32, 172.0, 16.32), (14.32, 172.0, 16.32)),    # 32Si(2b-) 32S
    ((17.36, 3.07e5, 18.36), (17.36, 1.58e7, 16.36)),  # 36Cl(b- / EC) 36Ar / 36S
    ((18.37, 0.0, 18.37), (18.37, 0.1, 17.37)),        # 37Ar(EC) 37Cl
    ((18.39, 2.69e2, 19.39), (18.39, 2.69e2, 19.39)),  # 39Ar(b-) 39K
    ((19.40, 1.43e9, 20.40), (19.40, 1.43e9, 20.40)),  # 40K (b-) 40Ca
    ((20.41, 0.0, 20.41), (20.41, 1.03e5, 19.41)),     # 41Ca(EC) 41K
    ((18.42, 32.9, 20.42), (18.42, 32.9, 20.42)),      # 42Ar(2b-) 42Ca
    ((22.44, 0.0, 22.44), (22.44, 49.0, 20.44)),       # 44Ti(EC b+) 44Ca
    ((23.49, 0.0, 23.49), (23.49, 0.903, 22.49)),      # 49V (EC) 49Ti
    ((24.51, 0.0, 24.51), (24.51, 0.076, 23.51)),      # 51Cr(EC) 51V
    ((25.53, 0.0, 25.53), (25.53, 3.74e6, 24.53)),     # 53Mn(EC) 53Cr
    ((25.54, 6.30e5, 26.54), (25.54, 0.855, 24.54)),   # 54Mn(b- / EC) 54Fe / 54Cr
    ((26.55, 0.0, 26.55), (26.55, 2.73e0, 25.55)),     # 55Fe(EC) 55Mn
    ((28.56, 4.00e4, 26.56), (28.56, 0.1, 26.56)),     # 56Ni(2b+ / EC b+) 56Fe
    ((27.57, 0.0, 27.57), (27.57, 0.744, 26.57)),      # 57Co(EC) 57Fe
    ((28.59, 0.0, 28.59), (28.59, 7.60e4, 27.59)),     # 59Ni(EC) 59Co
    ((27.60, 5.27e0, 28.60), (27.60, 5.27e0, 28.60)),  # 60Co(b-) 60Ni
    ((26.60, 1.50e6, 27.60), (26.60, 1.50e6, 27.60)),  # 60Fe(b-) 60Co
    ((28.63, 1.00e2, 29.63), (28.63, 1.00e2, 29.63)),  # 63Ni(b-) 63Cu
)

MEASURED_HALF_LIVES_YR: dict[str, float] = {"10Be": 1.387e6}
"""Laboratory half-lives (years) that differ from GALPROP's tables, for ``Network.with_half_lives`` /
``GalaxySetup.with_half_lives``. 10Be: 1.387 +- 0.012 Myr (Chmeleff et al. 2010, NIM B 268, 192; Korschinek
et al. 2010, NIM B 268, 187) against GALPROP's 1.60 Myr. Other beta-minus emitters of the Z <= 14 network keep
GALPROP's values (14C 5730 yr vs 5700 yr: 0.5 %); 26Al's 9.1e5 yr is the bare nucleus' beta+ partial
half-life, the right one for a fully stripped cosmic ray."""

# Boundary nuclei Z.AA (``boundary[29][2]``): column 0 = left (proton-drip) boundary for neutron
# number N = 0..28, column 1 = right (neutron-drip) boundary for Z = 1..28 (last entry unused).
BOUNDARY: tuple[tuple[float, float], ...] = (
    (1.01, 1.04), (3.04, 2.08), (3.05, 3.11), (6.09, 4.14), (6.10, 5.15), (8.13, 6.16),
    (8.14, 7.21), (10.17, 8.22), (12.20, 9.24), (12.21, 10.26), (14.24, 11.30), (14.25, 12.30),
    (15.27, 13.34), (16.29, 14.35), (16.30, 15.38), (18.33, 16.40), (20.36, 17.43), (20.37, 18.46),
    (20.38, 19.48), (22.41, 20.51), (22.42, 21.52), (24.45, 22.53), (24.46, 23.55), (24.47, 24.59),
    (25.49, 25.63), (26.51, 26.65), (27.53, 27.69), (27.54, 28.69), (28.56, 0.99),
)

NETWORK_NDS = 0
"""``ksp`` value of the Nuclear-Data-Sheets decay network (the one GALPROP uses everywhere)."""


def _fnuc(z: int, a: int) -> int:
    return 100 * z + a


@lru_cache(maxsize=1)
def _long_lived() -> tuple[tuple[tuple[int, float, int], ...], tuple[tuple[int, float, int], ...]]:
    """Long-lived table as (``100Z+A``, t_half [yr] (float32 as in C++), daughter ``Z.AA`` float32)."""
    bare, kel = [], []
    for b, k in _LONG_LIVED_RAW:
        t_b = float(np.float32(b[1]))
        t_k = float(np.float32(k[1]))
        if t_b != t_k:  # K-capture nuclei: factor of 2 because only 1 electron
            t_k = float(np.float32(t_k * 2.0))
        bare.append((inuc(b[0]), t_b, b[2]))
        kel.append((inuc(k[0]), t_k, k[2]))
    return tuple(bare), tuple(kel)


@dataclass(frozen=True)
class DecayResult:
    """Result of :func:`nucdata`.

    ``branching``: branching ratio (0 if the final nucleus is not reached);
    ``long_lived``: (Z, A) of an intermediate long-lived nucleus met on the way, or (0, 0);
    ``t_half_s``: half-life (s) of that intermediate nucleus, or of the initial nucleus when it is
    itself long-lived, else 0.
    """

    branching: float
    long_lived: tuple[int, int]
    t_half_s: float


def _beta_to_stable(z: int, a: int) -> int:
    zmin, _, zmax = STABLE[a - 1]
    if z > zmax:
        return zmax  # b+ decay
    if z < zmin:
        return zmin  # b- decay
    return z


def _follow_long_lived(z5: int, a5: int, k_electron: int) -> tuple[int, int, int, int, float]:
    """Apply the long-lived table to (z5, a5): returns (z5', a5', izl, ial, To_s)."""
    table = _long_lived()[k_electron]
    for code, t_half, daughter in table:
        if _fnuc(z5, a5) == code:
            to = t_half * YEAR_S
            izl, ial = (z5, a5) if to else (0, 0)
            zd = int(np.float32(daughter))
            ad = inuc(float(np.float32(daughter)) - zd)
            return zd, ad, izl, ial, to
    return z5, a5, 0, 0, 0.0


def _nucdata_rows(ksp: int) -> np.ndarray:
    return galprop_table("nucdata.dat")[ksp]


@lru_cache(maxsize=4)
def _nucdata_codes(ksp: int) -> tuple[int, ...]:
    return tuple(inuc(r[0]) for r in _nucdata_rows(ksp))


@cache
def nucdata(z: int, a: int, zf: int, af: int, k_electron: int = 0, ksp: int = NETWORK_NDS) -> DecayResult:
    """Branching ratio of nucleus (z, a) into the final stable / long-lived nucleus (zf, af).

    Port of GALPROP ``nucdata(ksp, iz, ia, K_electron, izf, iaf, &izl, &ial, &To)``.
    ``k_electron = 1`` uses the half-lives of the H-like ion (K-shell electron attached).
    If (z, a) == (zf, af) the result is 1 for stable and long-lived nuclei and 0 otherwise.
    Half-lives in the result are in seconds (GALPROP's year = 365.25 d).
    """
    zero = DecayResult(0.0, (0, 0), 0.0)
    if z <= 0 or a <= 0:
        return zero
    if z * a > 1 and z >= a:
        return zero
    if _fnuc(z, a) > 2864 or a > 64:
        return zero
    # boundaries: neutron emission beyond the right boundary, proton emission beyond the left one
    z0, a0 = z, a
    right = inuc(float(np.float32(BOUNDARY[z - 1][1])) - z)
    if a > right:
        a0 = right
    if a - z < 29:
        left = float(np.float32(BOUNDARY[a - z][0]))
        if a > inuc(math.modf(left)[0]):
            z0 = int(left)
            a0 = inuc(left - z0)
    rows = _nucdata_rows(ksp)
    codes = _nucdata_codes(ksp)
    special = next((i for i, c in enumerate(codes) if c == _fnuc(z0, a0)), -1)

    if special < 0:  # standard case: beta decay along the isobar, then long-lived table
        z5, a5 = _beta_to_stable(z0, a0), a0
        z5, a5, izl, ial, to = _follow_long_lived(z5, a5, k_electron)
        b = 1.0 if _fnuc(zf, af) in (_fnuc(z5, a5), _fnuc(izl, ial)) else 0.0
        if _fnuc(z0, a0) == _fnuc(izl, ial):
            izl = ial = 0
        return DecayResult(b, (izl, ial), to)

    # developing the network of special decays (up to 4 generations of 3 products)
    iw = [-1] * 121
    w0 = [0.0] * 121
    w1 = [0.0] * 121
    iw[0], w1[0] = special, 1.0
    l_idx, m, n = -1, 0, 0
    for gen in range(4):
        ia4 = 3**gen
        l_idx += ia4
        iy = 0
        n = 0
        while n < ia4:
            if iw[m] >= 0:
                row = rows[iw[m]]
                w0[m] = 0.0
                for k in (2, 4, 6):
                    slot = l_idx + 3 * n + k // 2
                    w0[slot] = float(row[k - 1])
                    w1[slot] = float(np.float32(row[k] * np.float32(w1[m])))
                    for j in range(iw[m]):
                        if row[k - 1] == rows[j][0]:
                            iw[slot] = j
                            iy = slot
            n += 1
            m += 1
        if iy == 0:
            break
    # check for stability of the final nuclei; the first match is returned
    for k in range(l_idx + 3 * n + 1):
        if w0[k] == 0.0:
            continue
        z4 = int(np.float32(w0[k]))
        a4 = inuc(float(np.float32(w0[k])) - z4)
        z5, a5 = _beta_to_stable(z4, a4), a4
        z5, a5, izl, ial, to = _follow_long_lived(z5, a5, k_electron)
        if _fnuc(zf, af) in (_fnuc(izl, ial), _fnuc(z5, a5)):
            return DecayResult(w1[k], (izl, ial), to)
    return zero
