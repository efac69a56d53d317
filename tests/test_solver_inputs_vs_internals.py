"""What propagate() actually hands the solver, against GALPROP's internals: every species, every node, both runs.

The ingredient tests (tests/test_physics_ingredients.py, tests/test_nuclear.py) call the physics functions directly,
on GALPROP's nodes and with galdef numbers; the path through ``load_run(...).setup()``, ``batch_grid`` and
``GalaxySetup.tables`` (the D0 conversion to 4 GV, the grid crprop builds itself, the secondary sources assembled from
the network) was checked only end to end, by the slow flux tests. The review of session 21 (helper-93) compared those
arrays and found agreement to rounding; this test keeps it so (~2 s)."""

from __future__ import annotations

import numpy as np
import pytest

from crprop.galprop.compare import load_run
from crprop.physics.diffusion import diffusion_coefficient_pp, diffusion_coefficient_xx
from crprop.physics.injection import q_primary
from crprop.propagate import D_REFERENCE_RIGIDITY_MV, batch_grid, normalisation_point

TABLES_RTOL = 1e-12
"""D_xx, D_pp, dp/dt, Gamma and the primary injection as the solver receives them, against GALPROP's float64
internals. Measured in session 21: <= 6.7e-15 (the grid's energies are Emin * factor**k, GALPROP's exp(log Emin +
k log factor): a few ulp apart)."""

SECONDARY_RTOL = 1e-6
"""Secondary sources built by crprop from GALPROP's own psi (stored float32), against GALPROP's secondary sources
(float32). Measured: <= 2.6e-7, the float32 limit."""

NORMALISATION_RTOL = 1e-7
"""The proton normalisation factor from GALPROP's own 1H psi (float32), against GALPROP's. Measured: 1.3e-8."""

RUNS = ("crml_base", "p2")


def _max_rel(got: np.ndarray, ref: np.ndarray) -> float:
    """Largest |got / ref - 1| where ref != 0; inf when got is non-zero where ref is zero."""
    got, ref = np.broadcast_arrays(np.asarray(got, dtype=np.float64), np.asarray(ref, dtype=np.float64))
    zero = ref == 0
    if np.any(got[zero] != 0):
        return np.inf
    return float(np.max(np.abs(got[~zero] / ref[~zero] - 1.0), initial=0.0))


def _load(name: str, internals_dir, galprop_ref_dir) -> dict:
    ref = load_run(galprop_ref_dir / name)
    setup = ref.setup()
    grid = batch_grid(setup, ref.params.z_halo_kpc)
    return {"name": name, "params": ref.params, "setup": setup, "grid": grid, "tables": setup.tables(grid),
            "gas": np.load(internals_dir / name / "grid_gas_source.npz"),
            "species": np.load(internals_dir / name / "species.npz")}


@pytest.fixture(scope="module", params=RUNS)
def run(request, internals_dir, galprop_ref_dir):
    return _load(request.param, internals_dir, galprop_ref_dir)


@pytest.fixture(scope="module")
def crml_base(internals_dir, galprop_ref_dir):
    """The run whose internals hold GALPROP's psi of every species (p2's hold none)."""
    return _load("crml_base", internals_dir, galprop_ref_dir)


def test_per_species_tables_equal_galprops(run) -> None:
    p, tab, s, g = run["params"], run["tables"], run["species"], run["gas"]
    names = [str(n) for n in s["names"]]
    assert run["setup"].network.names == names
    one = lambda v: np.array([v])  # noqa: E731 - one model
    worst: dict[str, float] = {}
    for i, name in enumerate(names):
        sp = tab.species[i]
        dxx = diffusion_coefficient_xx(sp.kin.rigidity_mv, sp.kin.beta, one(p.d0_1e28_cm2_s * 1e28), one(p.delta),
                                       one(p.eta), rigidity_break_mv=D_REFERENCE_RIGIDITY_MV)[:, 0]
        dpp = diffusion_coefficient_pp(sp.kin.p_mev, dxx[:, None], one(p.v_alfven_km_s), one(p.delta))[:, 0]
        dpdt = (s["dpdt_ion_per_n_neutral"][i][None, None] * g["n_H_neutral"][..., None]
                + g["n_HII"][..., None] * (s["dpdt_coul_c1"][i][None, None]
                                           - s["dpdt_coul_c2"][i][None, None] * np.log(g["n_HII"])[..., None]))
        gamma = (g["n_H_target"][..., None] * s["frag_rate_per_n_H_target"][i][None, None]
                 + s["decay_rate_s"][i][None, None])
        q = np.zeros_like(s["q_primary"][i])
        if sp.abundance > 0:
            q = q_primary(sp.kin.rigidity_mv, sp.a, sp.z, sp.abundance, one(p.nu1), one(p.nu2), one(p.nu3),
                          one(p.r_break1_mv), one(p.r_break2_mv), form=run["setup"].injection_form)[:, 0]
        assert sp.abundance == float(s["primary_abundance"][i]), name
        for key, got, ref in (("Dxx", dxx, s["Dxx_cm2_s"][i]), ("Dpp", dpp, s["Dpp_MeV2_s"][i]),
                              ("dpdt", sp.dpdt_mev_s, dpdt), ("Gamma", sp.gamma_s, gamma),
                              ("q_primary", q, s["q_primary"][i])):
            worst[f"{key} {name}"] = _max_rel(got, ref)
    bad = {k: v for k, v in worst.items() if not v <= TABLES_RTOL}
    assert not bad, bad
    assert _max_rel(tab.source_spatial, g["source_spatial"]) <= TABLES_RTOL


def test_secondary_sources_and_normalisation_from_galprops_psi(crml_base) -> None:
    s, tab, setup, grid = crml_base["species"], crml_base["tables"], crml_base["setup"], crml_base["grid"]
    names = [str(n) for n in s["names"]]
    psi_all, ref_all = s["psi_raw_f32"], s["secondary_source_f32"]
    order = [int(i) for i in setup.network.solve_order]
    worst: dict[str, float] = {}
    for pos, d in enumerate(order):
        psi = {j: psi_all[j].astype(np.float64)[..., None] for j in order[:pos]}
        q = tab.secondary_source(d, psi, np)
        ref = ref_all[d].astype(np.float64)
        if q is None:
            assert not ref.any(), f"{names[d]}: GALPROP has a secondary source, crprop none"
            continue
        q = q[..., 0]
        tiny = ref <= 1e-30 * ref.max()  # float32 underflow region: compared absolutely below
        worst[names[d]] = _max_rel(np.where(tiny, 0.0, q), np.where(tiny, 0.0, ref))
        assert np.all(np.abs(q[tiny]) <= 1e-25 * ref.max()), names[d]
    bad = {k: v for k, v in worst.items() if not v <= SECONDARY_RTOL}
    assert not bad and len(worst) >= 20, (bad, len(worst))
    weights, iz, k, t = normalisation_point(grid, setup.proton_norm_ekin_mev)
    lo, hi = (sum(w * psi_all[0].astype(np.float64)[ir, iz, kk] for ir, w in weights) for kk in (k, k + 1))
    factor = setup.proton_norm_flux_cgs / np.exp((1 - t) * np.log(lo) + t * np.log(hi))
    assert abs(factor / float(s["normalization_factor"]) - 1.0) <= NORMALISATION_RTOL
