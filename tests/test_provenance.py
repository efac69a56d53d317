"""The one rule every resume check uses to compare a run's recorded settings with the current ones."""

from pathlib import Path

from crnet.provenance import changed_settings, list_settings


def test_values_compare_as_stored_in_json():
    saved = {"architecture": [16, 16], "out": "/tmp/run", "lr": 1e-4}
    assert changed_settings(saved, {"architecture": (16, 16), "out": Path("/tmp/run"), "lr": 1e-4}) == []
    assert changed_settings(saved, {"architecture": (16, 32), "out": Path("/tmp/run"), "lr": 2e-4}) == [
        "architecture", "lr"]


def test_unset_equals_missing_at_any_depth():
    saved = {"grid": {"dr_kpc": 1.0}, "seed": 1}
    assert changed_settings(saved, {"grid": {"dr_kpc": 1.0, "half_lives": None}, "seed": 1, "new_option": None}) == []
    assert changed_settings(saved, {"grid": {"dr_kpc": 1.0, "half_lives": "measured"}, "seed": 1}) == ["grid"]
    assert changed_settings(saved, {"seed": 1}) == ["grid"]  # a set option dropped is a change


def test_nested_names_the_inner_setting_and_keys_restricts():
    saved = {"feedback": {"rounds": 3, "tol": 0.1}, "model_sha256": "a", "progress": True}
    ours = {"feedback": {"rounds": 4, "tol": 0.1}, "model_sha256": "b", "progress": False}
    assert changed_settings(saved, ours, nested=True) == ["feedback.rounds", "model_sha256", "progress"]
    assert changed_settings(saved, ours) == ["feedback", "model_sha256", "progress"]
    assert changed_settings(saved, ours, keys=["model_sha256", "feedback"]) == ["feedback", "model_sha256"]


def test_list_settings_shortens():
    names = [f"k{i}" for i in range(10)]
    assert list_settings(names[:2]) == "k0, k1"
    assert list_settings(names, limit=3) == "k0, k1, k2 ..."
