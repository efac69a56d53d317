"""Table 2 features, their transforms, and pseudo-data (crnet.features, crnet.pseudodata)."""

from __future__ import annotations

import numpy as np
import pytest
from helpers_store import SPECIES, write_synthetic_store

from crnet.features import (
    CHANNEL_NAMES,
    FeatureScaler,
    MomentAccumulator,
    TargetTransform,
    apply_normalisations,
    c_norm_index,
    check_same_grid,
    features_from_raw,
    log_features,
    paper_energy_grid,
    r2_score,
    ratio_spectra,
    remove_normalisations,
)
from crnet.likelihood import CONFIDENCE_THRESHOLDS
from crnet.machines.data import StoreReader
from crnet.pseudodata import (
    PseudoDataConfig,
    channels_to_fluxes,
    envelope_channels,
    envelope_noise,
    make_pseudodata,
    paper_noise,
    select_within_confidence,
)
from crnet.store_read import recompute_chi2
from crprop.params import LOG_PRIOR_BOX, PRIOR_BOX

ROUNDTRIP_RTOL = 1e-12
"""Round trips in float64 (transform -> inverse) lose only a few ulps."""

FLOAT32_RTOL = 2e-7
"""Fluxes are stored as float32 in the store (relative rounding 6e-8, a few roundings)."""

PROFILE_RTOL = 1e-9
"""Re-profiling identical spectra must give the same normalisations (closed-form solver, rounding only)."""


def random_fluxes(rng: np.random.Generator, n: int, n_e: int) -> np.ndarray:
    return 10.0 ** rng.uniform(-3, 3, (n, 5, n_e))


def test_paper_grid_and_carbon_point() -> None:
    e = paper_energy_grid()
    assert e.size == 84 and e[0] == pytest.approx(1e-3) and e[-1] == pytest.approx(1.105e5, rel=1e-3)
    assert np.allclose(e[1:] / e[:-1], 1.25)
    k = c_norm_index(e)
    assert k == 52 and e[k] == pytest.approx(109.5, rel=1e-3)  # CR-ML's C_109.5
    with pytest.raises(ValueError, match="outside the grid"):
        c_norm_index(np.geomspace(1e-3, 10.0, 20))


def test_ratio_definitions() -> None:
    rng = np.random.default_rng(0)
    e = paper_energy_grid()
    n = random_fluxes(rng, 3, e.size)
    r = ratio_spectra(n, e)
    li, be, b, c, o = (n[:, k] for k in range(5))
    c110 = c[:, 52][:, None]
    expect = [li / (c / c110), be / (c / c110), b / (c / c110), li / o, be / o, b / o, c / c110, o / c110]
    assert r.shape == (3, len(CHANNEL_NAMES), e.size)
    for ch, want in enumerate(expect):
        assert np.allclose(r[:, ch], want, rtol=ROUNDTRIP_RTOL)
    assert np.allclose(r[:, 6, 52], 1.0)


def test_normalisations_round_trip_and_cancel() -> None:
    """Phi = q_C s_k Phi_raw; removing xi's and q_O/q_C gives q_C Phi_raw, so features depend on q_C only."""
    rng = np.random.default_rng(1)
    e = paper_energy_grid()
    raw = random_fluxes(rng, 4, e.size)
    q, xl, xb, oc = (rng.uniform(0.8, 1.2, 4) for _ in range(4))
    phi = apply_normalisations(raw, q, xl, xb, oc)
    n_flux = remove_normalisations(phi, xl, xb, oc)
    assert np.allclose(n_flux, raw * q[:, None, None], rtol=ROUNDTRIP_RTOL)
    feats, ok = features_from_raw(raw, q, e)
    assert ok.all()
    assert np.allclose(feats, np.log10(ratio_spectra(n_flux, e)), rtol=ROUNDTRIP_RTOL)
    # channels 0-2 carry q_C, 3-7 are scale free
    feats2, _ = features_from_raw(raw, 2 * q, e)
    assert np.allclose(feats2[:, :3] - feats[:, :3], np.log10(2.0))
    assert np.allclose(feats2[:, 3:], feats[:, 3:])


def test_log_features_refuses_bad_fluxes() -> None:
    e = paper_energy_grid()
    raw = np.ones((2, 5, e.size))
    raw[1, 2, 7] = 0.0
    with pytest.raises(ValueError, match="model 1: channel B/C bin 7"):
        features_from_raw(raw, 1.0, e)
    feats, ok = features_from_raw(raw, 1.0, e, strict=False)
    assert ok.tolist() == [True, False] and np.isnan(feats[1]).all()
    with pytest.raises(ValueError):
        log_features(np.full((1, 8, 3), np.nan))


def test_feature_scaler_round_trip_and_chunked_fit() -> None:
    rng = np.random.default_rng(2)
    x = rng.normal(3.0, 2.0, (500, 8, 84))
    x[:, 6, 52] = 0.0  # C/C110 at its own bin: constant
    scaler = FeatureScaler.fit(x)
    z = scaler.transform(x)
    assert np.allclose(z.mean(axis=0), 0.0, atol=1e-10)
    assert np.allclose(z.std(axis=0)[np.arange(8) != 6], 1.0)
    assert scaler.std[6, 52] == 1.0  # floored, not blown up
    assert np.allclose(scaler.inverse(z), x, rtol=ROUNDTRIP_RTOL)
    acc = MomentAccumulator()
    for lo in range(0, 500, 37):
        acc.update(x[lo: lo + 37])
    chunked = acc.scaler()
    assert np.allclose(chunked.mean, scaler.mean, rtol=1e-10) and np.allclose(chunked.std, scaler.std, rtol=1e-8)


def test_target_transform_box_and_round_trip() -> None:
    t = TargetTransform()
    lo, hi = t.physical_box()
    assert lo.tolist() == [PRIOR_BOX[n][0] for n in t.names] and hi.tolist() == [PRIOR_BOX[n][1] for n in t.names]
    assert np.allclose(t.forward(np.stack([lo, hi])), [[0.0] * 10, [1.0] * 10])
    assert t.transformed_names[8] == "log10_r_break1_mv" and t.low[9] == LOG_PRIOR_BOX["log10_r_break2_mv"][0]
    rng = np.random.default_rng(3)
    p = t.inverse(rng.random((100, 10)))
    assert np.allclose(t.inverse(t.forward(p)), p, rtol=ROUNDTRIP_RTOL)
    assert not t.outside_box(p).any()
    assert t.outside_box(t.inverse(np.full((1, 10), 1.01))).all()
    assert np.all(t.inverse(np.full((1, 10), 1.0 + 1e-15), clip_to_box=True) <= hi)
    assert TargetTransform.from_dict(t.to_dict()) == t
    with pytest.raises(ValueError, match="must be > 0"):
        t.forward(np.where(np.arange(10) == 8, -1.0, 1.0)[None])


def test_r2_and_grid_check() -> None:
    truth = np.arange(10.0)[:, None]
    assert r2_score(truth, truth)[0] == 1.0 and r2_score(truth, np.full_like(truth, truth.mean()))[0] == 0.0
    e = paper_energy_grid()
    check_same_grid(e, e.astype(np.float32))
    with pytest.raises(ValueError, match="differs from the model's grid"):
        check_same_grid(e, e[:-1])


# ------------------------------------------------------------------------------------------ pseudo-data
def test_selection_and_noise_models() -> None:
    chi2 = np.array([10.0, 10.0 + CONFIDENCE_THRESHOLDS[3] - 0.01, 10.0 + CONFIDENCE_THRESHOLDS[3] + 0.01, np.nan])
    idx, cmin, delta = select_within_confidence(chi2, 3)
    assert idx.tolist() == [0, 1] and cmin == 10.0 and delta == pytest.approx(33.20, abs=0.01)
    rng = np.random.default_rng(4)
    f = paper_noise(rng, (200, 5, 84), 0.05)
    assert np.all(np.abs(f - 1.0) <= 0.05) and np.abs(f - 1.0).max() > 0.049
    e = paper_energy_grid()
    n_flux = random_fluxes(rng, 6, e.size)
    ch = envelope_channels(n_flux, 52)
    assert np.allclose(channels_to_fluxes(ch, 52), n_flux, rtol=ROUNDTRIP_RTOL)
    env = ch.max(axis=0) - ch.min(axis=0)
    noisy = envelope_noise(rng, ch, env, (10.0, 30.0))
    assert np.all(noisy > 0) and np.all(np.abs(noisy - ch) <= env / 10.0 * (1 + 1e-12))


def test_noise_models_have_the_documented_distributions() -> None:
    """Paper noise: eps ~ U(-a, a), so mean 0 and variance a^2/3; envelope noise: per model a half-width
    envelope / Delta with Delta ~ U(10, 30). (Review of session 13: one-sided noise and a halved envelope passed.)"""
    rng = np.random.default_rng(11)
    a = 0.05
    eps = paper_noise(rng, (400, 5, 84), a).ravel() - 1.0
    n = eps.size  # 168,000 draws: the sd of the mean is a / sqrt(3 n) = 7e-5, of the variance ~ 4e-7
    assert abs(eps.mean()) < 5 * a / np.sqrt(3 * n)
    assert eps.var() == pytest.approx(a**2 / 3, rel=0.01)
    e = paper_energy_grid()
    ch = envelope_channels(random_fluxes(rng, 300, e.size), 52)
    env = ch.max(axis=0) - ch.min(axis=0)
    big = ch + 10 * env  # far from zero: no redraws, the raw draws are seen
    noisy = envelope_noise(rng, big, env, (10.0, 30.0))
    ratio = (np.abs(noisy - big) / env).reshape(big.shape[0], -1)
    # per model the largest of 420 uniform draws is within ~1 % of the half-width 1 / Delta
    inv_delta = 1.0 / ratio.max(axis=1)
    assert inv_delta.min() >= 10.0 * (1 - 1e-9) and inv_delta.min() < 11.0 and 27.0 < inv_delta.max() < 31.0


@pytest.fixture(scope="module")
def small_store(tmp_path_factory) -> tuple:
    path = tmp_path_factory.mktemp("pseudo") / "mocks.h5"
    params = write_synthetic_store(path, 300, seed=5)
    return path, params


def test_pseudodata_without_noise_reproduces_the_store(small_store, tmp_path) -> None:
    """max_relative = 0: same spectra, and re-profiling gives the likelihood's own normalisations."""
    path, params = small_store
    out = tmp_path / "pseudo0.h5"
    summary = make_pseudodata(path, out, PseudoDataConfig(n_pseudo=40, n_sigma=6, max_relative=0.0, seed=1))
    assert summary.n_pseudo == 40 and summary.max_abs_relative_fluctuation == 0.0
    with StoreReader(out) as pseudo, StoreReader(path) as mocks:
        assert pseudo.info.is_pseudo and not mocks.info.is_pseudo
        src = pseudo.store.read("step")
        order = np.argsort(src, kind="stable")
        uniq, inv = np.unique(src, return_inverse=True)
        flux_src = mocks.take("flux", uniq)[inv]
        assert np.array_equal(pseudo.store.read("flux"), flux_src)
        assert np.array_equal(pseudo.params(), params[src])
        chi2_ref, norms_ref = recompute_chi2(mocks.store, "paper", uniq)
        assert np.allclose(pseudo.norms(), norms_ref[inv], rtol=PROFILE_RTOL)
        assert np.allclose(pseudo.chi2(), chi2_ref[inv], rtol=PROFILE_RTOL)
        # central values lie inside the confidence level of the stored chi2
        chi2_store = mocks.chi2()
        assert np.all(chi2_store[src[order]] < chi2_store.min() + CONFIDENCE_THRESHOLDS[6])


@pytest.mark.parametrize("noise", ["paper", "envelope"])
def test_pseudodata_fluctuations(small_store, tmp_path, noise: str) -> None:
    path, _ = small_store
    out = tmp_path / f"pseudo_{noise}.h5"
    cfg = PseudoDataConfig(n_pseudo=30, n_sigma=4, noise=noise, seed=2, chunk_size=16)
    summary = make_pseudodata(path, out, cfg)
    with StoreReader(out) as pseudo, StoreReader(path) as mocks:
        src = pseudo.store.read("step")
        uniq, inv = np.unique(src, return_inverse=True)
        before = mocks.take("flux", uniq)[inv].astype(np.float64)
        after = pseudo.store.read("flux").astype(np.float64)
        rel = after / before - 1.0
        changed = [SPECIES.index(s) for s in SPECIES if s.lstrip("0123456789") in ("Li", "Be", "B", "C", "O")]
        unchanged = [i for i in range(len(SPECIES)) if i not in changed]
        assert np.allclose(rel[:, unchanged], 0.0, atol=FLOAT32_RTOL)
        assert np.abs(rel[:, changed]).max() > 1e-4
        if noise == "paper":
            assert np.abs(rel).max() <= 0.05 + FLOAT32_RTOL
            assert summary.max_abs_relative_fluctuation <= 0.05
            # each element's own factor on its own rows: the draws of make_pseudodata's stream, redone (the central
            # spectra are chosen first, then one (n, 5, n_E) noise block per chunk)
            rng = np.random.default_rng(cfg.seed)
            rng.choice(np.arange(summary.n_selected), size=cfg.n_pseudo, replace=cfg.n_pseudo > summary.n_selected)
            factors = np.concatenate([paper_noise(rng, (min(cfg.chunk_size, cfg.n_pseudo - lo), 5, before.shape[2]),
                                                  cfg.max_relative) for lo in range(0, cfg.n_pseudo, cfg.chunk_size)])
            for k, element in enumerate(("Li", "Be", "B", "C", "O")):
                rows = [i for i, s in enumerate(SPECIES) if s.lstrip("0123456789") == element]
                np.testing.assert_allclose(rel[:, rows] + 1.0, np.repeat(factors[:, k:k + 1], len(rows), axis=1),
                                           rtol=FLOAT32_RTOL, err_msg=element)
        # element rows stay the sums of their isotopes, isotope ratios are kept
        li, li6, li7 = SPECIES.index("Li"), SPECIES.index("6Li"), SPECIES.index("7Li")
        assert np.allclose(after[:, li], after[:, li6] + after[:, li7], rtol=1e-6)
        feats, ok = pseudo.features(0, pseudo.n_records)
        assert ok.all()
        norms = pseudo.norms()
        assert np.all((norms[:, 1:] >= 0.8 - 1e-12) & (norms[:, 1:] <= 1.2 + 1e-12))


def test_pseudodata_selects_on_the_updated_chi2(small_store, tmp_path) -> None:
    """update_chi2: the central values are chosen with chi2 recomputed against the data set, not the stored one."""
    path, _ = small_store
    summary = make_pseudodata(path, tmp_path / "upd.h5", PseudoDataConfig(n_pseudo=10, n_sigma=3, update_chi2=True))
    with StoreReader(path) as mocks:
        updated, _ = recompute_chi2(mocks.store, "paper")
        stored = mocks.chi2()
    assert summary.chi2_min == pytest.approx(updated.min(), rel=PROFILE_RTOL)
    assert summary.chi2_min != pytest.approx(stored.min())
    with StoreReader(tmp_path / "upd.h5") as pseudo:
        src = pseudo.store.read("step")
        assert np.all(updated[src] < updated.min() + CONFIDENCE_THRESHOLDS[3])
        assert pseudo.info.attrs["source_chi2"] == "updated"


def test_pseudodata_refuse_another_data_set_than_the_stores(small_store, tmp_path) -> None:
    """q_C (features 0-2) re-profiled against another data set than the store's moved by up to 2.4x while the
    central spectra were still picked by the store's chi2 (review of session 13)."""
    path, _ = small_store
    with StoreReader(path) as mocks:
        assert mocks.info.attrs["dataset"] == "paper"
    with pytest.raises(ValueError, match="against data set 'ams02-2021', but the store's chi2"):
        make_pseudodata(path, tmp_path / "x.h5", PseudoDataConfig(n_pseudo=4, dataset="ams02-2021"))
    assert not (tmp_path / "x.h5").exists()


def test_holdout_mask_is_deterministic_and_near_its_fraction() -> None:
    from crnet.pseudodata import holdout_mask

    idx = np.arange(100_000)
    held = holdout_mask(idx, 0.2)
    assert held.mean() == pytest.approx(0.2, abs=0.005)  # binomial sd 0.0013; Fibonacci hashing is even
    # stable when the store grows and for any subset of indices
    np.testing.assert_array_equal(holdout_mask(idx[:500], 0.2), held[:500])
    np.testing.assert_array_equal(holdout_mask(idx[37::91], 0.2), held[37::91])
    # nested in the fraction: what is held out at 0.1 is also held out at 0.2
    assert np.all(held[holdout_mask(idx, 0.1)])
    assert not holdout_mask(idx, 0.0).any()
    with pytest.raises(ValueError, match="holdout fraction"):
        holdout_mask(idx, 1.0)


def test_train_and_test_pseudodata_never_share_a_centre(small_store, tmp_path) -> None:
    """centres='train' / 'test' split the selected records by the hold-out hash; Machine A's record filter
    drops the same hash."""
    from crnet.features import TargetTransform
    from crnet.machines.data import record_filter
    from crnet.pseudodata import holdout_mask

    path, _ = small_store
    kw = dict(n_pseudo=60, n_sigma=6, seed=2, holdout_fraction=0.3)
    make_pseudodata(path, tmp_path / "train.h5", PseudoDataConfig(centres="train", **kw))
    make_pseudodata(path, tmp_path / "test.h5", PseudoDataConfig(centres="test", **kw))
    with StoreReader(tmp_path / "train.h5") as tr, StoreReader(tmp_path / "test.h5") as te:
        src_train, src_test = np.unique(tr.store.read("step")), np.unique(te.store.read("step"))
    assert src_train.size > 1 and src_test.size > 0
    assert np.intersect1d(src_train, src_test).size == 0
    assert holdout_mask(src_test, 0.3).all() and not holdout_mask(src_train, 0.3).any()
    with StoreReader(path) as reader:
        mask, dropped = record_filter(reader, TargetTransform(), None, holdout_fraction=0.3)
        base, _ = record_filter(reader, TargetTransform(), None)
    assert not mask[src_test].any() and dropped["held_out_for_tests"] == int((base & ~mask).sum()) > 0
    with pytest.raises(ValueError, match="needs holdout_fraction"):
        PseudoDataConfig(centres="test")


def test_relative_errors_take_the_breaks_in_log10_like_tau():
    from crnet.features import TargetTransform, regression_metrics
    from crnet.feedback import tau

    truth = np.array([[4.0, 0.5, -1.0, 20.0, 5.0, 1.0, 2.3, 2.4, 1000.0, 1e5]] * 3)
    pred = truth.copy()
    pred[:, 8] *= 1.01  # R_br1 1 % high in MV
    pred[:, 0] *= 1.02
    m = regression_metrics(TargetTransform(), truth, pred)
    assert m["r_break1_mv"]["rel_err_median"] == pytest.approx(np.log10(1.01) / 3.0, rel=1e-9)  # 0.14 %, not 1 %
    assert m["d0_1e28_cm2_s"]["rel_err_median"] == pytest.approx(0.02, rel=1e-9)
    np.testing.assert_allclose(np.abs(tau(truth, pred))[0, [0, 8]], [0.02, np.log10(1.01) / 3.0], rtol=1e-9)
