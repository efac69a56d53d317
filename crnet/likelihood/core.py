"""chi^2_tot (Eq. 4.3) of propagated spectra against a data set: bounds, modulation and profiling put together."""

from __future__ import annotations

import math
from collections.abc import Mapping

import numpy as np

from crnet.data import Dataset, get_dataset
from crnet.likelihood.interpolation import check_spectra
from crnet.likelihood.modulation import at_bound, phi_override, profile_phi, profile_phis
from crnet.likelihood.normalisation import DEFAULT_NORM_BOUNDS, RATIO_PARAMETERS
from crnet.likelihood.problem import Problem
from crnet.likelihood.result import Chi2Result
from crprop.spectra import Spectra


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
        and cyclic coordinate descent (bounded Brent per phi); both vectorised over models
        (crnet.likelihood.modulation).
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
    given = phi_override(phi_mv, periods)
    fixed = {key: given.get(key, mod.phi_mv) for key, mod in periods.items() if key in given or not mod.nuisance}
    nuisance = [key for key in periods if key not in fixed]
    prob = Problem(spectra, ds, bounds, profile, interpolation)
    models = np.arange(spectra.n_models)
    converged = np.ones(models.size, dtype=bool)
    if not nuisance:
        resid, q, r = prob.solve(models, fixed if periods else None)
        phis = {key: np.full(models.size, float(v)) for key, v in fixed.items()}
    elif len(nuisance) == 1:
        resid, q, r, phi, converged = profile_phi(prob, models, fixed, nuisance[0])
        phis = {key: np.full(models.size, float(v)) for key, v in fixed.items()} | {nuisance[0]: phi}
    else:
        resid, q, r, phis, converged = profile_phis(prob, models, fixed, nuisance)
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
        phi_at_bound={key: at_bound(phis[key], periods[key].bounds_mv) for key in nuisance},
    )
