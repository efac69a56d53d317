"""crnet.likelihood.problem.Problem keeps its per-block constants (1 / sigma^2, the element of each block, the block
offsets) from __init__ on: solve() gives bit for bit what the per-call formula gave, and its chi^2 is the plain
Eq. 4.3 sum at the normalisations it returns."""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
import pytest
from helpers_likelihood import make_spectra, predictions

from crnet.data import Dataset, get_dataset
from crnet.likelihood.normalisation import DEFAULT_NORM_BOUNDS, RATIO_PARAMETERS, profile_normalisations
from crnet.likelihood.problem import Problem
from crprop.spectra import Spectra

DIRECT_RTOL: float = 1e-12
"""solve() against an independent evaluation (interpolate_spectra, sums in another order): rounding only (chi^2 sums
of ~400 terms of size ~10^2 in float64 agree to ~1e-14; 1e-12 as in tests/test_likelihood.py)."""

BOUNDS = {name: DEFAULT_NORM_BOUNDS for name in RATIO_PARAMETERS.values()}


def _problem(spectra: Spectra, ds: Dataset, profile: bool = True) -> Problem:
    return Problem(spectra, ds, BOUNDS, profile, "loglog")


def _block_predictions(prob: Problem, models: np.ndarray, phi_mv: Mapping[str, np.ndarray]) -> list[np.ndarray]:
    """The (n, n_points) prediction of every block that solve() normalises: the LIS ones, and each period's
    top-of-atmosphere ones at ``phi_mv`` (the Problem's own, cached, force-field predictions)."""
    preds: list[np.ndarray | None] = [prob.lis_model[i][models] if b.lis else None
                                      for i, b in enumerate(prob.dataset.blocks)]
    for key, phi in phi_mv.items():
        for i, pred in zip(prob.toa_blocks[key], prob._toa_predictions(key, models, phi), strict=True):
            preds[i] = pred
    assert all(p is not None for p in preds)
    return preds


def _uncached_solve(prob: Problem, preds: list[np.ndarray]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """solve()'s normalisation and residual formulas as they were before the cache: every per-block constant
    (1 / sigma^2, the block's element, the free species) rebuilt from the data blocks on each call."""
    ds, n = prob.dataset, preds[0].shape[0]
    groups = list(dict.fromkeys(b.species.lstrip("0123456789") for b in ds.blocks))
    ratio = [el for el in RATIO_PARAMETERS if el in groups]
    a = {el: np.zeros(n) for el in groups}
    b = {el: np.zeros(n) for el in groups}
    for block, m in zip(ds.blocks, preds, strict=True):
        w = 1.0 / block.sigma**2
        el = block.species.lstrip("0123456789")
        a[el] += (m * m * w).sum(axis=1)
        b[el] += (m * block.flux * w).sum(axis=1)
    free = [el for el in groups if el not in ratio]
    a_free = sum((a[el] for el in free), np.zeros(n))
    b_free = sum((b[el] for el in free), np.zeros(n))
    a_r = np.stack([a[el] for el in ratio], axis=1)
    b_r = np.stack([b[el] for el in ratio], axis=1)
    lo = np.array([BOUNDS[RATIO_PARAMETERS[el]][0] for el in ratio])
    hi = np.array([BOUNDS[RATIO_PARAMETERS[el]][1] for el in ratio])
    q, r = profile_normalisations(a_free, b_free, a_r, b_r, lo, hi)
    scale = {el: q for el in groups} | {el: q * r[:, j] for j, el in enumerate(ratio)}
    res = np.concatenate([(scale[blk.species.lstrip("0123456789")][:, None] * m - blk.flux) / blk.sigma
                          for blk, m in zip(ds.blocks, preds, strict=True)], axis=1)
    return res, q, r


def test_cached_constants_are_the_blocks_own() -> None:
    ds = get_dataset("ams02-2021-ace2009")
    prob = _problem(make_spectra(np.random.default_rng(3), 2, ds), ds)
    for blk, w, el in zip(ds.blocks, prob.weight, prob.block_element, strict=True):
        np.testing.assert_array_equal(w, 1.0 / blk.sigma**2)
        assert el == blk.species.lstrip("0123456789")
    assert prob.free_species == ["B", "C"]  # Li, Be, O have their own bounded ratios (Table 2)
    sizes = [b.flux.size for b in ds.blocks]
    assert prob.block_starts.tolist() == np.cumsum([0, *sizes[:-1]]).tolist()


@pytest.mark.parametrize("name", ["paper", "ams02-2021", "ams02-2021-ace2009"])
def test_solve_is_bit_for_bit_the_uncached_formula(name: str) -> None:
    """Residuals, q_C and the ratios equal, exactly, the per-call formula's on the same predictions, at one phi for
    all the models and at one phi per model; a second call (cache reused) gives them again."""
    ds = get_dataset(name)
    models = np.arange(4)
    prob = _problem(make_spectra(np.random.default_rng(17), models.size, ds, spread=0.2), ds)
    phis = [{}] if not ds.needs_modulation else [
        {key: np.full(models.size, 450.0) for key in ds.periods},
        {key: np.linspace(300.0, 700.0, models.size) + 10.0 * j for j, key in enumerate(ds.periods)}]
    for phi in phis:
        expected = _uncached_solve(prob, _block_predictions(prob, models, phi))
        for _ in range(2):
            got = prob.solve(models, phi or None)
            for g, e in zip(got, expected, strict=True):
                np.testing.assert_array_equal(g, e)
        assert np.all(np.isfinite(got[0]))


@pytest.mark.parametrize("profile", [True, False])
def test_solve_chi2_is_the_direct_sum_at_its_normalisations(profile: bool) -> None:
    """LIS data ('paper'): chi^2 from solve() (total and per block) is sum ((s m - F) / sigma)^2 with the model m
    interpolated independently (interpolate_spectra) and s = q_C (times the species' ratio) as solve() returned
    them; without profiling q_C = 1 and the ratios are 1."""
    ds = get_dataset("paper")
    spectra = make_spectra(np.random.default_rng(29), 3, ds)
    prob = _problem(spectra, ds, profile)
    models = np.arange(spectra.n_models)
    res, q, r = prob.solve(models, None)
    if not profile:
        np.testing.assert_array_equal(q, 1.0)
        np.testing.assert_array_equal(r, 1.0)
    else:
        assert np.any(np.abs(q - 1.0) > 1e-3)  # the profile moved the scales: the check below is not trivial
    ratio_col = {el: j for j, el in enumerate(prob.ratio_species)}
    direct = np.zeros((models.size, len(ds.blocks)))
    for k, (blk, m) in enumerate(zip(ds.blocks, predictions(spectra, ds), strict=True)):
        j = ratio_col.get(blk.species)
        s = q * (r[:, j] if j is not None else 1.0)
        direct[:, k] = np.sum(((s[:, None] * m - blk.flux) / blk.sigma) ** 2, axis=1)
    np.testing.assert_allclose(prob.per_block(res), direct, rtol=DIRECT_RTOL)
    np.testing.assert_allclose(prob.total(models, None), direct.sum(axis=1), rtol=DIRECT_RTOL)
