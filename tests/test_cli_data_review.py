"""The CLI review of the commands that read or write user files (data, chi2, simulate, fit, scan, store, predict,
train): what a user who makes mistakes gets. Every check here runs before any propagation or training, on tiny
files, so each test takes well under a few seconds."""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

import h5py
import numpy as np
import pytest
from helpers_cli import assert_usage_error, write_test_spectra
from helpers_store import write_synthetic_store
from typer.testing import CliRunner

from crnet.cli import app
from crnet.data import DATA_DIR, read_table

runner = CliRunner()

HEADER = "R_low_GV,R_high_GV,R_rep_GV,flux,stat_err_lo,stat_err_hi,sys_err_lo,sys_err_hi"
ROWS = ["2.0,2.5,2.2,1.5,0.1,0.1,0.05,0.05", "2.5,3.0,2.7,0.8,0.2,0.2,0.04,0.04"]
START = "4,0.45,-1,20,4.55,1,2.3,2.4,1000,3e5"
"""A start inside the Table 1 box (PARAM_NAMES order)."""
TOML = ("d0_1e28_cm2_s = 4.0\ndelta = 0.45\neta = -1.0\nv_alfven_km_s = 20.0\nz_halo_kpc = 3.3\nnu1 = 0.5\n"
        "nu2 = 2.4\nnu3 = 2.2\nr_break1_mv = 1000.0\nr_break2_mv = 3.0e5\n")
GRID = ["--dr", "4", "--dz", "1.3", "--ekin-factor", "3", "--backend", "numpy", "--no-progress"]


def csv_file(tmp_path: Path, meta: list[str], header: str = HEADER, rows: list[str] = ROWS,
             name: str = "Test_B_R.csv") -> Path:
    path = tmp_path / name
    path.write_text("\n".join([*meta, header, *rows]) + "\n")
    return path


@pytest.fixture
def spectra_file(tmp_path: Path) -> Path:
    """Three models on the CR-ML grid; model 1 did not converge (residual 5.05e-8)."""
    return write_test_spectra(tmp_path / "s.h5")


@pytest.fixture
def store(tmp_path: Path) -> Path:
    path = tmp_path / "mocks.h5"
    write_synthetic_store(path, 8)
    return path


# ---------------------------------------------------------------------------------------------- crnet data show
def test_data_show_csv_honours_json_and_points(tmp_path: Path) -> None:
    """--json and --points were silently ignored for a CSV file (plain text came back for --json)."""
    path = csv_file(tmp_path, ["# x: rigidity R [GV]"])
    res = runner.invoke(app, ["data", "show", str(path), "--json", "--points"])
    assert res.exit_code == 0, res.output
    out = json.loads(res.output)
    assert out["n_points"] == 2 and out["species"] == "B" and out["x_unit"] == "GV"
    assert out["value_unit"] == "m^-2 s^-1 sr^-1 GV^-1"
    assert out["points"]["flux"] == [1.5, 0.8] and out["points"]["x_low"] == [2.0, 2.5]
    res = runner.invoke(app, ["data", "show", str(path), "--points"])
    assert res.exit_code == 0, res.output
    lines = res.output.splitlines()
    row = next(line for line in lines if line.split()[:2] == ["2.7", "0.8"])
    assert row.split()[2:] == ["0.2", "0.04"]  # stat, syst
    assert "flux and errors [m^-2 s^-1 sr^-1 GV^-1]" in res.output


def test_data_show_prints_energy_per_nucleon_as_gev_per_n() -> None:
    path = DATA_DIR / "voyager1" / "Voyager1_Cummings2016_B_Ekn.csv"
    res = runner.invoke(app, ["data", "show", str(path)])
    assert res.exit_code == 0, res.output
    assert "Ekn [GeV/n]" in res.output and "0.1056 GeV/n" in res.output and "GeVn" not in res.output
    assert "[m^-2 s^-1 sr^-1 (GeV/n)^-1]" in res.output


def test_data_show_file_says_how_the_data_sets_compare_it(tmp_path: Path) -> None:
    """A file shown alone said nothing about solar modulation (walk-through, session 18): it now names the blocks
    of the shipped data sets made from it (same content) with LIS or TOA and the period, and none for a new file."""
    res = runner.invoke(app, ["data", "show", str(DATA_DIR / "voyager1" / "Voyager1_Cummings2016_B_Ekn.csv"),
                              "--json"])
    assert res.exit_code == 0, res.output
    uses = json.loads(res.output)["used_in"]
    assert {u["dataset"] for u in uses} == {"ams02-2021", "ams02-2021-ace2009"} and {u["kind"] for u in uses} == {"LIS"}
    assert json.loads(res.output)["read_alone_as"].startswith("LIS (interstellar")
    res = runner.invoke(app, ["data", "show", str(DATA_DIR / "ace_cris" / "ACECRIS_C_200903_201001_Ekn.csv")])
    assert "read on its own (crnet.data.block_from_table): TOA (top of atmosphere: force-field modulated, phi = 266 " \
           "MV from its crdb_phi_MV column)" in res.output
    copy = tmp_path / "B_AMS.csv"  # a copy is recognised by content, wherever it lies
    shutil.copy(DATA_DIR / "ams02_physrep2021" / "AMS02_PhysRep2021_B_R.csv", copy)
    res = runner.invoke(app, ["data", "show", str(copy)])
    assert res.exit_code == 0, res.output
    assert "used in data set ams02-2021, block 'B AMS-02': top of atmosphere (TOA): force-field modulated" in res.output
    res = runner.invoke(app, ["data", "show", str(csv_file(tmp_path, ["# x: rigidity R [GV]"]))])
    assert res.exit_code == 0 and "used in no shipped data set" in res.output
    bad = tmp_path / "Bad_B_Ekn.csv"  # a file that cannot be a block says why (it vanished silently; helper-77)
    bad.write_text("# lis: yes\n" + (DATA_DIR / "voyager1" / "Voyager1_Cummings2016_B_Ekn.csv").read_text())
    res = runner.invoke(app, ["data", "show", str(bad)])
    assert res.exit_code == 0 and ("read on its own (crnet.data.block_from_table): not usable as a data block: "
                                   "metadata 'lis' must be 'true' or 'false', got 'yes'") in res.output


def test_data_show_files_by_existence_and_directories(tmp_path: Path) -> None:
    """An existing file without the .csv suffix was reported as an 'unknown data set'; a directory as 'no such
    data file'."""
    path = csv_file(tmp_path, ["# x: rigidity R [GV]"], name="boron.txt")
    res = runner.invoke(app, ["data", "show", str(path)])
    assert res.exit_code == 0, res.output
    assert "2 rows, flux vs R [GV]" in res.output
    folder = tmp_path / "tables.csv"
    folder.mkdir()
    assert_usage_error(runner.invoke(app, ["data", "show", str(folder)]), "is a directory, not a data file")
    assert_usage_error(runner.invoke(app, ["data", "show", "pamela"]), "unknown data set 'pamela'",
                       "or give an existing commented-CSV file")


@pytest.mark.parametrize(("meta", "header", "fragments"), [
    (["# x: rigidity R [GV]", "# flux units: m^-2 s^-1 sr^-1 MeV^-1"], HEADER,
     ["line 2, column 'flux units'", "'m^-2 s^-1 sr^-1 MeV^-1'", "must give fluxes in m^-2 s^-1 sr^-1 GV^-1"]),
    (["# flux units: cm^-2 s^-1 sr^-1 GV^-1; errors alike"], HEADER,
     ["line 1, column 'flux units'", "'cm^-2 s^-1 sr^-1 GV^-1'"]),
    (["# x: kinetic energy per nucleon Ekn [MeV/n]"], HEADER.replace("R_", "Ekn_").replace("_GV", "_GeVn"),
     ["line 1, column 'x'", "metadata unit [MeV/n]", "contradicts the x columns, which are Ekn in GeV/n"]),
    (["# x: rigidity R [GV]", "# ratio units: dimensionless"], HEADER,
     ["line 2, column 'ratio units'", "on a flux table"]),
    (["# ratio units: percent"], HEADER.replace("flux", "ratio"), ["column 'ratio units'", "must be dimensionless"]),
    (["# Flux Unit: cm^-2 s^-1 sr^-1 GV^-1"], HEADER, ["column 'Flux Unit'", "an area in cm"]),  # review: key case
    (["# flux units: m^-2 s^-1 sr^-1 GeV^-1"], HEADER, ["a flux per energy, but x is rigidity"]),
    (["# x: rigidity R (bins as in [1]) [GeV]"], HEADER, ["metadata unit [GeV] (the line's last [...])"]),
])
def test_tables_refuse_unit_metadata_that_contradict_the_columns(tmp_path, meta, header, fragments) -> None:
    """A flux table whose metadata say (MeV/n)^-1 or cm^-2 was read as if in SI per GV: a factor 1e3 / 1e4."""
    path = csv_file(tmp_path, meta, header=header)
    with pytest.raises(ValueError) as err:
        read_table(path)
    for f in fragments:
        assert f in str(err.value), (f, str(err.value))
    assert_usage_error(runner.invoke(app, ["data", "show", str(path)]), *fragments)


def test_tables_accept_consistent_unit_metadata(tmp_path) -> None:
    ekn = HEADER.replace("R_", "Ekn_").replace("_GV", "_GeVn")
    path = csv_file(tmp_path, ["# x: kinetic energy per nucleon Ekn [GeV/nucleon]",
                               "# flux units: sr^-1 m^-2 s^-1 (GeV/n)^-1; all error columns alike"], header=ekn)
    assert read_table(path).x_kind == "Ekn"
    # other spellings of the right units pass (review of session 16: exact token matching refused them)
    for flux_units, x_line in (("m^-2 s^-1 sr^-1 (GeV/nucleon)^-1", "# x: Ekn [GeV/u]"),
                               ("(m^2 s sr GeV/n)^-1", "# x: Ekn (bins as in [1]) [GeV/n]"),
                               ("m-2 s-1 sr-1 (gev/nuc)-1", "# X: Ekn [GeV/amu]")):
        spelled = csv_file(tmp_path, [x_line, f"# Flux units: {flux_units}"], header=ekn, name="B_spelled.csv")
        assert read_table(spelled).x_kind == "Ekn", flux_units
    shipped = sorted(DATA_DIR.rglob("*.csv"))
    assert len(shipped) == 12
    for f in shipped:  # every shipped table carries unit metadata that must keep passing
        t = read_table(f)
        assert "flux units" in t.meta and t.quantity == "flux"


# ---------------------------------------------------------------------------------------------- crnet chi2
def test_chi2_marks_unconverged_models(spectra_file: Path) -> None:
    """chi2 of spectra that did not converge was printed like any other."""
    res = runner.invoke(app, ["chi2", str(spectra_file)])
    assert res.exit_code == 0, res.output
    rows = [line for line in res.stdout.splitlines() if not line.startswith("#") and line.split()[0].isdigit()]
    assert [r.rstrip().endswith("!") for r in rows] == [False, True, False]
    assert "# ! spectra not converged (1 of 3 models, largest residual 5.05e-08)" in res.stdout
    res = runner.invoke(app, ["chi2", str(spectra_file), "--json"])
    assert res.exit_code == 0, res.output
    models = json.loads(res.stdout)["models"]
    assert [m["converged"] for m in models] == [True, False, True]
    assert models[1]["residual"] == pytest.approx(5.05e-8)


def test_chi2_table_and_json_agree(spectra_file: Path) -> None:
    table = runner.invoke(app, ["chi2", str(spectra_file)]).stdout
    models = json.loads(runner.invoke(app, ["chi2", str(spectra_file), "--json"]).stdout)["models"]
    rows = [line.split() for line in table.splitlines() if line.split() and line.split()[0].isdigit()]
    assert [float(r[1]) for r in rows] == [round(m["chi2_tot"], 3) for m in models]


def test_chi2_phi_period_given_twice(spectra_file: Path) -> None:
    """--phi 1=5 --phi 1=7: the last value silently won."""
    res = runner.invoke(app, ["chi2", str(spectra_file), "-d", "ams02-2021-ace2009", "--phi", "1=500",
                              "--phi", "1=700"])
    assert_usage_error(res, "--phi: period 1 is given twice (500 MV, then '1=700')")


@pytest.mark.parametrize(("args", "fragments"), [
    (["--interpolation", "spline"], ["--interpolation must be one of loglog, cubic, got 'spline'"]),
    (["--norm-lo", "1.3"], ["--norm-lo 1.3 / --norm-hi 1.2: need 0 < norm-lo <= norm-hi < inf"]),
    (["--norm-hi", "nan"], ["--norm-hi nan"]),
])
def test_chi2_options_are_named(spectra_file: Path, args, fragments) -> None:
    """The messages named a data block ('Li AMS-02') or 'bounds of xi_Li', not the option given."""
    assert_usage_error(runner.invoke(app, ["chi2", str(spectra_file), *args]), *fragments)


def test_chi2_of_a_directory_or_a_mock_store(tmp_path: Path, store: Path) -> None:
    assert_usage_error(runner.invoke(app, ["chi2", str(tmp_path)]), "is a directory, not a file")
    assert_usage_error(runner.invoke(app, ["chi2", str(store)]), "a mock store (crnet scan), not a spectra file",
                       "crnet store info")


# ---------------------------------------------------------------------------------------------- crnet simulate
def test_simulate_output_checks_before_the_propagation(tmp_path: Path) -> None:
    params = tmp_path / "p.toml"
    params.write_text(TOML)
    out = tmp_path / "s.h5"
    out.write_bytes(b"precious")
    base = ["simulate", "--params", str(params)]
    assert_usage_error(runner.invoke(app, [*base, "--out", str(out)]), "file exists; pass --overwrite")
    assert out.read_bytes() == b"precious"
    # with --overwrite the file check passes: the next check (the solver mode) speaks
    assert_usage_error(runner.invoke(app, [*base, "--out", str(out), "--overwrite", "--mode", "bogus"]),
                       "mode must be one of")
    assert_usage_error(runner.invoke(app, [*base, "--out", str(params), "--overwrite"]),
                       "is the input --params: writing it would destroy that input")
    assert params.read_text() == TOML
    assert_usage_error(runner.invoke(app, [*base, "--out", str(tmp_path)]), "is a directory; give a file name")
    assert "--overwrite" in runner.invoke(app, ["simulate", "--help"]).output


def test_simulate_out_of_prior_model_names_file_model_and_cli_option(tmp_path: Path) -> None:
    params = tmp_path / "p.toml"
    params.write_text("[[model]]\n" + TOML + "\n[[model]]\n" + TOML.replace("z_halo_kpc = 3.3", "z_halo_kpc = 30.0"))
    res = runner.invoke(app, ["simulate", "--params", str(params), "--out", str(tmp_path / "s.h5")])
    assert_usage_error(res, f"{params}: model 1: z_halo_kpc = 30 outside the prior box: allowed range [1, 20] kpc",
                       "pass --no-check-prior")
    assert "check_prior=False" not in res.output


# ---------------------------------------------------------------------------------------------- crnet fit
def test_fit_output_checks_before_the_fit(tmp_path: Path) -> None:
    """A missing directory or a directory as --out failed with a traceback after the whole fit; an existing
    result was replaced silently."""
    assert_usage_error(runner.invoke(app, ["fit", "--out", str(tmp_path / "no" / "f.json"), *GRID]),
                       "directory", "does not exist")
    assert_usage_error(runner.invoke(app, ["fit", "--out", str(tmp_path), *GRID]), "is a directory")
    old = tmp_path / "f.json"
    old.write_text("{}")
    assert_usage_error(runner.invoke(app, ["fit", "--out", str(old), *GRID]), "file exists; pass --overwrite")
    res = runner.invoke(app, ["fit", "--out", str(old), "--overwrite", "--max-evaluations", "0", *GRID])
    assert_usage_error(res, "--max-evaluations must be >= 1", "got 0")  # past the file check
    assert old.read_text() == "{}"


def test_grid_option_values_are_usage_errors_not_tracebacks(tmp_path: Path) -> None:
    """--half-lives lab raised a ValueError traceback from GridConfig (fit, scan, feedback, evaluate)."""
    for cmd in (["fit", "--out", str(tmp_path / "f.json")], ["scan", "--out", str(tmp_path / "s.h5")]):
        assert_usage_error(runner.invoke(app, [*cmd, "--half-lives", "lab", *GRID]),
                           "--half-lives must be one of ('galprop', 'measured')")
    # a zero, negative or NaN step was a ZeroDivisionError traceback or a message about the z lattice (walk-through)
    simulate = ["simulate", "--out", str(tmp_path / "x.h5"), "--params", str(tmp_path / "p.toml")]
    (tmp_path / "p.toml").write_text(TOML)
    for cmd in (["fit", "--out", str(tmp_path / "f.json")], ["scan", "--out", str(tmp_path / "s.h5")], simulate):
        for value in ("0", "-1", "nan"):
            assert_usage_error(runner.invoke(app, [*cmd, "--dz", value]), "--dz must be a finite positive number, got")
        assert_usage_error(runner.invoke(app, [*cmd, "--ekin-factor", "1"]),
                           "--ekin-factor must be a finite number > 1")
        assert_usage_error(runner.invoke(app, [*cmd, "--z-stretch-factor", "3"]),
                           "--z-stretch-factor must lie in (1, 2]")


def test_start_values_outside_the_box_give_the_allowed_range(tmp_path: Path) -> None:
    bad = START.replace("4.55", "40")
    for cmd in (["fit", "--out", str(tmp_path / "f.json")], ["scan", "--out", str(tmp_path / "s.h5")]):
        res = runner.invoke(app, [*cmd, "--start", bad, *GRID])
        assert res.exit_code == 2 and "Traceback" not in res.output
        assert "z_halo_kpc = 40 outside the prior box: allowed range [1, 20] kpc" in " ".join(
            res.output.replace("│", " ").split())
    res = runner.invoke(app, ["fit", "--out", str(tmp_path / "f.json"), "--start", START.replace("0.45", "nan"),
                              *GRID])
    assert res.exit_code == 2 and "delta = nan" in res.output and "[0.2, 1]" in res.output


# ---------------------------------------------------------------------------------------------- crnet scan
@pytest.mark.parametrize(("args", "message"), [
    (["--resume", "--overwrite"], "give --resume (continue --out) or --overwrite (replace it), not both"),
    (["--points", "5"], "--points sets the size of a uniform/lhs/sobol/gaussian design"),
    (["--shards", "3"], "--shards needs --workers or --scheduler"),
])
def test_scan_conflicting_options(tmp_path: Path, args, message) -> None:
    """Each was accepted, one of the options silently ignored."""
    out = tmp_path / "s.h5"
    assert_usage_error(runner.invoke(app, ["scan", "--out", str(out), *args, *GRID]), message)
    assert not out.exists()


def test_scan_output_path_checks(tmp_path: Path) -> None:
    """Traceback from h5py for a missing directory, and for a directory with --overwrite."""
    assert_usage_error(runner.invoke(app, ["scan", "--out", str(tmp_path / "no" / "s.h5"), *GRID]),
                       "does not exist")
    assert_usage_error(runner.invoke(app, ["scan", "--out", str(tmp_path), "--overwrite", *GRID]),
                       "is a directory")


def test_scan_from_fit_refuses_files_that_are_not_fit_results(tmp_path: Path, spectra_file: Path) -> None:
    from crprop.params import CRML_BASE

    listing = tmp_path / "list.json"
    listing.write_text("[1, 2]")
    extra = tmp_path / "extra.json"
    extra.write_text(json.dumps({"format": "crnet-fit", "params": CRML_BASE.to_dict(),
                                 "covariance_log": np.eye(10).tolist(), "comment": "mine"}))
    for path, fragment in ((spectra_file, "not JSON text"),
                           (listing, "not a crnet fit file (a JSON list, not an object)"),
                           (extra, "'comment'"), (tmp_path, "is a directory")):
        res = runner.invoke(app, ["scan", "--out", str(tmp_path / "scan.h5"), "--from-fit", str(path), *GRID])
        assert_usage_error(res, f"--from-fit {path}", fragment)
    res = runner.invoke(app, ["scan", "--out", str(extra), "--from-fit", str(extra), "--overwrite", *GRID])
    assert_usage_error(res, "is the input --from-fit")
    from crnet.scan.fit import FitResult

    # the checks live in FitResult.load, so Python callers get them too (a list raised AttributeError there)
    for path, fragment in ((spectra_file, "not JSON text"), (listing, "(a JSON list, not an object)"),
                           (extra, "unknown key(s) ['comment']")):
        with pytest.raises(ValueError, match=re.escape(fragment)):
            FitResult.load(path)


def test_a_fit_file_without_a_field_or_with_bad_params_is_refused_by_name(tmp_path: Path) -> None:
    """A fit file missing 'chi2' or holding params as a list gave a TypeError traceback (rc 1) from
    `crnet scan --from-fit` (review by helper-85, session 21)."""
    from crprop.params import CRML_BASE

    fit = tmp_path / "fit.json"
    fit.write_text(json.dumps({"format": "crnet-fit", "params": CRML_BASE.to_dict(),
                               "covariance_log": np.eye(10).tolist()}))
    res = runner.invoke(app, ["scan", "--out", str(tmp_path / "scan.h5"), "--from-fit", str(fit), *GRID])
    assert_usage_error(res, f"--from-fit {fit}", "crnet fit file without ['x_log', 'chi2', 'norms', 'success'")
    good = {"x_log": [0.0] * 10, "chi2": 450.0, "norms": [1.0] * 4, "success": True, "status": 1, "message": "",
            "n_evaluations": 1, "n_models": 1, "wall_s": 1.0, "format": "crnet-fit",
            "covariance_log": np.eye(10).tolist()}
    nan_d0 = {**CRML_BASE.to_dict(), "d0_1e28_cm2_s": float("nan")}
    for params, fragment in ((list(CRML_BASE.to_dict().values()), "params must be an object"),
                             (nan_d0, "params ['d0_1e28_cm2_s'] must be finite numbers, got [nan]"),
                             ({**CRML_BASE.to_dict(), "delta": "0.5"}, "params ['delta'] must be finite numbers")):
        fit.write_text(json.dumps({**good, "params": params}))
        res = runner.invoke(app, ["scan", "--out", str(tmp_path / "scan.h5"), "--from-fit", str(fit), *GRID])
        assert_usage_error(res, f"--from-fit {fit}", fragment)


# ---------------------------------------------------------------------------------------------- crnet store
def test_store_merge_refuses_a_store_given_twice(tmp_path: Path, store: Path) -> None:
    """The same shard twice was merged twice: every record duplicated in the training data."""
    out = tmp_path / "merged.h5"
    alias = tmp_path / "alias.h5"
    alias.symlink_to(store)
    for second in (store, tmp_path / "." / store.name, alias):
        res = runner.invoke(app, ["store", "merge", str(out), str(store), str(second)])
        assert_usage_error(res, "is given twice", "each shard may be merged once")
    assert not out.exists()
    from crnet.store_read import merge_stores

    # the rule is merge_stores' own, so the feedback loop and distributed scans (Python callers) get it too
    with pytest.raises(ValueError, match="is given twice"):
        merge_stores([store, alias], out)
    with pytest.raises(ValueError, match="is one of the inputs"):
        merge_stores([store], alias, overwrite=True)
    assert not out.exists() and store.is_file()


def test_store_paths_that_are_directories_or_missing(tmp_path: Path, store: Path) -> None:
    assert_usage_error(runner.invoke(app, ["store", "merge", str(tmp_path / "no" / "m.h5"), str(store)]),
                       "OUT", "does not exist")
    assert_usage_error(runner.invoke(app, ["store", "merge", str(tmp_path), str(store), "--overwrite"]),
                       "OUT", "is a directory")
    assert_usage_error(runner.invoke(app, ["store", "info", str(tmp_path)]), "is a directory, not a file")


# ---------------------------------------------------------------------------------------------- crnet predict
@pytest.fixture
def model_file(tmp_path: Path) -> Path:
    from helpers_modelfile import make_model

    from crnet.machines.modelfile import save_model

    path = tmp_path / "m.pt"
    save_model(path, make_model("crnet"))
    return path


def test_predict_never_writes_over_its_inputs(tmp_path: Path, store: Path, model_file: Path) -> None:
    """--out equal to --spectra replaced the mock store by the predictions."""
    before = store.read_bytes()
    for out, option in ((store, "--spectra"), (model_file, "--model")):
        res = runner.invoke(app, ["predict", "--model", str(model_file), "--spectra", str(store), "--out", str(out),
                                  "--overwrite"])
        assert_usage_error(res, f"is the input {option}")
    assert store.read_bytes() == before
    dangling = tmp_path / "dangling.csv"
    dangling.symlink_to(tmp_path / "nowhere" / "x.csv")  # review: the write failed after the predictions
    res = runner.invoke(app, ["predict", "--model", str(model_file), "--spectra", str(store), "--out", str(dangling)])
    assert_usage_error(res, "is a symbolic link to a missing file")


def test_predict_existing_output_needs_overwrite(tmp_path: Path, store: Path, model_file: Path) -> None:
    out = tmp_path / "pred.csv"
    out.write_text("old\n")
    args = ["predict", "--model", str(model_file), "--spectra", str(store), "--out", str(out)]
    assert_usage_error(runner.invoke(app, args), "file exists; pass --overwrite")
    assert out.read_text() == "old\n"
    res = runner.invoke(app, [*args, "--overwrite"])
    assert res.exit_code == 0, res.output
    assert "8 records predicted" in res.output and out.read_text().startswith("# units:")
    assert_usage_error(runner.invoke(app, [*args[:-1], str(tmp_path)]), "is a directory")
    assert_usage_error(runner.invoke(app, [*args[:-1], str(tmp_path / "p.txt")]), "must end in .csv, .h5 or .hdf5")


def test_predict_model_of_the_wrong_kind(tmp_path: Path, store: Path) -> None:
    """torch's refusal of an HDF5 or text file was a dozen lines about weights_only."""
    text = tmp_path / "model.toml"
    text.write_text("machine = 'A'\n")
    for model, fragment in ((store, "is an HDF5 file (a mock store, spectra or predictions?)"),
                            (text, "not a PyTorch archive"), (tmp_path, "is a directory")):
        res = runner.invoke(app, ["predict", "--model", str(model), "--spectra", str(store)])
        assert_usage_error(res, f"--model {model}", fragment)
        assert len(res.output.strip().splitlines()) == 1 and "weights_only" not in res.output


def test_train_never_writes_over_its_store(tmp_path: Path, store: Path) -> None:
    """train --out equal to --store wrote the model file over the training store."""
    copy = tmp_path / "copy.h5"
    shutil.copy(store, copy)
    res = runner.invoke(app, ["train", "--store", str(copy), "--out", str(copy), "--epochs", "1", "--no-progress"])
    assert_usage_error(res, "is the input --store")
    with h5py.File(copy, "r") as f:
        assert f.attrs["format"] == "crnet-mock-store"
    res = runner.invoke(app, ["train", "--store", str(store), "--out", str(tmp_path), "--epochs", "1"])
    assert_usage_error(res, "is a directory")
