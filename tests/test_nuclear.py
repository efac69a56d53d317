"""Tests of crprop.nuclear: decay network, species / network, inelastic and production cross sections.

Reference comparisons use the arrays GALPROP v54 itself used (shared/reference/galprop-internals,
runs crml_base and p2) and are skipped when ../shared is absent.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from crprop.nuclear import (
    CRML_USE_Z,
    INELASTIC_MODELS,
    KIND_ATTACH_STRIP,
    KIND_KCAPTURE_DECAY,
    KIND_SPALLATION,
    PRODUCTION_MODELS,
    build_network,
    ghost_channels,
    he_to_h_ratios,
    isotope_cs,
    isotope_table,
    kcapture_cs,
    loss_cross_sections,
    nucdata,
    nucleon_cs,
    production_table,
    sigma_pp_inel_mb,
)
from crprop.nuclear.galprop_data import barpol_protons, galprop_table

RUNS = ("crml_base", "p2")

INELASTIC_RTOL = 1e-12
# nucleon_cs (Barashenkov-Polanski), He/H total ratio, pp and K-capture sigma are reproduced to float64
# rounding (observed <= 5e-16); the project requirement (1 %) is far looser than this regression bound.

PRODUCTION_RTOL = 1e-4
# Production sigma reproduce GALPROP to <= 2.1e-6 (observed): the residue is GALPROP's single-precision
# arithmetic (YIELDX is REAL*4, fit parameters and chi^2 sums are float), which a float64 port can only
# approximate. 1e-4 keeps a margin of ~50 over that while being 100x tighter than the 1 % requirement.

HALF_LIFE_RTOL = 1e-12
# Half-lives (yr, and the decay's in s) are GALPROP's isotope-table values: equal to the last bit in both reference
# runs (measured 0.0), so 1e-12 leaves room for the yr -> s product's rounding only. Was 1e-7.

NEGLIGIBLE_FRACTION = 1e-3
# Relative comparisons only where sigma > 1e-3 of the pair's maximum over the grid: below that the
# values are the low-energy tails (E < ~5 MeV/n) where GALPROP's float32 rounding of
# 1 - exp(-(E/25)^4) dominates, and they are irrelevant for the source (checked in absolute terms).

CRML_NAMES = [
    "Hydrogen_1", "Hydrogen_2", "Lithium_6", "Lithium_7", "Beryllium_7", "Beryllium_9", "Beryllium_10",
    "Boron_10", "Boron_11", "Carbon_12", "Carbon_13", "Nitrogen_14", "Nitrogen_15", "Oxygen_16",
    "Oxygen_17", "Oxygen_18", "Neon_20", "Neon_21", "Neon_22", "Magnesium_24", "Magnesium_25",
    "Magnesium_26", "Silicon_28", "Silicon_29", "Silicon_30",
]

E_WIDE = 1.25 ** np.arange(84)  # GALPROP CR-ML grid, 1 MeV/n ... 1.1e8 MeV/n


@pytest.fixture(scope="module")
def crml_network():
    return build_network(14, CRML_USE_Z)


@pytest.fixture(scope="module")
def crml_table(crml_network):
    return production_table(crml_network, E_WIDE)


def _load(internals_dir: Path, run: str, name: str):
    return np.load(internals_dir / run / name)


# ----------------------------------------------------------------------------------- data files


def test_galprop_tables_use_declared_size():
    assert galprop_table("eval_iso_cs.dat").shape == (1, 941, 5)  # file holds more rows; GALPROP reads 941
    assert galprop_table("isotope_cs.dat").shape == (1, 1961, 5)
    assert galprop_table("nucdata.dat").shape == (2, 51, 7)
    assert galprop_table("p_cs_fits.dat").shape == (1, 91, 8)
    energy, sig = barpol_protons()
    assert energy.shape == (62,) and sig.shape == (62, 24)
    assert energy[0] == 1.0 and energy[-1] == 1.0e6 and np.all(np.diff(energy[:-3]) > 0)


# ----------------------------------------------------------------------------------- decay network


def test_nucdata_known_decays():
    be10 = nucdata(4, 10, 5, 10)
    assert be10.branching == 1.0 and be10.t_half_s / (365.25 * 86400) == pytest.approx(1.6e6)
    assert nucdata(6, 11, 5, 11).branching == 1.0  # 11C -> 11B (beta+), ghost
    assert nucdata(4, 8, 2, 4).branching == 2.0  # 8Be -> 2 alpha (special channel)
    be7_k = nucdata(4, 7, 3, 7, k_electron=1)  # EC of the H-like ion, half-life doubled
    assert be7_k.branching == 1.0 and be7_k.t_half_s / (365.25 * 86400) == pytest.approx(2 * 0.1459, rel=1e-6)
    assert nucdata(4, 7, 3, 7, k_electron=0).branching == 0.0  # bare 7Be is stable
    via_be10 = nucdata(3, 11, 5, 10)  # 11Li -> 10Be (long-lived) -> 10B
    assert via_be10.long_lived == (4, 10) and via_be10.branching > 0


def test_isotope_table_z14():
    tab = {iso.symbol: iso for iso in isotope_table(14)}
    assert {"3H", "14C", "22Na", "26Al", "32Si", "10Be", "7Be"} <= set(tab)
    assert tab["10Be"].decay_mode == "beta-" and tab["10Be"].decays_to == (5, 10)
    assert tab["7Be"].kcapture and tab["7Be"].decay_mode == "stable" and tab["7Be"].decay_mode_k == "EC"
    assert tab["7Be"].decays_to_k == (3, 7)
    assert tab["26Al"].decay_mode == "beta+" and tab["26Al"].decays_to == (12, 26)
    assert tab["12C"].t_half_yr == 0.0 and not tab["12C"].kcapture


# ----------------------------------------------------------------------------------- network


def test_crml_network_composition(crml_network):
    assert crml_network.names == CRML_NAMES
    radioactive = [s.name for s in crml_network.species if s.t_half_yr > 0]
    assert radioactive == ["Beryllium_10"]
    assert crml_network.kcapture_flag.tolist() == [int(n == "Beryllium_7") for n in CRML_NAMES]
    assert len(crml_network.decays) == 1
    d = crml_network.decays[0]
    assert (d.parent, d.daughter, d.branching) == (6, 7, 1.0)
    assert crml_network.species[d.parent].t_half_yr == pytest.approx(1.6e6)


def test_crml_orders(crml_network):
    v54 = build_network(14, CRML_USE_Z, order="galprop_v54").solve_order
    assert v54.tolist() == list(range(24, -1, -1))
    order = crml_network.solve_order.tolist()
    assert order.index(6) < order.index(7)  # 10Be before 10B
    assert order.index(4) < order.index(3)  # 7Be before 7Li (K capture)
    assert sorted(order) == list(range(25))


def test_network_matches_galprop(internals_dir):
    for run in RUNS:
        sp = _load(internals_dir, run, "species.npz")
        net = build_network(14, CRML_USE_Z, order="galprop_v54")
        assert net.names == sp["names"].tolist()
        np.testing.assert_array_equal(net.z, sp["Z"])
        np.testing.assert_array_equal(net.a, sp["A"])
        np.testing.assert_allclose(net.t_half_yr, sp["t_half_yr"], rtol=HALF_LIFE_RTOL)
        np.testing.assert_array_equal(net.kcapture_flag, sp["kcapture_flag"])
        np.testing.assert_array_equal(net.solve_order, sp["solve_order"])
        xp = _load(internals_dir, run, "xsec_pairs.npz")
        d = net.decays[0]
        assert (d.parent, d.daughter) == (int(xp["decay_parent"][0]), int(xp["decay_daughter"][0]))
        t_half_s = net.species[d.parent].t_half_yr * 365.25 * 86400
        assert t_half_s == pytest.approx(float(xp["decay_t_half_s"][0]), rel=HALF_LIFE_RTOL)


@pytest.mark.parametrize(
    "kwargs",
    [
        {"max_z": 14, "use_z": CRML_USE_Z},
        {"max_z": 14},
        {"max_z": 14, "t_half_limit_yr": 1.0e3},  # 14C and 22Na propagated
        {"max_z": 14, "t_half_limit_yr": 0.1},  # 7Be* (H-like ion) propagated too
        {"max_z": 8, "k_capture": False},
    ],
)
def test_parents_precede_daughters(kwargs):
    net = build_network(**kwargs)
    pos = {int(s): k for k, s in enumerate(net.solve_order)}
    for d in net.decays:
        assert pos[d.parent] < pos[d.daughter]
    limit = kwargs.get("t_half_limit_yr", 1.0e4)
    tab = production_table(net, np.array([10.0, 1.0e3, 1.0e5]), t_half_limit_yr=limit,
                           k_capture=kwargs.get("k_capture", True))
    for p, q, kind in zip(tab.parent, tab.daughter, tab.kind, strict=True):
        if kind != KIND_ATTACH_STRIP:  # attachment / stripping link the two K states both ways
            assert pos[int(p)] < pos[int(q)]


def test_lower_limit_propagates_more():
    names = build_network(14, t_half_limit_yr=1.0e3).names
    assert "Carbon_14" in names and "Sodium_22" in names  # 5730 yr and 4800 yr >= 1e3 yr
    names_all = build_network(14).names
    assert "Carbon_14" not in names_all and "Aluminium_26" in names_all
    kel = build_network(4, t_half_limit_yr=0.1).names
    assert "Beryllium_7*" in kel


def test_unknown_names_raise():
    with pytest.raises(ValueError, match="parents_first"):
        build_network(14, order="galprop_v56")
    with pytest.raises(ValueError, match="galprop12"):
        production_table([(6, 12), (5, 10)], E_WIDE, model="silberberg")
    with pytest.raises(ValueError, match="barashenkov_polanski"):
        loss_cross_sections(6, 12, E_WIDE, model="sihver")
    with pytest.raises(ValueError, match="kopt"):
        isotope_cs(E_WIDE, 6, 12, 5, 10, kopt=13)


# ----------------------------------------------------------------------------------- inelastic


def test_inelastic_matches_galprop(internals_dir):
    for run in RUNS:
        sp = _load(internals_dir, run, "species.npz")
        e = _load(internals_dir, run, "grid_gas_source.npz")["Ekin_MeV_per_n"]
        np.testing.assert_allclose(sigma_pp_inel_mb(e), sp["sigma_pp_inel_mb"][0], rtol=INELASTIC_RTOL)
        for i, (z, a) in enumerate(zip(sp["Z"].tolist(), sp["A"].tolist(), strict=True)):
            kcap = bool(sp["kcapture_flag"][i])
            target = (2, 4) if (z, a) == (1, 1) else (z, a)  # the 1H slot holds sigma(p + He)
            np.testing.assert_allclose(nucleon_cs(2, e, *target), sp["sigma_inel_nucleon_cs_mb"][i],
                                       rtol=INELASTIC_RTOL, atol=0)
            _, tot = he_to_h_ratios(e, z, a, 999, 999)
            np.testing.assert_allclose(np.full_like(e, tot), sp["He_to_H_total_ratio"][i],
                                       rtol=INELASTIC_RTOL)
            sig_h, sig_he = loss_cross_sections(z, a, e, kcapture=kcap)
            np.testing.assert_allclose(sig_h, sp["sigma_loss_H_mb"][i], rtol=INELASTIC_RTOL, atol=0)
            np.testing.assert_allclose(sig_he, sp["sigma_loss_He_mb"][i], rtol=INELASTIC_RTOL, atol=0)
            if kcap:
                for zt, tag in ((1, "H"), (2, "He")):
                    att, strip = kcapture_cs(e, z, zt)
                    np.testing.assert_allclose(att, sp[f"sigma_attach_{tag}_mb"][i], rtol=INELASTIC_RTOL)
                    np.testing.assert_allclose(strip, sp[f"sigma_strip_{tag}_mb"][i], rtol=INELASTIC_RTOL)
            else:
                assert not sp["sigma_attach_H_mb"][i].any()
            # loss rate as GALPROP: beta c (sigma_H + 0.11 sigma_He) 1e-27
            rate = sp["beta"][i] * 2.99792458e10 * (sig_h + 0.11 * sig_he) * 1e-27
            np.testing.assert_allclose(rate, sp["frag_rate_per_n_H_target"][i], rtol=INELASTIC_RTOL)


@pytest.mark.parametrize("model", INELASTIC_MODELS)
def test_inelastic_positive_finite(model):
    for iso in isotope_table(14):
        if model == "tripathi99" and iso.symbol in ("3H", "22Na", "32Si"):  # not in the USINE table
            with pytest.raises(ValueError, match="Tripathi"):
                loss_cross_sections(iso.z, iso.a, E_WIDE, model=model)
            continue
        sig_h, sig_he = loss_cross_sections(iso.z, iso.a, E_WIDE, model=model, kcapture=iso.kcapture)
        assert np.all(np.isfinite(sig_h)) and np.all(np.isfinite(sig_he))
        assert np.all(sig_h >= 0) and np.all(sig_he >= 0)
        assert np.all(sig_h[E_WIDE > 1.0e3] > 0)  # sigma_pp vanishes below its 0.3 GeV threshold
    # plausible magnitudes at 1 GeV/n: 12C on H ~ 230-260 mb whatever the model
    for model_ in INELASTIC_MODELS:
        assert 200 < loss_cross_sections(6, 12, np.array([1.0e3]), model=model_)[0][0] < 300


def test_sigma_pp_threshold():
    e = np.array([100.0, 290.0, 1.0e3, 1.0e6])
    s = sigma_pp_inel_mb(e)
    assert s[0] == 0.0 and s[1] == 0.0 and 20 < s[2] < 30 and 30 < s[3] < 40


# ----------------------------------------------------------------------------------- production


def test_crml_pair_set(crml_table):
    assert len(crml_table.parent) == 232
    assert np.sum(crml_table.kind == KIND_KCAPTURE_DECAY) == 1
    k = crml_table.pair_index(4, 3, KIND_KCAPTURE_DECAY)  # 7Be -> 7Li
    assert crml_table.a_factor[k] == 1.0
    sp = crml_table.kind == KIND_SPALLATION
    a = np.array([s[1] for s in crml_table.species])
    np.testing.assert_allclose(crml_table.a_factor[sp], a[crml_table.parent[sp]] / a[crml_table.daughter[sp]])
    assert not np.any(crml_table.daughter == 0)  # 1H gets no secondary source
    assert set(crml_table.parent[crml_table.daughter == 1].tolist()) == {9, 13}  # 2H only from 12C, 16O


def test_production_matches_galprop(internals_dir, crml_table):
    for run in RUNS:
        xp = _load(internals_dir, run, "xsec_pairs.npz")
        e = xp["Ekin_MeV_per_n"]
        np.testing.assert_allclose(e, E_WIDE, rtol=1e-12)
        ref_keys = list(zip(xp["parent"].tolist(), xp["daughter"].tolist(), xp["kind"].tolist(), strict=True))
        mine = {key: n for n, key in enumerate(zip(crml_table.parent.tolist(), crml_table.daughter.tolist(),
                                                    crml_table.kind.tolist(), strict=True))}
        assert set(ref_keys) == set(mine)
        worst = 0.0
        for n, key in enumerate(ref_keys):
            m = mine[key]
            assert crml_table.a_factor[m] == pytest.approx(xp["A_factor"][n], rel=1e-15)
            quantities = [("sigma_eff_mb", crml_table.sigma_eff_mb[m])]
            if key[2] == KIND_SPALLATION:  # the split quantities are defined for spallation only
                quantities += [("sigma_decayed_mb", crml_table.sigma_mb[m]),
                               ("sigma_H_mb", crml_table.sigma_h_mb[m]),
                               ("sigma_He_mb", crml_table.sigma_he_mb[m])]
            for name, mine_val in quantities:
                ref = xp[name][n]
                if not ref.any():
                    assert not mine_val.any(), (run, key, name)
                    continue
                big = ref > NEGLIGIBLE_FRACTION * ref.max()
                rel = np.abs(mine_val[big] / ref[big] - 1.0)
                worst = max(worst, rel.max())
                assert rel.max() < PRODUCTION_RTOL, (run, key, name, rel.max())
                assert np.abs(mine_val - ref).max() <= PRODUCTION_RTOL * ref.max(), (run, key, name)
        assert worst < PRODUCTION_RTOL


def test_production_he_term_and_a_factor(crml_table):
    np.testing.assert_allclose(crml_table.sigma_mb, crml_table.sigma_h_mb + 0.11 * crml_table.sigma_he_mb)
    no_he = production_table([(6, 12), (5, 11), (5, 10)], E_WIDE, he_h_ratio=0.0)
    np.testing.assert_allclose(no_he.sigma_mb, no_he.sigma_h_mb)
    # 12C -> 11B includes the 11C ghost (GALPROP uses ST for 12C -> 11C, fits/eval for 11B)
    chans = {(z, a) for z, a, _ in ghost_channels(6, 12, 5, 11)}
    assert chans == {(5, 11), (6, 11)}
    # 10Be is long-lived: 12C -> 10B does not go through it
    assert (4, 10) not in {(z, a) for z, a, _ in ghost_channels(6, 12, 5, 10)}


@pytest.mark.parametrize("model", PRODUCTION_MODELS)
def test_production_models_positive_finite(model, crml_network):
    tab = production_table(crml_network, E_WIDE, model=model)
    assert tab.sigma_mb.shape == (len(tab.parent), E_WIDE.size)
    assert np.all(np.isfinite(tab.sigma_mb)) and np.all(tab.sigma_mb >= 0)
    assert np.all(tab.sigma_he_mb >= 0)
    k = tab.pair_index(9, 7, KIND_SPALLATION)  # 12C -> 10B: 10-25 mb at 1 GeV/n in every model
    assert 10 < tab.sigma_h_mb[k][np.searchsorted(E_WIDE, 1e3)] < 25
    if model in ("webber03", "evoli19"):
        assert model in set(tab.source.tolist())
    # table models fall back to GALPROP where the table has no entry (Webber03 has no Li fragments)
    if model == "webber03":
        assert tab.source[tab.pair_index(9, 3, KIND_SPALLATION)] == "galprop12"


def test_webber03_table_yields_of_protons_and_alphas_are_not_production(crml_network):
    """The Webber 2003 file's rows to '1H' / '4He' are inclusive yields (12C -> '1H' 360 mb at 9 GeV/n exceeds
    sigma_inel(p + 12C) = 251 mb): those channels keep GALPROP's cross sections, far below the inelastic one."""
    from crprop.nuclear.tables import table_channels

    assert not [key for key in table_channels("webber03") if key[1] // 100 < 3]
    e = np.array([9.0e3])
    webber = production_table(crml_network, e, model="webber03")
    galprop = production_table(crml_network, e, model="galprop12")
    light = {i for i, s in enumerate(crml_network.species) if s.z <= 2}

    def into_light(tab) -> dict:
        return {(int(p), int(d)): float(sig[0]) for p, d, sig, kind in
                zip(tab.parent, tab.daughter, tab.sigma_h_mb, tab.kind, strict=True)
                if d in light and kind == KIND_SPALLATION}

    # the same channels into H and He as GALPROP's (no 12C -> 1H, whose 'yield' was 360 mb), same values
    assert into_light(webber) == into_light(galprop)


def test_k_electron_species_pairs():
    net = build_network(4, t_half_limit_yr=0.1)
    tab = production_table(net, np.array([100.0, 1.0e3]), t_half_limit_yr=0.1)
    i_bare, i_k = net.index(4, 7, 0), net.index(4, 7, 1)
    att = tab.pair_index(i_bare, i_k, KIND_ATTACH_STRIP)
    strip = tab.pair_index(i_k, i_bare, KIND_ATTACH_STRIP)
    a_h, s_h = kcapture_cs(np.array([100.0, 1.0e3]), 4, 1)
    np.testing.assert_allclose(tab.sigma_h_mb[att], a_h)
    np.testing.assert_allclose(tab.sigma_h_mb[strip], s_h)
    # no spallation into the H-like state; no fast-EC pair since 7Be* is propagated
    assert not np.any((tab.daughter == i_k) & (tab.kind == KIND_SPALLATION))
    assert not np.any(tab.kind == KIND_KCAPTURE_DECAY)


def test_isotope_cs_methods():
    e = np.array([5.0, 100.0, 1.0e3, 1.0e5, 1.0e7])
    evaluated, info = isotope_cs(e, 6, 12, 5, 10, 12)  # eval_iso_cs.dat channel
    assert info == 12 and evaluated[0] == 0.0 and np.all(evaluated[1:] > 0)  # 0 below the table
    assert evaluated[-1] == evaluated[-2]  # last tabulated value above the table
    st, info = isotope_cs(e, 6, 12, 6, 11, 12)  # p_cs_fits: "6.12 6.11 -2" -> Silberberg-Tsao
    assert info == 2 and np.all(st[1:] > 0)
    fit, info = isotope_cs(e, 7, 14, 4, 9, 12)  # no evaluation: positive p_cs_fits entry
    assert info == -11 and np.all(fit[1:] > 0)
    li, info = isotope_cs(e, 14, 28, 3, 7, 12)  # renormalised Webber, which has no Li: 0 (as GALPROP)
    assert info == 11 and not li.any()


FUSION_INTEGRAL_RTOL = 1e-3
"""Trapezoid over 6e5 points of a distribution with square-root edges (cos -> +-1): measured <= 6.3e-5; 1e-3 catches
any missing factor (the 2 of E_3 = 2 E_n, beta, the angular normalisation 0.22 + 1/3)."""


def test_pp_fusion_cross_section_integrates_to_the_total_and_has_a_threshold():
    """p + p -> d + pi+ (crprop.nuclear.pp_fusion): dsigma/dp_d integrated over the kinematically allowed
    deuteron energies gives sigma_tot back (dp = dE / beta); nothing below the table or the threshold."""
    from crprop.nuclear.pp_fusion import (
        DEUTERON_MASS_GEV,
        PP_FUSION_TOTAL_MB,
        pp_fusion_dsigma_dp_barn_per_gev,
        pp_fusion_total_barn,
    )

    for t_p in (0.35, 0.6, 1.5, 3.0):
        e3 = np.linspace(1e-6, 3.0, 600_001)  # deuteron kinetic energy, GeV (both nucleons)
        et3 = e3 + DEUTERON_MASS_GEV
        beta = np.sqrt(et3**2 - DEUTERON_MASS_GEV**2) / et3
        dsdp = pp_fusion_dsigma_dp_barn_per_gev(e3 / 2.0, t_p)
        total = np.trapezoid(dsdp / beta, e3)
        assert total == pytest.approx(pp_fusion_total_barn(t_p), rel=FUSION_INTEGRAL_RTOL), t_p
    assert pp_fusion_total_barn(0.3) == 0.0 and pp_fusion_dsigma_dp_barn_per_gev(0.05, 0.3) == 0.0
    # the table's peak, 3.18 mb near 0.6 GeV (Coste et al. 2012), through GALPROP's shifted interpolation
    assert 2.5e-3 < pp_fusion_total_barn(0.6) < 3.3e-3 and PP_FUSION_TOTAL_MB[:, 1].max() == 3.18231



@pytest.mark.parametrize("model", PRODUCTION_MODELS)
def test_no_production_model_makes_protons(model):
    """The solve order lets 1H precede heavier species (it must, for p + p -> d into 2H) only because nothing in
    the network produces 1H; if a model ever did, parents_first would solve 1H before its parents."""
    net = build_network(14)
    proton = next(i for i, s in enumerate(net.species) if (s.z, s.a, s.k_electron) == (1, 1, 0))
    tab = production_table(net, np.geomspace(10.0, 1e6, 12), model=model)
    assert not np.any(tab.daughter == proton)
    assert not any(d.daughter == proton for d in net.decays)
