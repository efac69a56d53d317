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
profiled numerically: a grid over its bounds, then bounded Brent refinement per model.

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
from collections.abc import Mapping
from dataclasses import dataclass, field

import numpy as np
from scipy import interpolate, optimize, special, stats

from crnet.data import DataBlock, Dataset, get_dataset
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
    phi_mv : force-field potential used for top-of-atmosphere blocks, MV (None for LIS-only data sets).
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

    def _model(self, spectra: Spectra, block: DataBlock) -> np.ndarray:
        return interpolate_spectra(
            spectra.ekin_gev_per_n, spectra.flux(block.species), block.ekin_gev_per_n, self.interp
        )

    def solve(self, models: np.ndarray, phi_mv: float | None) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(normalised residuals (n, n_points), q (n,), ratios (n, K)) for the given models at one phi;
        :meth:`per_block` turns the residuals into chi2 per block."""
        sub = self.spectra.select(models)
        modulated = sub.modulate(phi_mv) if phi_mv is not None and self.dataset.needs_modulation else None
        preds = []
        for i, block in enumerate(self.dataset.blocks):
            preds.append(self.lis_model[i][models] if block.lis else self._model(modulated, block))
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
    phi_mv: float | None = None,
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
    phi_mv : fix the force-field potential (MV) of top-of-atmosphere blocks; default: the data set's
        Modulation (fixed value, or profiled within its bounds when it is a nuisance).
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
    if phi_mv is not None and (not math.isfinite(phi_mv) or phi_mv < 0):
        raise ValueError(f"phi_mv must be finite and >= 0 MV, got {phi_mv}")
    prob = _Problem(spectra, ds, bounds, profile, interpolation)
    models = np.arange(spectra.n_models)
    phi_out = None
    if not ds.needs_modulation:
        resid, q, r = prob.solve(models, None)
    elif phi_mv is not None or not ds.modulation.nuisance:
        phi = float(phi_mv if phi_mv is not None else ds.modulation.phi_mv)
        resid, q, r = prob.solve(models, phi)
        phi_out = np.full(models.size, phi)
    else:
        resid, q, r, phi_out = _profile_phi(prob, models, ds.modulation.bounds_mv)
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
        phi_mv=phi_out,
        bounds=dict(bounds),
        residuals=resid if residuals else None,
    )


def _profile_phi(
    prob: _Problem, models: np.ndarray, bounds_mv: tuple[float, float]
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Nuisance phi (MV): grid over the bounds for all models, then bounded Brent per model near the best
    node. Returns (normalised residuals, q_C, ratios, phi)."""
    grid = np.linspace(bounds_mv[0], bounds_mv[1], PHI_GRID_POINTS)
    totals = np.stack([np.square(prob.solve(models, float(p))[0]).sum(axis=1) for p in grid], axis=1)
    best = np.argmin(totals, axis=1)
    phi = np.empty(models.size)
    for i, m in enumerate(models):
        if not np.isfinite(totals[i, best[i]]):  # a model that cannot be normalised: chi^2 = inf at every phi
            phi[i] = grid[best[i]]
            continue
        lo_i, hi_i = grid[max(best[i] - 1, 0)], grid[min(best[i] + 1, grid.size - 1)]
        res = optimize.minimize_scalar(
            lambda p, m=m: np.square(prob.solve(np.array([m]), float(p))[0]).sum(),
            bounds=(lo_i, hi_i),
            method="bounded",
            options={"xatol": PHI_XATOL_MV},
        )
        phi[i] = res.x if res.fun <= totals[i, best[i]] else grid[best[i]]
    resid = np.empty((models.size, prob.dataset.n_points))
    q = np.empty(models.size)
    r = np.empty((models.size, len(prob.ratio_species)))
    for i, m in enumerate(models):
        res_i, qi, ri = prob.solve(np.array([m]), float(phi[i]))
        resid[i], q[i], r[i] = res_i[0], qi[0], ri[0]
    return resid, q, r, phi
