"""Predictions on the measured spectra outside the prior box: the chi^2 is that of the clipped point, and the
JSON entry / Markdown table say so (crnet.evaluate.measured.machine_prediction, measured_markdown)."""

from __future__ import annotations

import json

import numpy as np

from crnet.evaluate.measured import machine_prediction, measured_markdown
from crprop.params import PARAM_NAMES, PRIOR_BOX

INSIDE = np.array([[4.0, 0.5, -1.0, 20.0, 5.0, 1.0, 2.3, 2.5, 1.0e3, 3.0e5]])
# the user's example: delta, eta, z_h and R_br1 outside the box
OUTSIDE = np.array([[7.168, 1.679, 10.84, 20.0, 20.03, 1.0, 2.3, 2.5, 5.889e6, 3.0e5]])
OUTSIDE_NAMES = ["delta", "eta", "z_halo_kpc", "r_break1_mv"]


def _result(machines: dict) -> dict:
    distance = {"baseline": {"outside_limit_percent": 9.6, "outside_quantile": 0.95},
                "by_reference": [{"reference_record": 0, "distance_percent": 5.0, "outside_training_range": False,
                                  "largest_difference": {"channel": "B/C", "bin": 3, "energy_gev_per_n": 1.0,
                                                         "percent": 10.0}}]}
    return {"dataset": "paper", "reference_records": [0], "reference_chi2": 100.0,
            "input_shares": {"data": 0.5, "interpolated": 0.2, "extrapolated": 0.3}, "input_distance": distance,
            "machines": machines}


def _rows(md: str) -> dict[str, list[str]]:
    """machine -> its table cells (parameter columns only)."""
    out = {}
    for line in md.splitlines():
        cells = [c.strip() for c in line.strip("|").split("|")]
        if line.startswith("| ") and cells[0] not in ("machine",) and not cells[0].startswith("---"):
            out[cells[0]] = cells[2:]
    return out


def test_outside_prediction_names_parameters_and_simulated_values():
    thetas = np.concatenate([OUTSIDE, OUTSIDE * 1.01])
    entry, point = machine_prediction(thetas)
    assert entry["outside_box"] == OUTSIDE_NAMES
    assert point is not None
    sim = entry["params_simulated"]
    for name, v in zip(PARAM_NAMES, OUTSIDE[0], strict=True):
        lo, hi, _ = PRIOR_BOX[name]
        assert lo <= sim[name] <= hi
        if name in OUTSIDE_NAMES:
            assert abs(sim[name] - np.clip(v, lo, hi)) <= 1e-8 * (hi - lo)
        else:
            assert sim[name] == v
    np.testing.assert_allclose([sim[n] for n in PARAM_NAMES], point)
    assert entry["params"]["eta"] == 10.84  # the raw prediction is kept
    json.dumps(entry)  # JSON-serialisable

    inside, p_in = machine_prediction(INSIDE)
    assert inside["outside_box"] == [] and p_in is not None
    np.testing.assert_allclose([inside["params_simulated"][n] for n in PARAM_NAMES], INSIDE[0])


def test_markdown_daggers_exactly_the_outside_cells():
    out_entry, _ = machine_prediction(OUTSIDE)
    in_entry, _ = machine_prediction(INSIDE)
    out_entry["chi2_tot"], in_entry["chi2_tot"] = 500.0, 90.0
    md = measured_markdown(_result({"B-paper": out_entry, "A-paper": in_entry}))
    rows = _rows(md)
    for name, cell in zip(PARAM_NAMES, rows["B-paper"], strict=True):
        assert ("†" in cell) == (name in OUTSIDE_NAMES), (name, cell)
    assert not any("†" in c for c in rows["A-paper"])
    assert "† outside the prior box: chi2_tot is that of the prediction clipped into the box" in md


def test_markdown_all_inside_has_no_dagger_nor_footnote():
    entry, _ = machine_prediction(INSIDE)
    entry["chi2_tot"] = 90.0
    assert "†" not in measured_markdown(_result({"A-paper": entry}))


def test_not_simulated_label_names_the_reason_and_old_json_still_renders():
    bad = INSIDE.copy()
    bad[0, 1] = np.nan
    entry, point = machine_prediction(bad)
    assert point is None and entry["params_simulated"] is None and entry["outside_box"] == ["delta"]
    md = measured_markdown(_result({"C": entry}))
    assert "not simulated (non-finite prediction)" in md
    assert "outside the prior box)" not in md
    old = {k: v for k, v in machine_prediction(INSIDE)[0].items() if k not in ("outside_box", "params_simulated")}
    assert "†" not in measured_markdown(_result({"A": old}))  # measured.json written before this change
