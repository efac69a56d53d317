"""Data loaders, named data sets and `crnet data` (crnet.data)."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import numpy as np
import pytest
from helpers_csv import GOOD_ROWS, HEADER
from typer.testing import CliRunner

from crnet.cli import app
from crnet.data import (
    DATA_DIR,
    DataBlock,
    Dataset,
    Modulation,
    block_from_table,
    d_ekn_d_rigidity,
    dataset_from_files,
    effective_mass_number,
    ekn_to_rigidity,
    get_dataset,
    infer_species,
    list_datasets,
    read_table,
    rigidity_to_ekn,
)

PAPER_COUNTS = {"Li": 71, "Be": 68, "B": 83, "C": 87, "O": 88}
"""Points per species in the CR-ML arrays (../shared/reference/cr-ml/PROVENANCE.md)."""

PRINTED_6_DIGITS_RTOL = 5e-6
"""A value printed to 6 significant digits is off by at most half a unit of the 6th, 5e-6 relative (CR-ML's Voyager
sigma: measured 7.6e-7). Was 2e-5."""

ROUND_TRIP_RTOL = 1e-12
"""Rigidity <-> Ekin/n there and back in float64: a few ulp (measured 4.4e-16)."""

CENTRAL_DIFFERENCE_RTOL = 1e-8
"""d Ekn / d R against central differences with h = 1e-6 R: truncation (h / R)^2 = 1e-12, cancellation ~eps R / h
= 2e-10 (measured 2.2e-10). Was 1e-7."""

runner = CliRunner()


def write_csv(
    tmp_path: Path, rows: list[str], header: str = HEADER, name: str = "AMS02_Test_B_R.csv"
) -> Path:
    path = tmp_path / name
    meta = ["# x: rigidity R [GV]", "# dataset: test", "# data_taking_period: 2011/05/19 - 2018/05/26"]
    path.write_text("\n".join(meta + [header] + rows) + "\n")
    return path


def test_paper_dataset_is_shipped_and_complete() -> None:
    ds = get_dataset("paper")
    assert ds.n_points == 397 and len(ds.blocks) == 13
    assert ds.modulation is None and not ds.needs_modulation
    for sp, n in PAPER_COUNTS.items():
        assert sum(b.n_points for b in ds.blocks if b.species == sp) == n
    assert all(b.lis for b in ds.blocks)
    assert Path(ds.blocks[0].source).parent == DATA_DIR / "paper"
    assert (DATA_DIR / "PROVENANCE.md").is_file()
    # total-error-only convention: sigma stored as the systematic part
    b = ds.blocks[0]
    np.testing.assert_array_equal(b.sigma, b.sys_lo)
    assert np.all(b.stat_lo == 0)


def test_paper_arrays_identical_to_crml(shared_dir: Path) -> None:
    ref = shared_dir / "reference" / "cr-ml" / "Exp_Data"
    for path in sorted((DATA_DIR / "paper").glob("*.npy")):
        assert path.read_bytes() == (ref / path.name).read_bytes(), path.name
    ds = get_dataset("paper")
    c_ams = np.load(ref / "C_AMS2.npy", allow_pickle=False)
    blk = next(b for b in ds.blocks if b.label == "C AMS-02")
    np.testing.assert_array_equal(blk.ekin_gev_per_n, c_ams[0])
    np.testing.assert_array_equal(blk.flux, c_ams[1])
    np.testing.assert_array_equal(blk.sigma, c_ams[2])


def test_error_convention_matches_crml(shared_dir: Path) -> None:
    """CR-ML's Voyager sigma is sqrt(stat^2 + syst^2) of Cummings et al. (to its 6 printed digits)."""
    table = read_table(shared_dir / "data" / "voyager1" / "Voyager1_Cummings2016_B_Ekn.csv")
    paper = next(b for b in get_dataset("paper").blocks if b.label == "B Voyager 1")
    np.testing.assert_allclose(table.total_err(), paper.sigma, rtol=PRINTED_6_DIGITS_RTOL)
    np.testing.assert_allclose(table.value, paper.flux)


def test_all_shared_tables_load(shared_dir: Path) -> None:
    n = 0
    for path in sorted((shared_dir / "data").rglob("*.csv")):
        if "cross_sections" in path.parts or "Table9_allZ" in path.name:
            continue
        t = read_table(path)
        assert t.n_points > 0 and t.data_taking_period
        n += 1
    assert n > 70


def test_shared_rigidity_table_to_ekn(shared_dir: Path) -> None:
    table = read_table(shared_dir / "data" / "ams02" / "AMS02_PhysRep2021_B_R.csv")
    assert table.x_kind == "R" and table.species == "B"
    blk = block_from_table(table)
    assert not blk.lis and blk.a_eff == pytest.approx(10.7)
    assert blk.period.startswith("2011/05/19 - 2018/05/26")
    r = ekn_to_rigidity(blk.ekin_gev_per_n, 5, 10.7)
    np.testing.assert_allclose(r, table.x_rep, rtol=ROUND_TRIP_RTOL)
    jac = d_ekn_d_rigidity(table.x_rep, 5, 10.7)
    np.testing.assert_allclose(blk.flux, table.value / jac)
    np.testing.assert_allclose(blk.stat_lo, table.stat_lo / jac)
    np.testing.assert_allclose(blk.sys_hi, table.sys_hi / jac)


def test_kinematics() -> None:
    assert rigidity_to_ekn(np.array([1.0]), 1, 1.0)[0] == pytest.approx(np.hypot(1.0, 0.938) - 0.938)
    r = np.geomspace(1.0, 3000.0, 50)
    for z, a in ((3, 6.5), (5, 10.7), (8, 16.0)):
        np.testing.assert_allclose(ekn_to_rigidity(rigidity_to_ekn(r, z, a), z, a), r, rtol=ROUND_TRIP_RTOL)
        h = 1e-6 * r
        numeric = (rigidity_to_ekn(r + h, z, a) - rigidity_to_ekn(r - h, z, a)) / (2 * h)
        np.testing.assert_allclose(d_ekn_d_rigidity(r, z, a), numeric, rtol=CENTRAL_DIFFERENCE_RTOL)
    assert effective_mass_number("B") == pytest.approx(10.7)
    assert effective_mass_number("Li", {6: 0.4, 7: 0.6}) == pytest.approx(6.6)
    with pytest.raises(ValueError, match="summing to 1"):
        effective_mass_number("Li", {6: 0.4, 7: 0.4})


def test_infer_species() -> None:
    assert infer_species("AMS02_PhysRep2021_Be_R.csv") == "Be"
    assert infer_species("AMS02_PhysRep2021_BoverC_R.csv") == "B/C"
    assert infer_species("CALET_2023_p_over_He_R.csv") == "H/He"
    assert infer_species("DAMPE_2025_proton_Ek.csv") == "H"
    assert infer_species("AMS02_PhysRep2021_positron_R.csv") == "e+"


def test_good_table_and_dataset_from_files(tmp_path: Path) -> None:
    path = write_csv(tmp_path, GOOD_ROWS)
    table = read_table(path)
    assert table.n_points == 3 and table.species == "B" and table.lines.tolist() == [5, 6, 7]
    with pytest.raises(ValueError, match="need a Modulation"):
        dataset_from_files([path])
    ds = dataset_from_files([path], modulation=Modulation(phi_mv=600.0))
    assert ds.n_points == 3 and ds.needs_modulation


@pytest.mark.parametrize(
    "rows,header,line,column,what",
    [
        (GOOD_ROWS, HEADER.replace(",sys_err_hi", ""), 4, "sys_err_hi", "missing column"),
        (GOOD_ROWS, HEADER.replace("flux", "intensity"), 4, "flux|ratio", "missing column"),
        (GOOD_ROWS, HEADER.replace("R_rep_GV", "R_rep_MV"), 4, "<X>_rep_<U>", "missing column"),
        (
            [
                GOOD_ROWS[0],
                GOOD_ROWS[1].replace("0.0013,0.0013,0.0224", "-0.0013,0.0013,0.0224"),
                GOOD_ROWS[2],
            ],
            HEADER,
            6,
            "stat_err_lo",
            "negative error",
        ),
        ([GOOD_ROWS[0], GOOD_ROWS[2], GOOD_ROWS[1]], HEADER, 7, "R_low_GV", "sorted by energy"),
        ([GOOD_ROWS[0], GOOD_ROWS[1].replace("0.4927", "nan"), GOOD_ROWS[2]], HEADER, 6, "flux", "NaN"),
        (
            [GOOD_ROWS[0], GOOD_ROWS[1], GOOD_ROWS[2].replace("0.0188,0.0188", "0.0188,abc")],
            HEADER,
            7,
            "sys_err_hi",
            "cannot parse",
        ),
        ([GOOD_ROWS[0], GOOD_ROWS[1] + ",1"], HEADER, 6, "-", "fields"),
        (
            [GOOD_ROWS[0], "2.4,2.67,,0.4927,0.0013,0.0013,0.0224,0.0224"],
            HEADER,
            6,
            "R_rep_GV",
            "empty field",
        ),
        (
            [GOOD_ROWS[0], "2.4,2.67,2.9,0.4927,0.0013,0.0013,0.0224,0.0224"],
            HEADER,
            6,
            "R_rep_GV",
            "outside its bin",
        ),
    ],
)
def test_bad_tables_name_file_line_column(tmp_path: Path, rows, header, line, column, what) -> None:
    path = write_csv(tmp_path, rows, header=header)
    with pytest.raises(ValueError) as err:
        read_table(path)
    msg = str(err.value)
    assert str(path) in msg and f"line {line}," in msg and f"column '{column}'" in msg and what in msg


def test_non_monotonic_point_energies(tmp_path: Path) -> None:
    header = HEADER.replace("R_", "Ekn_").replace("_GV", "_GeVn")
    rows = [",,0.5,1.0,0.1,0.1,0,0", ",,0.4,1.0,0.1,0.1,0,0"]
    path = write_csv(tmp_path, rows, header=header, name="X_C_Ekn.csv")
    with pytest.raises(
        ValueError, match=r"line 6, column 'Ekn_rep_GeVn': x values must be strictly increasing"
    ):
        read_table(path)


def test_zero_total_error_and_ratio_refused(tmp_path: Path) -> None:
    path = write_csv(tmp_path, [GOOD_ROWS[0], "2.4,2.67,2.531,0.4927,0,0,0,0"])
    with pytest.raises(ValueError, match=r"line 6, column 'sigma'"):
        block_from_table(read_table(path))
    ratio = write_csv(tmp_path, GOOD_ROWS, header=HEADER.replace("flux", "ratio"), name="T_BoverC_R.csv")
    with pytest.raises(ValueError, match="ratio table"):
        block_from_table(read_table(ratio))


def test_dataset_validation() -> None:
    blk = get_dataset("paper").blocks[0]
    with pytest.raises(ValueError, match="not unique"):
        Dataset("dup", "", (blk, blk))
    with pytest.raises(ValueError, match="bounds_mv"):
        Modulation(phi_mv=500.0, nuisance=True, bounds_mv=(900.0, 100.0))
    with pytest.raises(ValueError, match="species"):
        DataBlock(
            "x", "Xx", "e", np.ones(2), np.ones(2), np.ones(2), np.ones(2), np.ones(2), np.ones(2), True
        )


@pytest.mark.parametrize(
    ("note", "lis"),
    [
        ("local interstellar medium: NO solar modulation (phi = 0)", True),
        ("unmodulated (phi = 0.0)", True),
        ("AMS-02 fluxes corrected to LIS by the authors", True),
        ("force-field phi = 0.55 GV", False),  # 'phi = 0' is only the start of 0.55
        ("modulated; phi=0.7 GV", False),
        ("top of atmosphere, NOT corrected to LIS", False),
        ("not unmodulated", False),
        ("2011/05/19 - 2018/05/26", False),
    ],
)
def test_lis_markers_are_phrases_not_substrings(tmp_path: Path, note: str, lis: bool) -> None:
    path = tmp_path / "T_B_R.csv"
    path.write_text("\n".join(["# x: rigidity R [GV]", f"# data_taking_period: {note}", HEADER, *GOOD_ROWS]) + "\n")
    assert block_from_table(read_table(path)).lis is lis


@pytest.mark.parametrize("note", ["TOA flux; to compare with the unmodulated LIS apply a force field",
                                  "Voyager (phi = 0) values are in a separate file"])
def test_lis_phrases_in_notes_do_not_make_a_toa_file_interstellar(tmp_path: Path, note: str) -> None:
    """A note or reference about something else made ACE-CRIS top-of-atmosphere data an LIS block and dropped its
    266 MV phi: the model was compared unmodulated (walk-through, session 19). Only the lines about the measurement
    itself (LIS_MARKER_KEYS) are searched."""
    text = (DATA_DIR / "ace_cris" / "ACECRIS_C_200903_201001_Ekn.csv").read_text()
    path = tmp_path / "ACE_C.csv"
    path.write_text(f"# note: {note}\n# transformation: unmodulated spectra in Cummings et al. (phi = 0)\n" + text)
    block = block_from_table(read_table(path))
    assert block.lis is False and block.phi_mv == 266.0


def test_explicit_lis_metadata_overrides_markers(tmp_path: Path) -> None:
    rows = "\n".join([HEADER, *GOOD_ROWS]) + "\n"
    path = tmp_path / "T_B_R.csv"
    path.write_text("# x: rigidity R [GV]\n# lis: false\n# note: phi = 0 at the heliopause\n" + rows)
    assert block_from_table(read_table(path)).lis is False
    path.write_text("# x: rigidity R [GV]\n# lis: maybe\n" + rows)
    with pytest.raises(ValueError, match="metadata 'lis' must be 'true' or 'false'"):
        block_from_table(read_table(path))


def test_dataset_refuses_blocks_from_different_modulation_periods(shared_dir: Path) -> None:
    ace = sorted((shared_dir / "data" / "ace_cris").glob("ACECRIS_C_*_Ekn.csv"))
    phis = [block_from_table(read_table(p)).phi_mv for p in ace]
    assert phis[:2] == [425.0, 508.0]  # CRDB's phi of the 1997-98 and 1998-99 periods
    with pytest.raises(ValueError, match="different force-field potentials"):
        dataset_from_files(ace[:2], modulation=Modulation(500.0))
    one_period = dataset_from_files(ace[:1], modulation=Modulation(425.0))
    assert one_period.needs_modulation and one_period.blocks[0].phi_mv == 425.0


def test_ams02_2021_dataset() -> None:
    ds = get_dataset("ams02-2021")
    assert ds.modulation is not None and ds.modulation.nuisance
    ams = [b for b in ds.blocks if b.experiment == "AMS-02"]
    voy = [b for b in ds.blocks if b.experiment == "Voyager 1"]
    assert len(ams) == 5 and len(voy) == 5
    assert not any(b.lis for b in ams) and all(b.lis for b in voy)
    assert all(b.x_native_kind == "R" and "2018/05/26" in b.period for b in ams)
    assert all(np.all(b.stat_lo > 0) and np.all(b.sys_lo > 0) for b in ams)
    assert {i.name for i in list_datasets()} >= {"paper", "ams02-2021"}


def test_cli_data_list_and_show(tmp_path: Path) -> None:
    res = runner.invoke(app, ["data", "list"])
    assert res.exit_code == 0 and "paper" in res.output and "397" in res.output
    res = runner.invoke(app, ["data", "show", "paper"])
    assert res.exit_code == 0 and "C ACE-CRIS" in res.output and "no modulation" not in res.output
    assert "modulation: none" in res.output
    res = runner.invoke(app, ["data", "show", "ams02-2021", "--json", "--points"])
    assert res.exit_code == 0
    info = json.loads(res.output)
    assert info["modulation"][0]["nuisance"] and info["n_points"] == sum(b["n_points"] for b in info["blocks"])
    assert len(info["blocks"][0]["points"]["sigma"]) == info["blocks"][0]["n_points"]
    res = runner.invoke(app, ["data", "show", "nonexistent"])
    assert res.exit_code == 2 and "unknown data set" in res.output
    res = runner.invoke(app, ["data", "show", str(write_csv(tmp_path, GOOD_ROWS))])
    assert res.exit_code == 0 and "3 rows" in res.output


def test_dataset_with_one_modulation_per_period(shared_dir: Path) -> None:
    ace = sorted((shared_dir / "data" / "ace_cris").glob("ACECRIS_C_*_Ekn.csv"))[:2]
    blocks = [block_from_table(read_table(p)) for p in ace]
    periods = [b.period for b in blocks]
    mods = {periods[0]: Modulation(425.0, nuisance=True), periods[1]: Modulation(508.0)}
    ds = Dataset("two", "", tuple(blocks), modulation=mods)
    assert list(ds.periods) == periods and ds.period_of(blocks[1]) == periods[1]
    with pytest.raises(ValueError, match="not a key of the modulation mapping"):
        Dataset("two", "", tuple(blocks), modulation={periods[0]: Modulation(425.0)})
    with pytest.raises(ValueError, match="has no top-of-atmosphere block"):
        Dataset("two", "", tuple(blocks), modulation={**mods, "2030": Modulation(400.0)})
    with pytest.raises(ValueError, match="must be str -> Modulation"):
        Dataset("two", "", tuple(blocks), modulation={periods[0]: 425.0, periods[1]: Modulation(508.0)})
    # blocks of one period must still agree on their attached phi
    moved = dataclasses.replace(blocks[1], period=periods[0])
    with pytest.raises(ValueError, match=f"of period '{periods[0]}' carry different"):
        Dataset("two", "", (blocks[0], moved), modulation={periods[0]: Modulation(425.0)})


def test_ams02_with_ace2009_has_two_periods() -> None:
    ds = get_dataset("ams02-2021-ace2009")
    ace = [b for b in ds.blocks if b.experiment == "ACE-CRIS"]
    assert [b.species for b in ace] == ["C", "O"] and all(not b.lis and b.phi_mv == 266.0 for b in ace)
    assert {ds.period_of(b) for b in ace} == {ace[0].period} and ace[0].period.startswith("2009/03/23")
    assert ds.n_points == get_dataset("ams02-2021").n_points + sum(b.n_points for b in ace)
    assert [m.bounds_mv for m in ds.periods.values()] == [(200.0, 1200.0), (100.0, 800.0)]


def test_conflicting_metadata_upper_limits_and_empty_blocks_refused(tmp_path: Path) -> None:
    path = write_csv(tmp_path, GOOD_ROWS)
    text = path.read_text()
    path.write_text("# lis: true\n# lis: false\n" + text)
    with pytest.raises(ValueError, match=r"line 2, column 'lis': metadata key given twice"):
        read_table(path)
    path.write_text("# lis: false\n# lis: false\n" + text)  # repeated with the same value is harmless
    assert read_table(path).meta["lis"] == "false"
    ul = write_csv(tmp_path, [r + ",0" for r in GOOD_ROWS], header=HEADER + ",upper_limit", name="UL_B_R.csv")
    with pytest.raises(ValueError, match=r"line 4, column 'upper_limit': upper limits are not supported"):
        read_table(ul)
    be = get_dataset("paper").blocks[0]
    with pytest.raises(ValueError, match="no data points"):
        dataclasses.replace(be, ekin_gev_per_n=[], flux=[], stat_lo=[], stat_hi=[], sys_lo=[], sys_hi=[], lines=[])
