"""Force-field modulation (Spectra.modulate) against GALPROP's formula as applied in the reference files."""

from __future__ import annotations

import numpy as np
import pytest

from crprop.constants import FLUX_CGS_MEV_TO_SI_GEV
from crprop.spectra import Spectra

MODULATION_TOL = 1e-6
"""Same formula and interpolation (power law in E^2 J between grid points): round-off only."""


def test_modulation_matches_reference(galprop_ref_dir):
    with np.load(galprop_ref_dir / "crml_base" / "crml_base.npz") as f:
        e_gev = f["Ekin_MeV_per_n"] / 1e3
        lis = Spectra(e_gev, f["iso_Z"], f["iso_A"], f["iso_flux_LIS"] * FLUX_CGS_MEV_TO_SI_GEV, [True], [0.0])
        ref = f["iso_flux_mod"] * FLUX_CGS_MEV_TO_SI_GEV
    mod = lis.modulate(696.0)
    good = ref > 0
    assert np.abs(mod.iso_flux[0][good] / ref[good] - 1).max() < MODULATION_TOL


def test_modulation_limits():
    e = np.geomspace(1e-3, 1e4, 60)
    flux = np.stack([e**-2.7, 3 * e**-2.7])[None]
    s = Spectra(e, [1, 6], [1, 12], flux, [True], [0.0])
    same = s.modulate(0.0)
    np.testing.assert_allclose(same.iso_flux, s.iso_flux, rtol=1e-12)
    m = s.modulate(600.0)
    assert np.all(m.iso_flux[0, :, :20] < s.iso_flux[0, :, :20])  # suppressed at low energy
    np.testing.assert_allclose(m.iso_flux[0, :, -5:-1], s.iso_flux[0, :, -5:-1], rtol=1e-3)  # not at high
    with pytest.raises(ValueError, match="phi_mv"):
        s.modulate(-1.0)
    with pytest.raises(ValueError, match="already modulated"):
        m.modulate(100.0)
