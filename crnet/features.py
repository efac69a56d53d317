"""Network inputs and targets of the paper (Tsai, Chung, Yuan & Cheung, JCAP 2022, Sec. 4.3-4.4, Table 2).

Inputs: the eight spectra of Table 2 on the energy grid of the mocks (the paper's grid: 84 bins,
1e-3 ... 1.105e5 GeV/n, factor 1.25), computed from the normalisation-free fluxes

    N_Li = Phi_Li / xi_Li,  N_Be = Phi_Be / xi_Be,  N_B = Phi_B,  N_C = Phi_C,  N_O = Phi_O q_C / q_O,

where Phi are the data-matched fluxes (m^-2 s^-1 sr^-1 (GeV/n)^-1). With crnet.likelihood's convention
Phi_k = q_C s_k Phi_k^raw (s_Li = xi_Li, s_Be = xi_Be, s_O = q_O / q_C, s_B = s_C = 1) every N is
q_C Phi^raw: the species factors drop out but the overall scale q_C stays. The channels are

    0 Li/C = N_Li / (N_C / N_C^110)      3 Li/O = N_Li / N_O      6 C/C110 = N_C / N_C^110
    1 Be/C = N_Be / (N_C / N_C^110)      4 Be/O = N_Be / N_O      7 O/C110 = N_O / N_C^110
    2 B/C  = N_B  / (N_C / N_C^110)      5 B/O  = N_B  / N_O

(N_C^110 = carbon flux in the grid bin nearest to 110 GeV/n: bin 52 = 109.5 GeV/n on the paper grid,
as in the CR-ML code). Channels 0-2 are fluxes (they carry q_C; the paper's "A_p"), channels 3-7 are
scale free. The network sees log10 of each channel, standardised per (channel, energy bin) with
mean and standard deviation fitted on the training set (:class:`FeatureScaler`) - the CR-ML code's
hard-coded min/max constants are not used.

Targets: the 10 parameters of :data:`crprop.params.PARAM_NAMES`; the two breaks (MV) as log10(R/MV),
then every column scaled linearly to [0, 1] over the Table 1 prior box :data:`LOG_PRIOR_BOX`
(:class:`TargetTransform`). Both transforms are stored in the model file and inverted on output.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

from crprop.params import LOG_PARAM_NAMES, LOG_PRIOR_BOX, PARAM_NAMES

FEATURE_SPECIES: tuple[str, ...] = ("Li", "Be", "B", "C", "O")
"""Elements the features are built from, in the order of the ``(n, 5, n_E)`` flux arrays below."""

CHANNEL_NAMES: tuple[str, ...] = ("Li/C", "Be/C", "B/C", "Li/O", "Be/O", "B/O", "C/C110", "O/C110")
"""The eight input spectra of Table 2, in the order of the feature arrays' channel axis."""

N_CHANNELS = len(CHANNEL_NAMES)

PAPER_GRID_E_MIN_GEV_PER_N = 1.0e-3
"""Lowest energy of the paper's grid (galdef Ekin_min = 1 MeV/n), GeV/n."""

PAPER_GRID_FACTOR = 1.25
"""Ratio of neighbouring energies of the paper's grid (galdef Ekin_factor)."""

PAPER_GRID_N_BINS = 84
"""Number of energies of the paper's grid (1e-3 ... 1.105e5 GeV/n)."""

C_NORM_ENERGY_GEV_PER_N = 110.0
"""Energy of the carbon normalisation point N_C^110 (Table 2), GeV/n; the nearest grid bin is used."""

STD_FLOOR = 1e-8
"""A (channel, bin) whose training-set standard deviation of log10 is below this (e.g. C/C110 at the
normalisation bin, identically 0) is only centred (divided by 1) instead of blown up."""

GRID_RTOL = 1e-6
"""Relative tolerance when comparing energy grids (the stores keep float64 grids; this allows a
float32 round trip and nothing physically different)."""


def paper_energy_grid() -> np.ndarray:
    """The paper's 84 kinetic energies per nucleon, 1e-3 x 1.25^k GeV/n (k = 0..83)."""
    return PAPER_GRID_E_MIN_GEV_PER_N * PAPER_GRID_FACTOR ** np.arange(PAPER_GRID_N_BINS)


def c_norm_index(energies_gev_per_n: np.ndarray) -> int:
    """Index of the grid bin nearest (in log E) to :data:`C_NORM_ENERGY_GEV_PER_N`.

    Raises ValueError when 110 GeV/n lies outside the grid (the normalisation point must be measured).
    """
    e = np.asarray(energies_gev_per_n, dtype=np.float64)
    if e.ndim != 1 or e.size < 2 or np.any(e <= 0) or np.any(np.diff(e) <= 0):
        raise ValueError("energy grid must be 1-D, positive and strictly increasing (GeV/n)")
    if not e[0] <= C_NORM_ENERGY_GEV_PER_N <= e[-1]:
        raise ValueError(f"the carbon normalisation energy {C_NORM_ENERGY_GEV_PER_N} GeV/n lies outside the "
                         f"grid [{e[0]:.4g}, {e[-1]:.4g}] GeV/n")
    return int(np.argmin(np.abs(np.log(e) - np.log(C_NORM_ENERGY_GEV_PER_N))))


def check_same_grid(expected: np.ndarray, got: np.ndarray, what: str = "input") -> None:
    """Raise ValueError unless ``got`` equals ``expected`` (both GeV/n) within :data:`GRID_RTOL`."""
    expected = np.asarray(expected, dtype=np.float64)
    got = np.asarray(got, dtype=np.float64)
    if expected.shape != got.shape or not np.allclose(got, expected, rtol=GRID_RTOL, atol=0.0):
        raise ValueError(
            f"{what} energy grid ({got.size} bins, {got.min():.4g} ... {got.max():.4g} GeV/n) differs from the "
            f"model's grid ({expected.size} bins, {expected.min():.4g} ... {expected.max():.4g} GeV/n); the "
            "network only accepts spectra on the grid it was trained on")


def _per_model(value: np.ndarray | float, n: int, name: str) -> np.ndarray:
    arr = np.broadcast_to(np.asarray(value, dtype=np.float64), (n,)) if np.ndim(value) == 0 else \
        np.asarray(value, dtype=np.float64)
    if arr.shape != (n,):
        raise ValueError(f"{name} must be a scalar or have shape ({n},), got {arr.shape}")
    if not np.all(np.isfinite(arr)) or np.any(arr <= 0):
        raise ValueError(f"{name} must be finite and > 0")
    return arr


def _check_flux(flux: np.ndarray, name: str) -> np.ndarray:
    arr = np.asarray(flux, dtype=np.float64)
    if arr.ndim != 3 or arr.shape[1] != len(FEATURE_SPECIES):
        raise ValueError(f"{name} must have shape (n_models, {len(FEATURE_SPECIES)} = {FEATURE_SPECIES}, n_E), "
                         f"got {arr.shape}")
    return arr


def apply_normalisations(raw_flux: np.ndarray, q_c: np.ndarray | float, xi_li: np.ndarray | float,
                         xi_be: np.ndarray | float, o_over_c: np.ndarray | float) -> np.ndarray:
    """Data-matched fluxes Phi from normalisation-free model fluxes (crnet.likelihood's convention).

    ``raw_flux`` (n, 5, n_E) Li, Be, B, C, O in m^-2 s^-1 sr^-1 (GeV/n)^-1; ``q_c`` overall scale,
    ``xi_li``, ``xi_be`` and ``o_over_c`` = q_O/q_C the species factors (dimensionless, scalars or (n,)).
    Returns Phi = q_C s_k Phi^raw, same shape and unit.
    """
    raw = _check_flux(raw_flux, "raw_flux")
    n = raw.shape[0]
    q = _per_model(q_c, n, "q_c")
    scale = np.stack([q * _per_model(xi_li, n, "xi_li"), q * _per_model(xi_be, n, "xi_be"), q, q,
                      q * _per_model(o_over_c, n, "o_over_c")], axis=1)
    return raw * scale[:, :, None]


def remove_normalisations(flux: np.ndarray, xi_li: np.ndarray | float, xi_be: np.ndarray | float,
                          o_over_c: np.ndarray | float) -> np.ndarray:
    """Table 2's N from data-matched Phi: N_Li = Phi_Li/xi_Li, N_Be = Phi_Be/xi_Be, N_O = Phi_O q_C/q_O.

    Shapes and units as :func:`apply_normalisations` (B and C unchanged).
    """
    phi = _check_flux(flux, "flux")
    n = phi.shape[0]
    div = np.stack([_per_model(xi_li, n, "xi_li"), _per_model(xi_be, n, "xi_be"), np.ones(n), np.ones(n),
                    _per_model(o_over_c, n, "o_over_c")], axis=1)
    return phi / div[:, :, None]


def ratio_spectra(n_flux: np.ndarray, energies_gev_per_n: np.ndarray) -> np.ndarray:
    """The eight Table 2 spectra (n, 8, n_E) from normalisation-free fluxes ``n_flux`` (n, 5, n_E).

    Channels 0-2 are in the unit of the fluxes (m^-2 s^-1 sr^-1 (GeV/n)^-1), 3-7 are dimensionless;
    see the module docstring for the definitions.
    """
    nf = _check_flux(n_flux, "n_flux")
    e = np.asarray(energies_gev_per_n, dtype=np.float64)
    if nf.shape[2] != e.size:
        raise ValueError(f"fluxes have {nf.shape[2]} energies, the grid has {e.size}")
    li, be, b, c, o = (nf[:, k, :] for k in range(5))
    c110 = c[:, c_norm_index(e)][:, None]
    with np.errstate(divide="ignore", invalid="ignore"):
        c_shape = c / c110
        out = np.stack([li / c_shape, be / c_shape, b / c_shape, li / o, be / o, b / o, c_shape, o / c110], axis=1)
    return out


CHANNEL_FROM_ELEMENTS = np.array([  # log10 channel = sum_X M[ch, X] log10 N_X (+ the N_C^110 column below)
    [1, 0, 0, -1, 0], [0, 1, 0, -1, 0], [0, 0, 1, -1, 0],
    [1, 0, 0, 0, -1], [0, 1, 0, 0, -1], [0, 0, 1, 0, -1],
    [0, 0, 0, 1, 0], [0, 0, 0, 0, 1]], dtype=np.float64)
CHANNEL_FROM_C110 = np.array([1, 1, 1, 0, 0, 0, -1, -1], dtype=np.float64)
"""log10 channel = CHANNEL_FROM_ELEMENTS @ log10 N_X (Li, Be, B, C, O) + CHANNEL_FROM_C110 * log10 N_C^110."""


def channel_log_shift(element_log_shift: np.ndarray, energies_gev_per_n: np.ndarray) -> np.ndarray:
    """Shift (n, 8, n_E) of the log10 Table 2 channels when log10 N_X of Li, Be, B, C, O shifts by
    ``element_log_shift`` (n, 5, n_E) (e.g. log10(1 + eps) of a pseudo-experiment's relative fluctuations).

    Exact: every channel is a ratio of element fluxes (and of N_C^110, the carbon bin at 110 GeV/n), so its
    log10 is the same linear combination of the elements' log10 shifts.
    """
    d = np.asarray(element_log_shift, dtype=np.float64)
    if d.ndim != 3 or d.shape[1] != len(FEATURE_SPECIES):
        raise ValueError(f"element_log_shift must have shape (n, {len(FEATURE_SPECIES)}, n_E), got {d.shape}")
    c110 = d[:, 3, c_norm_index(energies_gev_per_n)]
    return np.einsum("ce,nek->nck", CHANNEL_FROM_ELEMENTS, d) + CHANNEL_FROM_C110[None, :, None] * c110[:, None, None]


def log_features(ratios: np.ndarray) -> np.ndarray:
    """log10 of the ratio spectra; raises ValueError naming the first model with a non-positive or
    non-finite entry (the fluxes of every feature species must be > 0 on the whole grid)."""
    arr = np.asarray(ratios, dtype=np.float64)
    bad = ~np.isfinite(arr) | (arr <= 0)
    if bad.any():
        m, ch, k = np.argwhere(bad)[0]
        raise ValueError(f"model {m}: channel {CHANNEL_NAMES[ch]} bin {k} is {arr[m, ch, k]!r}; features need "
                         f"finite fluxes > 0 of {FEATURE_SPECIES} on the whole grid")
    return np.log10(arr)


def features_from_raw(raw_flux: np.ndarray, q_c: np.ndarray | float, energies_gev_per_n: np.ndarray,
                      strict: bool = True) -> tuple[np.ndarray, np.ndarray]:
    """log10 Table 2 features (n, 8, n_E) of store fluxes (before normalisations) and the overall scale q_C.

    N = q_C Phi^raw for every species (the species factors cancel, see the module docstring). With
    ``strict=False`` models with non-positive/non-finite entries get NaN features instead of an error.
    Returns (features, valid) with valid (n,) bool.
    """
    raw = _check_flux(raw_flux, "raw_flux")
    q = np.asarray(q_c, dtype=np.float64)
    q = np.broadcast_to(q, (raw.shape[0],)) if q.ndim == 0 else q
    ratios = ratio_spectra(raw * q[:, None, None], energies_gev_per_n)
    valid = np.all(np.isfinite(ratios) & (ratios > 0), axis=(1, 2)) & np.isfinite(q) & (q > 0)
    if strict:
        if not valid.all():
            log_features(ratios)  # raises with a message naming the model
            raise ValueError(f"model {int(np.argmin(valid))}: q_c must be finite and > 0")
        return np.log10(ratios), valid
    out = np.full(ratios.shape, np.nan)
    out[valid] = np.log10(ratios[valid])
    return out, valid


# ------------------------------------------------------------------------------------------ scaler
@dataclass
class MomentAccumulator:
    """Running sums for :meth:`FeatureScaler.fit` over chunks (float64, shift-stabilised)."""

    count: int = 0
    shift: np.ndarray | None = None
    s1: np.ndarray | None = None
    s2: np.ndarray | None = None

    def update(self, x: np.ndarray) -> None:
        """Add a chunk (n, ...) of log10 features."""
        x = np.asarray(x, dtype=np.float64)
        if x.shape[0] == 0:
            return
        if self.shift is None:
            self.shift = x[0].copy()
            self.s1 = np.zeros_like(self.shift)
            self.s2 = np.zeros_like(self.shift)
        d = x - self.shift
        self.s1 += d.sum(axis=0)
        self.s2 += (d * d).sum(axis=0)
        self.count += x.shape[0]

    def scaler(self) -> FeatureScaler:
        if self.count < 2 or self.shift is None:
            raise ValueError(f"need at least 2 training samples to fit the standardisation, got {self.count}")
        m1 = self.s1 / self.count
        var = np.maximum(self.s2 / self.count - m1 * m1, 0.0)
        return FeatureScaler.from_moments(self.shift + m1, np.sqrt(var))


@dataclass
class FeatureScaler:
    """z-score of log10 features per (channel, energy bin): z = (x - mean) / std."""

    mean: np.ndarray
    std: np.ndarray

    def __post_init__(self) -> None:
        self.mean = np.asarray(self.mean, dtype=np.float64)
        self.std = np.asarray(self.std, dtype=np.float64)
        if self.mean.shape != self.std.shape:
            raise ValueError(f"mean {self.mean.shape} and std {self.std.shape} shapes differ")
        if not (np.all(np.isfinite(self.mean)) and np.all(np.isfinite(self.std)) and np.all(self.std > 0)):
            raise ValueError("FeatureScaler needs finite mean and std > 0")

    @classmethod
    def from_moments(cls, mean: np.ndarray, std: np.ndarray) -> FeatureScaler:
        """From raw moments; std below :data:`STD_FLOOR` becomes 1 (centring only)."""
        std = np.where(std < STD_FLOOR, 1.0, std)
        return cls(mean, std)

    @classmethod
    def fit(cls, x: np.ndarray) -> FeatureScaler:
        """Fit on training features (n, 8, n_E)."""
        acc = MomentAccumulator()
        acc.update(x)
        return acc.scaler()

    def transform(self, x: np.ndarray) -> np.ndarray:
        x = np.asarray(x, dtype=np.float64)
        if x.shape[1:] != self.mean.shape:
            raise ValueError(f"features have shape {x.shape[1:]} per model, the scaler {self.mean.shape}")
        return (x - self.mean) / self.std

    def inverse(self, z: np.ndarray) -> np.ndarray:
        return np.asarray(z, dtype=np.float64) * self.std + self.mean


# ------------------------------------------------------------------------------------------ targets
@dataclass(frozen=True)
class TargetTransform:
    """Physical parameters (n, 10) in :data:`PARAM_NAMES` units <-> network targets in [0, 1].

    ``log_columns`` are mapped to log10 first (the breaks, MV); ``low``/``high`` are the box edges in the
    transformed space (default :data:`LOG_PRIOR_BOX`, Table 1). u = (v - low) / (high - low).
    """

    names: tuple[str, ...] = PARAM_NAMES
    log_columns: tuple[int, ...] = (8, 9)
    low: tuple[float, ...] = field(default_factory=lambda: tuple(LOG_PRIOR_BOX[n][0] for n in LOG_PARAM_NAMES))
    high: tuple[float, ...] = field(default_factory=lambda: tuple(LOG_PRIOR_BOX[n][1] for n in LOG_PARAM_NAMES))

    def __post_init__(self) -> None:
        if not (len(self.names) == len(self.low) == len(self.high)):
            raise ValueError("TargetTransform: names, low and high must have equal lengths")
        if any(not h > lo for lo, h in zip(self.low, self.high, strict=True)):
            raise ValueError("TargetTransform: every box needs high > low")
        if any(not 0 <= c < len(self.names) for c in self.log_columns):
            raise ValueError(f"TargetTransform: log_columns {self.log_columns} out of range")

    @property
    def n_outputs(self) -> int:
        return len(self.names)

    @property
    def transformed_names(self) -> tuple[str, ...]:
        """Column names in the transformed space ('log10_' prefixed for the log columns)."""
        return tuple(f"log10_{n}" if i in self.log_columns else n for i, n in enumerate(self.names))

    def _lo_width(self) -> tuple[np.ndarray, np.ndarray]:
        lo = np.asarray(self.low, dtype=np.float64)
        return lo, np.asarray(self.high, dtype=np.float64) - lo

    def to_log(self, params: np.ndarray) -> np.ndarray:
        """Physical -> log space (breaks as log10(R/MV)); raises on non-positive break values."""
        p = np.array(params, dtype=np.float64, ndmin=2)
        if p.shape[1] != self.n_outputs:
            raise ValueError(f"expected (n, {self.n_outputs}) parameters, got {p.shape}")
        cols = list(self.log_columns)
        if np.any(p[:, cols] <= 0):
            raise ValueError(f"columns {[self.names[c] for c in cols]} must be > 0 (log10 is taken)")
        p[:, cols] = np.log10(p[:, cols])
        return p

    def from_log(self, values: np.ndarray) -> np.ndarray:
        v = np.array(values, dtype=np.float64, ndmin=2)
        cols = list(self.log_columns)
        v[:, cols] = 10.0 ** v[:, cols]
        return v

    def forward(self, params: np.ndarray) -> np.ndarray:
        """Physical parameters (n, 10) -> scaled targets (n, 10), 0 and 1 at the box edges."""
        lo, width = self._lo_width()
        return (self.to_log(params) - lo) / width

    def inverse(self, scaled: np.ndarray, clip_to_box: bool = False) -> np.ndarray:
        """Scaled outputs (n, 10) -> physical parameters. ``clip_to_box`` only removes floating-point
        round-off for outputs already confined to [0, 1] (the crnet variant's sigmoid)."""
        lo, width = self._lo_width()
        log_space = lo + np.asarray(scaled, dtype=np.float64) * width
        if clip_to_box:
            log_space = np.clip(log_space, lo, lo + width)
        out = self.from_log(log_space)
        if clip_to_box:
            box_lo, box_hi = self.physical_box()
            out = np.clip(out, box_lo, box_hi)
        return out

    def physical_box(self) -> tuple[np.ndarray, np.ndarray]:
        """(low, high) of the box in physical units (breaks back in MV)."""
        return self.from_log(np.asarray(self.low))[0], self.from_log(np.asarray(self.high))[0]

    def outside_box(self, params: np.ndarray) -> np.ndarray:
        """(n, 10) bool: physical parameter outside the closed box."""
        lo, hi = self.physical_box()
        p = np.asarray(params, dtype=np.float64)
        return (p < lo) | (p > hi) | ~np.isfinite(p)

    def to_dict(self) -> dict:
        return {"names": list(self.names), "log_columns": list(self.log_columns), "low": list(self.low),
                "high": list(self.high)}

    @classmethod
    def from_dict(cls, d: dict) -> TargetTransform:
        return cls(tuple(d["names"]), tuple(int(c) for c in d["log_columns"]), tuple(map(float, d["low"])),
                   tuple(map(float, d["high"])))


def r2_score(truth: np.ndarray, pred: np.ndarray) -> np.ndarray:
    """Coefficient of determination per column: 1 - sum (t - p)^2 / sum (t - mean t)^2."""
    t = np.asarray(truth, dtype=np.float64)
    p = np.asarray(pred, dtype=np.float64)
    ss_res = ((t - p) ** 2).sum(axis=0)
    ss_tot = ((t - t.mean(axis=0)) ** 2).sum(axis=0)
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(ss_tot > 0, 1.0 - ss_res / ss_tot, np.nan)


def relative_change(theta: np.ndarray, theta_prime: np.ndarray,
                    transform: TargetTransform | None = None) -> np.ndarray:
    """(n, 10) (theta' - theta) / |theta| per parameter with the breaks as log10(R/MV): the paper's tau (Eq. 4.4,
    Table 3; crnet.feedback.tau). A 1 % change of R_br in MV is ~0.14 % of log10 R_br ~ 3.1 (log10(1.01) / 3.1).
    Rows of theta' with a non-finite entry are NaN.

    Divided by |theta| rather than theta (the paper's Eq. 4.4 as printed): the two agree wherever theta > 0, which
    is every parameter but eta, whose prior box [-4, 4] holds negative values. There Eq. 4.4 flips the sign, and an
    upward shift of eta printed as a negative median in Table 3 (review by helper-83, session 21: theta' above theta
    in all three closure tests of the example run, Table 3 eta -441 %). |tau|, and so the feedback stop rule, is the
    same either way. Near theta = 0 (eta, and v_A and nu1 at their box edge) tau stays large: it is relative."""
    transform = transform or TargetTransform()
    finite = np.all(np.isfinite(theta_prime), axis=1)
    a, b = transform.to_log(theta), transform.to_log(np.where(finite[:, None], theta_prime, 1.0))
    with np.errstate(divide="ignore", invalid="ignore"):
        out = (b - a) / np.abs(a)
    out[~finite] = np.nan
    return out


def regression_metrics(transform: TargetTransform, truth: np.ndarray, pred: np.ndarray) -> dict[str, dict]:
    """Per-parameter metrics of physical predictions against truth (both (n, 10), physical units).

    r2: R^2 in the transformed space (log10 for the breaks); rel_err_median / rel_err_mean:
    abs(:func:`relative_change`) (the paper's |tau|, Eq. 4.4); frac_outside_box: share of predictions outside the
    prior box.
    """
    truth = np.asarray(truth, dtype=np.float64)
    pred = np.asarray(pred, dtype=np.float64)
    r2 = r2_score(transform.to_log(truth), transform.to_log(pred))
    rel = np.abs(relative_change(truth, pred, transform))
    outside = transform.outside_box(pred)
    return {name: {"r2": float(r2[i]), "rel_err_median": float(np.nanmedian(rel[:, i])),
                   "rel_err_mean": float(np.nanmean(rel[:, i])), "frac_outside_box": float(outside[:, i].mean())}
            for i, name in enumerate(transform.names)}


def species_rows(species: Sequence[str], wanted: Sequence[str] = FEATURE_SPECIES) -> list[int]:
    """Row index of each ``wanted`` element in a store's ``species`` list; clear error when missing."""
    labels = [str(s) for s in species]
    missing = [w for w in wanted if w not in labels]
    if missing:
        raise ValueError(f"species {missing} are missing (have {labels}); the features need {list(wanted)}")
    return [labels.index(w) for w in wanted]
