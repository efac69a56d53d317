"""chi^2 of propagated spectra against a measured data set, normalisations profiled exactly.

Definitions (Tsai, Chung, Yuan & Cheung, JCAP 2022 = "the paper"; CR-ML = its code, read at
alan200276/CR-ML: ``Calculate_Chi_Square``, ``ReCalculateAp``, ``ReCalculateN``)
------------------------------------------------------------------------------------------------
Input spectra Phi_k(E) (``Spectra``, m^-2 s^-1 sr^-1 (GeV/n)^-1 on E in GeV/n) are the unmodulated
(LIS) fluxes of one propagation model. For a data block of species k the model prediction is

    M_k(E_j) = s_k * Phi_k(E_j),      Phi_k interpolated linearly in (log E, log Phi),

where Phi_k is force-field modulated (``Spectra.modulate``, phi in MV) first for top-of-atmosphere
blocks. The species scales are built from the paper's four normalisation parameters (Sec. 2, 4.3):

    s_C = s_B = q_C                   (q_C: overall normalisation, free, q_C >= 0)
    s_Li = q_C * xi_Li,  s_Be = q_C * xi_Be,  s_O = q_C * (q_O/q_C)

q_C multiplies every species: GALPROP/crprop normalise the proton flux, so the absolute nuclear
normalisation (the carbon source abundance; CR-ML's re-fitted "A_p") is free. xi_Li and xi_Be are the
fragmentation cross-section factors and q_O/q_C the O-to-C source ratio relative to the input
spectra; each multiplies its species on top of q_C. This is Table 2 read with Phi = data-matched flux
and N = normalisation-free input: N_Li = Phi_Li / xi_Li, N_Be = Phi_Be / xi_Be, N_O = Phi_O q_C / q_O,
and it is what CR-ML does (``Li * N_Li * ap``, ``O * N_O * ap``, ``B * ap``, ``C * ap``). The three
ratios are bounded to [0.8, 1.2] by default — the paper's "normalisations may differ by up to 20 % due
to fragmentation cross sections" and CR-ML's scan range ``np.linspace(0.8, 1.2, ...)``; bounds are
configurable. Any other species (N, Ne, ...) scales with q_C alone.

    chi2_tot  = sum over blocks and points of ((M_k(E_j) - F_j) / sigma_j)^2         (Eq. 4.3)
    sigma_j   = sqrt(stat^2 + sys^2)   (CR-ML convention, see ``crnet.data.dataset``)
    chi2_scan = chi2_tot / 10                                                       (Eq. 4.1)

Profiling is exact, not a grid scan: with a_k = sum Phi^2/sigma^2, b_k = sum Phi F/sigma^2 per
species, chi^2 is a convex quadratic in (q_C, s_Li, s_Be, s_O) over the polyhedral cone
{q_C >= 0, lo q_C <= s_k <= hi q_C}. Its minimum is the best feasible one among the minimisers of
every face (each ratio free / at its lower / at its upper bound: 3^3 closed-form candidates, plus the
apex q_C = 0), evaluated vectorised over models. A nuisance phi (top-of-atmosphere data sets) is
profiled numerically: one modulation period by a grid over its bounds, then bounded Brent per model; several
periods jointly, by a grid per phi, then bounded Powell per model (``Chi2Result.phi_converged``).

Differences from CR-ML, by design: q_C is free (CR-ML scans A_p on a grid in [0.383, 1.402]); the
minimum is exact instead of a grid scan (200-1000 points per ratio, depending on the CR-ML version);
the model is interpolated log-log instead of with a linear-space cubic spline
(``interpolation="cubic"`` reproduces CR-ML's choice; it changes chi^2 by ~1 %); and CR-ML fits A_p
first and the ratios afterwards, whereas all four are profiled jointly here (never worse).

Delta chi^2 thresholds of the paper (14 free parameters): ``delta_chi2_threshold(n_sigma)`` is the
chi^2_14 quantile at the two-sided Gaussian n-sigma tail erfc(n/sqrt 2): 1 sigma 15.94, 3 sigma
33.20, 4 sigma 43.82, 6 sigma 69.95. The paper prints 69.91 for 6 sigma, which is the quantile at the
tail rounded to 2e-9 (the exact tail is 1.973e-9); CR-ML's code types 70.
"""

from __future__ import annotations

import itertools
import math
import warnings
from collections.abc import Mapping
from dataclasses import dataclass, field

import numpy as np
from scipy import interpolate, optimize, special, stats

from crnet.data import DataBlock, Dataset, Modulation, get_dataset
from crprop.spectra import SYMBOL_TO_Z, Spectra

RATIO_PARAMETERS: dict[str, str] = {"Li": "xi_Li", "Be": "xi_Be", "O": "qO_over_qC"}
"""Species with their own bounded scale factor (on top of q_C) and the parameter's name."""

DEFAULT_NORM_BOUNDS: tuple[float, float] = (0.8, 1.2)
"""Bounds of xi_Li, xi_Be and q_O/q_C (paper Sec. 2: up to 20 % from cross sections; CR-ML scan range)."""

CHI2_SCAN_FACTOR: float = 10.0
"""chi2_scan = chi2_tot / 10 (paper Eq. 4.1: errors inflated by sqrt(10) in the MCMC scan)."""

N_FREE_PARAMETERS: int = 14
"""Free parameters of the paper's scan (5 propagation + 5 source shape + 4 normalisations)."""

FEASIBILITY_RTOL: float = 1e-12
"""Relative slack when testing whether a face minimiser satisfies lo*q <= s <= hi*q (rounding only)."""

PHI_GRID_POINTS: int = 25
"""Grid points over the phi bounds before Brent refinement of a nuisance phi."""

PHI_XATOL_MV: float = 1e-3
"""Absolute tolerance (MV) of the bounded Brent refinement of a nuisance phi."""

PHI_POWELL_XTOL: float = 1e-6
"""Relative tolerance on the phi vector of the joint (Powell) refinement when a data set has several nuisance
periods: 1e-6 of ~500 MV is ~5e-4 MV, the same scale as PHI_XATOL_MV for one period."""

PHI_POWELL_FTOL: float = 1e-10
"""Relative tolerance on chi^2 of that refinement (chi^2 ~ 1e2-1e3, so ~1e-8-1e-7 absolute; far below any
Delta chi^2 that matters, 1 sigma = 15.9)."""

PHI_POWELL_MAXFEV_PER_PERIOD: int = 400
"""Evaluation budget of the Powell refinement per nuisance phi; a model that exhausts it is flagged in
``Chi2Result.phi_converged`` and reported by a warning."""

LOG_FLUX_FLOOR: float = 1e-300
"""Fluxes are floored here before taking logs for the log-log interpolation (zero flux stays ~0)."""

INTERPOLATIONS: tuple[str, ...] = ("loglog", "cubic")
"""'loglog': linear in (log E, log flux), the crnet default; 'cubic': CR-ML's interp1d(kind='cubic')
in linear (E, flux)."""


def delta_chi2_threshold(n_sigma: float, dof: int = N_FREE_PARAMETERS) -> float:
    """Delta chi^2 enclosing the two-sided Gaussian n-sigma probability for ``dof`` parameters."""
    return float(stats.chi2.isf(special.erfc(n_sigma / math.sqrt(2.0)), dof))


CONFIDENCE_THRESHOLDS: dict[int, float] = {n: delta_chi2_threshold(n) for n in range(1, 7)}
"""Delta chi^2 for 1..6 sigma with 14 dof (3: 33.20, 4: 43.82, 6: 69.91)."""


def chi2_scan(chi2_tot: np.ndarray | float) -> np.ndarray | float:
    """The MCMC-driving statistic of the paper, chi2_tot / 10 (Eq. 4.1)."""
    return chi2_tot / CHI2_SCAN_FACTOR


# ---------------------------------------------------------------------------------------- solver
def profile_normalisations(
    a_free: np.ndarray,
    b_free: np.ndarray,
    a_ratio: np.ndarray,
    b_ratio: np.ndarray,
    lo: np.ndarray,
    hi: np.ndarray,
) -> tuple[np.ndarray, np.ndarray]:
    """Exact minimiser of the normalisation part of chi^2, batched over models.

    Minimises  a_free q^2 - 2 b_free q + sum_k (a_k (q r_k)^2 - 2 b_k q r_k)  over q >= 0 and
    lo_k <= r_k <= hi_k (constant terms dropped).

    Parameters
    ----------
    a_free, b_free : (n,) sums over the species scaled by q alone
        (a = sum Phi^2 / sigma^2, b = sum Phi F / sigma^2).
    a_ratio, b_ratio : (n, K) the same for the K species with a bounded ratio r_k (every a_k > 0).
    lo, hi : (K,) bounds, 0 < lo <= hi.

    Returns
    -------
    q : (n,) optimal overall scale; r : (n, K) optimal ratios (r = clip(1) where q = 0).
    """
    a_free, b_free = np.asarray(a_free, float), np.asarray(b_free, float)
    a_r, b_r = np.atleast_2d(np.asarray(a_ratio, float)), np.atleast_2d(np.asarray(b_ratio, float))
    lo, hi = np.asarray(lo, float), np.asarray(hi, float)
    n, k = a_r.shape
    if (
        a_free.shape != (n,)
        or b_free.shape != (n,)
        or b_r.shape != (n, k)
        or lo.shape != (k,)
        or hi.shape != (k,)
    ):
        raise ValueError("profile_normalisations: inconsistent shapes")
    if np.any(lo <= 0) or np.any(hi < lo):
        raise ValueError(f"normalisation bounds must satisfy 0 < lo <= hi, got lo={lo}, hi={hi}")
    if np.any(a_r <= 0):
        raise ValueError("profile_normalisations: every bounded species needs data (a_k > 0)")
    # apex q = 0: objective 0, always feasible
    best_f = np.zeros(n)
    best_q = np.zeros(n)
    best_s = np.zeros((n, k))
    s_free = b_r / a_r  # unconstrained optimum of each bounded species' own scale
    for state in itertools.product((0, 1, 2), repeat=k):  # 0 free, 1 at lower bound, 2 at upper bound
        st = np.asarray(state, dtype=int)
        bound = st > 0
        rho = np.where(st == 1, lo, hi)
        big_a = a_free + (a_r[:, bound] * rho[bound] ** 2).sum(axis=1)
        big_b = b_free + (b_r[:, bound] * rho[bound]).sum(axis=1)
        if bound.any():
            q = big_b / big_a
        else:
            # all ratios free: q enters only through the free species; if there are none, any q with
            # lo q <= s_k <= hi q is optimal - take the smallest such q.
            with np.errstate(divide="ignore", invalid="ignore"):
                q_min = np.max(s_free / hi, axis=1) if k else np.zeros(n)
                q = np.where(a_free > 0, big_b / np.where(a_free > 0, a_free, 1.0), q_min)
        s = np.where(bound, rho * q[:, None], s_free)
        ok = q >= 0
        if (~bound).any():
            sf, qf = s[:, ~bound], q[:, None]
            ok &= np.all(
                (sf >= lo[~bound] * qf * (1 - FEASIBILITY_RTOL))
                & (sf <= hi[~bound] * qf * (1 + FEASIBILITY_RTOL)),
                axis=1,
            )
        f = a_free * q * q - 2 * b_free * q
        f = f + (a_r * s * s - 2 * b_r * s).sum(axis=1)
        take = ok & (f < best_f)
        best_f = np.where(take, f, best_f)
        best_q = np.where(take, q, best_q)
        best_s = np.where(take[:, None], s, best_s)
    with np.errstate(divide="ignore", invalid="ignore"):
        r = np.where(best_q[:, None] > 0, best_s / best_q[:, None], 1.0)
    return best_q, np.clip(r, lo, hi)


# ---------------------------------------------------------------------------------------- model
def interpolate_spectra(
    e_model: np.ndarray,
    flux: np.ndarray,
    e_data: np.ndarray,
    method: str = "loglog",
) -> np.ndarray:
    """(n_models, n_E) fluxes on ``e_model`` (GeV/n) -> (n_models, n_data) at ``e_data`` (GeV/n)."""
    if method not in INTERPOLATIONS:
        raise ValueError(f"interpolation must be one of {INTERPOLATIONS}, got {method!r}")
    if method == "cubic":
        return interpolate.interp1d(e_model, flux, kind="cubic", axis=-1, assume_sorted=True)(e_data)
    x = np.log(e_model)
    xd = np.log(e_data)
    idx = np.clip(np.searchsorted(x, xd, side="right") - 1, 0, x.size - 2)
    w = (xd - x[idx]) / (x[idx + 1] - x[idx])
    logf = np.log(np.maximum(flux, LOG_FLUX_FLOOR))
    return np.exp(logf[:, idx] * (1 - w) + logf[:, idx + 1] * w)


def _subset(spectra: Spectra, species: list[str]) -> Spectra:
    """Spectra restricted to the isotopes that make up ``species`` (cheaper to modulate)."""
    keep = np.zeros(spectra.iso_z.size, dtype=bool)
    labels = spectra.isotopes
    for sp in species:
        keep |= (
            (spectra.iso_z == SYMBOL_TO_Z[sp])
            if sp in SYMBOL_TO_Z
            else np.array([lab == sp for lab in labels])
        )
    return Spectra(
        spectra.ekin_gev_per_n,
        spectra.iso_z[keep],
        spectra.iso_a[keep],
        spectra.iso_flux[:, keep],
        spectra.converged,
        spectra.residual,
        phi_mv=spectra.phi_mv,
        meta=dict(spectra.meta),
    )


def check_spectra(spectra: Spectra, dataset: Dataset) -> None:
    """Refuse spectra that lack a measured species, are already modulated, or do not cover the data."""
    if spectra.phi_mv != 0.0:
        raise ValueError(
            f"spectra are already modulated (phi = {spectra.phi_mv} MV); the chi^2 needs the LIS"
        )
    available = set(spectra.elements) | set(spectra.isotopes)
    missing = [sp for sp in dataset.species if sp not in available]
    if missing:
        raise ValueError(
            f"spectra lack species {missing} measured by data set {dataset.name!r} "
            f"(spectra have elements {spectra.elements})"
        )
    e = spectra.ekin_gev_per_n
    for block in dataset.blocks:
        out = (block.ekin_gev_per_n < e[0]) | (block.ekin_gev_per_n > e[-1])
        if np.any(out):
            raise ValueError(
                f"data block {block.label!r}: energy {float(block.ekin_gev_per_n[out][0])} GeV/n lies "
                f"outside the spectra grid [{e[0]:.4g}, {e[-1]:.4g}] GeV/n"
            )


# ---------------------------------------------------------------------------------------- result
@dataclass
class Chi2Result:
    """chi^2 of every model against one data set (all arrays have one entry per model).

    chi2_tot : Eq. 4.3 at the profiled normalisations (and phi).
    q_c : overall scale applied to every species (dimensionless).
    ratios : {'xi_Li', 'xi_Be', 'qO_over_qC'} -> (n_models,) ratio (NaN where the species is not measured).
    phi_mv : force-field potential used for top-of-atmosphere blocks, MV, when the data set has exactly one
        modulation period (None for LIS-only data sets and for several periods: see ``phi_by_period``).
    phi_by_period : {period: (n_models,) phi in MV} for every modulation period of the data set (``Dataset.periods``;
        the single-Modulation period is ''); {} for LIS-only data sets.
    phi_converged : (n_models,) whether the profiling of the nuisance phi(s) met its tolerance (True where no phi
        is profiled); a model with False has the chi^2 at the best phi found, not a verified minimum.
    chi2_by_block : (n_models, n_blocks), columns in the order of ``block_labels``.
    residuals : (n_models, n_points) normalised residuals (s_k M_k(E_j) - F_j) / sigma_j at the profiled
        normalisations, blocks in data-set order (sum of squares = chi2_tot); only with
        ``chi2(..., residuals=True)``, else None.
    """

    dataset: str
    n_points: int
    chi2_tot: np.ndarray
    q_c: np.ndarray
    ratios: dict[str, np.ndarray]
    chi2_by_block: np.ndarray
    block_labels: list[str]
    phi_mv: np.ndarray | None = None
    bounds: dict[str, tuple[float, float]] = field(default_factory=dict)
    residuals: np.ndarray | None = None
    phi_by_period: dict[str, np.ndarray] = field(default_factory=dict)
    phi_converged: np.ndarray | None = None

    @property
    def chi2_scan(self) -> np.ndarray:
        return chi2_scan(self.chi2_tot)

    def to_records(self) -> list[dict]:
        """One JSON-ready dict per model."""
        out = []
        for i in range(self.chi2_tot.size):
            rec = {
                "model": i,
                "chi2_tot": float(self.chi2_tot[i]),
                "chi2_scan": float(self.chi2_scan[i]),
                "n_points": self.n_points,
                "q_C": float(self.q_c[i]),
            }
            rec.update({name: float(v[i]) for name, v in self.ratios.items()})
            if self.phi_mv is not None:
                rec["phi_MV"] = float(self.phi_mv[i])
            else:
                rec.update({f"phi_MV[{key}]": float(v[i]) for key, v in self.phi_by_period.items()})
            if self.phi_converged is not None and not self.phi_converged[i]:
                rec["phi_converged"] = False
            out.append(rec)
        return out


class _Problem:
    """Data-set geometry shared by all phi values: per-block targets and the species grouping."""

    def __init__(
        self,
        spectra: Spectra,
        dataset: Dataset,
        bounds: Mapping[str, tuple[float, float]],
        profile: bool,
        interpolation: str,
    ) -> None:
        self.dataset, self.profile, self.interp = dataset, profile, interpolation
        self.spectra = _subset(spectra, dataset.species)
        # normalisations act per element: an isotope block ('10Be') shares its element's scale
        self.element = {sp: sp.lstrip("0123456789") for sp in dataset.species}
        self.groups = list(dict.fromkeys(self.element.values()))
        self.ratio_species = [el for el in RATIO_PARAMETERS if el in self.groups]
        self.lo = np.array([bounds[RATIO_PARAMETERS[sp]][0] for sp in self.ratio_species])
        self.hi = np.array([bounds[RATIO_PARAMETERS[sp]][1] for sp in self.ratio_species])
        self.lis_model = {i: self._model(self.spectra, b) for i, b in enumerate(dataset.blocks) if b.lis}
        self.period = [dataset.period_of(b) for b in dataset.blocks]
        # each period modulates only the species it measures (ACE-CRIS C, O need not drag Li-Be-B along)
        self.period_spectra = {
            key: _subset(self.spectra, list(dict.fromkeys(b.species for b, k in zip(dataset.blocks, self.period,
                                                                                     strict=True) if k == key)))
            for key in dataset.periods
        }
        # the last modulated spectra per period: a search over one phi reuses the other periods' (Powell)
        self._last: dict[str, tuple[bytes, float, Spectra]] = {}

    def _model(self, spectra: Spectra, block: DataBlock) -> np.ndarray:
        return interpolate_spectra(
            spectra.ekin_gev_per_n, spectra.flux(block.species), block.ekin_gev_per_n, self.interp
        )

    def solve(
        self, models: np.ndarray, phi_mv: Mapping[str, float] | None
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(normalised residuals (n, n_points), q (n,), ratios (n, K)) for the given models at one phi per
        modulation period ({period: MV}, None for LIS-only data sets); :meth:`per_block` turns the residuals
        into chi2 per block."""
        modulated = {}
        if self.dataset.needs_modulation:
            modulated = {key: self._modulated(key, models, float(phi)) for key, phi in (phi_mv or {}).items()}
        preds = []
        for i, block in enumerate(self.dataset.blocks):
            preds.append(self.lis_model[i][models] if block.lis else self._model(modulated[self.period[i]], block))
        n = models.size
        a = {el: np.zeros(n) for el in self.groups}
        b = {el: np.zeros(n) for el in self.groups}
        for block, m in zip(self.dataset.blocks, preds, strict=True):
            w = 1.0 / block.sigma**2
            a[self.element[block.species]] += (m * m * w).sum(axis=1)
            b[self.element[block.species]] += (m * block.flux * w).sum(axis=1)
        if self.profile:
            free = [el for el in self.groups if el not in self.ratio_species]
            a_free = sum((a[sp] for sp in free), np.zeros(n))
            b_free = sum((b[sp] for sp in free), np.zeros(n))
            a_r = (
                np.stack([a[sp] for sp in self.ratio_species], axis=1)
                if self.ratio_species
                else np.zeros((n, 0))
            )
            b_r = (
                np.stack([b[sp] for sp in self.ratio_species], axis=1)
                if self.ratio_species
                else np.zeros((n, 0))
            )
            # A model with no flux where a bounded species has data (a_k = 0), or a non-finite flux, cannot be
            # normalised: its chi^2 is +inf (below), without failing the other models of the batch.
            ok = np.all(a_r > 0, axis=1) & np.isfinite(a_free) & np.isfinite(b_free)
            ok &= np.all(np.isfinite(a_r) & np.isfinite(b_r), axis=1)
            q, r = np.zeros(n), np.ones((n, len(self.ratio_species)))
            if ok.any():
                q[ok], r[ok] = profile_normalisations(a_free[ok], b_free[ok], a_r[ok], b_r[ok], self.lo, self.hi)
        else:
            q, r = np.ones(n), np.ones((n, len(self.ratio_species)))
        scale = {el: q for el in self.groups}
        scale.update({el: q * r[:, j] for j, el in enumerate(self.ratio_species)})
        res = [(scale[self.element[blk.species]][:, None] * m - blk.flux) / blk.sigma
               for blk, m in zip(self.dataset.blocks, preds, strict=True)]
        res = np.concatenate(res, axis=1)
        bad = ~np.all(np.isfinite(res), axis=1)
        if self.profile:
            bad |= ~ok
        res[bad] = np.inf  # chi^2 = inf for a model that cannot be compared (see above), never NaN
        return res, q, r

    def _modulated(self, key: str, models: np.ndarray, phi_mv: float) -> Spectra:
        tag = models.tobytes()
        last = self._last.get(key)
        if last is None or last[0] != tag or last[1] != phi_mv:
            last = (tag, phi_mv, self.period_spectra[key].select(models).modulate(phi_mv))
            self._last[key] = last
        return last[2]

    def total(self, models: np.ndarray, phi_mv: Mapping[str, float]) -> np.ndarray:
        """(n,) chi2_tot of the given models at one phi per period (profiled normalisations)."""
        return np.square(self.solve(models, phi_mv)[0]).sum(axis=1)

    def per_block(self, residuals: np.ndarray) -> np.ndarray:
        """(n, n_blocks) chi2 of each data block from (n, n_points) residuals."""
        starts = np.cumsum([0] + [b.flux.size for b in self.dataset.blocks[:-1]])
        return np.add.reduceat(residuals * residuals, starts, axis=1)


def chi2(
    spectra: Spectra,
    dataset: Dataset | str = "paper",
    *,
    bounds: Mapping[str, tuple[float, float]] | tuple[float, float] = DEFAULT_NORM_BOUNDS,
    profile: bool = True,
    phi_mv: float | Mapping[str, float] | None = None,
    interpolation: str = "loglog",
    residuals: bool = False,
) -> Chi2Result:
    """chi^2_tot (Eq. 4.3) of every model in ``spectra`` (LIS) against ``dataset``.

    Parameters
    ----------
    spectra : unmodulated fluxes, m^-2 s^-1 sr^-1 (GeV/n)^-1 on GeV/n; must contain every measured species.
    dataset : a Dataset or the name of a shipped one (default 'paper').
    bounds : (lo, hi) for all three ratios, or {'xi_Li': (lo, hi), 'xi_Be': ..., 'qO_over_qC': ...} (the ones
        not given keep DEFAULT_NORM_BOUNDS; an unknown name is an error).
    profile : profile q_C and the ratios (default); False evaluates the spectra as given (all scales 1).
    phi_mv : fix the force-field potential (MV) of top-of-atmosphere blocks: a number for a data set with one
        modulation period, {period: MV} (keys of ``Dataset.periods``) for some or all periods of a data set with
        several. Default: each period's Modulation (fixed value, or profiled within its bounds when it is a
        nuisance). One nuisance phi is profiled by a grid and bounded Brent; several jointly, by a grid per phi
        and a bounded Powell refinement per model.
    interpolation : 'loglog' (default) or 'cubic' (CR-ML's linear-space cubic spline).
    residuals : also return the (n_models, n_points) normalised residuals (``Chi2Result.residuals``; used by
        least-squares fits, crnet.scan.fit).
    """
    ds = get_dataset(dataset) if isinstance(dataset, str) else dataset
    if not isinstance(bounds, Mapping):
        bounds = {name: tuple(bounds) for name in RATIO_PARAMETERS.values()}
    unknown = sorted(set(bounds) - set(RATIO_PARAMETERS.values()))
    if unknown:
        raise ValueError(f"bounds: unknown normalisation(s) {unknown}; allowed: {sorted(RATIO_PARAMETERS.values())}")
    for name, pair in bounds.items():
        if len(pair) != 2:
            raise ValueError(f"bounds of {name} must be (lo, hi), got {pair!r}")
    bounds = {
        name: tuple(map(float, bounds.get(name, DEFAULT_NORM_BOUNDS))) for name in RATIO_PARAMETERS.values()
    }
    for name, (lo, hi) in bounds.items():
        if not (0 < lo <= hi and math.isfinite(hi)):
            raise ValueError(f"bounds of {name} must satisfy 0 < lo <= hi < inf, got ({lo}, {hi})")
    check_spectra(spectra, ds)
    periods = ds.periods
    given = _phi_override(phi_mv, periods)
    fixed = {key: given.get(key, mod.phi_mv) for key, mod in periods.items() if key in given or not mod.nuisance}
    nuisance = [key for key in periods if key not in fixed]
    prob = _Problem(spectra, ds, bounds, profile, interpolation)
    models = np.arange(spectra.n_models)
    converged = np.ones(models.size, dtype=bool)
    if not nuisance:
        resid, q, r = prob.solve(models, fixed if periods else None)
        phis = {key: np.full(models.size, float(v)) for key, v in fixed.items()}
    elif len(nuisance) == 1:
        resid, q, r, phi, converged = _profile_phi(prob, models, fixed, nuisance[0])
        phis = {key: np.full(models.size, float(v)) for key, v in fixed.items()} | {nuisance[0]: phi}
    else:
        resid, q, r, phis, converged = _profile_phis(prob, models, fixed, nuisance)
    phis = {key: phis[key] for key in periods}
    per_block = prob.per_block(resid)
    ratios = {name: np.full(models.size, np.nan) for name in RATIO_PARAMETERS.values()}
    for j, sp in enumerate(prob.ratio_species):
        ratios[RATIO_PARAMETERS[sp]] = r[:, j]
    return Chi2Result(
        dataset=ds.name,
        n_points=ds.n_points,
        chi2_tot=per_block.sum(axis=1),
        q_c=q,
        ratios=ratios,
        chi2_by_block=per_block,
        block_labels=[b.label for b in ds.blocks],
        phi_mv=next(iter(phis.values())) if len(phis) == 1 else None,
        bounds=dict(bounds),
        residuals=resid if residuals else None,
        phi_by_period=phis,
        phi_converged=converged,
    )


def _phi_override(phi_mv: float | Mapping[str, float] | None, periods: Mapping[str, Modulation]) -> dict[str, float]:
    """``chi2``'s ``phi_mv`` argument as {period: MV} (empty when nothing is fixed)."""
    if phi_mv is None:
        return {}
    if not periods:
        raise ValueError(f"phi_mv = {phi_mv!r} given, but the data set has no top-of-atmosphere block to modulate "
                         "(all blocks are interstellar spectra)")
    if isinstance(phi_mv, Mapping):
        unknown = sorted(set(phi_mv) - set(periods))
        if unknown:
            raise ValueError(f"phi_mv: unknown modulation period(s) {unknown}; the data set's periods: {list(periods)}")
        given = {key: float(v) for key, v in phi_mv.items()}
    elif len(periods) == 1:
        given = {next(iter(periods)): float(phi_mv)}
    else:
        raise ValueError(f"phi_mv: the data set has {len(periods)} modulation periods {list(periods)}; "
                         "fix them with {period: MV}, not one number")
    for key, v in given.items():
        if not math.isfinite(v) or v < 0:
            raise ValueError(f"phi_mv must be finite and >= 0 MV, got {v} for period {key!r}")
    return given


def _solve_each(
    prob: _Problem, models: np.ndarray, phis: Mapping[str, np.ndarray]
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Residuals, q_C and ratios of every model at its own phi per period ({period: (n,) MV})."""
    resid = np.empty((models.size, prob.dataset.n_points))
    q = np.empty(models.size)
    r = np.empty((models.size, len(prob.ratio_species)))
    for i, m in enumerate(models):
        res_i, qi, ri = prob.solve(np.array([m]), {key: float(v[i]) for key, v in phis.items()})
        resid[i], q[i], r[i] = res_i[0], qi[0], ri[0]
    return resid, q, r


def _profile_phi(
    prob: _Problem, models: np.ndarray, fixed: Mapping[str, float], key: str
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """One nuisance phi (MV, period ``key``; the other periods at ``fixed``): grid over its bounds for all models,
    then bounded Brent per model near the best node. Returns (normalised residuals, q_C, ratios, phi, converged)."""
    bounds_mv = prob.dataset.periods[key].bounds_mv
    grid = np.linspace(bounds_mv[0], bounds_mv[1], PHI_GRID_POINTS)
    totals = np.stack([prob.total(models, {**fixed, key: float(p)}) for p in grid], axis=1)
    best = np.argmin(totals, axis=1)
    phi = np.empty(models.size)
    converged = np.ones(models.size, dtype=bool)
    for i, m in enumerate(models):
        if not np.isfinite(totals[i, best[i]]):  # a model that cannot be normalised: chi^2 = inf at every phi
            phi[i] = grid[best[i]]
            continue
        lo_i, hi_i = grid[max(best[i] - 1, 0)], grid[min(best[i] + 1, grid.size - 1)]
        res = optimize.minimize_scalar(
            lambda p, m=m: prob.total(np.array([m]), {**fixed, key: float(p)})[0],
            bounds=(lo_i, hi_i),
            method="bounded",
            options={"xatol": PHI_XATOL_MV},
        )
        converged[i] = bool(res.success)
        phi[i] = res.x if res.fun <= totals[i, best[i]] else grid[best[i]]
    each = {k: np.full(models.size, float(v)) for k, v in fixed.items()} | {key: phi}
    resid, q, r = _solve_each(prob, models, each)
    _warn_unconverged(converged, [key])
    return resid, q, r, phi, converged


def _profile_phis(
    prob: _Problem, models: np.ndarray, fixed: Mapping[str, float], keys: list[str]
) -> tuple[np.ndarray, np.ndarray, np.ndarray, dict[str, np.ndarray], np.ndarray]:
    """Several nuisance phi (MV), one per period in ``keys``, profiled jointly (they couple through the common
    normalisations). Start: each phi on its own PHI_GRID_POINTS grid with the other nuisance phi at their
    reference values (clipped into their bounds), vectorised over models. Then per model a bounded Powell
    search (derivative-free, coordinate line searches by Brent) from that start; its result is kept only if it
    is not worse. Returns (normalised residuals, q_C, ratios, {period: phi}, converged)."""
    mods = prob.dataset.periods
    box = [mods[k].bounds_mv for k in keys]
    ref = {k: float(np.clip(mods[k].phi_mv, *mods[k].bounds_mv)) for k in keys}
    start = np.empty((models.size, len(keys)))
    for j, k in enumerate(keys):
        grid = np.linspace(box[j][0], box[j][1], PHI_GRID_POINTS)
        totals = np.stack([prob.total(models, {**fixed, **ref, k: float(p)}) for p in grid], axis=1)
        start[:, j] = grid[np.argmin(totals, axis=1)]
    phi = start.copy()
    converged = np.ones(models.size, dtype=bool)
    for i, m in enumerate(models):
        def total(x: np.ndarray, m: int = m) -> float:
            return float(prob.total(np.array([m]), {**fixed, **dict(zip(keys, map(float, x), strict=True))})[0])

        f0 = total(start[i])
        if not np.isfinite(f0):  # cannot be normalised at any phi (chi^2 = inf): nothing to refine
            continue
        res = optimize.minimize(
            total, start[i], method="Powell", bounds=box,
            options={"xtol": PHI_POWELL_XTOL, "ftol": PHI_POWELL_FTOL,
                     "maxfev": PHI_POWELL_MAXFEV_PER_PERIOD * len(keys)},
        )
        converged[i] = bool(res.success)
        if res.fun <= f0:
            phi[i] = np.clip(res.x, [b[0] for b in box], [b[1] for b in box])
    each = {k: np.full(models.size, float(v)) for k, v in fixed.items()}
    each |= {k: phi[:, j] for j, k in enumerate(keys)}
    resid, q, r = _solve_each(prob, models, each)
    _warn_unconverged(converged, keys)
    return resid, q, r, each, converged


def _warn_unconverged(converged: np.ndarray, keys: list[str]) -> None:
    if not converged.all():
        warnings.warn(
            f"chi2: the profiling of the nuisance phi of period(s) {keys} did not meet its tolerance for "
            f"{int((~converged).sum())} of {converged.size} models (Chi2Result.phi_converged); their chi^2 is the "
            "value at the best phi found",
            RuntimeWarning,
            stacklevel=3,
        )
