"""CPU backends' hot paths: numba against numpy to round-off (per energy slice, models with different halos), the
entry points' input handling, kernels compiled once, in-place line solves and the solvers' buffer reuse."""

from __future__ import annotations

import numpy as np
import pytest
from helpers_problems import BACKEND_ROUND_OFF, halo_problem, random_problem, slice_error

from crprop.backends import numba_backend, numpy_backend
from crprop.solvers import TimeLadder, douglas, galprop_cn, solve_species

ZH_MIXED = (1.4, 1.0, 0.7, 1.2, 0.9)
"""Halo half-heights (kpc) of the mixed batch on small_grid (z to 1.4 kpc, dz 0.4): 6, 4, 2, 6 and 4 interior z rows,
so the Dirichlet z mask differs between models (the per-model mask tables the numba kernels take)."""


def mixed_halo_problem(seed: int = 7):
    return halo_problem(ZH_MIXED, seed)


@pytest.fixture(scope="module", params=["mixed_halos", "upwind2"])
def case(request):
    if request.param == "mixed_halos":
        op, q = mixed_halo_problem()
        assert len(set(op.z_interior.sum(axis=0).tolist())) > 1
    else:  # the residual's second-order loss row (res_loss_a4)
        _, op, q = random_problem(seed=2, n_models=4, loss_scheme="upwind2")
    rng = np.random.default_rng(3)
    tau = rng.uniform(1e12, 1e15, op.shape[2:])
    psi = q * rng.uniform(1e13, 1e14, q.shape)
    return request.param, op, q, tau, psi


@pytest.mark.parametrize("d", ["r", "z", "p"])
def test_numba_primitives_equal_numpy_per_energy_slice(case, d):
    name, op, q, tau, psi = case
    for raw in (False, True):
        for theta in (tau, 3e14):  # per (E, model) and scalar: the two theta tables the kernels are given
            a = numpy_backend.solve(op, d, theta, q, raw=raw)
            b = numba_backend.solve(op, d, theta, q, raw=raw)
            assert slice_error(b, a) <= BACKEND_ROUND_OFF, (d, raw)
            if d != "p":  # same operations in the same order: equal to the bit
                assert np.array_equal(a, b), (d, raw)
    a, b = numpy_backend.residual(op, psi, q), numba_backend.residual(op, psi, q)
    assert slice_error(b, a) <= BACKEND_ROUND_OFF
    if name != "upwind2":  # GALPROP's sweeps take the first-order loss stencil only
        a = numpy_backend.cn_sweep(op, d, 3e13, psi, q)
        b = numba_backend.cn_sweep(op, d, 3e13, psi, q)
        assert slice_error(b, a) <= BACKEND_ROUND_OFF
    a, b = numpy_backend.douglas_step(op, tau, psi, q), numba_backend.douglas_step(op, tau, psi, q)
    assert slice_error(b[0], a[0]) <= BACKEND_ROUND_OFF and slice_error(b[1], a[1]) <= BACKEND_ROUND_OFF


def test_numba_solves_equal_numpy_per_energy_slice(case):
    name, op, q, _, _ = case
    kw = dict(tol=1e-8, on_nonconverged="ignore")
    a = solve_species(op, q, mode="fast", backend="numpy", **kw)
    b = solve_species(op, q, mode="fast", backend="numba", **kw)
    assert np.array_equal(a.model_steps, b.model_steps)
    assert slice_error(b.psi, a.psi) <= BACKEND_ROUND_OFF
    if name != "upwind2":
        kw["ladder"] = TimeLadder(repeat=2)
        a = solve_species(op, q, mode="galprop", backend="numpy", **kw)
        b = solve_species(op, q, mode="galprop", backend="numba", **kw)
        assert slice_error(b.psi, a.psi) <= BACKEND_ROUND_OFF


# ------------------------------------------------------------------------------------- input handling
def _layouts(x: np.ndarray) -> dict[str, np.ndarray]:
    wide = np.concatenate([x, x], axis=-1)
    return {"fortran": np.asfortranarray(x), "strided": wide[..., ::2], "float32": x.astype(np.float32)}


def test_numba_entry_points_take_any_layout_and_return_float64():
    """A Fortran-ordered or strided field made numba raise in the kernels' reshape (and solve
    even passed the caller's rhs on after making a C copy of it), and a float32 field compiled a float32 kernel
    whose result was float32 (numpy: float64). Each is now the C float64 call's result, to the bit."""
    _, op, q = random_problem(seed=1, n_models=3)
    tau = np.full(op.shape[2:], 1e14)
    psi = q * 1e13
    for label, x in _layouts(psi).items():
        x64 = np.ascontiguousarray(x, dtype=np.float64)  # float32 rounds psi: compare with the rounded field
        for d in "rzp":
            got = numba_backend.solve(op, d, tau, x)
            assert got.dtype == np.float64 and np.array_equal(got, numba_backend.solve(op, d, tau, x64)), (label, d)
            got = numba_backend.cn_sweep(op, d, 3e13, x, q)
            assert got.dtype == np.float64 and np.array_equal(got, numba_backend.cn_sweep(op, d, 3e13, x64, q))
        got = numba_backend.residual(op, x, q)
        assert got.dtype == np.float64 and np.array_equal(got, numba_backend.residual(op, x64, q)), label
        new, res = numba_backend.douglas_step(op, tau, x, q)
        ref_new, ref_res = numba_backend.douglas_step(op, tau, x64, q)
        assert np.array_equal(new, ref_new) and np.array_equal(res, ref_res), label


def test_numba_rejects_a_field_of_another_shape():
    """The p kernel indexes the operator's tables and the Thomas scratch with the field's shape, unchecked: a field
    with two more models than the operator wrote past the scratch (glibc abort 'free(): invalid next size'), one
    with fewer came back without an error. (The test uses fewer models, which cannot corrupt memory unfixed.)"""
    _, op, q = random_problem(seed=1, n_models=3)
    tau = np.full(op.shape[2:], 1e14)
    small = q[..., :2].copy()
    with pytest.raises(ValueError, match=r"rhs has shape \(6, 8, 10, 2\), expected \(6, 8, 10, 3\)"):
        numba_backend.solve(op, "p", tau, small)
    with pytest.raises(ValueError, match="psi has shape"):
        numba_backend.cn_sweep(op, "p", 3e13, small, q)
    with pytest.raises(ValueError, match="q has shape"):
        numba_backend.residual(op, q, small)


def test_numpy_solve_keeps_float64_recurrences():
    """numpy_backend.solve stored the Thomas c', d' in the rhs's dtype: float32 recurrences (errors ~1e-7), and
    for an integer rhs truncated ones. The reference now works in float64 whatever it is given."""
    _, op, q = random_problem(seed=1, n_models=3)
    tau = np.full(op.shape[2:], 1e14)
    for rhs in (q.astype(np.float32), np.rint(q * 1e3 / q.max()).astype(np.int64)):
        for d in "rzp":
            got = numpy_backend.solve(op, d, tau, rhs)
            assert got.dtype == np.float64
            assert np.array_equal(got, numpy_backend.solve(op, d, tau, rhs.astype(np.float64))), (rhs.dtype, d)


def test_numba_kernels_compile_once_per_argument_types():
    """theta was a read-only view when given as an (n_E, B) array (douglas_step) and a new writable array when a
    scalar (cn_sweep), so every line-solve kernel was compiled twice (~11 s more on a cold cache, measured). Now
    the tables (theta, masks) are always the workspace's writable arrays and fields always C float64."""
    _, op, q = random_problem(seed=1, n_models=3)
    tau = np.full(op.shape[2:], 1e14)
    theta_arg = {numba_backend._solve_z: 5, numba_backend._solve_r: 5, numba_backend._solve_p: 8}
    numba_backend.douglas_step(op, tau, q, q)
    for d in "rzp":
        numba_backend.solve(op, d, tau, q)
        numba_backend.cn_sweep(op, d, 3e13, q, q)
    for kernel, i in theta_arg.items():
        assert len({sig[i] for sig in kernel.signatures}) == 1, (kernel.__name__, kernel.signatures)  # one theta type
    for d in "rzp":
        numba_backend.solve(op, d, 2e14, q.astype(np.float32))
        numba_backend.cn_sweep(op, d, 3e13, np.asfortranarray(q), q)
    for kernel, i in theta_arg.items():  # fields: float64 only (the argument after theta)
        assert {sig[i + 1].dtype.name for sig in kernel.signatures} == {"float64"}, kernel.__name__


# ----------------------------------------------------------------------------- in place and buffer reuse
@pytest.mark.parametrize("d", ["r", "z", "p"])
def test_numba_sweeps_in_place_equal_out_of_place(d):
    """The kernels read a line completely before writing it back (numba_backend's module doc), which douglas_step
    and the galprop ladder rely on to solve in place: in place equals out of place, to the bit."""
    _, op, q = random_problem(seed=1, n_models=3)
    tau = np.random.default_rng(2).uniform(1e12, 1e15, op.shape[2:])
    psi = q * 1e13
    x = psi.copy()
    assert numba_backend.cn_sweep(op, d, 3e13, x, q, out=x) is x
    assert np.array_equal(x, numba_backend.cn_sweep(op, d, 3e13, psi, q))
    x = q.copy()
    numba_backend._run(op, d, tau, x, x, False, 0.0, False, out=x)
    assert np.array_equal(x, numba_backend.solve(op, d, tau, q))
    x = psi.copy()
    assert numpy_backend.cn_sweep(op, d, 3e13, x, q, out=x) is x
    assert np.array_equal(x, numpy_backend.cn_sweep(op, d, 3e13, psi, q))


def test_numba_douglas_step_is_its_three_solves():
    """douglas_step (in-place solves, optional output buffers) equals the public solves composed, to the bit."""
    _, op, q = random_problem(seed=1, n_models=3)
    tau = np.random.default_rng(2).uniform(1e12, 1e15, op.shape[2:])
    psi = q * 1e13
    res = numba_backend.residual(op, psi, q)
    d = res * tau[None, None]
    for direction in "zpr":
        d = numba_backend.solve(op, direction, tau, d)
    out, res_out = np.empty_like(q), np.empty_like(q)
    for backend in (numba_backend, numpy_backend):
        new, r = backend.douglas_step(op, tau, psi, q, out=out, res_out=res_out)
        assert new is out and r is res_out
    new, r = numba_backend.douglas_step(op, tau, psi, q)
    assert np.array_equal(new, psi + d) and np.array_equal(r, res)
    with pytest.raises(ValueError, match="share memory"):
        numba_backend.douglas_step(op, tau, psi, q, out=psi)
    with pytest.raises(ValueError, match="share memory"):
        numba_backend.douglas_step(op, tau, psi, q, out=out, res_out=out)


class _Recorder:
    """A backend that forwards to numba and records the output buffers the solvers hand it."""

    name = "numba"

    def __init__(self):
        self.outs: list[np.ndarray] = []

    def __getattr__(self, attr):
        return getattr(numba_backend, attr)

    def douglas_step(self, op, tau_s, psi, q, out=None, res_out=None):
        self.outs += [out, res_out]
        return numba_backend.douglas_step(op, tau_s, psi, q, out=out, res_out=res_out)

    def cn_sweep(self, op, d, dt_s, psi, q, out=None):
        self.outs.append(out)
        return numba_backend.cn_sweep(op, d, dt_s, psi, q, out=out)


def _buffers(arrays: list[np.ndarray]) -> int:
    assert all(a is not None for a in arrays)
    return len({a.__array_interface__["data"][0] for a in arrays})


def test_solver_loops_reuse_their_field_buffers():
    """A new field per sweep or step cost 10-20 % of the numba loops (page faults of fresh memory). The galprop
    ladder now sweeps into its own psi, and the Douglas iteration cycles three buffers (psi in, psi out, residual)
    between re-packs, with the same result as before (the solves are unchanged; see the tests above)."""
    _, op, q = random_problem(seed=1, n_models=3)
    rec = _Recorder()
    psi, _ = galprop_cn.march(rec, op, q, TimeLadder(repeat=1))
    assert len(rec.outs) == 36 and _buffers(rec.outs) == 1 and rec.outs[0] is psi
    rec = _Recorder()
    psi, _, steps, _ = douglas.iterate(rec, op, q, 1e-30, 12)  # unreachable tol: no model stops, no re-pack
    assert steps == 12 and _buffers(rec.outs) == 3
    assert not any(np.shares_memory(psi, b) for b in rec.outs)  # the result is never a step's buffer


def test_numba_reset_dirichlet_equals_numpy():
    """numba's reset touches only the rows and planes with Dirichlet nodes; the result is numpy's full-field
    multiplication's (models with different halos, negative and zero values)."""
    op, q = mixed_halo_problem()
    psi = q * np.random.default_rng(5).choice([-1.0, 0.0, 1.0], q.shape)
    for d in (None, "z", "r"):
        a, b = psi.copy(), psi.copy()
        numpy_backend.reset_dirichlet(op, a, d)
        numba_backend.reset_dirichlet(op, b, d)
        assert np.array_equal(a, b), d
        keep = np.ones(psi.shape, dtype=bool)
        if d in (None, "z"):
            keep &= op.z_interior[None, :, None, :]
        if d in (None, "r"):
            keep &= op.r_interior[:, None, None, None]
        assert (b[~keep] == 0).all() and np.array_equal(b[keep], psi[keep]), d


def test_solver_loops_take_fortran_and_float32_fields():
    """The loops' own psi is C float64 whatever q and psi0 are: np.zeros_like(q) / np.array(psi0) kept a Fortran
    order (the numba kernels' reshape failed) or float32 (the galprop sweeps ran on and returned float32 fields)."""
    _, op, q = random_problem(seed=1, n_models=3)
    ladder = TimeLadder(repeat=1)
    runs = (lambda a, b: galprop_cn.march(numba_backend, op, a, ladder, psi0=b)[0],
            lambda a, b: douglas.iterate(numba_backend, op, a, 1e-8, 200, psi0=b)[0])
    for convert in (np.asfortranarray, lambda a: a.astype(np.float32)):
        for psi0 in (None, q * 1e13):
            q_x = convert(q)
            psi0_x = None if psi0 is None else convert(psi0)
            q64 = np.ascontiguousarray(q_x, dtype=np.float64)  # the same values, C float64
            psi064 = None if psi0 is None else np.ascontiguousarray(psi0_x, dtype=np.float64)
            for run in runs:
                got = run(q_x, psi0_x)
                assert got.dtype == np.float64 and got.flags.c_contiguous
                assert np.array_equal(got, run(q64, psi064))


@pytest.mark.parametrize("backend", [numpy_backend, numba_backend], ids=["numpy", "numba"])
def test_out_buffers_follow_one_rule(backend):
    """Both CPU backends take ``out=`` by crprop.backends.check_out: cn_sweep's out may be psi itself but no other
    array overlapping psi (a view offset by half a row was accepted by numba and off by up to 81 %, review of
    session 16), douglas_step's out / res_out overlap nothing (numpy returned the residual as psi_new for
    out=res_out), and a float32 out is refused (numpy returned float32)."""
    _, op, q = random_problem(seed=1, n_models=3)
    tau = np.random.default_rng(2).uniform(1e12, 1e15, op.shape[2:])
    psi = q * 1e13
    half_row = op.shape[2] * op.shape[3] // 2
    flat = np.zeros(psi.size + half_row)
    shifted_psi, shifted_out = flat[half_row:].reshape(op.shape), flat[:psi.size].reshape(op.shape)
    shifted_psi[...] = psi
    with pytest.raises(ValueError, match="out must not share memory with the step's inputs"):
        backend.cn_sweep(op, "z", 3e13, shifted_psi, q, out=shifted_out)
    with pytest.raises(ValueError, match="out must be a writeable C-contiguous float64 array"):
        backend.cn_sweep(op, "z", 3e13, psi, q, out=np.empty(op.shape, dtype=np.float32))
    buf = np.empty(op.shape)
    with pytest.raises(ValueError, match="must not share memory"):
        backend.douglas_step(op, tau, psi, q, out=buf, res_out=buf)
    with pytest.raises(ValueError, match="must not share memory"):
        backend.douglas_step(op, tau, psi, q, out=psi.copy(), res_out=psi)
    new, res = backend.douglas_step(op, tau, psi, q, out=np.empty(op.shape), res_out=np.empty(op.shape))
    ref_new, ref_res = backend.douglas_step(op, tau, psi, q)
    assert np.array_equal(new, ref_new) and np.array_equal(res, ref_res)
