"""The model at the data points (crnet.likelihood.prediction): isotope by isotope for rigidity / E_k data,
checked against an independent sum over isotopes in the published variable."""

from __future__ import annotations

import numpy as np
import pytest

from crnet.data import DataBlock, Dataset, Modulation, get_dataset, read_table
from crnet.likelihood import BlockPrediction, block_predictions, chi2
from crprop.constants import NUCLEON_MASS_KINEMATICS_MEV
from crprop.spectra import Spectra

GRID = 1e-3 * 1.25 ** np.arange(84)
"""The CR-ML / GALPROP energy grid, GeV/n."""

BE_ISOTOPES = ((7, 2.0, -2.6), (9, 1.0, -2.8), (10, 0.3, -2.9))
"""(A, norm, index) of power-law Be isotope spectra with different slopes (log-log interpolation is exact)."""

EXACT_RTOL = 1e-10
"""Agreement with the analytic isotope sum: power laws are interpolated exactly in log-log, so only rounding
(square roots of the kinematics, exp/log) remains."""

A_EFF_MIN_EFFECT = 0.02
"""The single-nucleus (Z, A_eff) treatment must differ from the isotope sum by more than this for the test Be
spectra (it does by 15.4 %, pinned below), so the exact comparison can tell the two apart."""

A_EFF_EFFECT_MEASURED = 0.154
"""The largest single-nucleus vs isotope-sum difference on the test Be spectra (session 12 review)."""


def be_spectra(slopes: tuple = BE_ISOTOPES) -> Spectra:
    flux = np.stack([c * GRID**g for _, c, g in slopes])[None]
    return Spectra(GRID, [4] * len(slopes), [a for a, _, _ in slopes], flux, [True], [0.0])


def analytic_per_gv(rigidity_gv: np.ndarray, z: int, isotopes: tuple) -> np.ndarray:
    """sum_i J_i(E_i(R)) dE_i/dR for power laws J_i = c E^g (per GeV/n), written out independently."""
    m = NUCLEON_MASS_KINEMATICS_MEV * 1e-3
    out = np.zeros_like(rigidity_gv)
    for a, c, g in isotopes:
        p = z * rigidity_gv
        etot = np.sqrt(p * p + (a * m) ** 2)
        e_kn = (etot - a * m) / a
        out += c * e_kn**g * (z / a) * (p / etot)
    return out


def test_rigidity_block_is_the_isotope_sum_in_rigidity() -> None:
    block = next(b for b in get_dataset("ams02-2021").blocks if b.label == "Be AMS-02")
    assert block.x_native_kind == "R" and block.a_eff == pytest.approx(8.0)
    table = read_table(block.source)
    pred = BlockPrediction(block, GRID, np.array([4, 4, 4]), np.array([7, 9, 10]), "loglog")(be_spectra())[0]
    # the prediction is in the block's units: undo the data's own change of variable with the data's factor
    factor = block.flux / table.value  # 1 / (dE_eff/dR) per point, as the reader applied it
    per_gv = pred / factor
    np.testing.assert_allclose(per_gv, analytic_per_gv(table.x_rep, 4, BE_ISOTOPES), rtol=EXACT_RTOL)
    # one nucleus (4, A_eff) at the block energies - the old treatment - is measurably different
    single = be_spectra().flux("Be")[0]
    single_at = np.exp(np.interp(np.log(block.ekin_gev_per_n), np.log(GRID), np.log(single)))
    effect = np.max(np.abs(single_at / pred - 1))
    assert effect > A_EFF_MIN_EFFECT and effect == pytest.approx(A_EFF_EFFECT_MEASURED, abs=0.005)


def test_rigidity_chi2_equals_the_native_chi2_of_the_published_table() -> None:
    """With the scales fixed (profile=False) and phi = 0, chi^2 of the converted block is chi^2 of the published
    per-GV fluxes and errors against the isotope sum per GV: the A_eff of the conversion cancels."""
    block = next(b for b in get_dataset("ams02-2021").blocks if b.label == "Be AMS-02")
    table = read_table(block.source)
    sigma_gv = np.hypot(0.5 * (table.stat_lo + table.stat_hi), 0.5 * (table.sys_lo + table.sys_hi))
    slopes = ((7, 2e4, -2.6), (9, 1e4, -2.8), (10, 3e3, -2.9))  # near the measured Be flux at a few GV
    native = np.sum(((analytic_per_gv(table.x_rep, 4, slopes) - table.value) / sigma_gv) ** 2)
    ds = Dataset("be", "", [block], modulation=Modulation(0.0))
    res = chi2(be_spectra(slopes), ds, profile=False)
    assert res.chi2_tot[0] == pytest.approx(native, rel=EXACT_RTOL)
    assert native > 10.0  # a chi^2 that depends on the model, not ~0


def test_kinetic_energy_block_sums_isotopes_at_their_own_energy() -> None:
    """E_k data (per particle, CALET/DAMPE He): M = A_eff sum_i J_i(E_k / A_i) / A_i."""
    ek = np.geomspace(20.0, 2e4, 12)
    he = ((3, 0.2, -2.8), (4, 1.0, -2.7))
    a_eff = 3.85
    block = DataBlock("He Ek", "He", "test", ek / a_eff, np.ones(12), np.full(12, 0.1), np.full(12, 0.1),
                      np.zeros(12), np.zeros(12), lis=True, x_native=ek, x_native_kind="Ek", a_eff=a_eff)
    spectra = Spectra(GRID, [2, 2], [3, 4], np.stack([c * GRID**g for _, c, g in he])[None], [True], [0.0])
    pred = BlockPrediction(block, GRID, spectra.iso_z, spectra.iso_a, "loglog")(spectra)[0]
    expected = a_eff * sum(c * (ek / a) ** g / a for a, c, g in he)
    np.testing.assert_allclose(pred, expected, rtol=EXACT_RTOL)


def test_energy_per_nucleon_block_is_the_element_flux() -> None:
    block = next(b for b in get_dataset("paper").blocks if b.label == "Be AMS-02")
    one_slope = tuple((a, c, -2.7) for a, c, _ in BE_ISOTOPES)  # the element sum is a power law again
    pred = block_predictions(be_spectra(one_slope), [block], [None])[0][0]
    expected = sum(c * block.ekin_gev_per_n**g for _, c, g in one_slope)
    np.testing.assert_allclose(pred, expected, rtol=EXACT_RTOL)


def test_isotope_energies_outside_the_model_grid_are_an_error() -> None:
    block = next(b for b in get_dataset("ams02-2021").blocks if b.label == "Be AMS-02")
    short = GRID[GRID < 500.0]  # the block reaches ~1 TeV/n
    with pytest.raises(ValueError, match=r"Be AMS-02.*7Be.*outside the model grid"):
        BlockPrediction(block, short, np.array([4, 4, 4]), np.array([7, 9, 10]), "loglog")
    with pytest.raises(ValueError, match="Be AMS-02.*no isotope of Be"):
        BlockPrediction(block, GRID, np.array([5]), np.array([10]), "loglog")


def test_isotope_block_predicts_that_isotope_alone() -> None:
    """A data block of one isotope (e.g. 10Be in GeV/n) takes that isotope's row, not its element's sum."""
    e = np.array([0.1, 1.0, 10.0])
    ones = np.ones_like(e)
    block = DataBlock(label="10Be test", species="10Be", experiment="test", ekin_gev_per_n=e, flux=ones,
                      stat_lo=0.1 * ones, stat_hi=0.1 * ones, sys_lo=0 * ones, sys_hi=0 * ones, lis=True)
    pred = BlockPrediction(block, GRID, np.array([4, 4, 4]), np.array([7, 9, 10]), "loglog")(be_spectra())[0]
    _, c, g = BE_ISOTOPES[2]
    np.testing.assert_allclose(pred, c * e**g, rtol=EXACT_RTOL)
    with pytest.raises(ValueError, match="10Be test.*'10B'"):
        BlockPrediction(DataBlock(**{**block.__dict__, "species": "10B"}), GRID, np.array([4, 4, 4]),
                        np.array([7, 9, 10]), "loglog")
