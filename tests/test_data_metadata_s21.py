"""Metadata checks of user CSV files (review by helper-84, session 21): phrases that made a top-of-atmosphere
file interstellar ('uncorrected to LIS', 'to be corrected to LIS', 'not, however, corrected to LIS'), a modulation
dropped without a word when every block is interstellar, and flux units per MV / TV or under a 'flux_units' key
accepted on a rigidity table (a flux wrong by x1000)."""

from __future__ import annotations

from pathlib import Path

import pytest

from crnet.data import Modulation, dataset_from_files, read_table
from crnet.data.dataset import table_is_lis

C_FILE = Path(__file__).resolve().parents[1] / "crnet" / "data" / "ams02_physrep2021" / "AMS02_PhysRep2021_C_R.csv"
DATASET_LINE = "# dataset: AMS-02 C flux vs rigidity"
UNITS_LINE = "# flux units: m^-2 s^-1 sr^-1 GV^-1"


def _copy(tmp_path: Path, old: str, new: str) -> Path:
    text = C_FILE.read_text()
    assert old in text
    out = tmp_path / C_FILE.name  # the species is read from the file name
    out.write_text(text.replace(old, new))
    return out


@pytest.mark.parametrize("phrase", ["top of atmosphere (uncorrected to LIS)", "to be corrected to LIS later",
                                    "spectrum was not, however, corrected to LIS", "not yet corrected to LIS",
                                    "un-corrected to LIS", "never been corrected to LIS", "not unmodulated"])
def test_phrases_that_deny_a_lis_correction_keep_the_file_top_of_atmosphere(tmp_path, phrase) -> None:
    path = _copy(tmp_path, DATASET_LINE, f"{DATASET_LINE}, {phrase}")
    assert not table_is_lis(read_table(path))


@pytest.mark.parametrize("phrase", ["corrected to LIS", "unmodulated", "phi = 0", "not applied, phi = 0",
                                    "not applicable, unmodulated", "not modelled, no solar modulation",
                                    "taken to be unmodulated (LIS)", "assumed to be phi = 0"])
def test_lis_markers_still_mark_a_file_interstellar(tmp_path, phrase) -> None:
    path = _copy(tmp_path, DATASET_LINE, f"{DATASET_LINE}, {phrase}")
    assert table_is_lis(read_table(path))


def test_a_modulation_for_a_data_set_without_top_of_atmosphere_blocks_is_refused(tmp_path) -> None:
    path = _copy(tmp_path, DATASET_LINE, f"{DATASET_LINE}\n# modulation: none, corrected to LIS")
    with pytest.raises(ValueError, match=r"a modulation is given, but every block is an interstellar spectrum"):
        dataset_from_files([path], modulation=Modulation(600.0))
    assert dataset_from_files([path]).blocks[0].lis


@pytest.mark.parametrize(("line", "why"), [
    ("# flux units: m^-2 s^-1 sr^-1 MV^-1", "a rigidity in MV"),
    ("# flux units: m^-2 s^-1 sr^-1 TV^-1", "a rigidity in TV"),
    ("# flux_units: m^-2 s^-1 sr^-1 (MeV/n)^-1", "an energy in MeV"),
    ("# Flux-Unit: m^-2 s^-1 sr^-1 (GeV/n)^-1", "a flux per energy, but x is rigidity"),
])
def test_flux_units_that_contradict_a_rigidity_table_are_refused(tmp_path, line, why) -> None:
    path = _copy(tmp_path, UNITS_LINE, line)
    with pytest.raises(ValueError, match=why):
        read_table(path)


def test_the_shipped_units_still_pass(tmp_path) -> None:
    for line in (UNITS_LINE, "# flux_units: (m^2 s sr GV)^-1"):
        assert read_table(_copy(tmp_path, UNITS_LINE, line)).value.size > 60
