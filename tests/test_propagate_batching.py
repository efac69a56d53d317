"""propagate splits a batch into chunks (max_batch, or the GPU memory limit) with the same results."""

from __future__ import annotations

import numpy as np
import pytest

from crprop.galaxy import GalaxySetup
from crprop.params import PropagationParams
from crprop.propagate import device_batch_limit, propagate
from crprop.spectra import concatenate_spectra

EXACT_AGREEMENT = 1e-10
"""'exact' solves each model with a direct solver, so chunking may only change the round-off."""

BASE = dict(d0_1e28_cm2_s=3.25, delta=0.478, eta=-1.55, v_alfven_km_s=34.9, z_halo_kpc=3.9, nu1=0.28,
            nu2=2.42, nu3=2.12, r_break1_mv=880.0, r_break2_mv=4.67e5)


@pytest.fixture(scope="module")
def tiny():
    return GalaxySetup.paper().with_changes(dr_kpc=4.0, dz_kpc=1.3, ekin_factor=3.0)


def _models(n: int) -> list[PropagationParams]:
    rng = np.random.default_rng(5)
    out = []
    for i in range(n):
        vals = {k: v * rng.uniform(0.9, 1.1) for k, v in BASE.items()}
        vals["z_halo_kpc"] = 3.0 + i  # different halos: chunks would get other grids without z_extent_kpc
        out.append(PropagationParams(**vals))
    return out


def test_chunked_batch_equals_one_batch(tiny):
    plist = _models(5)
    whole, psi = propagate(tiny, plist, mode="exact", backend="numpy", return_psi=True, group_halos=False)
    split, psi_split = propagate(tiny, plist, mode="exact", backend="numpy", return_psi=True, max_batch=2,
                                 group_halos=False)
    assert split.meta["chunks"] == [2, 1, 2] and split.n_models == 5
    rel = np.abs(split.iso_flux / whole.iso_flux - 1)[whole.iso_flux > 0]
    assert rel.max() < EXACT_AGREEMENT
    assert set(psi_split) == set(psi) and all(psi_split[k].shape == psi[k].shape for k in psi)
    assert np.array_equal(split.converged, whole.converged)


def test_batch_limit_and_bad_arguments(tiny):
    # paper grid, 25 species: 70,560 cells x 8 B x (25 + 8) = 18.63 MB per model -> 3,435 models in 80 GB x 0.8
    assert device_batch_limit((21, 40, 84), 25, 80 * 10**9) == 3435
    assert device_batch_limit((21, 40, 84), 25, 10**6) == 1
    with pytest.raises(ValueError, match="max_batch"):
        propagate(tiny, _models(2), mode="exact", backend="numpy", max_batch=0)
    with pytest.raises(ValueError, match="z_extent_kpc"):
        propagate(tiny, _models(2), mode="exact", backend="numpy", z_extent_kpc=2.0)
    whole = propagate(tiny, _models(2), mode="exact", backend="numpy")
    with pytest.raises(ValueError, match="part 1"):
        concatenate_spectra([whole, whole.modulate(500.0)])


def test_halo_groups_merge_small_groups(tiny):
    from crprop.propagate import halo_groups

    z = np.array([3.0, 9.0, 3.2, 8.5, 4.0, 3.1])  # tiny grid (dz 1.3 kpc): 7, 15, 9, 15, 9, 9 z nodes
    assert [sorted(g.tolist()) for g in halo_groups(tiny, z, 1)] == [[0], [2, 4, 5], [1, 3]]
    assert [sorted(g.tolist()) for g in halo_groups(tiny, z, 2)] == [[0, 2, 4, 5], [1, 3]]
    assert [sorted(g.tolist()) for g in halo_groups(tiny, z, 3)] == [[0, 1, 2, 3, 4, 5]]


def test_grouped_halos_equal_one_batch(tiny):
    plist = _models(5)[::-1]  # z_h 7, 6, 5, 4, 3 kpc: 13, 11, 9, 9, 7 z nodes
    whole, psi = propagate(tiny, plist, mode="exact", backend="numpy", return_psi=True, group_halos=False)
    grouped, psi_g = propagate(tiny, plist, mode="exact", backend="numpy", return_psi=True)
    assert grouped.meta["halo_groups"] == [1, 2, 1, 1]
    rel = np.abs(grouped.iso_flux / whole.iso_flux - 1)[whole.iso_flux > 0]
    assert rel.max() < EXACT_AGREEMENT
    for k in psi:
        assert psi_g[k].shape == psi[k].shape
        assert np.abs(psi_g[k] - psi[k]).max() <= EXACT_AGREEMENT * np.abs(psi[k]).max()
    # warm start through the groups: psi0 on the whole batch's grid is sliced per group
    again = propagate(tiny, plist, mode="fast", backend="numpy", psi0=psi)
    assert again.converged.all() and max(again.meta["steps_per_species"].values()) <= 2


def test_changed_setup_never_reuses_the_old_tables(tiny):
    """Tables are cached per setup by grid only: a setup derived from one that has already propagated must
    build its own (review of session 12: losses, fragmentation, cross sections and gas changes were ignored)."""
    grid = tiny.grid()
    base = tiny.tables(grid)
    no_losses = tiny.with_changes(momentum_losses=False).tables(grid)
    assert no_losses is not base and tiny.tables(grid) is base
    assert all(np.any(s.dpdt_mev_s != 0) for s in base.species)
    assert all(np.all(s.dpdt_mev_s == 0) for s in no_losses.species)
    more_h2 = tiny.with_changes(x_co=2 * tiny.x_co).tables(grid)
    assert np.max(more_h2.gas.n_H_target / base.gas.n_H_target) > 1.2
    b = propagate(tiny, [PropagationParams(**BASE)], mode="exact", backend="numpy").flux("B")
    b_no_frag = propagate(tiny.with_changes(fragmentation=False), [PropagationParams(**BASE)], mode="exact",
                          backend="numpy").flux("B")
    assert np.max(np.abs(b_no_frag / np.maximum(b, 1e-300) - 1)) > 0.5  # no spallation: boron all but gone


ONE_PASS_RTOL = 1e-9
"""'exact' mode solves each species directly; a second network pass may differ only by round-off when the first
already had every source."""


def test_parents_first_order_needs_no_second_pass(tiny):
    """With parents solved before daughters (including 1H before 2H for p + p -> d pi+, review of session 12:
    2H was solved first and its fusion source was zero), a second pass of the network
    changes no species."""
    order = [tiny.network.species[i] for i in tiny.network.solve_order]
    labels = [(s.z, s.a) for s in order]
    assert labels.index((1, 1)) < labels.index((1, 2))
    one = propagate(tiny, [PropagationParams(**BASE)], mode="exact", backend="numpy")
    two = propagate(tiny.with_changes(network_iterations=2, network_iter_compl=2), [PropagationParams(**BASE)],
                    mode="exact", backend="numpy")
    assert two.meta["steps_per_species"] == {k: 2 * v for k, v in one.meta["steps_per_species"].items()}
    np.testing.assert_allclose(one.iso_flux, two.iso_flux, rtol=ONE_PASS_RTOL, atol=0)


def test_only_network_iter_compl_passes_propagate_nuclei():
    """GALPROP v54 makes max(network_iterations, network_iter_compl, network_iter_sec) passes and propagates every
    species only in the last network_iter_compl of them (1H alone before). With iterations 2 and compl 1 in
    GALPROP's own order (2H before 1H) the nuclei are those of one pass, except 2H: its one complete pass now has
    the first pass's protons for p + p -> d pi+ (review of session 13: crprop made two complete passes, B +5 %)."""
    base = GalaxySetup.paper(order="galprop_v54").with_changes(dr_kpc=4.0, dz_kpc=1.3, ekin_factor=3.0)
    assert (base.network_iterations, base.network_iter_compl, base.network_passes()) == (1, 1, (1, 1))
    params = [PropagationParams(**BASE)]
    one = propagate(base, params, mode="exact", backend="numpy")
    two = propagate(base.with_changes(network_iterations=2), params, mode="exact", backend="numpy")
    full = propagate(base.with_changes(network_iterations=2, network_iter_compl=2), params, mode="exact",
                     backend="numpy")
    assert base.with_changes(network_iterations=2).network_passes() == (2, 1)
    h2 = one.isotopes.index("2H")
    others = [k for k in range(len(one.isotopes)) if k != h2]
    np.testing.assert_allclose(two.iso_flux[:, others], one.iso_flux[:, others], rtol=ONE_PASS_RTOL, atol=0)
    assert np.all(two.iso_flux[0, h2] >= one.iso_flux[0, h2]) and np.max(two.iso_flux[0, h2] / one.iso_flux[0, h2]) > 2
    np.testing.assert_allclose(two.iso_flux[0, h2], full.iso_flux[0, h2], rtol=ONE_PASS_RTOL)  # same 1H, same feed
    boron = one.isotopes.index("10B")
    assert np.max(full.iso_flux[0, boron] / one.iso_flux[0, boron]) > 1.01  # a second complete pass: 10Be decay feed
    with pytest.raises(ValueError, match="network_iter_compl must be >= 1"):
        base.with_changes(network_iter_compl=0)


@pytest.mark.parametrize("iterations", [1, 2, 3, 4])
def test_unset_network_iter_compl_is_galprops_default(iterations, tmp_path):
    """GalaxySetup(network_iter_compl=None) takes GALPROP's default for an unset galdef key, min(iterations, 2),
    so a setup built in Python and one read from a galdef that leaves the key out make the same passes (until
    session 16 None meant every pass complete: 3 iterations gave (3, 3) against GALPROP's (3, 2))."""
    from crprop.galaxy import paper_galdef_path
    from crprop.galprop.galdef import read_galdef
    base = GalaxySetup.paper(order="galprop_v54")
    unset = base.with_changes(network_iterations=iterations, network_iter_compl=None, network_iter_sec=None)
    assert unset.network_passes() == (iterations, min(iterations, 2))
    lines = paper_galdef_path().read_text().splitlines(keepends=True)
    kept = [line for line in lines if not line.startswith(("network_iter_compl", "network_iter_sec"))]
    assert len(kept) == len(lines) - 2  # the packaged galdef sets both keys; this one leaves them to GALPROP
    (tmp_path / "galdef_unset").write_text("".join(kept))
    galdef = read_galdef(tmp_path / "galdef_unset").with_overrides(network_iterations=iterations)
    from_galdef = GalaxySetup.from_galdef(galdef)
    assert from_galdef.network_iter_compl == min(iterations, 2)
    assert from_galdef.network_passes() == unset.network_passes()


@pytest.mark.parametrize("mode", ["galprop", "fast"])
def test_numba_solver_is_safe_from_two_threads(tiny, mode):
    """Two threads propagating batches of different shapes at once (run_distributed(processes=False)) get what
    they get alone. Before the backend serialised its kernels they shared one scratch workspace: galprop-mode
    fluxes came back wrong by factors up to 8e9, fast mode raised a shape error (review of session 12)."""
    import threading
    import warnings

    from crprop.solvers import TimeLadder

    batches = {"a": _models(2), "b": [PropagationParams(**{**BASE, "d0_1e28_cm2_s": 10.0, "v_alfven_km_s": 5.0,
                                                           "z_halo_kpc": 4.0 + i}) for i in range(3)]}

    setup = tiny.with_changes(ladder=TimeLadder(1e9, 0.25, 2, 1e5))  # a short ladder: the kernels, not steady state

    def run(plist):
        return propagate(setup, plist, mode=mode, backend="numba").iso_flux

    together: dict[tuple[str, int], np.ndarray] = {}
    errors: list[BaseException] = []

    def worker(name):
        try:
            for rep in range(3):
                together[(name, rep)] = run(batches[name])
        except BaseException as exc:  # noqa: BLE001 - reported below
            errors.append(exc)

    threads = [threading.Thread(target=worker, args=(name,)) for name in batches]
    with warnings.catch_warnings():  # process-wide, so the threads' too
        warnings.simplefilter("ignore")  # the short ladder does not reach steady state, and says so
        alone = {name: run(plist) for name, plist in batches.items()}
        for t in threads:
            t.start()
        for t in threads:
            t.join()
    assert not errors, errors
    for (name, _), flux in together.items():
        assert np.array_equal(flux, alone[name]), name
