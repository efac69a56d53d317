"""Parallel CPU backend (Numba): fused line kernels on the ``[r, z, E, model]`` layout.

Each kernel runs ``prange`` over independent lines and keeps the model index innermost, so the
recurrences of the Thomas algorithm are vectorised across models (the CPU analogue of one GPU
thread per (line, model)). Kernels are JIT-compiled once and cached on disk (``cache=True``).
Semantics equal crprop.backends.numpy_backend to round-off (tests/test_backend_hot_paths.py; BACKEND_ROUND_OFF in
tests/helpers_problems.py).

Every solve kernel handles both uses:
* ``cn = True``: GALPROP Crank-Nicolson sweep — rhs = (1 - theta A_d) psi + qfac Q on every row,
  solve (I + theta A_d) x = rhs with GALPROP's raw boundary rows (in z: TransportOperator.raw_z_coefficients),
  clip negatives;
* ``cn = False``: (I + theta A_d) x = rhs with identity rows (x = 0) on Dirichlet nodes.

A solve kernel reads each of its lines completely (forward sweep) before it writes that line back (back
substitution), and lines are disjoint between prange iterations, so ``out`` may be ``src`` (douglas_step solves in
place). The public functions take any float64-convertible array of the operator's shape: the kernels index the
operator's tables with the field's shape and do no bounds checking.
"""

from __future__ import annotations

import math
import threading
import weakref
from dataclasses import dataclass

import numba
import numpy as np
from numba import njit, prange

from crprop.backends import check_out
from crprop.operator import TransportOperator

name = "numba"
_JIT = dict(parallel=True, cache=True, fastmath=False, error_model="numpy")
_JIT_SERIAL = dict(cache=True, fastmath=False, error_model="numpy")  # helpers called inside prange bodies


@njit(**_JIT)
def _residual(r1, r2, r3, z1, z2, z3, p1, p2, p3, l2, l3, gam, l4, rmask, zmask, psi, q, out):
    """out = (Q - A psi) * mask; fields viewed as (n_r, n_z, n_E * B) so inner loops are contiguous.
    l2, l3, l4: the residual's loss rows (TransportOperator.res_loss_a*; l4 = 0 for GALPROP's first-order stencil)."""
    nr, nz, ne, nb = psi.shape
    nkb = ne * nb
    ps = psi.reshape((nr, nz, nkb))
    qs = q.reshape((nr, nz, nkb))
    os = out.reshape((nr, nz, nkb))
    r1s, r2s, r3s = r1.reshape((nr, nkb)), r2.reshape((nr, nkb)), r3.reshape((nr, nkb))
    z1s, z2s, z3s = z1.reshape((nz, nkb)), z2.reshape((nz, nkb)), z3.reshape((nz, nkb))
    p1s, p2s, p3s = p1.reshape(nkb), p2.reshape(nkb), p3.reshape(nkb)
    for i in prange(nr):
        for j in range(nz):
            row = os[i, j]
            v = ps[i, j]
            for kb in range(nkb):
                row[kb] = qs[i, j, kb] - (r2s[i, kb] + z2s[j, kb] + p2s[kb]) * v[kb]
            if i > 0:
                for kb in range(nkb):
                    row[kb] += r1s[i, kb] * ps[i - 1, j, kb]
            if i < nr - 1:
                for kb in range(nkb):
                    row[kb] += r3s[i, kb] * ps[i + 1, j, kb]
            if j > 0:
                for kb in range(nkb):
                    row[kb] += z1s[j, kb] * ps[i, j - 1, kb]
            if j < nz - 1:
                for kb in range(nkb):
                    row[kb] += z3s[j, kb] * ps[i, j + 1, kb]
            for kb in range(nb, nkb):
                row[kb] += p1s[kb] * v[kb - nb]
            for kb in range(nkb - nb):
                row[kb] += p3s[kb] * v[kb + nb]
            for k in range(ne):
                d = l2[i, j, k] + gam[i, j, k]
                up = l3[i, j, k] if k < ne - 1 else 0.0
                up2 = l4[i, j, k] if k < ne - 2 else 0.0
                for b in range(nb):
                    kb = k * nb + b
                    a = row[kb] - d * v[kb]
                    if k < ne - 1:
                        a += up * v[kb + nb]
                    if k < ne - 2:
                        a -= up2 * v[kb + 2 * nb]
                    row[kb] = a * rmask[i] * zmask[j, b]


@njit(**_JIT_SERIAL)
def _forward_row(a1, a2, a3, mrow, mscale, th, src, prev, nxt, q, cn, qfac, has_prev, has_next, first,
                 cp_prev, dp_prev, cp_out, dp_out):
    """Thomas forward step of one row for a bundle of independent lines (contiguous index kb).

    a1, a2, a3: the row's GALPROP coefficients (s^-1); mrow * mscale: 1 on unknowns, 0 on Dirichlet
    nodes (identity rows); th: theta (s); src/prev/nxt: this and the neighbouring rows of the field
    (CN explicit part); q: source row. Writes this row's c' and d'.
    """
    for kb in range(a2.size):
        m = mrow[kb] * mscale
        t = th[kb] * m
        b1 = a1[kb] * t if has_prev else 0.0
        b2 = a2[kb] * t
        b3 = a3[kb] * t if has_next else 0.0
        if cn:
            x = (1.0 - b2) * src[kb] + qfac * q[kb]
            if has_prev:
                x += b1 * prev[kb]
            if has_next:
                x += b3 * nxt[kb]
        else:
            x = src[kb] * m
        if first:
            den = 1.0 + b2
            dp_out[kb] = x / den
        else:
            den = 1.0 + b2 + b1 * cp_prev[kb]
            dp_out[kb] = (x + b1 * dp_prev[kb]) / den
        cp_out[kb] = -b3 / den


@njit(**_JIT_SERIAL)
def _backward(out, cp, dp, cn):
    """Back substitution x_n = d'_n, x_j = d'_j - c'_j x_{j+1} on rows of ``out`` (n, n_lines); clip if CN."""
    n = out.shape[0]
    out[n - 1, :] = dp[n - 1, :]
    for j in range(n - 2, -1, -1):
        for kb in range(out.shape[1]):
            out[j, kb] = dp[j, kb] - cp[j, kb] * out[j + 1, kb]
    if cn:
        for j in range(n):
            for kb in range(out.shape[1]):
                if out[j, kb] < 0.0:
                    out[j, kb] = 0.0


@njit(**_JIT)
def _solve_z(z1, z2, z3, rmask, zmask_full, theta, src, q, cn, qfac, out, cp, dp):
    """(I + theta A_z) x = rhs on every z line; at each r the lines (E, model) are contiguous."""
    nr, nz, ne, nb = src.shape
    nkb = ne * nb
    ss, qs, os = src.reshape((nr, nz, nkb)), q.reshape((nr, nz, nkb)), out.reshape((nr, nz, nkb))
    z1s, z2s, z3s = z1.reshape((nz, nkb)), z2.reshape((nz, nkb)), z3.reshape((nz, nkb))
    th = theta.reshape(nkb)
    for i in prange(nr):
        for j in range(nz):
            jp = j - 1 if j > 0 else 0
            jn = j + 1 if j < nz - 1 else j
            _forward_row(z1s[j], z2s[j], z3s[j], zmask_full[j], rmask[i], th, ss[i, j], ss[i, jp], ss[i, jn],
                         qs[i, j], cn, qfac, j > 0, j < nz - 1, j == 0, cp[i, jp], dp[i, jp], cp[i, j], dp[i, j])
        _backward(os[i], cp[i], dp[i], cn)


@njit(**_JIT)
def _solve_r(r1, r2, r3, rmask, zmask_full, theta, src, q, cn, qfac, out, cp, dp):
    """(I + theta A_r) x = rhs on every r line; at each z the lines (E, model) are contiguous."""
    nr, nz, ne, nb = src.shape
    nkb = ne * nb
    ss, qs, os = src.reshape((nr, nz, nkb)), q.reshape((nr, nz, nkb)), out.reshape((nr, nz, nkb))
    r1s, r2s, r3s = r1.reshape((nr, nkb)), r2.reshape((nr, nkb)), r3.reshape((nr, nkb))
    th = theta.reshape(nkb)
    for j in prange(nz):
        for i in range(nr):
            ip = i - 1 if i > 0 else 0
            inx = i + 1 if i < nr - 1 else i
            _forward_row(r1s[i], r2s[i], r3s[i], zmask_full[j], rmask[i], th, ss[i, j], ss[ip, j], ss[inx, j],
                         qs[i, j], cn, qfac, i > 0, i < nr - 1, i == 0, cp[j, ip], dp[j, ip], cp[j, i], dp[j, i])
        _backward(os[:, j, :], cp[j], dp[j], cn)


@njit(**_JIT)
def _solve_p(p1, p2, p3, l2, l3, gam, rmask, zmask, theta, src, q, cn, qfac, out, cp, dp):
    nr, nz, ne, nb = src.shape
    for i in prange(nr):
        for j in range(nz):
            for k in range(ne):
                for b in range(nb):
                    m = rmask[i] * zmask[j, b]
                    th = theta[k, b] * m
                    a1 = p1[k, b] * th if k > 0 else 0.0
                    a2 = (p2[k, b] + l2[i, j, k] + gam[i, j, k]) * th
                    a3 = (p3[k, b] + l3[i, j, k]) * th if k < ne - 1 else 0.0
                    if cn:
                        x = (1.0 - a2) * src[i, j, k, b] + qfac * q[i, j, k, b]
                        if k > 0:
                            x += a1 * src[i, j, k - 1, b]
                        if k < ne - 1:
                            x += a3 * src[i, j, k + 1, b]
                    else:
                        x = src[i, j, k, b] * m
                    if k > 0:
                        den = 1.0 + a2 + a1 * cp[i, k - 1, b]
                        dp[i, k, b] = (x + a1 * dp[i, k - 1, b]) / den
                    else:
                        den = 1.0 + a2
                        dp[i, k, b] = x / den
                    cp[i, k, b] = -a3 / den
            for k in range(ne - 1, -1, -1):
                for b in range(nb):
                    v = dp[i, k, b]
                    if k < ne - 1:
                        v -= cp[i, k, b] * out[i, j, k + 1, b]
                    out[i, j, k, b] = v
            if cn:
                for k in range(ne):
                    for b in range(nb):
                        out[i, j, k, b] = max(out[i, j, k, b], 0.0)


class _Scratch:
    """c', d' of the Thomas recurrences for one batch shape, and the theta table a kernel call takes (filled per
    call): views into the workspace's buffers, so no sweep allocates them. The Dirichlet masks are not here: they
    are per operator and read-only (:func:`_masks`)."""

    def __init__(self, ws: _Workspace, shape: tuple[int, int, int, int]) -> None:
        nr, nz, ne, nb = shape
        self.zc, self.zd = ws.view("zc", (nr, nz, ne * nb)), ws.view("zd", (nr, nz, ne * nb))
        self.pc, self.pd = ws.view("pc", (nr, ne, nb)), ws.view("pd", (nr, ne, nb))
        self.rc, self.rd = ws.view("rc", (nz, nr, ne * nb)), ws.view("rd", (nz, nr, ne * nb))
        self.theta = ws.view("theta", (ne, nb))


class _Workspace:
    """Thomas scratch reused across calls: one flat float64 buffer per array that only grows, of which a call takes
    the first elements as a C-contiguous view of its shape. A solve's re-packed (smaller) batches and other shapes
    reallocate nothing, and the memory held is that of the largest shape seen (a cache per shape kept several)."""

    def __init__(self) -> None:
        self._flat: dict[str, np.ndarray] = {}

    def view(self, name: str, shape: tuple[int, ...]) -> np.ndarray:
        n = math.prod(shape)  # np.prod took ~5 us a call, 11 calls per kernel call
        buf = self._flat.get(name)
        if buf is None or buf.size < n:
            buf = self._flat[name] = np.empty(n)
        return buf[:n].reshape(shape)

    def get(self, shape: tuple[int, int, int, int]) -> _Scratch:
        return _Scratch(self, shape)


_WS = _Workspace()
_KERNEL_LOCK = threading.Lock()
"""One kernel call at a time per process: the Thomas scratch ``_WS`` is shared (a second thread's call of another
shape reallocated it mid-sweep: fluxes wrong by up to 8e9, or a shape error; review of session 12), and numba's
default threading layer does not support concurrent parallel regions. The prange loops already use every core,
so threads calling the solver (``run_distributed(processes=False)``) lose nothing by taking turns. The per-operator
Dirichlet masks (``_MASKS``) need no lock: an entry is never written once stored."""


_MaskKey = tuple[tuple[int, int, int, int], bytes, bytes]
"""(op.shape, op.r_interior.tobytes(), op.z_interior.tobytes()): what the cached masks of an operator depend on."""


@dataclass(frozen=True, eq=False)
class _DirichletMasks:
    """One operator's Dirichlet masks in the forms the kernels and :func:`reset_dirichlet` take, built once.

    rmask (n_r,), zmask (n_z, B), zmask_full (n_z, n_E * B; zmask repeated over E, index k * B + b): float64, 1 on
    unknowns, 0 on Dirichlet nodes. z_rows: the z rows with a Dirichlet node in some model; z_keep: z_interior of
    those rows as (1, len(z_rows), 1, B); r_rows: the Dirichlet r planes. zmask_full is as large as one of the
    operator's z coefficient arrays, and lives as long as the operator (_MASKS). Never written after construction, so
    threads share an entry without a lock (the float arrays stay writeable only because numba compiles another
    specialisation of every kernel for read-only arrays)."""

    key: _MaskKey
    """What the entry was built from. The operator's fields can be replaced or written in place after construction
    (it is a plain dataclass), so each use compares this (0.3 us) rather than trusting the entry."""
    owner: weakref.ref
    rmask: np.ndarray
    zmask: np.ndarray
    zmask_full: np.ndarray
    z_rows: np.ndarray
    z_keep: np.ndarray
    r_rows: np.ndarray
    raw_keep: tuple[np.ndarray, np.ndarray] | None
    """GALPROP's raw z rows (TransportOperator.raw_z_keep) as (n_z, 1, B) factors of z_a1 and z_a3, or None when
    they cut no coupling the kernels read (every model's Dirichlet rows are the grid's two edge rows)."""


_MASKS: dict[int, _DirichletMasks] = {}
"""Per-operator masks keyed by ``id(op)``. A side table rather than a weakref.WeakKeyDictionary because
TransportOperator is an eq=True dataclass and so unhashable, and rather than a private attribute on the operator
because that would travel with copies and pickles of it (dask workers) and hide state in another module's class.
Each entry holds a weak reference to its operator whose callback removes the entry when the operator is collected
(a scan builds thousands of operators: nothing accumulates); the callback runs before the id can be reused, and
takes no lock (it may run from garbage collection inside a thread that holds _KERNEL_LOCK)."""


def _mask_key(op: TransportOperator) -> _MaskKey:
    return op.shape, op.r_interior.tobytes(), op.z_interior.tobytes()


def _build_masks(op: TransportOperator, key: _MaskKey) -> _DirichletMasks:
    _, nz, ne, nb = op.shape
    zmask = np.ascontiguousarray(op.z_interior, dtype=np.float64)
    zmask_full = np.empty((nz, ne * nb))
    np.copyto(zmask_full.reshape(nz, ne, nb), zmask[:, None, :])
    z_rows = np.flatnonzero(~op.z_interior.all(axis=1))
    keep1, keep3 = op.raw_z_keep()
    cuts = not (keep1[1:].all() and keep3[:-1].all())  # a1 of row 0 and a3 of the last row are never read
    op_id = id(op)
    # The callback must not reference op (that would keep it alive); pop with a default: a rebuilt entry's
    # predecessor is dropped with its weakref, whose callback then never runs.
    owner = weakref.ref(op, lambda _ref: _MASKS.pop(op_id, None))
    return _DirichletMasks(key=key, owner=owner, rmask=np.ascontiguousarray(op.r_interior, dtype=np.float64),
                           zmask=zmask, zmask_full=zmask_full, z_rows=z_rows,
                           z_keep=op.z_interior[None, z_rows, None, :], r_rows=np.flatnonzero(~op.r_interior),
                           raw_keep=(keep1[:, None, :], keep3[:, None, :]) if cuts else None)


def _masks(op: TransportOperator) -> _DirichletMasks:
    """The operator's cached masks, (re)built when it has none or its r_interior / z_interior changed.

    Was a copy into the shared workspace on every kernel call (34 us at the paper grid with 16 models, 69 us with
    64: four calls per Douglas step) and np.flatnonzero per reset_dirichlet call. Two threads may both build a
    missing entry; they build equal ones and the last stored wins (dict assignment is atomic)."""
    key = _mask_key(op)
    entry = _MASKS.get(id(op))
    if entry is None or entry.owner() is not op or entry.key != key:
        entry = _MASKS[id(op)] = _build_masks(op, key)
    return entry


_ONES = np.ones(0)
"""All-ones masks of GALPROP's raw sweeps: views of the first elements of this flat buffer, which only grows (as
_Workspace's do), so a call fills nothing. Read and replaced under _KERNEL_LOCK only; never written after creation,
so a view handed out before a growth stays valid."""


def _ones(shape: tuple[int, ...]) -> np.ndarray:
    global _ONES
    n = math.prod(shape)
    if _ONES.size < n:
        _ONES = np.ones(n)
    return _ONES[:n].reshape(shape)


def _raw_z_rows(op: TransportOperator) -> tuple[np.ndarray, np.ndarray]:
    """z_a1, z_a3 of GALPROP's raw sweeps (TransportOperator.raw_z_coefficients): the operator's own when the cut
    changes nothing the kernel reads, else products written into the workspace (two passes over the z tables,
    1 / n_r of a field each; the keep factors are cached with the masks). Called under _KERNEL_LOCK."""
    keep = _masks(op).raw_keep
    if keep is None:
        return op.z_a1, op.z_a3
    shape = op.z_a1.shape
    return (np.multiply(op.z_a1, keep[0], out=_WS.view("z1raw", shape)),
            np.multiply(op.z_a3, keep[1], out=_WS.view("z3raw", shape)))


def _field(op: TransportOperator, x, name: str) -> np.ndarray:
    """x as a C-contiguous float64 array (no copy when it is one), checked against the operator's shape.

    The kernels reshape their fields (C order only), type-specialise on dtype and layout (a float32 field compiled a
    second kernel and was returned in float32) and index the operator's tables with the field's shape unchecked (a
    field with more models than the operator read and wrote past the Thomas scratch: heap corruption)."""
    return op.check_source(x, name, finite=False)


def _run(op, d, theta, src, q, cn, qfac, raw, out=None):
    """One line-solve kernel in direction d on checked fields (see :func:`_field`); ``out`` may be ``src``."""
    if d not in ("z", "p", "r"):
        raise ValueError(f"direction must be one of 'r', 'z', 'p', got {d!r}")
    out = np.empty_like(src) if out is None else out
    with _KERNEL_LOCK:  # the scratch workspace (Thomas c', d', theta) and _ONES are shared
        ws = _WS.get(op.shape)
        np.copyto(ws.theta, theta)  # a scalar or (n_E, B); always the same writable C array type for the kernels
        nr, nz, ne, nb = op.shape
        if raw:  # GALPROP's boundary rows: no Dirichlet identity rows
            rmask, zmask = _ones((nr,)), _ones((nz, nb) if d == "p" else (nz, ne * nb))
        else:
            masks = _masks(op)
            rmask, zmask = masks.rmask, (masks.zmask if d == "p" else masks.zmask_full)
        if d == "z":
            z1, z3 = _raw_z_rows(op) if raw else (op.z_a1, op.z_a3)
            _solve_z(z1, op.z_a2, z3, rmask, zmask, ws.theta, src, q, cn, qfac, out, ws.zc, ws.zd)
        elif d == "p":
            _solve_p(op.p_a1, op.p_a2, op.p_a3, op.loss_a2, op.loss_a3, op.gamma, rmask, zmask, ws.theta, src, q,
                     cn, qfac, out, ws.pc, ws.pd)
        else:
            _solve_r(op.r_a1, op.r_a2, op.r_a3, rmask, zmask, ws.theta, src, q, cn, qfac, out, ws.rc, ws.rd)
    return out


def _out(op: TransportOperator, out: np.ndarray | None, name: str, *inputs: np.ndarray,
         may_be: np.ndarray | None = None) -> np.ndarray:
    """``out`` checked by :func:`crprop.backends.check_out`; a new array when None."""
    return np.empty(op.shape) if out is None else check_out(op.shape, out, name, *inputs, may_be=may_be)


def residual(op: TransportOperator, psi: np.ndarray, q: np.ndarray, out: np.ndarray | None = None) -> np.ndarray:
    """Q - A psi on interior nodes, 0 on Dirichlet nodes (into ``out`` when given)."""
    psi, q = _field(op, psi, "psi"), _field(op, q, "q")
    out = _out(op, out, "out", psi, q)
    masks = _masks(op)
    with _KERNEL_LOCK:  # numba's parallel regions, one at a time (the residual takes no scratch)
        _residual(op.r_a1, op.r_a2, op.r_a3, op.z_a1, op.z_a2, op.z_a3, op.p_a1, op.p_a2, op.p_a3,
                  op.res_loss_a2, op.res_loss_a3, op.gamma, op.res_loss_a4, masks.rmask, masks.zmask, psi, q, out)
    return out


def solve(op: TransportOperator, d: str, theta, rhs: np.ndarray, raw: bool = False) -> np.ndarray:
    """Solve (I + theta A_d) x = rhs along direction d (see numpy_backend.solve)."""
    rhs = _field(op, rhs, "rhs")
    return _run(op, d, theta, rhs, rhs, False, 0.0, raw)


def cn_sweep(op: TransportOperator, d: str, dt_s: float, psi: np.ndarray, q: np.ndarray,
             out: np.ndarray | None = None) -> np.ndarray:
    """One GALPROP Crank-Nicolson sweep (see numpy_backend.cn_sweep); ``out`` (may be psi): C float64 result."""
    op.require_first_order_losses("cn_sweep")
    psi_c, q_c = _field(op, psi, "psi"), _field(op, q, "q")
    out = None if out is None else _out(op, out, "out", psi, q, may_be=psi)  # psi itself: module doc
    return _run(op, d, 0.5 * dt_s, psi_c, q_c, True, dt_s / 3.0, True, out)


def reset_dirichlet(op: TransportOperator, psi: np.ndarray, d: str | None = None) -> None:
    """Set psi = 0 in place on the Dirichlet nodes of direction d ('r', 'z' or both).

    Only the z rows and r planes that hold Dirichlet nodes are touched (numpy_backend multiplies the whole field by
    the masks: three field passes per galprop step, 12 % of the numba ladder's time)."""
    masks = _masks(op)  # the rows and planes to touch, found once per operator
    if d in (None, "z"):
        psi[:, masks.z_rows] *= masks.z_keep  # rows with a Dirichlet node in some model
    if d in (None, "r"):
        psi[masks.r_rows] = 0.0


def douglas_step(op: TransportOperator, tau_s: np.ndarray, psi: np.ndarray, q: np.ndarray,
                 out: np.ndarray | None = None, res_out: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """One Douglas ADI step in delta form (see numpy_backend.douglas_step); ``out``, ``res_out``: where to write
    psi_new and the residual (C float64, sharing no memory with psi or q), new arrays when None."""
    psi, q = _field(op, psi, "psi"), _field(op, q, "q")
    res = residual(op, psi, q, out=res_out)
    d = np.multiply(res, tau_s[None, None], out=_out(op, out, "out", psi, q, res))
    for direction in ("z", "p", "r"):  # in place (module doc): no new field beyond d and res (were 4 a step)
        _run(op, direction, tau_s, d, d, False, 0.0, False, out=d)
    d += psi
    return d, res


def set_threads(n: int) -> int:
    """Number of CPU threads for the prange loops (this thread's setting), at most numba's pool
    (``NUMBA_NUM_THREADS``, by default the CPU count); returns the number set."""
    if n < 1:
        raise ValueError(f"threads must be >= 1, got {n}")
    used = min(int(n), numba.config.NUMBA_NUM_THREADS)
    numba.set_num_threads(used)
    return used
