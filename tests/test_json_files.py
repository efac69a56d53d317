"""crnet.json_files.read_json_object: the file and what is wrong with it named in the error."""

from __future__ import annotations

import json
import re

import numpy as np
import pytest

from crnet.json_files import read_json_object, strict_json_text


class MarkerError(ValueError):
    pass


def test_reads_an_object(tmp_path):
    path = tmp_path / "m.json"
    path.write_text('{"a": [1, 2], "b": null}')
    assert read_json_object(path, "stage marker") == {"a": [1, 2], "b": None}
    assert read_json_object(str(path), "stage marker") == {"a": [1, 2], "b": None}


def test_missing_file(tmp_path):
    path = tmp_path / "none.json"
    with pytest.raises(ValueError) as info:
        read_json_object(path, "stage marker")
    assert str(info.value) == f"{path}: missing stage marker (no such file)"
    assert type(info.value) is ValueError


def test_not_json_names_line_and_column(tmp_path):
    path = tmp_path / "m.json"
    path.write_text('{\n  "stage": "train",\n  "wall_s": 1.0,\n  "result": "A-pa')  # a truncated copy
    with pytest.raises(MarkerError) as info:
        read_json_object(path, "stage marker", error=MarkerError, hint="delete it to redo the stage")
    assert str(info.value) == (f"{path}: corrupt stage marker (Unterminated string starting at: line 4 column 13 "
                               "(char 51)); delete it to redo the stage")


def test_not_an_object(tmp_path):
    path = tmp_path / "log.json"
    for text, kind in (("[1, 2]", "list"), ('"text"', "string"), ("3.5", "number"), ("null", "null"),
                       ("true", "boolean")):
        path.write_text(text)
        with pytest.raises(ValueError, match=re.escape(f"{path}: corrupt feedback log (a JSON {kind}, not an "
                                                       "object); start afresh") + "$"):
            read_json_object(path, "feedback log", hint="start afresh")


def test_binary_and_unreadable_files(tmp_path):
    path = tmp_path / "spectra.h5"
    path.write_bytes(b"\x89HDF\r\n\x1a\n\x00\x00")
    with pytest.raises(ValueError, match=re.escape(f"{path}: corrupt crnet fit file (not JSON text: 'utf-8' codec "
                                                   "can't decode byte 0x89 in position 0")):
        read_json_object(path, "crnet fit file")
    with pytest.raises(ValueError, match=re.escape(f"{tmp_path}: unreadable crnet fit file (Is a directory)")):
        read_json_object(tmp_path, "crnet fit file")


def test_a_file_the_user_named_is_not_called_corrupt(tmp_path):
    path = tmp_path / "listing.json"
    path.write_text("[1]")
    with pytest.raises(ValueError, match=re.escape(f"{path}: not a crnet fit file (a JSON list, not an object); "
                                                   "`crnet fit --out` writes one") + "$"):
        read_json_object(path, "crnet fit file", hint="`crnet fit --out` writes one", bad="not a")


# strict JSON of the result files (review by helper-83, session 21: report.json held NaN tokens)
def _refuse(token: str):
    raise AssertionError(f"{token} is not JSON")


def test_non_finite_numbers_become_null_at_any_depth() -> None:
    value = {"a": float("nan"), "b": [1.5, np.float64("inf"), (np.float32("-inf"), 2)], "c": {"d": np.float32(0.25)},
             "e": "NaN", "f": None, "g": 3}
    back = json.loads(strict_json_text(value), parse_constant=_refuse)
    assert back == {"a": None, "b": [1.5, None, [None, 2]], "c": {"d": 0.25}, "e": "NaN", "f": None, "g": 3}
