"""The second-order loss stencil through the whole network (crprop.discretization.LOSS_SCHEMES).

Its order and its agreement with the exact solve are tested analytically in test_analytic_limits; here: it
changes the spectra only where ionisation/Coulomb losses matter, in the direction of the continuum (the
first-order stencil is 7-11 % high near 0.1 GeV/n on the paper grid, benchmarks/results/loss_scheme.md), and the
scan records it.
"""

from __future__ import annotations

import numpy as np
import pytest

from crnet.scan.models import GridConfig, PropagateModel
from crprop.galaxy import GalaxySetup
from crprop.params import CRML_BASE
from crprop.propagate import propagate

LOW_GEV, HIGH_GEV = (0.05, 0.3), 100.0
LOW_SHIFT_MIN = 0.03
"""On the test grid (dr 4 kpc, dz 1.3 kpc, Ekin factor 1.25) upwind2 lowers B, C and O by 6-9 % at 0.05-0.3 GeV/n
(measured); on the paper grid upwind1 is 4.8-11.6 % above the continuum estimate at 0.1 and 0.3 GeV/n
(benchmarks/results/loss_scheme.md). Asked: at least 3 % lower."""
HIGH_SHIFT_MAX = 5e-4
"""Above 100 GeV/n losses are negligible against escape: measured differences 0.8-1.6e-4 for B, C, O on the test
grid; asked: below 5e-4."""


def test_upwind2_moves_low_energies_only_and_downwards():
    out = {s: propagate(GalaxySetup.paper().with_changes(dr_kpc=4.0, dz_kpc=1.3, ekin_factor=1.25, loss_scheme=s),
                        CRML_BASE, mode="fast", backend="numba") for s in ("upwind1", "upwind2")}
    assert all(o.converged.all() for o in out.values())
    e = out["upwind1"].ekin_gev_per_n
    low, high = (e > LOW_GEV[0]) & (e < LOW_GEV[1]), e > HIGH_GEV
    for el in ("B", "C", "O"):
        ratio = out["upwind2"].flux(el)[0] / out["upwind1"].flux(el)[0] - 1
        assert ratio[low].min() < -LOW_SHIFT_MIN, el
        assert np.abs(ratio[high]).max() < HIGH_SHIFT_MAX, el


def test_scan_model_records_the_loss_scheme():
    model = PropagateModel(GridConfig(dr_kpc=4.0, dz_kpc=1.3, ekin_factor=3.0, loss_scheme="upwind2"),
                           backend="numba")
    assert model.setup.loss_scheme == "upwind2" and model.store_fields()["grid"]["loss_scheme"] == "upwind2"
    assert PropagateModel(GridConfig(dr_kpc=4.0), backend="numba").store_fields()["grid"]["loss_scheme"] == "upwind1"
    with pytest.raises(ValueError, match="loss_scheme"):
        GridConfig(loss_scheme="upwind3").setup()
