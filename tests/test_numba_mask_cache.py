"""The numba backend's per-operator Dirichlet masks (crprop.backends.numba_backend._masks): built once per operator
instead of copied into the shared workspace on every kernel call. Operators used alternately (different masks,
same or different batch sizes), an operator whose masks are replaced or written in place, and many short-lived
operators must each get their own, current masks: a stale or shared entry gives other numbers than the numpy
backend (which reads op.z_interior / op.r_interior directly) and than masks built afresh."""

from __future__ import annotations

import dataclasses
import gc
import weakref

import numpy as np
import pytest
from helpers_problems import BACKEND_ROUND_OFF, halo_problem, slice_error

from crprop.backends import numba_backend, numpy_backend
from crprop.operator import TransportOperator

HALOS = {
    "five_mixed": (1.4, 1.0, 0.7, 1.2, 0.9),  # 6, 4, 2, 6, 4 interior z rows on small_grid
    "five_reversed": (0.9, 1.2, 0.7, 1.0, 1.4),  # the same batch size, other masks per model
    "three": (0.7, 1.4, 1.0),  # another batch size
}
"""Halo half-heights (kpc) per operator: the Dirichlet z masks differ between every pair of operators."""


@pytest.fixture(scope="module")
def problems() -> dict[str, tuple[TransportOperator, np.ndarray, np.ndarray, np.ndarray]]:
    """name -> (operator, q, tau, psi); every pair differs in its Dirichlet masks."""
    out = {}
    for seed, (name, halos) in enumerate(HALOS.items()):
        op, q = halo_problem(halos, seed)
        rng = np.random.default_rng(100 + seed)
        out[name] = (op, q, rng.uniform(1e12, 1e15, op.shape[2:]), q * rng.uniform(1e13, 1e14, q.shape))
    masks = [op.z_interior for op, *_ in out.values()]
    assert not np.array_equal(masks[0], masks[1]) and masks[0].shape != masks[2].shape
    return out


def all_kernel_results(backend, op: TransportOperator, q: np.ndarray, tau: np.ndarray,
                       psi: np.ndarray) -> list[np.ndarray]:
    """Every entry point that takes masks: the line solves (Dirichlet and GALPROP's raw all-ones rows), the
    residual, a Crank-Nicolson sweep, a Douglas step and reset_dirichlet."""
    results = []
    for d in ("z", "p", "r"):
        for raw in (False, True):
            results.append(backend.solve(op, d, tau, q, raw=raw))
        results.append(backend.cn_sweep(op, d, 3e13, psi, q))
    results.append(backend.residual(op, psi, q))
    results.extend(backend.douglas_step(op, tau, psi, q))
    reset = psi.copy()
    backend.reset_dirichlet(op, reset)
    results.append(reset)
    return results


def fresh_numba_results(op, q, tau, psi) -> list[np.ndarray]:
    """The numba results with no cached masks at all (every call builds its operator's masks)."""
    results = []
    for d in ("z", "p", "r"):
        for raw in (False, True):
            numba_backend._MASKS.clear()
            results.append(numba_backend.solve(op, d, tau, q, raw=raw))
        numba_backend._MASKS.clear()
        results.append(numba_backend.cn_sweep(op, d, 3e13, psi, q))
    numba_backend._MASKS.clear()
    results.append(numba_backend.residual(op, psi, q))
    numba_backend._MASKS.clear()
    results.extend(numba_backend.douglas_step(op, tau, psi, q))
    numba_backend._MASKS.clear()
    reset = psi.copy()
    numba_backend.reset_dirichlet(op, reset)
    results.append(reset)
    return results


def assert_equals_numpy(got: list[np.ndarray], op, q, tau, psi) -> None:
    """numba against numpy: within BACKEND_ROUND_OFF per (energy, model) slice (tests/helpers_problems.py)."""
    for k, (a, b) in enumerate(zip(all_kernel_results(numpy_backend, op, q, tau, psi), got, strict=True)):
        assert slice_error(b, a) <= BACKEND_ROUND_OFF, k


def test_alternating_operators_get_their_own_masks(problems):
    """Calls alternating between operators (the same batch size with other masks, and another batch size): bit for
    bit the results of masks built afresh for every call, and numpy's to round-off."""
    fresh = {name: fresh_numba_results(*args) for name, args in problems.items()}
    for name in ("five_mixed", "five_reversed", "three", "five_mixed", "three", "five_reversed"):
        got = all_kernel_results(numba_backend, *problems[name])
        for k, (a, b) in enumerate(zip(fresh[name], got, strict=True)):
            assert np.array_equal(a, b), (name, k)
        assert_equals_numpy(got, *problems[name])


def test_reset_dirichlet_zeroes_exactly_the_dirichlet_nodes(problems):
    """Two operators with other masks (and another batch size) alternately: each reset zeroes its own Dirichlet
    nodes and nothing else, per direction."""
    rng = np.random.default_rng(11)
    for _ in range(2):
        for name in ("five_mixed", "three", "five_reversed"):
            op, q, _, _ = problems[name]
            psi = q * rng.choice([-1.0, 0.5, 2.0], q.shape)  # no zeros: a zero left untouched would look reset
            for d in (None, "z", "r"):
                got = psi.copy()
                numba_backend.reset_dirichlet(op, got, d)
                keep = np.ones(psi.shape, dtype=bool)
                if d in (None, "z"):
                    keep &= op.z_interior[None, :, None, :]
                if d in (None, "r"):
                    keep &= op.r_interior[:, None, None, None]
                assert (got[~keep] == 0).all(), (name, d)
                assert np.array_equal(got[keep], psi[keep]), (name, d)


@pytest.mark.parametrize("change", ["in_place", "replaced"])
def test_changed_masks_of_the_same_operator_are_seen(problems, change):
    """The operator is a plain dataclass: its z_interior can be written in place or replaced after the masks were
    cached. The next calls use the new masks (equal to numpy's and to a new operator's with those masks)."""
    op0, q, tau, psi = problems["five_mixed"]
    op = dataclasses.replace(op0)  # own arrays for the masks below
    op.z_interior = op0.z_interior.copy()
    op.r_interior = op0.r_interior.copy()
    all_kernel_results(numba_backend, op, q, tau, psi)  # caches the original masks
    new_z = op.z_interior.copy()
    new_z[[1, -2], :] = False  # one more Dirichlet row at each end for every model
    new_r = op.r_interior.copy()
    new_r[-2] = False
    if change == "in_place":
        op.z_interior[...] = new_z
        op.r_interior[...] = new_r
    else:
        op.z_interior, op.r_interior = new_z, new_r
    got = all_kernel_results(numba_backend, op, q, tau, psi)
    assert_equals_numpy(got, op, q, tau, psi)
    built = dataclasses.replace(op, z_interior=new_z.copy(), r_interior=new_r.copy())
    for k, (a, b) in enumerate(zip(fresh_numba_results(built, q, tau, psi), got, strict=True)):
        assert np.array_equal(a, b), k
    unchanged = all_kernel_results(numba_backend, op0, q, tau, psi)
    for k, (a, b) in enumerate(zip(fresh_numba_results(op0, q, tau, psi), unchanged, strict=True)):
        assert np.array_equal(a, b), k


def test_masks_do_not_outlive_their_operator(problems):
    """A scan builds thousands of operators: the cache holds none of them alive and drops each one's masks with
    it."""
    op0, q, tau, psi = problems["three"]
    n_before = len(numba_backend._MASKS)
    refs, ids = [], set()
    for seed in range(20):
        op = dataclasses.replace(op0, gamma=op0.gamma * (1 + seed / 10))
        numba_backend.residual(op, psi, q)
        numba_backend.reset_dirichlet(op, psi.copy())
        assert id(op) in numba_backend._MASKS
        refs.append(weakref.ref(op))
        ids.add(id(op))
    del op
    gc.collect()
    assert all(r() is None for r in refs)
    # the problems' operators stay alive, so no id of theirs was reused by the loop's
    assert not ids & set(numba_backend._MASKS) and len(numba_backend._MASKS) <= n_before


def test_an_entry_of_a_dead_operator_under_a_reused_id_is_rebuilt(problems):
    """The weakref callback drops an operator's entry before its id can be reused; should an entry ever outlive it
    (a lost callback), the owner check keeps a new operator at that id from taking the old operator's masks."""
    op, q, tau, psi = problems["three"]
    right = numba_backend._masks(op)
    stale = dataclasses.replace(right, owner=lambda: None, rmask=np.zeros_like(right.rmask))  # same key, dead owner
    numba_backend._MASKS[id(op)] = stale
    try:
        got = numba_backend._masks(op)
        assert got is not stale and got.owner() is op
        np.testing.assert_array_equal(got.rmask, op.r_interior.astype(np.float64))
    finally:
        numba_backend._MASKS[id(op)] = numba_backend._masks(op)
