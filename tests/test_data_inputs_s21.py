"""Inputs refused or misreported (walk-through by helper-87, session 21): a fixed `crnet chi2 --phi` far above any
force-field potential (the unmodulated chi2 labelled phi_MV 1e9), a float32 spectra file refused by the float64
element-sum tolerance, `crnet pseudodata` on a store without converged records ('no finite chi2 values'), a
crdb_phi_MV column with a negative, empty or second value (no line, or the phi dropped without a word), and a CSV
whose species the file name does not give (a Python-only hint)."""

from __future__ import annotations

import json
import re
from pathlib import Path

import h5py
import numpy as np
import pytest
from helpers_cli import assert_usage_error, write_test_spectra
from helpers_store import write_synthetic_store
from typer.testing import CliRunner

from crnet.cli import app
from crnet.commands.chi2 import PHI_MAX_MV
from crnet.data import block_from_table, read_table
from crnet.likelihood import chi2
from crnet.pseudodata import PseudoDataConfig, make_pseudodata
from crnet.spectra_io import ELEMENT_SUM_EPS_FACTOR, ELEMENT_SUM_RTOL, element_sum_rtol, read_spectra_h5

runner = CliRunner()

DATA_DIR = Path(__file__).resolve().parents[1] / "crnet" / "data"
ACE_C = DATA_DIR / "ace_cris" / "ACECRIS_C_200903_201001_Ekn.csv"
"""A shipped top-of-atmosphere file with a crdb_phi_MV column (266 on every row; data rows from line 13)."""
FIRST_ROW = ",,0.072,6.589,0.193,0.193,0,0,266"
THIRD_ROW = ",,0.1,8.055,0.239,0.239,0,0,266"


def _copy(tmp_path: Path, replacements: dict[str, str], name: str = ACE_C.name) -> Path:
    text = ACE_C.read_text()
    for old, new in replacements.items():
        assert old in text
        text = text.replace(old, new)
    out = tmp_path / name  # the species is read from the file name
    out.write_text(text)
    return out


def _read_alone(path: Path) -> str:
    res = runner.invoke(app, ["data", "show", str(path)])
    assert res.exit_code == 0, res.output
    return next(ln for ln in res.output.splitlines() if "read on its own" in ln)


# ------------------------------------------------------------------------------------- 1. chi2 --phi above the max
@pytest.fixture
def spectra_file(tmp_path: Path) -> Path:
    return write_test_spectra(tmp_path / "s.h5")


def test_a_phi_far_above_the_grid_is_refused_by_the_library(spectra_file: Path) -> None:
    """Why a huge phi must be refused: E + Phi above the model's grid keeps the unmodulated flux (crprop), so
    chi2(phi_mv=1e9) was the chi2 of phi 0; since session 22 the library refuses it, not only `crnet chi2 --phi`."""
    sp = read_spectra_h5(spectra_file).spectra
    message = r"^phi_mv must be finite and in \[0, 2000\] MV \(PHI_MAX_MV\), got 1000000000.0$"
    with pytest.raises(ValueError, match=message):
        chi2(sp, "ams02-2021", phi_mv=1e9)
    assert np.all(np.isfinite(chi2(sp, "ams02-2021", phi_mv=2000.0).chi2_tot))  # the bound itself is allowed


@pytest.mark.parametrize(("dataset", "phi", "shown"), [
    ("ams02-2021", ["1e9"], "--phi 1e9: 1e+09 MV is above 2000 MV"),
    ("ams02-2021", ["2000.5"], "--phi 2000.5: 2000.5 MV is above 2000 MV"),
    ("ams02-2021-ace2009", ["1=600", "2=5000"], "--phi 2=5000: 5000 MV is above 2000 MV"),
])
def test_chi2_refuses_a_phi_above_the_maximum(spectra_file: Path, dataset: str, phi: list[str], shown: str) -> None:
    """Was accepted: the chi2 of --phi 0 (27326.383 on a real file) printed with phi_MV 1e9."""
    res = runner.invoke(app, ["chi2", str(spectra_file), "-d", dataset, *sum((["--phi", p] for p in phi), [])])
    assert_usage_error(res, f"error: {shown}", "the allowed range is 0 to 2000 MV")
    assert "phi_MV" not in res.output  # no table


def test_chi2_accepts_phi_up_to_the_maximum(spectra_file: Path) -> None:
    assert PHI_MAX_MV == 2000.0
    res = runner.invoke(app, ["chi2", str(spectra_file), "-d", "ams02-2021", "--phi", "2000", "--json"])
    assert res.exit_code == 0, res.output
    assert json.loads(res.output)["models"][0]["phi_MV"] == 2000.0
    res = runner.invoke(app, ["chi2", str(spectra_file), "-d", "ams02-2021", "--phi", "-1"])  # unchanged
    assert_usage_error(res, "error: --phi must be finite and >= 0 (MV), got '-1'")


# ---------------------------------------------------------------------------- 2. float32 flux_lis in a spectra file
def _as_float32(path: Path) -> None:
    with h5py.File(path, "a") as f:
        flux = f["flux_lis"][()]
        del f["flux_lis"]
        f.create_dataset("flux_lis", data=flux.astype(np.float32))  # element rows and isotopes rounded apart


def test_a_float32_spectra_file_is_read(spectra_file: Path) -> None:
    """Was refused: "element row 'H' is not the sum of its isotopes" (rounding ~6e-8 against rtol 1e-9)."""
    _as_float32(spectra_file)
    out = read_spectra_h5(spectra_file)
    assert out.spectra.iso_flux.dtype == np.float64 and out.spectra.n_models == 3
    assert element_sum_rtol(np.float32) == ELEMENT_SUM_EPS_FACTOR * np.finfo(np.float32).eps
    assert element_sum_rtol(np.float64) == ELEMENT_SUM_RTOL == element_sum_rtol(np.int64)  # float64 unchanged
    assert element_sum_rtol(np.float16) > element_sum_rtol(np.float32)


def test_a_float32_file_with_a_wrong_element_row_says_how_wrong(spectra_file: Path) -> None:
    _as_float32(spectra_file)
    with h5py.File(spectra_file, "a") as f:
        f["flux_lis"][2, 1, 5] *= np.float32(1.001)  # element row 'Li' (after 'H'), model 2, energy bin 5
    with pytest.raises(ValueError, match=r"dataset 'flux_lis': element row 'Li' is not the sum of its isotopes: "
                                         r"largest relative deviation 0\.001 \(model 2, E = 0\.003052 GeV/n\), "
                                         r"tolerance 1\.91e-06 for float32 storage$"):
        read_spectra_h5(spectra_file)


def test_a_float64_file_keeps_the_tight_tolerance(spectra_file: Path) -> None:
    with h5py.File(spectra_file, "a") as f:
        f["flux_lis"][0, 1, :] *= 1 + 1e-7  # within float32 rounding, far beyond float64's
    with pytest.raises(ValueError, match=r"'Li' is not the sum of its isotopes: largest relative deviation 1e-07 "
                                         r"\(model 0, .*tolerance 1e-09 for float64 storage$"):
        read_spectra_h5(spectra_file)


# ---------------------------------------------------------------------------------- 3. pseudodata, none converged
def test_pseudodata_on_a_store_without_converged_records_says_so(tmp_path: Path) -> None:
    """Said 'no finite chi2 values to select from' although every chi2 was finite."""
    store = tmp_path / "mocks.h5"
    write_synthetic_store(store, 8, n_unconverged=8)
    message = (f"{store}: no converged record with a finite chi2 to draw central spectra from (0 of 8 records "
               "converged, 8 have a finite chi2); pseudo-data are made from converged spectra only: scan again with "
               "a solver that converges (`crnet scan`: raise --max-steps or loosen --tol)")
    with pytest.raises(ValueError) as info:
        make_pseudodata(store, tmp_path / "p.h5", PseudoDataConfig(n_pseudo=2))
    assert str(info.value) == message
    out = tmp_path / "test.h5"
    res = runner.invoke(app, ["pseudodata", "--store", str(store), "--out", str(out)])
    assert_usage_error(res, f"error: {message}")
    assert "no finite chi2 values" not in res.output and not out.exists()


# ---------------------------------------------------------------------------------------- 4. crdb_phi_MV column
@pytest.mark.parametrize(("replacements", "message"), [
    ({",266\n": ",-5\n"}, "line 13, column 'crdb_phi_MV': phi -5 MV is negative; a force-field potential is >= 0 MV"),
    ({THIRD_ROW: THIRD_ROW[:-3] + "300"}, "line 15, column 'crdb_phi_MV': phi 300 MV differs from 266 MV on line "
                                          "13: a block has one modulation period (one phi); split the file by period, "
                                          "or from Python pass phi_mv= to block_from_table"),
    ({THIRD_ROW: THIRD_ROW[:-3]}, "line 15, column 'crdb_phi_MV': empty field: the column gives the force-field phi "
                                  "(MV) of every row; fill it, or remove the column"),
])
def test_a_bad_crdb_phi_column_is_refused_with_its_line(tmp_path: Path, replacements: dict[str, str],
                                                        message: str) -> None:
    """A negative phi said "phi_mv must be finite and >= 0, got -5.0" (no line); a second value or an empty cell
    dropped the phi: the file read as a top-of-atmosphere block without its period's phi."""
    path = _copy(tmp_path, replacements)
    with pytest.raises(ValueError) as info:
        block_from_table(read_table(path))
    assert str(info.value) == f"{path}: {message}"
    assert _read_alone(path).endswith(f"not usable as a data block: {message}")  # the file heads the output
    assert block_from_table(read_table(path), phi_mv=400.0).phi_mv == 400.0  # a given phi: the column is unused
    assert block_from_table(read_table(path), lis=True).phi_mv is None  # an interstellar block has no phi


def test_a_constant_crdb_phi_column_still_gives_the_phi(tmp_path: Path) -> None:
    assert block_from_table(read_table(ACE_C)).phi_mv == 266.0
    assert block_from_table(read_table(_copy(tmp_path, {",266\n": ",0\n"}))).phi_mv == 0.0
    assert "phi = 266 MV from its crdb_phi_MV column" in _read_alone(ACE_C)


# ------------------------------------------------------------------------------------- 5. species from the file name
def test_a_file_name_without_the_species_says_how_to_name_it(tmp_path: Path) -> None:
    """Said "species None is not a nuclear element; pass species= to read_table" to a CLI user."""
    path = _copy(tmp_path, {}, name="mystery_Ekn.csv")
    line = _read_alone(path)
    assert "the species could not be inferred from the file name 'mystery_Ekn.csv'" in line
    assert "rename the file so that one '_'-separated part of its name is the element" in line
    assert "'boron'" in line and "e.g. 'MyExp_B_Ekn.csv'" in line
    assert "or, from Python, pass species= to crnet.data.read_table" in line
    assert "species None" not in line
    renamed = _copy(tmp_path, {}, name="MyExp_C_Ekn.csv")  # the fix the message gives
    assert block_from_table(read_table(renamed)).species == "C"
    assert block_from_table(read_table(path, species="C")).species == "C"  # and from Python


def test_a_ratio_or_lepton_name_on_a_flux_file_is_named(tmp_path: Path) -> None:
    for name, species in (("My_BoverC_Ekn.csv", "B/C"), ("My_positron_Ekn.csv", "e+")):
        expected = (rf"species '{re.escape(species)}' \(from the file name '{name}'\) is not a nuclear element; "
                    r"only nuclear fluxes .* rename the file")
        with pytest.raises(ValueError, match=expected):
            block_from_table(read_table(_copy(tmp_path, {}, name=name)))
    with pytest.raises(ValueError, match=r"species 'Xx' is not a nuclear element: pass an element symbol"):
        block_from_table(read_table(ACE_C, species="Xx"))
