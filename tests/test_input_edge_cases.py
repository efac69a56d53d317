"""Input-handling edge cases: galdef list values, numpy scalars and bools as parameters, the GALPROP run json,
Normalisations field types, and the measured-data CSV (underscores in numbers, byte-order mark)."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from crnet.data.table import read_table
from crprop.galaxy import paper_galdef_path
from crprop.galprop.galdef import GaldefError, parse_galdef
from crprop.params import CRML_BASE, Normalisations, PropagationParams
from crprop.physics._checks import as_array, as_int

B_FIELD_LINE = ("B_field_parameters   = -1,-2,-3,-4,-5,-6,-7,-8,-9,-10     parameters for 3D models, "
                "meaning depends on the model")
ISRF_LINE = "ISRF_factors         = 1.0,1.0,1.0         ISRF factors for IC calculation: optical, FIR, CMB"
B_FIELD_VALUES = tuple(float(-i) for i in range(1, 11))
FLOAT32_REL_TOL = 1e-7
"""float32 keeps ~7 significant digits: np.float32(0.478) is 0.47799998..."""

CRML_JSON = {"D0": 3.25e28, "delta": 0.478, "eta": -1.55, "vA": 34.9, "zh": 3.9, "nu1": 0.28, "nu2": 2.42,
             "nu3": 2.12, "Rbr1_MV": 880.0, "Rbr2_MV": 4.67e5}
"""physical_parameters of the crml_base reference run (the values of CRML_BASE)."""

HEADER = "R_low_GV,R_high_GV,R_rep_GV,flux,stat_err_lo,stat_err_hi,sys_err_lo,sys_err_hi"
ROWS = ("2.15,2.4,2.271,0.5117,0.0015,0.0015,0.0259,0.0259",
        "2.4,2.67,2.531,0.4927,0.0013,0.0013,0.0224,0.0224")


# ------------------------------------------------------------------------------ 1. galdef list values
@pytest.fixture(scope="module")
def paper_galdef_text() -> str:
    text = paper_galdef_path().read_text(encoding="latin-1")
    assert B_FIELD_LINE in text and ISRF_LINE in text
    return text


@pytest.mark.parametrize("value", [
    "-1, -2, -3, -4, -5, -6, -7, -8, -9, -10",
    "-1,\t-2,  -3,-4, -5,-6,-7,-8,-9,-10",
    "-1.0e0, -2., -3, -4, -5, -6, -7, -8, -9, -1e1",
])
def test_galdef_list_with_spaces_after_commas_is_read_as_galprop_does(paper_galdef_text: str, value: str) -> None:
    line = f"B_field_parameters   = {value}   parameters for 3D models"
    g = parse_galdef(paper_galdef_text.replace(B_FIELD_LINE, line))
    assert g["B_field_parameters"] == B_FIELD_VALUES
    assert g.entries["B_field_parameters"].comment == "parameters for 3D models"
    isrf = parse_galdef(paper_galdef_text.replace(ISRF_LINE, "ISRF_factors         = 1.0, 0.5, 2   factors"))
    assert isrf["ISRF_factors"] == (1.0, 0.5, 2.0)
    again = g.with_overrides(n_B_field_parameters=10)  # round trip keeps the line and its reading
    assert again["B_field_parameters"] == B_FIELD_VALUES


@pytest.mark.parametrize(("value", "message"), [
    ("-1 -2 -3 -4 -5 -6 -7 -8 -9 -10", "must be separated by commas"),
    ("-1,-2,-3 -4,-5,-6,-7,-8,-9,-10", "must be separated by commas"),
    ("-1 ,-2,-3,-4,-5,-6,-7,-8,-9,-10", "must be separated by commas"),
    ("-1,-2,-3,-4,-5,-6,-7,-8,-9,-10,", "ends with a comma"),
    ("-1,-2,,-4,-5,-6,-7,-8,-9,-10", "comma not followed by a number"),
    ("-1,-2,-3x,-4,-5,-6,-7,-8,-9,-10", "glued to the number '-3'"),
    ("one,two", "is not a comma-separated list of numbers"),
])
def test_galdef_malformed_list_is_refused_naming_the_key(paper_galdef_text: str, value: str, message: str) -> None:
    text = paper_galdef_text.replace(B_FIELD_LINE, f"B_field_parameters   = {value}")
    with pytest.raises(GaldefError, match=f"line 99: B_field_parameters = .*{message}") as info:
        parse_galdef(text)
    assert info.value.key == "B_field_parameters"


def test_galdef_list_off_galprop_column_and_bad_override_are_refused(paper_galdef_text: str) -> None:
    shifted = paper_galdef_text.replace(B_FIELD_LINE, "B_field_parameters = -1, -2, -3, -4, -5, -6, -7, -8, -9, -10")
    with pytest.raises(GaldefError, match="B_field_parameters: GALPROP reads the value from column 23"):
        parse_galdef(shifted)
    g = parse_galdef(paper_galdef_text)
    for bad in ("1,2,3", [1.0, True, 2.0], [], 5.0, [1.0, math.nan]):
        with pytest.raises(GaldefError, match="B_field_parameters: expected a non-empty sequence of finite numbers"):
            g.with_overrides(B_field_parameters=bad)
    assert g.with_overrides(B_field_parameters=np.arange(1, 11, dtype=np.float32))["B_field_parameters"] == \
        tuple(float(i) for i in range(1, 11))


# ------------------------------------------------------------------------- 2. numpy scalars and bools
@pytest.mark.parametrize("value", [np.float32(0.478), np.float64(0.478), np.float16(0.5), np.longdouble(0.478),
                                   np.array(0.478)])
def test_numpy_real_scalars_are_accepted_for_float_parameters(value: Any) -> None:
    p = PropagationParams(**{**CRML_BASE.to_dict(), "delta": value})
    assert type(p.delta) is float
    assert p.delta == pytest.approx(float(value), rel=FLOAT32_REL_TOL)
    for integer in (np.int64(4), np.int32(4), np.uint8(4)):
        q = PropagationParams(**{**CRML_BASE.to_dict(), "z_halo_kpc": integer})
        assert q.z_halo_kpc == 4.0 and type(q.z_halo_kpc) is float
    assert Normalisations(q_c=np.float32(3600.0), q_o=np.int64(4600)).as_vector().tolist() == [3600.0, 4600.0, 1, 1]


@pytest.mark.parametrize("value", [True, np.bool_(True), np.bool_(False), np.array(True), "0.5", np.str_("0.5"),
                                   0.5 + 0j, np.complex128(0.5), None])
def test_bools_strings_and_complex_are_refused_for_float_parameters(value: Any) -> None:
    with pytest.raises(ValueError, match=r"^delta must be a number .*allowed range \[0.2, 1\]"):
        PropagationParams(**{**CRML_BASE.to_dict(), "delta": value})


def test_array_constructors_refuse_bool_and_string_arrays() -> None:
    vec = CRML_BASE.as_vector()
    assert PropagationParams.from_vector(vec.astype(np.float32)).delta == pytest.approx(0.478, rel=FLOAT32_REL_TOL)
    with pytest.raises(ValueError, match="from_vector: vec must be a real number .* got a bool"):
        PropagationParams.from_vector([*vec[:9].tolist(), True])
    with pytest.raises(ValueError, match="from_array: array must be a real number .* dtype <U"):
        PropagationParams.from_array(vec.astype(str)[None, :])
    with pytest.raises(ValueError, match="from_vector: vec .* dtype bool"):
        Normalisations.from_vector(np.ones(4, dtype=bool))


def test_physics_checks_refuse_bools_and_accept_numpy_scalars() -> None:
    for bad in (True, np.bool_(True), np.array([True, False]), [0.3, True], "0.5", np.complex128(0.5)):
        with pytest.raises(ValueError, match=r"^delta must be a real number or array of real numbers"):
            as_array("delta", bad, 0.0, 2.0, lo_open=True, hi_open=True)
    assert as_array("delta", np.float32(0.5), 0.0, 2.0).tolist() == 0.5
    assert as_array("A", [np.int64(12), np.uint8(16)], 1.0).tolist() == [12.0, 16.0]
    assert as_int("n", np.int64(3), 0) == 3
    for bad_int in (np.bool_(True), True, "3"):
        with pytest.raises(ValueError, match="n must be an integer >= 0"):
            as_int("n", bad_int, 0)


# ------------------------------------------------------------------------------ 3. GALPROP run json
def test_from_galprop_json_reads_the_file_and_names_it_and_the_missing_key(tmp_path: Path) -> None:
    good = tmp_path / "crml_base.json"
    good.write_text(json.dumps({"run": "crml_base", "physical_parameters": CRML_JSON}))
    assert PropagationParams.from_galprop_json(good) == CRML_BASE
    assert PropagationParams.from_galprop_json(CRML_JSON, source=good) == CRML_BASE

    missing = tmp_path / "no_zh.json"
    missing.write_text(json.dumps({"physical_parameters": {k: v for k, v in CRML_JSON.items() if k != "zh"}}))
    with pytest.raises(ValueError, match=r"no_zh\.json: physical_parameters is missing key\(s\) \['zh'\]"):
        PropagationParams.from_galprop_json(missing)
    with pytest.raises(ValueError, match=r"no_zh\.json: physical_parameters is missing key\(s\) \['zh'\]"):
        PropagationParams.from_galprop_json(json.loads(missing.read_text())["physical_parameters"], source=missing)
    with pytest.raises(ValueError, match=r"missing key\(s\) \['zh'\]"):
        PropagationParams.from_galprop_json({k: v for k, v in CRML_JSON.items() if k != "zh"})

    no_block = tmp_path / "no_block.json"
    no_block.write_text(json.dumps({"run": "x"}))
    with pytest.raises(ValueError, match=r"no_block\.json: missing key 'physical_parameters'"):
        PropagationParams.from_galprop_json(no_block)
    broken = tmp_path / "broken.json"
    broken.write_text("{not json")
    with pytest.raises(ValueError, match=r"broken\.json: not a valid JSON file"):
        PropagationParams.from_galprop_json(broken)
    with pytest.raises(ValueError, match=r"physical_parameters\['D0'\] \(d0_1e28_cm2_s\) must be a number"):
        PropagationParams.from_galprop_json({**CRML_JSON, "D0": "3.25e28"}, source=good)
    with pytest.raises(ValueError, match=r"crml_base\.json: physical_parameters: z_halo_kpc = nan is not finite; "
                                         r"allowed range \[1, 20\] kpc"):
        PropagationParams.from_galprop_json({**CRML_JSON, "zh": math.nan}, source=good)


# ------------------------------------------------------------------------------- 4. Normalisations
@pytest.mark.parametrize(("field", "value", "message"), [
    ("q_c", "3600", "q_c must be a number .*got '3600'"),
    ("q_o", True, "q_o must be a number .*a bool"),
    ("xi_li", np.bool_(True), "xi_li must be a number .*a bool"),
    ("xi_be", None, "xi_be must be a number .*NoneType"),
    ("xi_li", 1 + 0j, "xi_li must be a number .*complex"),
    ("q_o", math.nan, r"q_o = nan must be finite and > 0 \(abundance relative to 1H"),
    ("xi_be", -1.0, "xi_be = -1.0 must be finite and > 0"),
    ("q_c", math.inf, "q_c = inf must be finite and > 0"),
])
def test_normalisations_refuse_wrong_types_naming_the_field(field: str, value: Any, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        Normalisations(**{field: value})


# ------------------------------------------------------------------------------- 5. measured-data CSV
def _csv(tmp_path: Path, rows: tuple[str, ...] = ROWS, *, bom: bool = False, comments: bool = True) -> Path:
    path = tmp_path / "AMS02_PhysRep2021_B_R.csv"
    head = "# dataset: test\n# data_taking_period: 2011/05/19 - 2018/05/26\n" if comments else ""
    path.write_text(head + HEADER + "\n" + "\n".join(rows) + "\n", encoding="utf-8-sig" if bom else "utf-8")
    return path


@pytest.mark.parametrize("comments", [True, False])
def test_csv_leading_bom_is_stripped(tmp_path: Path, comments: bool) -> None:
    table = read_table(_csv(tmp_path, bom=True, comments=comments))
    assert table.x_rep.tolist() == [2.271, 2.531]
    assert table.value.tolist() == [0.5117, 0.4927]
    assert table.meta == ({"dataset": "test", "data_taking_period": "2011/05/19 - 2018/05/26"} if comments else {})


@pytest.mark.parametrize(("row", "column", "shown"), [
    ("2.4,2.67,2.531,0.4_927,0.0013,0.0013,0.0224,0.0224", "flux", "0.4_927"),
    ("2.4,2.67,2.531,0.4927,0.0013,0.0013,0.0224,1_0", "sys_err_hi", "1_0"),
])
def test_csv_underscore_in_number_is_refused_naming_file_line_column(tmp_path: Path, row: str, column: str,
                                                                     shown: str) -> None:
    path = _csv(tmp_path, (ROWS[0], row))
    with pytest.raises(ValueError, match=rf"AMS02_PhysRep2021_B_R\.csv: line 5, column '{column}': '{shown}' "
                                         "contains '_'"):
        read_table(path)


def test_csv_non_ascii_digits_are_refused(tmp_path: Path) -> None:
    path = _csv(tmp_path, (ROWS[0], ROWS[1].replace("0.4927", "\uff10.4927")))
    with pytest.raises(ValueError, match="line 5, column 'flux': cannot parse"):
        read_table(path)
