"""Tables 3 and 4 of the paper from closure tests, with the paper's numbers beside them.

Table 3: per parameter, the median of tau (Eq. 4.4) and its 68 % interval (16th - 84th percentile),
in percent, over the test pseudo-data (breaks as log10(R/MV), LOG_PARAM_NAMES order). Each parameter counts the
predictions whose tau of that parameter is finite (:func:`finite_tau_columns`, also Fig. 5's rule), and shows no
interval below :data:`MIN_TAU_FOR_INTERVAL` of them.

Table 4: the share of parameter points whose re-simulated chi^2_tot (Eq. 4.3, i.e. chi2_scan -> chi2_tot,
Eq. 4.1) lies within 4 sigma (Delta chi^2 <= 43.82 for 14 dof), between 4 and 6 sigma (<= 69.95; the paper
prints 69.91) and beyond 6 sigma of the minimum chi^2_tot of all collected mocks. Points that could not be re-simulated
count as beyond 6 sigma. For the re-weighted MCMC the points are the scan's records (each record
weighted by its chain multiplicity when ``weights`` are given: the steps its chain stayed in it, no burn-in
removed; ``n`` counts the states, ``weight_sum`` the steps); for the Check Machine the paper quotes the
true-positive rate of its 4 sigma classifier (29 %), which :func:`check_machine_row` computes.
"""

from __future__ import annotations

import numpy as np
from scipy import stats

from crnet.likelihood import delta_chi2_threshold
from crprop.params import LOG_PARAM_NAMES

SIGMA_BANDS: tuple[float, float] = (4.0, 6.0)
"""The paper's Table 4 bands: <= 4 sigma, 4-6 sigma, > 6 sigma."""

INTERVAL_PERCENTILES: tuple[float, float] = (15.865, 84.135)
"""Two-sided 68.27 % (1 sigma) interval of a distribution."""

PAPER_TABLE3: dict[str, dict[str, tuple[float, float, float]]] = {
    # parameter -> machine -> (median, +upper, -lower) in percent (paper Table 3)
    "nu1": {"A": (0.00, 3.75, 2.50), "B": (0.00, 5.00, 5.00)},
    "nu2": {"A": (0.05, 0.09, 0.14), "B": (-0.05, 0.15, 0.15)},
    "nu3": {"A": (0.09, 0.14, 0.09), "B": (-0.20, 0.20, 0.20)},
    "log10_r_break1_mv": {"A": (0.04, 0.14, 0.14), "B": (0.00, 0.30, 0.30)},
    "log10_r_break2_mv": {"A": (-0.09, 0.14, 0.14), "B": (0.15, 0.30, 0.45)},
    "d0_1e28_cm2_s": {"A": (-0.25, 0.75, 0.75), "B": (-2.33, 7.00, 4.67)},
    "delta": {"A": (0.04, 0.27, 0.18), "B": (-0.33, 0.50, 0.50)},
    "z_halo_kpc": {"A": (-0.50, 1.25, 1.50), "B": (3.28, 13.11, 13.11)},
    "v_alfven_km_s": {"A": (0.35, 1.05, 1.05), "B": (0.00, 3.33, 3.33)},
    "eta": {"A": (0.00, 0.70, 1.40), "B": (1.67, 5.00, 1.67)},
}

PAPER_TABLE4: dict[str, tuple[float, float, float] | tuple[float, float]] = {
    # method -> (<= 4 sigma, 4-6 sigma, > 6 sigma) in percent; the Check Machine: (true positive, rest)
    "MCMC (re-weighted)": (1.57, 5.02, 93.41),
    "Machine A": (41.63, 26.47, 31.91),
    "Machine B": (15.50, 14.79, 69.71),
    "Check Machine": (29.0, 71.0),
}


MIN_TAU_FOR_INTERVAL = 10
"""Fewer finite tau of a parameter than this give no Table 3 interval: the 15.9th / 84.1th percentiles of k < 10
values are interpolations between the two or three outermost points (with 3 points, between the extremes and the
median), not an estimate of a 68 % interval; the median is still shown, with k."""


def finite_tau_columns(tau: np.ndarray) -> list[np.ndarray]:
    """Per parameter (LOG_PARAM_NAMES order), the finite tau (fractions) of that parameter from tau (n, 10).

    The one rule of Table 3 (:func:`tau_summary`) and Fig. 5 (:func:`crnet.evaluate.figures.tau_histograms`):
    each column keeps its own finite values. tau_i = (theta'_i - theta_i) / |theta_i| (Eq. 4.4) is +-inf or NaN
    where theta_i = 0, and exact zeros are reachable (eta = 0 is the centre of its prior box; v_A = 0 and nu1 = 0
    are lower box edges a bounded output reaches exactly in float32), so a row-wise filter would drop such a
    prediction from all ten parameters because of one. A missing theta' (NaN) leaves every column of its row."""
    t = np.asarray(tau, dtype=np.float64)
    if t.ndim != 2 or t.shape[1] != len(LOG_PARAM_NAMES):
        raise ValueError(f"tau must have shape (n, {len(LOG_PARAM_NAMES)}), got {t.shape}")
    return [t[np.isfinite(t[:, j]), j] for j in range(t.shape[1])]


def tau_summary(tau: np.ndarray) -> dict[str, dict[str, float]]:
    """Per parameter: median, +upper, -lower (percent) of tau (n, 10), over that parameter's finite tau
    (:func:`finite_tau_columns`); ``n`` counts them and ``n_nonfinite`` the rest (n + n_nonfinite = rows).
    Below :data:`MIN_TAU_FOR_INTERVAL` finite values ``plus`` and ``minus`` are NaN (no interval), the median
    is kept; with none all three are NaN.

    This is not the feedback stop rule's count (:meth:`crnet.feedback.ClosureResult.passing_share`, mean |tau|
    over all ten parameters below the threshold): the stop rule judges each prediction as a whole, so a row with
    any non-finite tau fails it (its mean is not finite), while Table 3 describes each parameter's distribution
    and keeps, per parameter, every prediction whose tau of that parameter is defined. The two can therefore
    count different predictions (e.g. eta = 0 removes a prediction from the stop rule but only from Table 3's
    eta row)."""
    cols = finite_tau_columns(tau)
    rows = int(np.asarray(tau).shape[0])
    out = {}
    for name, col in zip(LOG_PARAM_NAMES, cols, strict=True):
        v = 100.0 * col
        n = int(v.size)
        entry = {"median": float("nan"), "plus": float("nan"), "minus": float("nan"), "n": n,
                 "n_nonfinite": rows - n}
        if n:
            entry["median"] = float(np.median(v))
        if n >= MIN_TAU_FOR_INTERVAL:
            lo, hi = np.percentile(v, INTERVAL_PERCENTILES)
            entry["plus"], entry["minus"] = float(hi - entry["median"]), float(entry["median"] - lo)
        out[name] = entry
    return out


PAPER_SAMPLED_PARAMETERS = 14
"""Parameters the paper's MCMC sampled: "In the parameter scan, we vary the 14 model parameters described in
Sec. 2" (the 10 propagation parameters and the 4 normalisations; crnet samples the 10 and profiles the 4 inside
chi^2, :mod:`crnet.likelihood`)."""


def stationary_chain_shares(temperature: float, n_sampled: int) -> dict[str, float]:
    """Expected Table 4 shares (fractions) of a stationary chain with log p = -chi2_tot / (2 T).

    For a Gaussian likelihood in the ``n_sampled`` sampled parameters (prior box not binding), the chain's
    Delta chi2_tot / T follows chi2(n_sampled), so the share within Table 4's 4 sigma threshold t4 (14 dof,
    43.82) is chi2.cdf(t4 / T, n_sampled), within 6 sigma chi2.cdf(t6 / T, n_sampled). With T = 10: 0.73 % /
    5.78 % / 93.49 % for 14 sampled parameters (the paper: 1.57 / 5.02 / 93.41 %), 7.15 % / 20.25 % / 72.59 %
    for 10 (crnet). Delta chi2 is taken from the true minimum; Table 4 measures it from the smallest collected
    chi2_tot, which is at or above it."""
    if not (temperature > 0 and np.isfinite(temperature)):
        raise ValueError(f"temperature must be finite and > 0, got {temperature}")
    if int(n_sampled) != n_sampled or n_sampled < 1:
        raise ValueError(f"n_sampled must be an integer >= 1, got {n_sampled}")
    t4, t6 = (delta_chi2_threshold(s) for s in SIGMA_BANDS)
    in4 = float(stats.chi2.cdf(t4 / temperature, int(n_sampled)))
    in6 = float(stats.chi2.cdf(t6 / temperature, int(n_sampled)))
    return {"le_4sigma": in4, "4_to_6sigma": in6 - in4, "gt_6sigma": float(stats.chi2.sf(t6 / temperature,
                                                                                           int(n_sampled)))}


def sigma_bands(chi2_tot: np.ndarray, chi2_min: float, weights: np.ndarray | None = None) -> dict[str, float]:
    """Shares (fractions) of points with Delta chi^2_tot in (<= 4 sigma, 4-6 sigma, > 6 sigma); non-finite
    chi^2 counts as > 6 sigma. ``n``: the points that carry weight (all of them without ``weights``)."""
    c = np.asarray(chi2_tot, dtype=np.float64)
    w = np.ones_like(c) if weights is None else np.asarray(weights, dtype=np.float64)
    d = np.where(np.isfinite(c), c - chi2_min, np.inf)
    t4, t6 = (delta_chi2_threshold(s) for s in SIGMA_BANDS)
    total = float(w.sum())
    if total <= 0:
        return {"le_4sigma": float("nan"), "4_to_6sigma": float("nan"), "gt_6sigma": float("nan"), "n": 0,
                "weight_sum": 0.0}
    return {"le_4sigma": float(w[d <= t4].sum() / total), "4_to_6sigma": float(w[(d > t4) & (d <= t6)].sum() / total),
            "gt_6sigma": float(w[d > t6].sum() / total), "n": int(np.count_nonzero(w > 0)), "weight_sum": total}


MIN_CLUSTERS_FOR_INTERVAL = 10
"""Fewer test centres than this give no Table 4 interval: a bootstrap over k centres can only return shares built
from those k values (with 2 it returns the smaller and the larger centre's share), not a 68 % interval."""

BOOTSTRAP_RESAMPLES = 2000
"""Cluster-bootstrap resamples for Table 4's intervals: the 16th/84th percentiles carry a Monte Carlo error of
~1 % of their width."""


def cluster_intervals(chi2_tot: np.ndarray, chi2_min: float, clusters: np.ndarray,
                      n_resamples: int = BOOTSTRAP_RESAMPLES, seed: int = 0) -> dict[str, float]:
    """68 % intervals of the shares within 4 sigma and within 6 sigma, resampling whole clusters.

    The test pseudo-spectra share their central spectra (several noise draws per centre), so predictions of one
    centre are not independent. ``clusters`` (n,) labels each prediction's centre; the shares are recomputed on
    bootstrap samples of the centres (with replacement), and the 16th / 84th percentiles are returned with the
    number of clusters; NaN below :data:`MIN_CLUSTERS_FOR_INTERVAL` clusters."""
    c = np.asarray(chi2_tot, dtype=np.float64)
    labels = np.unique(np.asarray(clusters), return_inverse=True)[1].reshape(-1)
    if c.shape != labels.shape:
        raise ValueError(f"chi2_tot and clusters must have the same length, got {c.shape} and {labels.shape}")
    d = np.where(np.isfinite(c), c - chi2_min, np.inf)
    t4, t6 = (delta_chi2_threshold(s) for s in SIGMA_BANDS)
    k = int(labels.max()) + 1 if labels.size else 0
    if k < MIN_CLUSTERS_FOR_INTERVAL:
        return {"le_4sigma_lo": float("nan"), "le_4sigma_hi": float("nan"), "le_6sigma_lo": float("nan"),
                "le_6sigma_hi": float("nan"), "n_clusters": k}
    size = np.bincount(labels, minlength=k).astype(np.float64)
    in4 = np.bincount(labels, weights=(d <= t4).astype(np.float64), minlength=k)
    in6 = np.bincount(labels, weights=(d <= t6).astype(np.float64), minlength=k)
    counts = np.random.default_rng(seed).multinomial(k, np.full(k, 1.0 / k), size=n_resamples)  # (n_res, k)
    total = counts @ size
    s4, s6 = (counts @ in4) / total, (counts @ in6) / total
    lo, hi = INTERVAL_PERCENTILES
    return {"le_4sigma_lo": float(np.percentile(s4, lo)), "le_4sigma_hi": float(np.percentile(s4, hi)),
            "le_6sigma_lo": float(np.percentile(s6, lo)), "le_6sigma_hi": float(np.percentile(s6, hi)),
            "n_clusters": k}


def check_machine_row(prob_inside: np.ndarray, chi2_tot: np.ndarray, chi2_min: float,
                      threshold: float = 0.5) -> dict[str, float]:
    """Check Machine in Table 4: true-positive rate (share of the 4 sigma points it classifies as inside)
    and the true-negative rate, from probabilities on points with known chi^2_tot."""
    inside = np.asarray(chi2_tot) - chi2_min <= delta_chi2_threshold(SIGMA_BANDS[0])
    said = np.asarray(prob_inside) >= threshold
    tpr = float(np.mean(said[inside])) if inside.any() else float("nan")
    tnr = float(np.mean(~said[~inside])) if (~inside).any() else float("nan")
    return {"true_positive_rate": tpr, "true_negative_rate": tnr, "n_inside": int(inside.sum()),
            "n_outside": int((~inside).sum())}


def table3_markdown(rows: dict[str, dict[str, dict[str, float]]], floor_percent: dict[str, float] | None = None) -> str:
    """Markdown Table 3: one column per machine (ours), the unbiased floor (``floor_percent``: parameter ->
    68 % half-width in percent, :mod:`crnet.evaluate.floor`) when given, then the paper's A and B. A parameter
    with fewer than :data:`MIN_TAU_FOR_INTERVAL` finite tau shows its median and "n/a (n = k < 10)"; the last
    row gives each machine's number of finite tau (min-max over the parameters where they differ)."""
    names = list(rows)
    extra = ["unbiased floor"] if floor_percent else []
    head = "| parameter | " + " | ".join(names + extra) + " | paper A | paper B |"
    lines = [head, "|" + "---|" * (len(names) + len(extra) + 3)]
    for p in LOG_PARAM_NAMES:
        cells = [_tau_cell(rows[m][p]) for m in names]
        if floor_percent:
            v = floor_percent[p]
            cells.append(f"± {v:.2f}" if v is not None and np.isfinite(v) else "n/a")
        pa, pb = PAPER_TABLE3[p]["A"], PAPER_TABLE3[p]["B"]
        lines.append(f"| {p} | " + " | ".join(cells) + f" | {_pm(*pa)} | {_pm(*pb)} |")
    counts = []
    for m in names:
        ns = [int(rows[m][p]["n"]) for p in LOG_PARAM_NAMES]
        counts.append(f"{min(ns)}-{max(ns)}" if min(ns) != max(ns) else str(ns[0]))
    lines.append("| n (finite tau) | " + " | ".join(counts + ["-"] * len(extra)) + " | - | - |")
    return "\n".join(lines)


def _tau_cell(entry: dict[str, float]) -> str:
    """One Table 3 cell: median and 68 % interval, or the median alone when too few tau are finite."""
    n = int(entry["n"])
    if n < MIN_TAU_FOR_INTERVAL:
        med = f"{entry['median']:+.2f}, " if n and np.isfinite(entry["median"]) else ""
        return f"{med}n/a (n = {n} < {MIN_TAU_FOR_INTERVAL})"
    return _pm(entry["median"], entry["plus"], entry["minus"])


def accuracy_markdown(rows: dict[str, dict[str, dict[str, float]]]) -> str:
    """Markdown table of :func:`crnet.evaluate.floor.truth_accuracy` per machine: median and 68 % interval of
    (prediction - truth) / truth in percent, and the slope of prediction on truth in brackets."""
    names = list(rows)
    lines = ["| parameter | " + " | ".join(names) + " |", "|" + "---|" * (len(names) + 1)]
    for p in LOG_PARAM_NAMES:
        cells = [f"{_pm(rows[m][p]['median'], rows[m][p]['plus'], rows[m][p]['minus'])} "
                 f"(slope {_num(rows[m][p]['slope'])})" for m in names]
        lines.append(f"| {p} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def table4_markdown(rows: dict[str, dict[str, float]]) -> str:
    """Markdown Table 4: ours (percent) with the paper's value of the matching method in brackets; rows with
    cluster-bootstrap intervals (:func:`cluster_intervals`) show them after the shares."""
    lines = ["| method | <= 4 sigma | 4-6 sigma | > 6 sigma | n | 68 % interval <= 4 / <= 6 sigma (centres) "
             "| paper (<=4 / 4-6 / >6) |",
             "|---|---|---|---|---|---|---|"]
    for name, r in rows.items():
        paper = PAPER_TABLE4.get(_paper_key(name))
        ptxt = " / ".join(f"{v:.2f} %" for v in paper) if paper else "-"
        ci = "-"
        if "le_4sigma_lo" in r:
            ci = (f"{100 * r['le_4sigma_lo']:.1f}-{100 * r['le_4sigma_hi']:.1f} % / "
                  f"{100 * r['le_6sigma_lo']:.1f}-{100 * r['le_6sigma_hi']:.1f} % ({r['n_clusters']})"
                  if np.isfinite(r["le_4sigma_lo"]) else
                  f"n/a: {r['n_clusters']} centres (< {MIN_CLUSTERS_FOR_INTERVAL})")
        n = r["n"]
        if r.get("weight_sum") is not None and abs(r["weight_sum"] - n) > 1e-9:
            n = f"{n} states, {r['weight_sum']:g} steps"
        lines.append(f"| {name} | {100 * r['le_4sigma']:.2f} % | {100 * r['4_to_6sigma']:.2f} % | "
                     f"{100 * r['gt_6sigma']:.2f} % | {n} | {ci} | {ptxt} |")
    return "\n".join(lines)


MCMC_ROW = "MCMC (re-weighted)"
"""Table 4 row of the scan's chain records, weighted by multiplicity (:func:`crnet.evaluate.mocks.chain_weights`)."""

DESIGN_ROW = "Scan design (unweighted)"
"""Table 4 row of a first store that holds a design (Sobol, LHS, ...) rather than chains: no paper counterpart."""

ORACLE_ROW = "Unbiased-floor oracle"
"""Table 4 row of :func:`crnet.evaluate.floor.oracle_predictions` (no paper counterpart)."""

PAPER_ROW_OF: dict[str, str] = {"MCMC": MCMC_ROW, "Machine A": "Machine A", "Machine B": "Machine B",
                                 "Check Machine": "Check Machine"}
"""Row name before any ' (variant)' -> the paper's Table 4 row it is compared with (exact names only: a machine
called 'M' or 'Check' is not the paper's MCMC or Check Machine)."""


def _paper_key(name: str) -> str | None:
    return PAPER_ROW_OF.get(name.split(" (")[0])


def _num(value: float) -> str:
    return f"{value:.2f}" if np.isfinite(value) else "n/a"


def _pm(med: float, plus: float, minus: float) -> str:
    if not np.isfinite(med):
        return "n/a"
    return f"{med:+.2f} ± {plus:.2f}" if abs(plus - minus) < 0.005 else f"{med:+.2f} +{plus:.2f} -{minus:.2f}"
