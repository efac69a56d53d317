"""crprop reproduces GALPROP v54 (../shared/reference/galprop): the paper's runs and parameter points.

`galprop` mode against the standard-time-step runs; `fast` mode (the true steady state) against the
runs time-stepped towards steady state. Every ingredient is also tested alone against GALPROP's own
arrays (tests/test_physics_ingredients.py, tests/test_nuclear.py); here the whole network is.
"""

from __future__ import annotations

import warnings

import numpy as np
import pytest
from helpers_problems import galprop_c12_problem

from crprop.galprop.compare import deviation_table, load_run
from crprop.propagate import propagate
from crprop.solvers import TimeLadder, solve_species

ELEMENTS = ("H", "Li", "Be", "B", "C", "N", "O")
STANDARD_TOL = 0.03
"""Issue bound for galprop mode vs GALPROP: every element within 3 % over 0.1-1000 GeV/n, B/C 3 %."""
STANDARD_TOL_CO = 0.02
"""Issue bound for C and O (primaries: 2 %)."""
TCONV1000_TOL, TCONV1000_TOL_CO = 0.03, 0.02
"""fast mode vs the 1000-repeat run (GALPROP's best steady-state estimate): the same bounds."""
TCONV200_TOL, TCONV200_TOL_CO = 0.04, 0.03
"""fast mode vs the 200-repeat runs, which are still up to 2.4 % from the 1000-repeat one (issue)."""
STEPPING_TOL = 1e-6
"""galprop mode fed GALPROP's own inputs reproduces its psi: limited by the float32 loss map (6e-8)."""
GALPROP_MODE_TOL = 1e-6
"""galprop mode vs GALPROP's standard-time-step runs, every element and B/C over 0.1-1000 GeV/n, on any grid.
Measured: <= 8.0e-8 at the five parameter points (p6 worst), <= 4.9e-8 on the refined grids: both codes take the
same steps from the same tables. The issue's bounds above (3 %, 2 %) are what it asks for; this one guards the
reproduction itself: any change that moves a flux by more than 1e-6 fails. The refinements below move the fluxes
by up to 5.6 % (Ekin_factor 1.1) and 2.1 % (dr 0.5, dz 0.1), so a table or stencil that ignored the grid would miss
by ~1e-2."""
ISOTOPE_FAST_TOL = 0.02
"""fast mode vs crml_base_tconv1000 for every one of the 25 isotopes at 1 MeV/n - 1 TeV/n (not just the element sums
above 0.1 GeV/n, where element H is 1.19 % off at worst, benchmarks/results/galprop_compare_cpu.md; the isotope-level
maximum is not recorded). A model with the 9Be and 10Be rows swapped misses it by far more (session-12 review)."""

FAST_TOL_ENERGY_GEV = (1e-3, 1e3)
"""Energy range of that isotope check, GeV/n (Voyager's range included)."""

REFINEMENT_RESPONSE_MIN = {"crml_base_efine": 0.04, "crml_base_xfine": 0.015}
"""GALPROP's own largest response to the refinement (max over elements of |fine / standard - 1|, 0.1-1000 GeV/n;
measured 5.6 % and 2.1 %): the test is only a test of grid handling if the grid change matters this much."""


B_RISE_PEAK_MIN = 0.05
"""Largest rise of boron from the second network pass (10Be -> 10B), 0.1-1000 GeV/n: GALPROP's and crprop's are 5.35 %
(at ~1.6 GeV/n, measured): the feed is tested where it matters. Was 0.01."""


@pytest.fixture(scope="module")
def runs(galprop_ref_dir):
    return lambda name: load_run(galprop_ref_dir / name)


_CACHE: dict = {}


def _model(run, mode: str, order: str | None = None):
    key = (run.name if mode == "galprop" else run.params, mode, order)
    if key not in _CACHE:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            _CACHE[key] = propagate(run.setup(order), run.params, mode=mode, backend="numba", check_prior=False)
    return _CACHE[key]


def _check(rows, tol, tol_co):
    worst = {r["species"]: r["max_abs_dev"] for r in rows}
    for name in ELEMENTS:
        bound = tol_co if name in ("C", "O") else tol
        assert worst[name] < bound, f"{name}: {100 * worst[name]:.2f} % > {100 * bound:.1f} % ({rows})"
    assert worst["B/C"] < tol, rows


@pytest.mark.slow
@pytest.mark.parametrize("name", ["crml_base", "p1", "p2", "p4", "p6"])
def test_galprop_mode_reproduces_standard_runs(runs, name):
    run = runs(name)
    model = _model(run, "galprop")
    assert not model.converged.any()  # GALPROP's ladder is not at steady state, and crprop says so
    rows = deviation_table(model, run.spectra())
    _check(rows, STANDARD_TOL, STANDARD_TOL_CO)
    assert max(r["max_abs_dev"] for r in rows) < GALPROP_MODE_TOL, rows
    # every isotope at every energy of the run (1 MeV/n - 110 TeV/n), not only element sums at 0.1-1000 GeV/n
    worst = _isotope_deviation(model, run.spectra(), None)
    assert max(worst.values()) < GALPROP_MODE_TOL, worst


@pytest.mark.slow
@pytest.mark.parametrize("name, tol, tol_co", [
    ("crml_base_tconv1000", TCONV1000_TOL, TCONV1000_TOL_CO),
    ("crml_base_tconv", TCONV200_TOL, TCONV200_TOL_CO),
    ("p1_tconv", TCONV200_TOL, TCONV200_TOL_CO),
    ("p2_tconv", TCONV200_TOL, TCONV200_TOL_CO),
])
def test_fast_mode_reproduces_converged_runs(runs, name, tol, tol_co):
    run = runs(name)
    model = _model(run, "fast")
    assert model.converged.all()
    _check(deviation_table(model, run.spectra()), tol, tol_co)
    if name == "crml_base_tconv1000":
        worst = _isotope_deviation(model, run.spectra(), FAST_TOL_ENERGY_GEV)
        assert max(worst.values()) < ISOTOPE_FAST_TOL, worst


def _isotope_deviation(model, ref, energy_gev: tuple[float, float] | None) -> dict[str, float]:
    """max |model / GALPROP - 1| per isotope (same isotopes in the same order required), over ``energy_gev``."""
    assert model.isotopes == ref.isotopes
    e = ref.ekin_gev_per_n
    sel = np.ones(e.size, bool) if energy_gev is None else (e >= energy_gev[0]) & (e <= energy_gev[1])
    out = {}
    for k, label in enumerate(ref.isotopes):
        r, m = ref.iso_flux[0, k, sel], model.iso_flux[0, k, sel]
        live = r > 0
        assert np.array_equal(m > 0, live), label  # the same energies carry flux
        out[label] = float(np.max(np.abs(m[live] / r[live] - 1.0))) if live.any() else 0.0
    return out


@pytest.mark.slow
def test_network_iterations_feed_10be_decay_into_boron(runs):
    """network_iterations = 2 (crml_base_net2): 10Be decay now feeds 10B (B rises by up to 5.4 % as in GALPROP) and the
    protons of the first pass feed 2H by p + p -> d + pi+."""
    base, net2 = runs("crml_base"), runs("crml_base_net2")
    m1, m2 = _model(base, "galprop"), _model(net2, "galprop")
    _check(deviation_table(m2, net2.spectra()), STANDARD_TOL, STANDARD_TOL_CO)
    # galprop mode reproduces GALPROP's second pass isotope by isotope (the element bands above alone are too wide to
    # catch an error of a few % in the 10Be -> 10B feed)
    worst = _isotope_deviation(m2, net2.spectra(), None)
    assert max(worst.values()) < GALPROP_MODE_TOL, worst
    e = m1.ekin_gev_per_n
    sel = (e > 0.1) & (e < 1000)
    rise = (m2.flux("B")[0] / m1.flux("B")[0])[sel] - 1
    ref_rise = (net2.spectra().flux("B")[0] / base.spectra().flux("B")[0])[sel] - 1
    # a feed only adds boron: the smallest rise is 7.3e-5 (at 1 TeV/n, measured), far above round-off
    assert rise.max() > B_RISE_PEAK_MIN and rise.min() > 0.0
    assert np.abs(rise - ref_rise).max() < 2 * GALPROP_MODE_TOL  # a difference of two runs each within it
    # the second pass has 1H, so p + p -> d + pi+ feeds 2H (crprop.nuclear.pp_fusion): 2H as GALPROP's, which
    # without that term was up to 8.7x lower (ratio 0.115 at 87 MeV/n)
    dev_2h = np.abs(m2.flux("2H")[0] / net2.spectra().flux("2H")[0] - 1.0)
    assert dev_2h.max() < GALPROP_MODE_TOL, dev_2h.max()


@pytest.mark.slow
@pytest.mark.parametrize("name", ["crml_base_efine", "crml_base_xfine"])
def test_galprop_mode_reproduces_refined_grid_runs(runs, name):
    """GALPROP's numerical-sensitivity runs on other grids (README of ../shared/reference/galprop):
    Ekin_factor 1.1 (195 energies instead of 84) and dr 0.5 / dz 0.1 kpc (halo 3.95 kpc, so that z nodes sit at
    +-0.05; the response below includes that). crprop builds every table (cross sections, losses, gas maps, the
    Sun's weights) on the galdef's grid, so it must follow GALPROP's response to the refinement as closely as it
    follows the standard run. The response check guards the reference: it makes sure the refinement matters."""
    run, base = runs(name), runs("crml_base")
    model = _model(run, "galprop")
    assert model.ekin_gev_per_n.size == run.ekin_gev_per_n.size
    rows = deviation_table(model, run.spectra())
    worst = {r["species"]: r["max_abs_dev"] for r in rows}
    assert max(worst.values()) < GALPROP_MODE_TOL, rows
    e_std = base.ekin_gev_per_n
    sel = (e_std >= 0.1) & (e_std <= 1000)
    response = 0.0
    for element in ELEMENTS:
        fine = np.exp(np.interp(np.log(e_std[sel]), np.log(run.ekin_gev_per_n), np.log(run.spectra().flux(element)[0])))
        response = max(response, float(np.abs(fine / base.spectra().flux(element)[0][sel] - 1).max()))
    assert response > REFINEMENT_RESPONSE_MIN[name]


def test_galprop_stepping_reproduces_galprop_psi(internals_dir):
    """GALPROP's own 12C inputs through crprop's galprop mode give GALPROP's psi (operator + ladder)."""
    op, q, ref = galprop_c12_problem(internals_dir)
    res = solve_species(op, q, mode="galprop", backend="numba", ladder=TimeLadder(), on_nonconverged="ignore")
    m = ref > 1e-30 * ref.max()
    assert np.abs(res.psi[..., 0][m] / ref[m] - 1).max() < STEPPING_TOL
