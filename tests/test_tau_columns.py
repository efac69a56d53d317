"""Table 3 counts finite tau per parameter, shows no interval from a handful of values, and the MCMC row of
Table 4 comes with the shares a stationary chain is expected to reach (synthetic numbers, no propagation)."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import stats

import crnet.evaluate.figures as figures
import crnet.evaluate.tables as tables
from crnet.evaluate.report import closure_counts, conventions_text, default_scan_temperature
from crnet.evaluate.tables import (
    MCMC_ROW,
    MIN_TAU_FOR_INTERVAL,
    PAPER_SAMPLED_PARAMETERS,
    finite_tau_columns,
    sigma_bands,
    stationary_chain_shares,
    table3_markdown,
    tau_summary,
)
from crnet.features import TargetTransform
from crnet.feedback import ClosureResult, tau
from crnet.likelihood import delta_chi2_threshold
from crprop.params import LOG_PARAM_NAMES, PARAM_NAMES

SCIPY_TOLERANCE = 1e-12
"""stationary_chain_shares against scipy's chi2 called directly: the same function, so rounding only."""

MC_DRAWS = 400_000
MC_TOLERANCE = 0.004
"""Monte Carlo shares against the analytic ones: the largest binomial standard error, sqrt(0.25 / 400000) =
7.9e-4, so 0.004 is 5 standard errors (the seed is fixed; the bound is what a change of seed may need)."""


def _theta_with_zeros(n: int, zero_rows: dict[int, tuple[str, ...]]) -> np.ndarray:
    """n predictions inside the prior box (bounded outputs in (0.1, 0.9)); the named parameters of the given rows
    are put at their exact zero (v_A and nu1: the lower box edge, output 0; eta: the box centre, output 0.5)."""
    s = np.random.default_rng(5).uniform(0.1, 0.9, (n, len(PARAM_NAMES)))
    s[:, PARAM_NAMES.index("eta")] = 0.3  # off the centre: eta != 0 unless asked
    for row, names in zero_rows.items():
        for name in names:
            s[row, PARAM_NAMES.index(name)] = 0.5 if name == "eta" else 0.0
    theta = TargetTransform().inverse(s, clip_to_box=True)
    for row, names in zero_rows.items():
        assert all(theta[row, PARAM_NAMES.index(name)] == 0.0 for name in names)  # reachable exactly
    return theta


def test_the_review_repro_keeps_the_other_parameters():
    """The review's example: v_A = nu1 = 0 in row 0 and eta = 0 (box centre) in both rows: the row-wise rule
    left n = 0 in all of Table 3; per parameter only v_A, nu1 (row 0) and eta (both) lose predictions."""
    s = np.full((2, 10), 0.5)
    s[0, 3] = s[0, 5] = 0.0
    th = TargetTransform().inverse(s, clip_to_box=True)
    summary = tau_summary(tau(th, th * 1.01))
    n = {p: summary[p]["n"] for p in LOG_PARAM_NAMES}
    assert n["eta"] == 0 and n["v_alfven_km_s"] == 1 and n["nu1"] == 1
    assert all(n[p] == 2 for p in LOG_PARAM_NAMES if p not in ("eta", "v_alfven_km_s", "nu1"))
    assert summary["eta"]["n_nonfinite"] == 2 and summary["nu1"]["n_nonfinite"] == 1
    assert summary["d0_1e28_cm2_s"]["median"] == pytest.approx(1.0)  # (1.01 theta - theta) / theta, percent


def test_a_zero_eta_counts_in_the_other_nine_parameters():
    n = 40
    theta = _theta_with_zeros(n, {0: ("eta",), 1: ("v_alfven_km_s", "nu1")})
    prime = theta + 0.02 * np.abs(theta)  # 2 % upwards, also where eta < 0
    prime[2] = np.nan  # a prediction without theta': out of every column
    t = tau(theta, prime)
    cols = finite_tau_columns(t)
    expected = {p: n - 1 for p in LOG_PARAM_NAMES}
    expected["eta"] = n - 2
    expected["v_alfven_km_s"] = expected["nu1"] = n - 2
    assert {p: int(c.size) for p, c in zip(LOG_PARAM_NAMES, cols, strict=True)} == expected
    summary = tau_summary(t)
    for p in LOG_PARAM_NAMES:
        assert summary[p]["n"] == expected[p] and summary[p]["n_nonfinite"] == n - expected[p]
        if not p.startswith("log10_"):  # breaks enter as log10(R/MV): their tau is not 2 %
            assert summary[p]["median"] == pytest.approx(2.0)
    assert summary["delta"]["n"] == n - 1  # the row with eta = 0 still counts here (row-wise: n - 3)
    res = ClosureResult(theta, prime, np.full(n, 400.0), np.ones(n, dtype=bool))
    k = closure_counts(res)
    assert k["n_finite_tau_by_parameter"] == expected
    assert k["n_finite_tau_min"] == n - 2 and k["n_finite_tau_max"] == n - 1 and k["n_all_tau_finite"] == n - 3
    assert res.passing_share(0.1) == pytest.approx((n - 3) / n)  # the stop rule stays row-wise


def test_fig5_uses_the_same_rule_as_table3():
    assert figures.finite_tau_columns is tables.finite_tau_columns
    with pytest.raises(ValueError, match="shape"):
        finite_tau_columns(np.zeros((3, 9)))


def test_table3_shows_no_interval_from_too_few_values():
    rng = np.random.default_rng(0)
    t = rng.normal(0.0, 0.01, (20, 10))
    t[3:, LOG_PARAM_NAMES.index("eta")] = np.nan  # 3 finite values of eta
    t[MIN_TAU_FOR_INTERVAL:, LOG_PARAM_NAMES.index("nu1")] = np.inf  # exactly the minimum for nu1
    summary = tau_summary(t)
    eta, nu1 = summary["eta"], summary["nu1"]
    assert eta["n"] == 3 and np.isnan(eta["plus"]) and np.isnan(eta["minus"])
    assert eta["median"] == pytest.approx(100.0 * np.median(t[:3, LOG_PARAM_NAMES.index("eta")]))
    assert nu1["n"] == MIN_TAU_FOR_INTERVAL and np.isfinite(nu1["plus"]) and np.isfinite(nu1["minus"])
    md = table3_markdown({"Machine A": summary, "Machine B": tau_summary(np.full((20, 10), 0.01))})
    rows = {line.split(" | ")[0].lstrip("| "): line for line in md.splitlines()[2:]}
    assert f"{eta['median']:+.2f}, n/a (n = 3 < {MIN_TAU_FOR_INTERVAL})" in rows["eta"]
    assert "±" not in rows["eta"].split(" | ")[1] and "n/a" not in rows["nu1"].split(" | ")[1]
    assert rows["n (finite tau)"] == "| n (finite tau) | 3-20 | 20 | - | - |"
    empty = table3_markdown({"A": tau_summary(np.full((4, 10), np.nan))}, {p: 1.0 for p in LOG_PARAM_NAMES})
    erows = {line.split(" | ")[0].lstrip("| "): line for line in empty.splitlines()[2:]}
    assert erows["delta"].split(" | ")[1] == f"n/a (n = 0 < {MIN_TAU_FOR_INTERVAL})"
    assert erows["n (finite tau)"] == "| n (finite tau) | 0 | - | - | - |"


def test_stationary_shares_equal_scipy_and_the_papers_numbers():
    t4, t6 = delta_chi2_threshold(4), delta_chi2_threshold(6)
    for temperature in (1.0, 10.0, 3.7):
        for d in (len(PARAM_NAMES), PAPER_SAMPLED_PARAMETERS, 1, 30):
            s = stationary_chain_shares(temperature, d)
            in4, in6 = stats.chi2.cdf(t4 / temperature, d), stats.chi2.cdf(t6 / temperature, d)
            assert s["le_4sigma"] == pytest.approx(in4, abs=SCIPY_TOLERANCE)
            assert s["4_to_6sigma"] == pytest.approx(in6 - in4, abs=SCIPY_TOLERANCE)
            assert s["gt_6sigma"] == pytest.approx(1.0 - in6, abs=SCIPY_TOLERANCE)
    ten, fourteen = stationary_chain_shares(10.0, 10), stationary_chain_shares(10.0, 14)
    # the brief's numbers: d = 14 -> 0.73 % / 6.51 % within 4 / 6 sigma (paper 1.57 % / 6.59 %); d = 10 -> 7.15 / 27.4 %
    assert 100 * fourteen["le_4sigma"] == pytest.approx(0.73, abs=0.005)
    assert 100 * (fourteen["le_4sigma"] + fourteen["4_to_6sigma"]) == pytest.approx(6.51, abs=0.005)
    assert 100 * ten["le_4sigma"] == pytest.approx(7.15, abs=0.005)
    assert 100 * (ten["le_4sigma"] + ten["4_to_6sigma"]) == pytest.approx(27.41, abs=0.005)
    for bad in ((0.0, 10), (float("nan"), 10), (10.0, 0), (10.0, 2.5)):
        with pytest.raises(ValueError):
            stationary_chain_shares(*bad)


def test_stationary_shares_match_a_monte_carlo_chain():
    """Draws from the tempered Gaussian posterior, through sigma_bands as Table 4 counts them: the paper samples
    all 14 parameters of a chi^2 quadratic in them; crnet samples 10 of a chi^2 whose other 4 are profiled
    (the Schur complement). Delta chi^2 from the true minimum (0)."""
    rng = np.random.default_rng(11)
    temperature = 10.0
    a = rng.normal(size=(PAPER_SAMPLED_PARAMETERS, PAPER_SAMPLED_PARAMETERS))
    hess = a @ a.T + 0.5 * np.eye(PAPER_SAMPLED_PARAMETERS)  # chi2_tot = x^T H x: a correlated Gaussian
    d = len(PARAM_NAMES)
    h11, h12, h22 = hess[:d, :d], hess[:d, d:], hess[d:, d:]
    profiled = h11 - h12 @ np.linalg.solve(h22, h12.T)  # min over the 4 normalisations

    def draws(h: np.ndarray) -> np.ndarray:
        x = rng.multivariate_normal(np.zeros(h.shape[0]), temperature * np.linalg.inv(h), size=MC_DRAWS)
        return np.einsum("ni,ij,nj->n", x, h, x)  # p(x) ~ exp(-chi2 / (2 T))

    for h, n_sampled in ((hess, PAPER_SAMPLED_PARAMETERS), (profiled, d)):
        mc = sigma_bands(draws(h), 0.0)
        expected = stationary_chain_shares(temperature, n_sampled)
        for band in ("le_4sigma", "4_to_6sigma", "gt_6sigma"):
            assert mc[band] == pytest.approx(expected[band], abs=MC_TOLERANCE), (n_sampled, band)
    # and the dimension matters far beyond that tolerance
    assert stationary_chain_shares(temperature, d)["le_4sigma"] - stationary_chain_shares(
        temperature, PAPER_SAMPLED_PARAMETERS)["le_4sigma"] > 10 * MC_TOLERANCE


def _report(temperature: float | None) -> dict:
    c = np.array([300.0, 330.0, 500.0])
    rep = {"table4_fractions": {MCMC_ROW: sigma_bands(c, 300.0, np.ones(3))}, "closure_counts": {}}
    if temperature is not None:
        rep["scan_temperature"] = temperature
    return rep


def test_conventions_explain_the_mcmc_row_by_the_sampled_dimension():
    text = conventions_text(_report(10.0))
    ours, paper = stationary_chain_shares(10.0, len(PARAM_NAMES)), stationary_chain_shares(10.0, 14)
    assert "the scan's T = 10 " in text
    assert f"{100 * ours['le_4sigma']:.2f} % within 4 sigma" in text and "7.15 % within 4 sigma" in text
    assert f"{100 * paper['le_4sigma']:.2f} % / {100 * paper['4_to_6sigma']:.2f} %" in text
    assert "0.73 % / 5.78 %" in text and "it reports 1.57 % / 5.02 %" in text
    assert "comes mostly from the sampled dimension." in text
    assert "Table 3 uses, per parameter, the predictions whose tau of that parameter is finite" in text
    hot = conventions_text(_report(5.0))
    assert f"{100 * stationary_chain_shares(5.0, 10)['le_4sigma']:.2f} % within 4 sigma" in hot
    assert "and from T (the paper's is 10" in hot
    unknown = conventions_text(_report(None))
    assert default_scan_temperature() == 10.0
    assert "the scan's default (the report does not record the scan's temperature)" in unknown
    design = _report(10.0)
    design["table4_fractions"] = {"Scan design (unweighted)": design["table4_fractions"][MCMC_ROW]}
    assert "stationary chain" not in conventions_text(design)


def test_conventions_give_the_per_parameter_counts():
    n = 12
    theta = _theta_with_zeros(n, {0: ("eta",)})
    res = ClosureResult(theta, theta * 1.01, np.full(n, 400.0), np.ones(n, dtype=bool))
    rep = {"table4_fractions": {}, "closure_counts": {"Machine A": closure_counts(res)}}
    assert f"{n - 1}-{n} (by parameter) with a finite tau, {n - 1} with all ten finite." in conventions_text(rep)


def test_tau_of_a_negative_eta_has_the_sign_of_the_shift():
    """Eq. 4.4 as printed divides by theta: for eta < 0 (its box is [-4, 4]) an upward shift gave a negative tau,
    and Table 3 printed a median of -441 % for predictions that all moved up (review by helper-83, session 21)."""
    theta = _theta_with_zeros(3, {})
    eta = LOG_PARAM_NAMES.index("eta")
    theta[:, eta] = [-0.5, 0.5, -2.0]
    prime = theta.copy()
    prime[:, eta] += 0.1
    t = tau(theta, prime)
    np.testing.assert_allclose(t[:, eta], [0.2, 0.2, 0.05], rtol=1e-12)
    assert tau_summary(t)["eta"]["median"] == pytest.approx(20.0)
    prime[:, eta] -= 0.2  # and a downward shift is negative on both sides of zero
    np.testing.assert_allclose(tau(theta, prime)[:, eta], [-0.2, -0.2, -0.05], rtol=1e-12)
