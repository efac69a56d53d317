"""Figures 5-7 of the paper as PNG files (matplotlib, Agg backend).

* Fig. 5 :func:`tau_histograms`: histograms of tau (Eq. 4.4) per parameter, one colour per machine;
* Fig. 6 :func:`profile_1d`: 1D profile likelihood, Delta chi^2_tot = min over the other parameters (per bin
  of the shown one) of the collected mocks, with the paper's 3/4/5 sigma lines (14 dof) and the machines'
  re-simulated predictions as points;
* Fig. 7 :func:`allowed_2d`: the paper's 3 sigma and 6 sigma allowed regions (Delta chi^2_tot 33.20 and 69.95;
  the paper prints 69.91)
  of the collected mocks in a parameter plane, with up to 100 predictions per machine overlaid, as in the paper.

Parameters are in PARAM_NAMES units (D0 in 1e28 cm^2/s, z_h in kpc, breaks in MV - shown on log axes).
"""

from __future__ import annotations

import itertools
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from crnet.evaluate.tables import finite_tau_columns  # noqa: E402
from crnet.likelihood import delta_chi2_threshold  # noqa: E402
from crprop.params import LOG_PARAM_NAMES, PARAM_NAMES, PARAM_UNITS  # noqa: E402

PROFILE_PARAMS: tuple[str, ...] = ("d0_1e28_cm2_s", "z_halo_kpc", "nu1", "r_break1_mv")
"""The parameters of the paper's Fig. 6."""

PLANES: tuple[tuple[str, str], ...] = (("d0_1e28_cm2_s", "z_halo_kpc"), ("nu1", "r_break1_mv"))
"""The parameter planes of the paper's Fig. 7."""

PROFILE_BINS = 30
"""Bins of the shown parameter in the 1D profile."""

TAU_HIST_BINS = 40
TAU_MIN_SPAN_PERCENT = 1e-3
"""Narrowest histogram range of tau, percent: a (near-)constant tau (an untrained machine predicting one point)
is drawn in a +-1e-3 % window instead of failing."""
LOG_AXES = ("r_break1_mv", "r_break2_mv")
DPI = 110
FIG6_SIGMA_LINES: tuple[int, int, int] = (3, 4, 5)
"""Confidence levels drawn as horizontal lines in Fig. 6 (the paper's "CI for 3 sigma, 4 sigma and 5 sigma")."""
FIG7_SIGMA_REGIONS: tuple[int, int] = (3, 6)
"""Inner and outer allowed regions of Fig. 7 (the paper's 3 sigma, Delta chi^2_tot 33.20, and 6 sigma, 69.95)."""
FIG7_PREDICTIONS = 100
"""Predictions per machine overlaid in Fig. 7 (the paper shows 100 of each)."""
FIG7_PREDICTION_STYLES: tuple[tuple[str, str], ...] = (("tab:red", "o"), ("k", "x"), ("tab:purple", "^"),
                                                       ("tab:brown", "s"))
"""(colour, marker) of each machine's predictions in Fig. 7, in order: the paper's red circles (Machine A) and
black crosses (Machine B) first, never the colours of the allowed regions."""


def _label(name: str) -> str:
    unit = PARAM_UNITS.get(name, "")
    return f"{name} [{unit}]" if unit else name


def tau_histograms(taus: dict[str, np.ndarray], out: Path | str) -> Path:
    """Fig. 5: histograms (percent) of tau (n, 10) per machine; returns the PNG path. Each panel shows the
    finite tau of its parameter (:func:`crnet.evaluate.tables.finite_tau_columns`, Table 3's rule)."""
    columns = {name: finite_tau_columns(t) for name, t in taus.items()}
    fig, axes = plt.subplots(2, 5, figsize=(16, 6))
    for j, ax in enumerate(axes.ravel()):
        clipped = False  # a panel whose axis cuts off predictions gets its own legend saying how many
        for name, cols in columns.items():
            v = 100.0 * cols[j]
            if v.size:
                lo, hi = np.percentile(v, [1, 99])
                if hi - lo < TAU_MIN_SPAN_PERCENT:  # (near-)constant tau: numpy cannot make 40 finite bins
                    lo, hi = lo - TAU_MIN_SPAN_PERCENT, hi + TAU_MIN_SPAN_PERCENT
                n_out = int(np.count_nonzero((v < lo) | (v > hi)))
                clipped |= n_out > 0
                label = name if not n_out else f"{name} ({n_out} beyond the axis, in the edge bins)"
                ax.hist(np.clip(v, lo, hi), bins=TAU_HIST_BINS, range=(lo, hi), histtype="step", label=label,
                        density=True)
        ax.set_xlabel(f"tau({LOG_PARAM_NAMES[j]}) [%]")
        if clipped:
            ax.legend(fontsize=6)
    axes[0, 0].legend(fontsize=7)
    fig.tight_layout()
    return _save(fig, out)


PREDICTION_STYLES: tuple[str, ...] = ("--", "-.", (0, (5, 1, 1, 1, 1, 1)), (0, (1, 1)))
"""Line styles of the machines' profile curves in Fig. 6 (the paper: Machine A dashed, Machine B dash-dotted)."""


def _delta(chi2: np.ndarray, chi2_min: float) -> np.ndarray:
    return np.where(np.isfinite(chi2), chi2 - chi2_min, np.inf)


def profile_curve(x: np.ndarray, delta_chi2: np.ndarray, edges: np.ndarray) -> np.ndarray:
    """Profile likelihood along one parameter: the smallest finite Delta chi^2 (n,) of the points whose values
    ``x`` (n,) fall in each bin of ``edges`` (n_bins + 1,), NaN for a bin without one. Points outside the edges
    are left out (a machine's predictions can leave the mocks' range)."""
    x, d = np.asarray(x, dtype=np.float64), np.asarray(delta_chi2, dtype=np.float64)
    n_bins = edges.size - 1
    inside = (x >= edges[0]) & (x <= edges[-1]) & np.isfinite(d)
    which = np.clip(np.searchsorted(edges, x[inside], side="right") - 1, 0, n_bins - 1)
    prof = np.full(n_bins, np.inf)
    np.minimum.at(prof, which, d[inside])
    return np.where(np.isfinite(prof), prof, np.nan)


def profile_1d(params: np.ndarray, chi2: np.ndarray, chi2_min: float, predictions: dict[str, tuple[np.ndarray,
               np.ndarray]], out: Path | str, n_initial: int | None = None) -> Path:
    """Fig. 6: 1D profile Delta chi^2 (:func:`profile_curve`) for PROFILE_PARAMS of the mocks (params (N, 10),
    chi2 (N,)) and of each machine's re-simulated predictions {machine: (params (n, 10), chi2 (n,))}, drawn as
    curves over the mocks' bins with the predictions also as faint points. ``n_initial``: the first rows are the
    initial scan; when they are not all the rows, its profile (grey, thick) is drawn beside that of all mocks
    (red: scan and feedback re-simulations), as the paper's Fig. 6."""
    fig, axes = plt.subplots(2, 2, figsize=(10, 8))
    d = _delta(chi2, chi2_min)
    for ax, name in zip(axes.ravel(), PROFILE_PARAMS, strict=True):
        j = PARAM_NAMES.index(name)
        x = params[:, j]
        log = name in LOG_AXES
        edges = np.geomspace(x.min(), x.max(), PROFILE_BINS + 1) if log else np.linspace(x.min(), x.max(),
                                                                                          PROFILE_BINS + 1)
        centres = np.sqrt(edges[1:] * edges[:-1]) if log else 0.5 * (edges[1:] + edges[:-1])
        if n_initial is not None and 0 < n_initial < x.size:
            ax.step(centres, profile_curve(x[:n_initial], d[:n_initial], edges), where="mid", color="grey", lw=3,
                    label="initial scan (profile)")
            ax.step(centres, profile_curve(x, d, edges), where="mid", color="r", label="all mocks (profile)")
        else:
            ax.step(centres, profile_curve(x, d, edges), where="mid", color="k", label="mocks (profile)")
        for (mname, (p, c)), style in zip(predictions.items(), itertools.cycle(PREDICTION_STYLES)):
            dc = _delta(c, chi2_min)
            ok = np.isfinite(dc)
            line = ax.step(centres, profile_curve(p[:, j], dc, edges), where="mid", ls=style,
                           label=f"{mname} (profile of re-simulated predictions)")[0]
            ax.plot(p[ok, j], dc[ok], ".", ms=2, alpha=0.25, color=line.get_color())
        for s, style in zip(FIG6_SIGMA_LINES, (":", "--", "-."), strict=True):
            ax.axhline(delta_chi2_threshold(s), ls=style, color="grey", lw=0.8,
                       label=f"{s} sigma (Delta chi2 {delta_chi2_threshold(s):.1f}, 14 dof)")
        ax.set_xscale("log" if log else "linear")
        ax.set_yscale("symlog", linthresh=10.0)
        ax.set_ylim(bottom=0.0)  # Delta chi2 >= 0: no axis for negative values
        ax.set_xlabel(_label(name))
        ax.set_ylabel("Delta chi2_tot")
    axes[0, 0].legend(fontsize=7)
    fig.tight_layout()
    return _save(fig, out)


def allowed_2d(params: np.ndarray, chi2: np.ndarray, chi2_min: float,
               predictions: dict[str, np.ndarray], out: Path | str) -> Path:
    """Fig. 7: mocks within the inner and outer FIG7_SIGMA_REGIONS in PLANES, the first FIG7_PREDICTIONS
    predictions {machine: params (n, 10)} of each machine overlaid."""
    fig, axes = plt.subplots(1, len(PLANES), figsize=(6 * len(PLANES), 5))
    d = _delta(chi2, chi2_min)
    s_in, s_out = FIG7_SIGMA_REGIONS
    t_in, t_out = delta_chi2_threshold(s_in), delta_chi2_threshold(s_out)
    for ax, (a, b) in zip(np.atleast_1d(axes), PLANES, strict=True):
        i, j = PARAM_NAMES.index(a), PARAM_NAMES.index(b)
        ax.plot(params[:, i], params[:, j], ".", color="0.85", ms=2, label="all mocks")
        outer = (d > t_in) & (d <= t_out)
        ax.plot(params[outer, i], params[outer, j], ".", color="tab:blue", ms=3, label=f"{s_in}-{s_out} sigma")
        inner = d <= t_in
        ax.plot(params[inner, i], params[inner, j], ".", color="tab:green", ms=3, label=f"<= {s_in} sigma")
        for k, (mname, p) in enumerate(predictions.items()):
            colour, marker = FIG7_PREDICTION_STYLES[k % len(FIG7_PREDICTION_STYLES)]
            ax.plot(p[:FIG7_PREDICTIONS, i], p[:FIG7_PREDICTIONS, j], marker, ms=4, mfc="none", mec=colour,
                    alpha=0.7, label=mname)
        ax.set_xscale("log" if a in LOG_AXES else "linear")
        ax.set_yscale("log" if b in LOG_AXES else "linear")
        ax.set_xlabel(_label(a))
        ax.set_ylabel(_label(b))
    np.atleast_1d(axes)[0].legend(fontsize=7)
    fig.tight_layout()
    return _save(fig, out)


def _save(fig, out: Path | str) -> Path:
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=DPI)
    plt.close(fig)
    return out
