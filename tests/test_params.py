"""PropagationParams / Normalisations: prior box, validation, arrays, galdef mapping."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
from helpers_galdef import RUNS, tiny  # tests/ is on sys.path (pytest rootdir conftest)

from crprop.galprop.galdef import GaldefError, read_galdef, write_galdef
from crprop.params import (
    LOG_PARAM_NAMES,
    LOG_PRIOR_BOX,
    NORMALISATION_NAMES,
    PARAM_NAMES,
    PARAM_UNITS,
    PRIOR_BOX,
    Normalisations,
    PropagationParams,
    galdef_with_normalisations,
    galdef_with_params,
    normalisations_from_galdef,
    params_from_galdef,
)

CRML_BASE = PropagationParams(3.25, 0.478, -1.55, 34.9, 3.9, 0.28, 2.42, 2.12, 880.0, 4.67e5)


def test_names_units_and_table1_box() -> None:
    assert len(PARAM_NAMES) == 10 and len(LOG_PARAM_NAMES) == 10
    assert set(PRIOR_BOX) == set(PARAM_NAMES) and set(LOG_PRIOR_BOX) == set(LOG_PARAM_NAMES)
    assert all(name in PARAM_UNITS for name in PARAM_NAMES + LOG_PARAM_NAMES)
    assert PRIOR_BOX["d0_1e28_cm2_s"][:2] == (1.0, 15.0) and PRIOR_BOX["delta"][:2] == (0.2, 1.0)
    assert PRIOR_BOX["eta"][:2] == (-4.0, 4.0) and PRIOR_BOX["v_alfven_km_s"][:2] == (0.0, 60.0)
    assert PRIOR_BOX["z_halo_kpc"][:2] == (1.0, 20.0) and PRIOR_BOX["nu1"][:2] == (0.0, 2.0)
    assert PRIOR_BOX["nu2"][:2] == (1.0, 4.0) and PRIOR_BOX["nu3"][:2] == (1.0, 4.0)
    assert LOG_PRIOR_BOX["log10_r_break1_mv"][:2] == (2.0, 4.0)
    assert LOG_PRIOR_BOX["log10_r_break2_mv"][:2] == (5.0, 7.0)
    for i, name in enumerate(LOG_PARAM_NAMES[8:]):
        lo, hi, _ = PRIOR_BOX[PARAM_NAMES[8 + i]]
        assert LOG_PRIOR_BOX[name][:2] == (math.log10(lo), math.log10(hi))


@pytest.mark.parametrize("bad", [float("nan"), float("inf"), -float("inf")])
def test_non_finite_rejected_naming_field_and_range(bad: float) -> None:
    with pytest.raises(ValueError, match=r"delta = .* not finite; allowed range \[0.2, 1\]"):
        PropagationParams(**{**CRML_BASE.to_dict(), "delta": bad})
    with pytest.raises(ValueError, match=r"row 1: z_halo_kpc .* allowed range \[1, 20\] kpc"):
        arr = PropagationParams.to_array([CRML_BASE, CRML_BASE])
        arr[1, 4] = bad
        PropagationParams.from_array(arr)
    with pytest.raises(ValueError, match="q_o"):
        Normalisations(q_o=bad)


def test_prior_box_checks() -> None:
    assert CRML_BASE.validate() is CRML_BASE and CRML_BASE.in_prior()
    outside = PropagationParams(**{**CRML_BASE.to_dict(), "z_halo_kpc": 25.0})
    with pytest.raises(ValueError, match=r"z_halo_kpc = 25 outside the prior box: allowed range \[1, 20\]"):
        outside.validate()
    assert outside.validate(check_prior=False) is outside and not outside.in_prior()
    low_break = PropagationParams(**{**CRML_BASE.to_dict(), "r_break1_mv": 50.0})
    with pytest.raises(ValueError, match=r"r_break1_mv = 50 .* \[100, 10000\] MV"):
        low_break.validate()
    for field, value, allowed in (("d0_1e28_cm2_s", -1.0, "> 0"), ("v_alfven_km_s", -3.0, ">= 0"),
                                  ("r_break2_mv", 500.0, "> r_break1_mv"), ("delta", 2.5, "in \\(0, 2\\)")):
        bad = PropagationParams(**{**CRML_BASE.to_dict(), field: value})
        with pytest.raises(ValueError, match=f"{field} = .* unphysical: allowed {allowed}"):
            bad.validate(check_prior=False)
    edge = PropagationParams(1.0, 1.0, -4.0, 0.0, 20.0, 0.0, 4.0, 1.0, 100.0, 1e7)
    assert edge.validate() is edge  # closed box
    with pytest.raises(ValueError, match="eta must be a number"):
        PropagationParams(**{**CRML_BASE.to_dict(), "eta": "x"})


@pytest.mark.parametrize("run", ["crml_base", "p1", "p2", "p4", "p6"])
def test_reference_points_lie_in_the_prior_box(galprop_ref_dir: Path, run: str) -> None:
    meta = json.loads((galprop_ref_dir / run / f"{run}.json").read_text())
    params = PropagationParams.from_galprop_json(meta["physical_parameters"])
    assert params.in_prior()
    params.validate()


def test_array_round_trips() -> None:
    rng = np.random.default_rng(0)
    lows = np.array([LOG_PRIOR_BOX[n][0] for n in LOG_PARAM_NAMES])
    highs = np.array([LOG_PRIOR_BOX[n][1] for n in LOG_PARAM_NAMES])
    log_arr = lows + (highs - lows) * rng.random((7, 10))
    batch = PropagationParams.from_array(log_arr, log_breaks=True)
    assert all(p.in_prior() for p in batch)
    np.testing.assert_allclose(PropagationParams.to_array(batch, log_breaks=True), log_arr, rtol=1e-13)
    lin = PropagationParams.to_array(batch)
    assert lin.shape == (7, 10) and lin.dtype == np.float64
    np.testing.assert_allclose(lin[:, 8:], 10.0 ** log_arr[:, 8:], rtol=1e-13)
    assert PropagationParams.from_array(lin) == batch
    assert PropagationParams.to_array([]).shape == (0, 10)
    vec = CRML_BASE.as_vector(log_breaks=True)
    assert vec[8] == pytest.approx(math.log10(880.0))
    assert CRML_BASE.log10_r_break2_mv == pytest.approx(5.6693, abs=1e-4)
    back = PropagationParams.from_vector(vec, log_breaks=True)
    assert back.as_vector() == pytest.approx(CRML_BASE.as_vector())
    assert PropagationParams.from_dict(CRML_BASE.to_dict()) == CRML_BASE
    assert CRML_BASE.d0_cm2_s == 3.25e28
    with pytest.raises(ValueError, match="expected a \\(B, 10\\) array"):
        PropagationParams.from_array(np.zeros(10))
    with pytest.raises(ValueError, match="row 0: nu2 = 5 outside"):
        row = CRML_BASE.as_vector()
        row[6] = 5.0
        PropagationParams.from_array(row[None, :])
    with pytest.raises(ValueError, match="missing"):
        PropagationParams.from_dict({"delta": 0.5})
    with pytest.raises(TypeError):
        PropagationParams.to_array(CRML_BASE)  # type: ignore[arg-type]


@pytest.mark.parametrize("run", RUNS)
def test_galdef_params_round_trip_reproduces_json(galprop_ref_dir: Path, tmp_path: Path, run: str) -> None:
    galdef = read_galdef(galprop_ref_dir / run / f"galdef_54_{run}")
    meta = json.loads((galprop_ref_dir / run / f"{run}.json").read_text())
    expected = PropagationParams.from_galprop_json(meta["physical_parameters"]).to_dict()
    got = params_from_galdef(galdef).to_dict()
    if run == "crml_base_xfine":
        # dz = 0.1 moves the psi = 0 boundary to z_max = 3.95 (nodes at +-0.05); the json keeps 3.9
        assert got["z_halo_kpc"] == 3.95 and expected["z_halo_kpc"] == 3.9
        expected["z_halo_kpc"] = 3.95
    for name in PARAM_NAMES:
        assert got[name] == pytest.approx(expected[name], rel=1e-6), name  # galdef breaks carry 7 digits
    if run == "crml_base":  # the package's constant is this run's point
        from crprop.params import CRML_BASE as PACKAGE_CRML_BASE

        for name in PARAM_NAMES:
            assert getattr(PACKAGE_CRML_BASE, name) == pytest.approx(expected[name], rel=1e-6), name
    params = params_from_galdef(galdef)
    rebuilt = read_galdef(write_galdef(galdef_with_params(galdef, params), tmp_path / f"galdef_54_{run}"))
    assert params_from_galdef(rebuilt) == params
    for key in ("D0_xx", "D_g_1", "eta_beta", "v_Alfven", "z_min", "z_max", "nuc_g_0", "nuc_g_1", "nuc_g_2",
                "nuc_rigid_br0", "nuc_rigid_br", "diff_reacc", "D_rigid_br", "nuc_rigid_br2", "nuc_g_3"):
        assert rebuilt[key] == pytest.approx(galdef[key], rel=1e-15), key


def test_galdef_with_params_on_the_crml_galdef(galprop_ref_dir: Path) -> None:
    base = read_galdef(galprop_ref_dir / "galdef_54_crml")  # nuc_g_3, nuc_rigid_br2 absent there
    point = PropagationParams(6.0, 0.38, -0.5, 22.0, 5.5, 1.2, 2.35, 2.25, 10 ** 3.3, 10 ** 7)
    g = galdef_with_params(base, point)
    assert g["nuc_g_3"] == 2.25 and g["nuc_rigid_br2"] == 1e8 and g["z_min"] == -5.5  # br2: GALPROP default
    assert g["D0_xx"] == 6e28 and g["D_rigid_br"] == 4000.0 and g["diff_reacc"] == 1
    assert params_from_galdef(g) == point
    with pytest.raises(ValueError, match="z_halo_kpc"):
        galdef_with_params(base, PropagationParams(**{**point.to_dict(), "z_halo_kpc": 30.0}))
    deep = PropagationParams(**{**point.to_dict(), "z_halo_kpc": 30.0})
    far = galdef_with_params(base, deep, check_prior=False)
    assert far.grid().n_z == 301


def test_galdef_with_params_lifts_a_low_third_break(tmp_path: Path) -> None:
    g = tiny(tmp_path, nuc_rigid_br2=5.0e5)
    point = PropagationParams(**{**CRML_BASE.to_dict(), "r_break2_mv": 1.0e6})
    out = galdef_with_params(g, point)
    assert out["nuc_rigid_br2"] == 1.0e12 and out["nuc_g_3"] == point.nu3
    assert params_from_galdef(out) == point


def test_params_from_galdef_refuses_non_paper_galdefs(tmp_path: Path) -> None:
    assert params_from_galdef(tiny(tmp_path)).delta == 0.478
    with pytest.raises(GaldefError, match="D_g_1 = 0.3 != D_g_2"):
        params_from_galdef(tiny(tmp_path, D_g_1=0.3))
    with pytest.raises(GaldefError, match="symmetric"):
        params_from_galdef(tiny(tmp_path, z_min=-3.0))
    with pytest.raises(GaldefError, match="nuc_g_3"):
        four = tiny(tmp_path, nuc_rigid_br0=900, nuc_rigid_br=4e5, nuc_rigid_br2=1e6, nuc_g_3=2.7)
        params_from_galdef(four)
    assert params_from_galdef(tiny(tmp_path, diff_reacc=0, v_Alfven=30)).v_alfven_km_s == 0.0


def test_d0_is_converted_to_the_4_gv_reference(tmp_path: Path) -> None:
    g = tiny(tmp_path, D_rigid_br="1.0e3", D0_xx="2.0e28")
    expected = 2.0 * 4.0 ** 0.478
    assert params_from_galdef(g).d0_1e28_cm2_s == pytest.approx(expected, rel=1e-14)


def test_normalisations(galprop_ref_dir: Path) -> None:
    base = read_galdef(galprop_ref_dir / "galdef_54_crml")
    norms = normalisations_from_galdef(base)
    assert norms == Normalisations() and norms.o_over_c == pytest.approx(4600 / 3600)
    assert Normalisations.from_vector(norms.as_vector()) == norms
    assert norms.as_vector().tolist() == [getattr(norms, n) for n in NORMALISATION_NAMES]
    g = galdef_with_normalisations(base, Normalisations(q_c=4000.0, q_o=2300.0, xi_li=1.1, xi_be=0.9))
    abund = g.isotopic_abundances()
    assert abund[(6, 12)] == 4000.0 and abund[(8, 16)] == 2300.0
    assert abund[(8, 18)] == pytest.approx(1.286 / 2.0)
    assert abund[(6, 13)] == pytest.approx(5.268e-07 * 10 / 9)
    assert abund[(7, 14)] == 182.8
    with pytest.raises(ValueError, match="xi_li = 0.0 must be finite and > 0"):
        Normalisations(xi_li=0.0)
    with pytest.raises(ValueError, match="shape"):
        Normalisations.from_vector([1.0, 2.0])
