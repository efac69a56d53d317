"""Distance of machine inputs to the training spectra (crnet.evaluate.input_distance)."""

from __future__ import annotations

import numpy as np
import pytest
from helpers_store import sample_params, write_synthetic_store

from crnet.evaluate.input_distance import PERCENT_PER_LOG10, input_distances, nearest_records
from crnet.features import CHANNEL_NAMES
from crnet.machines.data import StoreReader
from crnet.pseudodata import PAPER_MAX_RELATIVE, paper_noise

NOISE_RMS_RTOL = 0.02
"""The RMS over 1,000 noisy copies: its sampling scatter is ~0.5 % (the C110 bin's factor is common to the 420
features of five channels, so the copies' distances scatter more than 672 independent terms would), the
ln(1 + eps) vs eps difference ~0.1 %."""


NEIGHBOUR_RTOL = 0.1
"""The 80 mocks lie ~1 % apart in parameters, so the nearest to the bent record 5 may be a neighbour (record 78 here),
whose low-energy B/C differs by ~9 % of the value: the largest difference is the bent ln 3 = 109.9 % up to that
(measured 100.9 %, 8.2 % below)."""

SAME_ARITHMETIC_RTOL = 1e-12
"""The reported difference against the same log10 features' difference times PERCENT_PER_LOG10 (measured equal)."""


def _expected_noise_rms_percent(n_e: int) -> float:
    """RMS (%) of the log features of a spectrum whose five element fluxes each carry independent U(-a, a)
    factors: var ln(1 + eps) ~ a^2 / 3 per element; channels X/(C/C110) carry 3 factors (1 at the C110 bin),
    X/O 2, C/C110 2 (0 at its own bin), O/C110 2."""
    var = PAPER_MAX_RELATIVE ** 2 / 3.0
    per_channel = ([3.0 * (n_e - 1) + 1.0] * 3 + [2.0 * n_e] * 3 + [2.0 * (n_e - 1)] + [2.0 * n_e])
    return 100.0 * float(np.sqrt(var * sum(per_channel) / (len(CHANNEL_NAMES) * n_e)))


def test_nearest_records_distance_row_and_exclusion():
    rng = np.random.default_rng(0)
    ref = rng.normal(size=(5, 40))
    x = ref[[2]].copy()
    x[0, 7] += np.log10(1.1)  # one feature 10 % off
    dist, row = nearest_records(x, ref)
    assert row.tolist() == [2]
    assert dist[0] == pytest.approx(100.0 * np.log(1.1) / np.sqrt(40), rel=1e-12)
    dist_ex, row_ex = nearest_records(x, ref, exclude=np.array([2]))
    assert row_ex[0] != 2 and dist_ex[0] > 10 * dist[0]
    with pytest.raises(ValueError, match="same d"):
        nearest_records(x[:, :10], ref)
    with pytest.raises(ValueError, match="finite"):
        nearest_records(np.full((1, 40), np.nan), ref)


def test_noise_distance_matches_the_analytic_rms(tmp_path):
    """5 %-noise copies of store records lie at the analytic noise RMS from their own record; the baseline
    (own record excluded) lies beyond it."""
    path = tmp_path / "s.h5"
    write_synthetic_store(path, 60, seed=3)
    with StoreReader(path) as r:
        feats, _ = r.features(0, r.n_records)
        raw, q_c, energies = r.raw_feature_flux(0, r.n_records), r.norms()[:, 0], r.info.energies
    from crnet.features import features_from_raw

    rng = np.random.default_rng(1)
    src = rng.integers(0, 60, 1000)
    noisy, ok = features_from_raw(raw[src] * paper_noise(rng, raw[src].shape, PAPER_MAX_RELATIVE), q_c[src], energies)
    dist, row = nearest_records(noisy.reshape(src.size, -1), feats.reshape(60, -1))
    assert np.array_equal(row, src)  # the synthetic mocks are much farther apart than the noise
    expected = _expected_noise_rms_percent(energies.size)
    assert np.sqrt(np.mean(dist ** 2)) == pytest.approx(expected, rel=NOISE_RMS_RTOL)
    out = input_distances(path, feats[:2])
    assert out["baseline"]["median_percent"] > expected
    assert [d["distance_percent"] for d in out["inputs"]] == [0.0, 0.0]
    assert [d["nearest_record"] for d in out["inputs"]] == [0, 1]
    assert not any(d["outside_training_range"] for d in out["inputs"])


def test_an_input_unlike_every_mock_is_flagged_where_it_departs(tmp_path):
    path = tmp_path / "s.h5"  # 80 mocks within ~1 % of one point: a posterior-like, densely sampled store
    rng = np.random.default_rng(5)
    write_synthetic_store(path, 80, seed=4, params=sample_params(rng, 1) * (1 + 0.01 * rng.standard_normal((80, 10))))
    with StoreReader(path) as r:
        feats, _ = r.features(0, r.n_records)
        energies = r.info.energies
    bent = feats[[5]].copy()
    k_bc = CHANNEL_NAMES.index("B/C")
    bent[0, k_bc, :10] += np.log10(3.0)  # B/C three times higher below 3e-3 GeV/n (10 bins)
    out = input_distances(path, bent)
    d = out["inputs"][0]
    assert d["outside_training_range"] and d["distance_percent"] > out["baseline"]["outside_limit_percent"]
    big = d["largest_difference"]
    assert big["channel"] == "B/C" and big["energy_gev_per_n"] < energies[10]
    # its nearest mock may be a neighbour of record 5 (they lie ~1 % apart): the difference is ln 3 up to that
    assert big["percent"] == pytest.approx(PERCENT_PER_LOG10 * np.log10(3.0), rel=NEIGHBOUR_RTOL)
    nearest, k = feats[d["nearest_record"]], big["bin"]  # and exactly the input's minus the nearest mock's feature
    assert big["percent"] == pytest.approx(PERCENT_PER_LOG10 * (bent[0, k_bc, k] - nearest[k_bc, k]),
                                           rel=SAME_ARITHMETIC_RTOL)
    with pytest.raises(ValueError, match=r"\(m, 8, 84\)"):
        input_distances(path, feats[:, :, :50])
