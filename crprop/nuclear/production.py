"""Production cross sections parent -> daughter on a propagated network (GALPROP v54 conventions).

Spallation (``kind`` 0), GALPROP ``decayed_cross_sections.cc``: for parent P = (Z_p, A_p) and
daughter D = (Z_d, A_d) with A_p > A_d the cross section is summed over intermediate nuclei
I = (Z_1, A_1), max(Z_d - 3, 1) <= Z_1 <= min(Z_p, Z_d + 3), max(2 Z_1 - 4, A_d) <= A_1 < A_p,
A_1 <= 2.5 Z_1 + 4.2, that reach D through the decay network (branching BR_I from
:func:`crprop.nuclear.decay.nucdata`); channels through an intermediate long-lived nucleus
(t_1/2 >= ``t_half_limit_yr``, e.g. 10Be for D = 10B) are skipped -- those nuclei are propagated and
feed D by their decay source instead. Ghosts (t_1/2 < limit: 10C, 11C, 14C, 22Na ... ) are folded in:

    sigma_decayed(E) = sum_I sigma_H(P -> I, E) BR_I [1 + (He/H) r_He(P -> I, E)]

with sigma_H from :func:`crprop.nuclear.isotope_cs.isotope_cs` (GALPROP ``kopt`` 12 by default) and
r_He the ``He_to_H_CS`` production ratio (Ferrando et al. 1988). No A_p / A_d factor is applied here.

K-capture (``kind`` 1), ``gen_secondary_source.cc``: a bare parent whose H-like ion decays by
electron capture faster than the limit into a propagated daughter of the same A (7Be -> 7Li):
sigma = sigma_attach,H + (He/H) sigma_attach,He (:func:`crprop.nuclear.inelastic.kcapture_cs`), evaluated
at the parent's energy. ``kind`` 2: attachment (bare -> H-like) or stripping (H-like -> bare) between
the two K-shell states of the same nucleus when both are propagated (``t_half_limit`` < 0.29 yr).

The integrator forms the source term ``a_factor * sigma_mb * 1e-27 * beta_p c * n_H * psi_p``
(``a_factor`` = A_p / A_d for kind 0 because psi is a density per unit total momentum, 1 otherwise).

Models (``production_table(model=...)``):

* ``"galprop12"`` (default) / ``"galprop22"``: GALPROP ``isotope_cs`` with kopt 12 / 22 (evaluated
  tables, else fits, else Webber / Silberberg-Tsao formulae renormalised to the measurements).
  Parents up to Z = 16 are supported (the Silberberg-Tsao port stops there; a heavier parent whose
  channels need it raises ValueError). Energy dependence outside the data: evaluated tables are 0
  below their first and constant above their last energy (GALPROP ``eval_cs``), fits and formulae are
  evaluated at any energy as GALPROP does (both flatten above a few GeV/n);
* ``"webber03"`` / ``"evoli19"``: the cumulative DRAGON2 tables of :mod:`crprop.nuclear.tables` for the
  channels they list (sigma_He = sigma_H r_He(P -> D)); channels missing from the table (e.g. every Li
  fragment for ``webber03``, 25Mg parents for ``evoli19``) fall back to ``"galprop12"``
  (``ProductionTable.source`` records which).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from crprop.constants import YEAR_S
from crprop.nuclear.decay import nucdata
from crprop.nuclear.inelastic import he_to_h_ratios, kcapture_cs
from crprop.nuclear.isotope_cs import isotope_cs
from crprop.nuclear.species import Network
from crprop.nuclear.tables import table_channels, table_sigma

PRODUCTION_MODELS = ("galprop12", "galprop22", "webber03", "evoli19")
"""Allowed ``model`` values of :func:`production_table`."""

KIND_SPALLATION = 0
KIND_KCAPTURE_DECAY = 1
KIND_ATTACH_STRIP = 2

MAX_DELTA_Z_GHOST = 3
"""GALPROP's ``diz``: largest charge difference between intermediate (ghost) and final nucleus."""

_GALPROP_KOPT = {"galprop12": 12, "galprop22": 22}


@dataclass(frozen=True)
class ProductionTable:
    """Production cross sections on a network, all on the common energy grid.

    Arrays (``n`` pairs, ``n_E`` energies): ``parent``, ``daughter`` (int indices into ``species``),
    ``kind`` (0 spallation, 1 K-capture + fast EC, 2 attachment / stripping), ``sigma_mb`` (n, n_E) mb =
    sigma_H + He/H sigma_He (GALPROP ``sigma_decayed_mb`` for kind 0), ``sigma_h_mb`` / ``sigma_he_mb``
    (n, n_E) mb, H- and He-target parts, ``a_factor`` (n,) = A_p / A_d for kind 0 and 1 otherwise,
    ``source`` (n,) str: model that produced the pair. ``species``: (Z, A, K_electron) per index;
    ``ekin_mev_per_n`` (n_E,) MeV/n; ``he_h_ratio``: He/H number ratio of the target gas.
    """

    species: tuple[tuple[int, int, int], ...]
    ekin_mev_per_n: np.ndarray
    parent: np.ndarray
    daughter: np.ndarray
    kind: np.ndarray
    sigma_mb: np.ndarray
    sigma_h_mb: np.ndarray
    sigma_he_mb: np.ndarray
    a_factor: np.ndarray
    source: np.ndarray
    model: str
    he_h_ratio: float
    t_half_limit_yr: float

    @property
    def sigma_eff_mb(self) -> np.ndarray:
        """``a_factor * sigma_mb`` (n, n_E) mb: the number multiplied by 1e-27 beta_p c n_H psi_p."""
        return self.a_factor[:, None] * self.sigma_mb

    def pair_index(self, parent: int, daughter: int, kind: int | None = None) -> int:
        """Row of pair (parent, daughter) (species indices); ValueError if absent."""
        m = (self.parent == parent) & (self.daughter == daughter)
        if kind is not None:
            m &= self.kind == kind
        idx = np.flatnonzero(m)
        if idx.size != 1:
            raise ValueError(f"pair {parent} -> {daughter} not in the table")
        return int(idx[0])


def ghost_channels(
    zp: int, ap: int, zd: int, ad: int, t_half_limit_yr: float = 1.0e4
) -> list[tuple[int, int, float]]:
    """Intermediate nuclei (Z_1, A_1, branching) summed by GALPROP for parent -> daughter.

    Includes the direct channel (Z_1, A_1) = (Z_d, A_d) with branching 1 when D is stable or long-lived.
    """
    out: list[tuple[int, int, float]] = []
    if ap < ad:
        return out
    for z1 in range(max(zd - MAX_DELTA_Z_GHOST, 1), min(zp, zd + MAX_DELTA_Z_GHOST) + 1):
        a1 = max(2 * z1 - 4, ad)
        while a1 < ap and a1 <= 2.5 * z1 + 4.2:
            if not (a1 < z1 or ap - a1 < zp - z1):
                res = nucdata(z1, a1, zd, ad, k_electron=0)
                if res.branching != 0.0:
                    t_half = res.t_half_s / YEAR_S
                    skip = (
                        t_half >= t_half_limit_yr
                        and (z1, a1) != (zd, ad)
                        and res.long_lived != (zd, ad)
                    )
                    if not skip:
                        out.append((z1, a1, res.branching))
            a1 += 1
    return out


def decayed_cross_section(
    zp: int,
    ap: int,
    zd: int,
    ad: int,
    ekin_mev_per_n: np.ndarray,
    kopt: int = 12,
    t_half_limit_yr: float = 1.0e4,
) -> tuple[np.ndarray, np.ndarray]:
    """(sigma_H, sigma_He) in mb of parent -> daughter summed over ghost channels (GALPROP
    ``decayed_cross_sections`` split by target: sigma_decayed = sigma_H + He/H sigma_He)."""
    e = np.asarray(ekin_mev_per_n, dtype=float)
    sig_h = np.zeros_like(e)
    sig_he = np.zeros_like(e)
    for z1, a1, br in ghost_channels(zp, ap, zd, ad, t_half_limit_yr):
        cs, _ = isotope_cs(e, zp, ap, z1, a1, kopt)
        ratio, _ = he_to_h_ratios(e, zp, ap, z1, a1)
        sig_h += cs * br
        sig_he += cs * br * ratio
    return sig_h, sig_he


def _as_species(isotopes: Sequence[tuple[int, ...]] | Network) -> list[tuple[int, int, int]]:
    if isinstance(isotopes, Network):
        return [(s.z, s.a, s.k_electron) for s in isotopes.species]
    out = []
    for iso in isotopes:
        if len(iso) == 2:
            out.append((int(iso[0]), int(iso[1]), 0))
        elif len(iso) == 3:
            out.append((int(iso[0]), int(iso[1]), int(iso[2])))
        else:
            raise ValueError(f"isotopes must be (Z, A) or (Z, A, K_electron) tuples, got {iso!r}")
    return out


def production_table(
    isotopes: Sequence[tuple[int, ...]] | Network,
    ekin_mev_per_n: np.ndarray,
    model: str = "galprop12",
    he_h_ratio: float = 0.11,
    t_half_limit_yr: float | None = None,
    k_capture: bool = True,
) -> ProductionTable:
    """Production cross sections for all parent -> daughter pairs of a network.

    ``isotopes``: the propagated species as (Z, A) or (Z, A, K_electron) tuples, or a
    :class:`crprop.nuclear.species.Network`; indices in the result refer to this order.
    ``ekin_mev_per_n``: kinetic energy per nucleon grid (MeV/n), shape (n_E,).
    ``model``: one of :data:`PRODUCTION_MODELS`. ``he_h_ratio``: He/H number ratio of the gas.
    ``t_half_limit_yr``: ghost threshold (years); None = the network's limit (1e4 yr for tuples).
    ``k_capture``: GALPROP's K_capture switch.
    Pairs whose cross section vanishes at every energy are omitted.
    """
    if model not in PRODUCTION_MODELS:
        raise ValueError(f"unknown production model {model!r}; allowed: {', '.join(PRODUCTION_MODELS)}")
    species = _as_species(isotopes)
    if t_half_limit_yr is None:
        t_half_limit_yr = isotopes.t_half_limit_yr if isinstance(isotopes, Network) else 1.0e4
    e = np.asarray(ekin_mev_per_n, dtype=float)
    if e.ndim != 1 or np.any(e <= 0):
        raise ValueError("ekin_mev_per_n must be a 1-D array of positive energies (MeV/n)")
    tabulated = table_channels(model) if model in ("webber03", "evoli19") else set()
    kopt = _GALPROP_KOPT.get(model, 12)
    rows: list[tuple[int, int, int, np.ndarray, np.ndarray, float, str]] = []
    for i, (zp, ap, kp) in enumerate(species):
        for j, (zd, ad, kd) in enumerate(species):
            if ap > ad and not kd:
                key = (100 * zp + ap, 100 * zd + ad)
                if key in tabulated:
                    sig_h = table_sigma(model, key[0], key[1], e)
                    sig_he = sig_h * he_to_h_ratios(e, zp, ap, zd, ad)[0]
                    src = model
                else:
                    sig_h, sig_he = decayed_cross_section(zp, ap, zd, ad, e, kopt, t_half_limit_yr)
                    src = "galprop12" if model in ("webber03", "evoli19") else model
                if np.any(sig_h + he_h_ratio * sig_he != 0.0):
                    rows.append((i, j, KIND_SPALLATION, sig_h, sig_he, ap / ad, src))
            if not k_capture:
                continue
            if ap == ad and zp != zd:
                res = nucdata(zp, ap, zd, ad, k_electron=1)
                if res.branching != 0.0 and 0.0 < res.t_half_s / YEAR_S < t_half_limit_yr:
                    att_h, _ = kcapture_cs(e, zp, 1)
                    att_he, _ = kcapture_cs(e, zp, 2)
                    rows.append((i, j, KIND_KCAPTURE_DECAY, att_h, att_he, 1.0, "kcapture"))
            if (zp, ap) == (zd, ad) and kp != kd:
                att_h, strip_h = kcapture_cs(e, zp, 1)
                att_he, strip_he = kcapture_cs(e, zp, 2)
                h, he = (att_h, att_he) if kd else (strip_h, strip_he)
                rows.append((i, j, KIND_ATTACH_STRIP, h, he, 1.0, "kcapture"))
    n_e = e.size
    sig_h_all = np.array([r[3] for r in rows]).reshape(len(rows), n_e)
    sig_he_all = np.array([r[4] for r in rows]).reshape(len(rows), n_e)
    return ProductionTable(
        species=tuple(species),
        ekin_mev_per_n=e.copy(),
        parent=np.array([r[0] for r in rows], dtype=np.int64),
        daughter=np.array([r[1] for r in rows], dtype=np.int64),
        kind=np.array([r[2] for r in rows], dtype=np.int64),
        sigma_mb=sig_h_all + he_h_ratio * sig_he_all,
        sigma_h_mb=sig_h_all,
        sigma_he_mb=sig_he_all,
        a_factor=np.array([r[5] for r in rows], dtype=float),
        source=np.array([r[6] for r in rows]),
        model=model,
        he_h_ratio=float(he_h_ratio),
        t_half_limit_yr=float(t_half_limit_yr),
    )
