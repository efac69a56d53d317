"""Total inelastic (destruction) cross sections of cosmic-ray nuclei on interstellar H and He.

Ports of GALPROP v54 routines (galtoolslib):

* :func:`nucleon_cs` -- ``nucleon_cs.cc``: sigma_pp,inel (Tan & Ng 1983) and the p + A total inelastic
  cross section with ``total_cross_section`` option 0 (Letaw et al. 1983), 1 (Wellisch & Axen 1996
  for Z > 5, else option 2) or 2 (Barashenkov & Polanski CROSEC code, GALPROP's default). For a
  cosmic-ray nucleus (Z, A) at kinetic energy E per nucleon this is the cross section of a proton
  of energy E on the nucleus at rest (inverse kinematics);
* :func:`sighad_nonelastic_mb` -- CROSEC ``SIGHAD`` (``crn6.f``): quadratic interpolation in target
  mass between the 24 tabulated targets, linear in energy between the two bracketing table energies
  (linear extrapolation outside; GALPROP clamps E to 14 MeV .. 1 TeV first);
* :func:`he_to_h_ratios` -- ``He_to_H_CS.cc`` (Ferrando et al. 1988, PRC 37, 1490): He/H ratio of
  the total inelastic cross section, 2.10 A^-0.055, and of a partial production cross section;
* :func:`kcapture_cs` -- ``Kcapture_cs.cc``: K-shell electron attachment and stripping cross sections;
* :func:`loss_cross_sections` -- the sigma_H and sigma_He GALPROP puts in the fragmentation (loss) rate
  (``create_transport_arrays.cc``): nuclei sigma_H = nucleon_cs, sigma_He = sigma_H x total ratio, plus the
  electron-attachment cross section for K-capture nuclei (7Be); protons sigma_H = sigma_pp,
  sigma_He = sigma_p+He.

An alternative model ``"tripathi99"`` interpolates the Tripathi et al. (1996/1999) universal
parameterisation as tabulated for USINE v3.5 (``sigInelTripathi99.dat``, H and He targets,
Z = 1-30 isotopes, 0.05-6.29 GeV/n, 43 log-spaced points): log-linear in energy, **constant below
0.05 and above 6.29 GeV/n** (the first / last tabulated value).

Energies are kinetic energies per nucleon in MeV/n; cross sections in mb.
"""

from __future__ import annotations

from functools import lru_cache

import numpy as np

from crprop.constants import AMU_MEV, NUCLEON_MASS_KINEMATICS_MEV
from crprop.nuclear.galprop_data import BP_TARGET_A, USINE_SUBDIR, barpol_protons, data_path

INELASTIC_MODELS = ("barashenkov_polanski", "wellisch_axen", "letaw", "tripathi99")
"""Allowed ``model`` values: GALPROP total_cross_section = 2, 1, 0, and the USINE Tripathi table."""

GALPROP_TOTAL_CS_OPTION = {"barashenkov_polanski": 2, "wellisch_axen": 1, "letaw": 0}

_MP_GEV = NUCLEON_MASS_KINEMATICS_MEV * 1.0e-3  # GALPROP constants.h Mp = 0.938 GeV
_AMU_GEV = AMU_MEV * 1.0e-3  # GALPROP constants.h amu = 0.931494 GeV
_ALPHA_F = 1.0 / 137.035989561
_R_ELE_CM = 2.8179409238e-13
_PI = 3.141592653589793
_BP_EMIN_MEV = 14.0  # nucleon_cs clamps the CROSEC energy to [14 MeV, 1 TeV]
_BP_EMAX_MEV = 1.0e6


def _check_model(model: str) -> None:
    if model not in INELASTIC_MODELS:
        raise ValueError(f"unknown inelastic model {model!r}; allowed: {', '.join(INELASTIC_MODELS)}")


def _bint_quadratic(u: float, x: np.ndarray, f: np.ndarray) -> np.ndarray:
    """CROSEC ``BINT(U, E, F, N, 2)``: 3-point Lagrange interpolation; ``f`` has shape (N, ...)."""
    n = len(x)
    if u <= x[0]:
        j = 1
    elif u >= x[n - 2]:
        j = n - 2
    else:
        j = next(jj for jj in range(1, n - 1) if u < x[jj])
    x1, x2, x3 = x[j - 1], x[j], x[j + 1]
    y1, y2, y3 = f[j - 1], f[j], f[j + 1]
    return (
        y1 * ((u - x2) * (u - x3)) / ((x1 - x2) * (x1 - x3))
        + y2 * ((u - x1) * (u - x3)) / ((x2 - x1) * (x2 - x3))
        + y3 * ((u - x1) * (u - x2)) / ((x3 - x1) * (x3 - x2))
    )


@lru_cache(maxsize=256)
def _bp_table_for_target(a_target: float) -> tuple[np.ndarray, np.ndarray]:
    energy, sig = barpol_protons()
    return energy, _bint_quadratic(float(a_target), BP_TARGET_A, sig.T)  # (62,)


def sighad_nonelastic_mb(a_target: float, ekin_mev: np.ndarray | float) -> np.ndarray:
    """CROSEC ``SIGHAD(2, 1, 1, A, Z, T)``: proton + nucleus (mass ``a_target``) non-elastic sigma, mb.

    ``ekin_mev``: proton kinetic energy in MeV (values >= 1e6 MeV are set to 1e6). Negative results are 0.
    """
    t = np.minimum(np.asarray(ekin_mev, dtype=float), 1.0e6)
    energy, ff = _bp_table_for_target(float(a_target))
    n = len(energy)
    l0 = np.searchsorted(energy, t, side="left")  # first index with E >= T
    lo = np.clip(l0 - 1, 0, n - 2)
    x1, x2 = energy[lo], energy[lo + 1]
    y1, y2 = ff[lo], ff[lo + 1]
    sig = y1 + (t - x1) * (y2 - y1) / (x2 - x1)
    return np.maximum(sig, 0.0)


def sigma_pp_inel_mb(ekin_mev_per_n: np.ndarray | float) -> np.ndarray:
    """Proton-proton inelastic cross section (mb), Tan & Ng 1983 as in GALPROP; 0 below 0.3 GeV."""
    ek = np.asarray(ekin_mev_per_n, dtype=float) * 1.0e-3
    out = np.zeros_like(ek)
    m = ek > 0.3
    u = np.log((ek[m] + _MP_GEV) / 200.0)
    pp = 32.2 * (1.0 + 0.0273 * u) + np.where(u >= 0.0, 32.2 * 0.01 * u * u, 0.0)
    e = ek[m]
    low = e < 3.0
    le = np.log(np.where(low, e, 1.0))
    pp = np.where(low, pp / (1.0 + 0.00262 / e ** (17.9 + 13.8 * le + 4.41 * le**2)), pp)
    out[m] = pp
    return out


def nucleon_cs(option: int, ekin_mev_per_n: np.ndarray | float, z_target: int, a_target: int) -> np.ndarray:
    """GALPROP ``nucleon_cs`` PA_inel (mb): proton (Zp = 1) on nucleus (z_target, a_target).

    ``option`` = GALPROP ``total_cross_section``: 0 Letaw 1983, 1 Wellisch-Axen 1996 (Z > 5; BP
    otherwise), 2 Barashenkov-Polanski. Zero at non-positive energies. Option 0 is clipped at 0
    (its p + He fit is negative between ~10 and 20 MeV/n in GALPROP).
    """
    ek = np.asarray(ekin_mev_per_n, dtype=float) * 1.0e-3  # GeV
    out = np.zeros_like(ek)
    pos = ek > 0.0
    e = ek[pos]
    ta = float(a_target)
    if option == 0:
        c1 = 0.8 if a_target == 4 else 1.0
        c1 = 1.0 + 0.75 * np.exp(-e / 0.075) if a_target == 9 else np.full_like(e, c1)
        pa = c1 * 45.0 * ta**0.7 * (1.0 + 0.016 * np.sin(5.3 - 2.63 * np.log(ta)))
        pa = np.where(e < 5.0, pa * (1.0 - 0.62 * np.exp(-e / 0.2) * np.sin(10.9 / (e * 1.0e3) ** 0.28)), pa)
        if a_target == 4:
            pa = np.where(
                e > 0.01,
                111.0 * (1.0 - (1.0 - np.sin(9.72 * np.log10(np.maximum(e, 0.01) * 1000.0) ** 0.319 - 4.14))
                         * np.exp(-3.84 * (e - 0.1))),
                0.0,
            )
        out[pos] = np.maximum(pa, 0.0)  # GALPROP's p + He fit dips below 0 at 10-20 MeV; clipped here
        return out
    if option == 1 and z_target > 5:
        b0 = 2.247 - 0.915 * (1.0 - ta ** (-1.0 / 3.0))
        fcorr = (1.0 - 0.15 * np.exp(-e)) / (1.0 - 0.0007 * a_target)
        rn = np.log(ta - z_target) if a_target - z_target > 1.5 else 1.0
        s0 = _PI * 10.0 * 1.36**2 * fcorr * rn * (1.0 + ta ** (1.0 / 3.0) - b0 * (1.0 - ta ** (-1.0 / 3.0)))
        p1 = 8.0 - 8.0 / a_target - 0.008 * a_target
        p2 = 2.0 * (1.17 - 2.7 / a_target - 0.0014 * a_target)
        p3 = 0.8 + 18.0 / a_target - 0.002 * a_target
        p4 = 5.6 - 0.016 * a_target
        p5 = 1.37 * (1.0 + 1.0 / a_target)
        x = np.log10(e)  # GALPROP passes the energy in GeV here (Emev = Ek)
        f1 = 1.0 / (1.0 + np.exp(-p1 * (x + p2)))
        f2 = 1.0 + p3 * (1.0 - 1.0 / (1.0 + np.exp(-p4 * (x + p5))))
        out[pos] = f1 * f2 * s0
        return out
    if option not in (1, 2):
        raise ValueError(f"total_cross_section option must be 0, 1 or 2, got {option}")
    em = np.clip(1000.0 * e, _BP_EMIN_MEV, _BP_EMAX_MEV)
    out[pos] = sighad_nonelastic_mb(ta, em)
    return out


@lru_cache(maxsize=1)
def _tripathi_table() -> tuple[np.ndarray, dict[str, np.ndarray]]:
    lines = data_path(f"{USINE_SUBDIR}/sigInelTripathi99.dat").read_text().splitlines()
    body = [ln.strip() for ln in lines if ln.strip() and not ln.lstrip().startswith("#")]
    emin, emax, n_e = float(body[1].split()[0]), float(body[1].split()[1]), int(body[1].split()[2])
    energy_mev = 1.0e3 * emin * (emax / emin) ** (np.arange(n_e) / (n_e - 1))
    blocks: dict[str, np.ndarray] = {}
    i = 2
    while i < len(body):
        name = body[i]
        blocks[name] = np.array([[float(v) for v in body[i + 1 + k].split()] for k in range(n_e)])
        i += 1 + n_e
    return energy_mev, blocks


def tripathi_mb(z: int, a: int, ekin_mev_per_n: np.ndarray | float) -> tuple[np.ndarray, np.ndarray]:
    """Tripathi et al. inelastic sigma (mb) of nucleus (z, a) on H and on He, from the USINE table.

    Log-linear interpolation in energy, constant outside 0.05-6.29 GeV/n. ValueError if (z, a) is
    not tabulated.
    """
    from crprop.nuclear.species import ELEMENT_SYMBOLS

    energy, blocks = _tripathi_table()
    key = f"{a}{ELEMENT_SYMBOLS[z - 1]}"
    if key not in blocks:
        raise ValueError(f"{key} is not in the Tripathi table")
    le = np.log(np.clip(np.asarray(ekin_mev_per_n, dtype=float), energy[0], energy[-1]))
    tab = blocks[key]
    return np.interp(le, np.log(energy), tab[:, 0]), np.interp(le, np.log(energy), tab[:, 1])


def _fi(x: np.ndarray | float, x1: float, x2: float, f1: float, f2: float) -> np.ndarray | float:
    """Linear interpolation through (x1, f1), (x2, f2) (GALPROP ``FI``)."""
    return ((f1 - f2) * x + x1 * f2 - x2 * f1) / (x1 - x2)


def he_to_h_total_ratio(a: int) -> float:
    """He/H ratio of the total inelastic cross section of a nucleus of mass a: 2.10 A^-0.055."""
    return 2.10 / a**0.055


def he_to_h_ratios(
    ekin_mev_per_n: np.ndarray | float, zi: int, ai: int, zf: int, af: int
) -> tuple[np.ndarray, float]:
    """GALPROP ``He_to_H_CS``: (sigma(He+A_i -> A_f)/sigma(H+A_i -> A_f), sigma_tot(He)/sigma_tot(H)).

    ``ekin_mev_per_n`` in MeV/n (GALPROP's routine takes GeV/n; converted here). Both ratios are
    dimensionless; the production ratio (array) is 0 when ai <= af, the total ratio is a float.
    """
    e1 = np.asarray(ekin_mev_per_n, dtype=float) * 1.0e-3  # GeV/n
    tot = he_to_h_total_ratio(ai)
    if ai <= af:
        return np.zeros_like(e1), tot
    e_tab, d_tab, am_tab, z_tab, f_tab = (0.43, 0.73, 1.51), (2.45, 3.45, 4.40), (0.082, 0.047, 0.031), \
        (6.0, 8.0, 26.0), (-0.76, -0.41, 1.00)
    with np.errstate(divide="ignore"):
        le1 = np.log(e1)
    lo = e1 < e_tab[1]
    amu = np.where(lo, _fi(e1, e_tab[0], e_tab[1], am_tab[0], am_tab[1]),
                   _fi(e1, e_tab[1], e_tab[2], am_tab[1], am_tab[2]))
    delta = np.where(lo, _fi(le1, np.log(e_tab[0]), np.log(e_tab[1]), d_tab[0], d_tab[1]),
                     _fi(le1, np.log(e_tab[1]), np.log(e_tab[2]), d_tab[1], d_tab[2]))
    amu = np.where(e1 < e_tab[0], am_tab[0], np.where(e1 > e_tab[2], am_tab[2], amu))
    delta = np.where(e1 < e_tab[0], d_tab[0], np.where(e1 > e_tab[2], d_tab[2], delta))
    if zi < z_tab[1]:
        fzi = _fi(np.log(zi), np.log(z_tab[0]), np.log(z_tab[1]), f_tab[0], f_tab[1])
    else:
        fzi = _fi(np.log(zi), np.log(z_tab[1]), np.log(z_tab[2]), f_tab[1], f_tab[2])
    half = zi // 2  # C integer division
    if zi - zf <= half:
        ratio = np.exp(amu * np.abs(zi - zf - fzi * delta) ** 1.43)
    else:  # continuation in Z (continuity at dZ = Z/2)
        x = np.exp(amu * np.abs(half - fzi * delta) ** 1.43)
        y = x - np.exp(amu * np.abs(half - 1 - fzi * delta) ** 1.43)
        b = half * y / x
        a_coef = x / float(half) ** b
        ratio = a_coef * float(zi - zf) ** b
    return ratio, tot


def kcapture_cs(
    ekin_mev_per_n: np.ndarray | float, z_projectile: int, z_target: int
) -> tuple[np.ndarray, np.ndarray]:
    """K-shell electron (attachment, stripping) cross sections in mb (GALPROP ``Kcapture_cs``).

    Radiative + non-radiative attachment (Crawford 1979, Pratt et al. 1973; factor 1.202 for
    states above 1s) and stripping (Wilson 1978) for a bare projectile of charge ``z_projectile`` on an
    atom of charge ``z_target`` (1 = H, 2 = He). Energy in MeV/n; gamma = 1 + E/amu.
    """
    ek = np.asarray(ekin_mev_per_n, dtype=float)
    gam = 1.0 + ek * 1.0e-3 / _AMU_GEV
    s_t = 1.0e27 * 8.0 / 3.0 * _PI * _R_ELE_CM**2
    beta = np.sqrt(1.0 - gam**-2)
    lg = np.log((1.0 + beta) / (1.0 - beta))
    mbet = 4.0 / 3.0 + gam * (gam - 2.0) / (gam + 1.0) * (1.0 - lg / 2.0 / beta / gam**2)
    nbet = beta**-3 * ((-4.0 * gam + 34.0 - 63.0 / gam + 25.0 / gam**2 + 8.0 / gam**3) / 15.0
                       - (gam - 2.0) * (gam - 1.0) / 2.0 / beta / gam**3 * lg)
    a = z_projectile * _ALPHA_F
    fcor = a ** (2.0 * (np.sqrt(1.0 - a * a) - 1.0)) * np.exp(-2.0 * a / beta * np.arccos(a)) * (
        1.0 + _PI * a * nbet / mbet
    )
    attach = 1.202 * fcor * 3.0 / 2.0 * s_t * float(z_projectile) ** 5 * z_target * _ALPHA_F**4 * beta * gam \
        * (gam - 1.0) ** -3 * mbet
    strip = 3.0 / 2.0 * s_t * (z_projectile * beta * _ALPHA_F) ** -2 * 0.285 * (
        2.0 * np.log(2.0 / 0.219 * beta * gam / z_projectile / _ALPHA_F) - beta**2
    ) * z_target * (z_target + 1.0)
    return attach, strip


def sigma_inel_mb(
    z: int, a: int, ekin_mev_per_n: np.ndarray | float, model: str = "barashenkov_polanski"
) -> np.ndarray:
    """Total inelastic sigma (mb) of nucleus (z, a) on H: GALPROP ``nucleon_cs`` PA_inel for the
    GALPROP options, or the Tripathi table. For 1H this is sigma_pp,inel."""
    _check_model(model)
    if (z, a) == (1, 1):
        return sigma_pp_inel_mb(ekin_mev_per_n)
    if model == "tripathi99":
        return tripathi_mb(z, a, ekin_mev_per_n)[0]
    return nucleon_cs(GALPROP_TOTAL_CS_OPTION[model], ekin_mev_per_n, z, a)


def loss_cross_sections(
    z: int,
    a: int,
    ekin_mev_per_n: np.ndarray | float,
    model: str = "barashenkov_polanski",
    kcapture: bool = False,
    k_electron: int = 0,
) -> tuple[np.ndarray, np.ndarray]:
    """(sigma_H, sigma_He) in mb entering GALPROP's fragmentation (loss) rate for species (z, a).

    Nuclei: sigma_H = p + A inelastic sigma, sigma_He = sigma_H x 2.10 A^-0.055 (for ``"tripathi99"`` the
    tabulated He value). ``kcapture`` (the nucleus captures a K electron, e.g. 7Be): the bare state
    (``k_electron = 0``) adds the attachment sigma on H and He, the H-like state the stripping sigma.
    1H: sigma_H = sigma_pp,inel, sigma_He = p + He inelastic sigma (nucleon_cs on 4He).
    The fragmentation rate is beta c (sigma_H + He/H x sigma_He) 1e-27 n_H.
    """
    _check_model(model)
    ek = np.asarray(ekin_mev_per_n, dtype=float)
    if (z, a) == (1, 1):
        if model == "tripathi99":
            return sigma_pp_inel_mb(ek), tripathi_mb(2, 4, ek)[0]
        return sigma_pp_inel_mb(ek), nucleon_cs(GALPROP_TOTAL_CS_OPTION[model], ek, 2, 4)
    if model == "tripathi99":
        sig_h, sig_he = tripathi_mb(z, a, ek)
    else:
        sig_h = nucleon_cs(GALPROP_TOTAL_CS_OPTION[model], ek, z, a)
        sig_he = sig_h * he_to_h_total_ratio(a)
    if kcapture:
        att_h, strip_h = kcapture_cs(ek, z, 1)
        att_he, strip_he = kcapture_cs(ek, z, 2)
        if k_electron:
            sig_h, sig_he = sig_h + strip_h, sig_he + strip_he
        else:
            sig_h, sig_he = sig_h + att_h, sig_he + att_he
    return sig_h, sig_he
