"""Parallel CPU backend (Numba): fused line kernels on the ``[r, z, E, model]`` layout.

Each kernel runs ``prange`` over independent lines and keeps the model index innermost, so the
recurrences of the Thomas algorithm are vectorised across models (the CPU analogue of one GPU
thread per (line, model)). Kernels are JIT-compiled once and cached on disk (``cache=True``).
Semantics equal crprop.backends.numpy_backend (tested to 1e-10).

Every solve kernel handles both uses:
* ``cn = True``: GALPROP Crank-Nicolson sweep — rhs = (1 - theta A_d) psi + qfac Q on every row,
  solve (I + theta A_d) x = rhs with GALPROP's raw boundary rows, clip negatives;
* ``cn = False``: (I + theta A_d) x = rhs with identity rows (x = 0) on Dirichlet nodes.
"""

from __future__ import annotations

import numba
import numpy as np
from numba import njit, prange

from crprop.operator import TransportOperator

name = "numba"
_JIT = dict(parallel=True, cache=True, fastmath=False, error_model="numpy")


@njit(**_JIT)
def _residual(r1, r2, r3, z1, z2, z3, p1, p2, p3, l2, l3, gam, rmask, zmask, psi, q, out):
    nr, nz, ne, nb = psi.shape
    for i in prange(nr):
        for j in range(nz):
            for k in range(ne):
                for b in range(nb):
                    v = psi[i, j, k, b]
                    a = (r2[i, k, b] + z2[j, k, b] + p2[k, b] + l2[i, j, k] + gam[i, j, k]) * v
                    if i > 0:
                        a -= r1[i, k, b] * psi[i - 1, j, k, b]
                    if i < nr - 1:
                        a -= r3[i, k, b] * psi[i + 1, j, k, b]
                    if j > 0:
                        a -= z1[j, k, b] * psi[i, j - 1, k, b]
                    if j < nz - 1:
                        a -= z3[j, k, b] * psi[i, j + 1, k, b]
                    if k > 0:
                        a -= p1[k, b] * psi[i, j, k - 1, b]
                    if k < ne - 1:
                        a -= (p3[k, b] + l3[i, j, k]) * psi[i, j, k + 1, b]
                    out[i, j, k, b] = (q[i, j, k, b] - a) * rmask[i] * zmask[j, b]


@njit(**_JIT)
def _solve_z(z1, z2, z3, rmask, zmask, theta, src, q, cn, qfac, out, cp, dp):
    nr, nz, ne, nb = src.shape
    for i in prange(nr):
        for k in range(ne):
            for j in range(nz):
                for b in range(nb):
                    m = rmask[i] * zmask[j, b]
                    th = theta[k, b] * m
                    a1 = z1[j, k, b] * th if j > 0 else 0.0
                    a2 = z2[j, k, b] * th
                    a3 = z3[j, k, b] * th if j < nz - 1 else 0.0
                    if cn:
                        x = (1.0 - a2) * src[i, j, k, b] + qfac * q[i, j, k, b]
                        if j > 0:
                            x += a1 * src[i, j - 1, k, b]
                        if j < nz - 1:
                            x += a3 * src[i, j + 1, k, b]
                    else:
                        x = src[i, j, k, b] * m
                    if j > 0:
                        den = 1.0 + a2 - a1 * (-cp[i, j - 1, b])
                        dp[i, j, b] = (x + a1 * dp[i, j - 1, b]) / den
                    else:
                        den = 1.0 + a2
                        dp[i, j, b] = x / den
                    cp[i, j, b] = -a3 / den
            for j in range(nz - 1, -1, -1):
                for b in range(nb):
                    v = dp[i, j, b]
                    if j < nz - 1:
                        v -= cp[i, j, b] * out[i, j + 1, k, b]
                    out[i, j, k, b] = v
            if cn:
                for j in range(nz):
                    for b in range(nb):
                        out[i, j, k, b] = max(out[i, j, k, b], 0.0)


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


@njit(**_JIT)
def _solve_r(r1, r2, r3, rmask, zmask, theta, src, q, cn, qfac, out, cp, dp):
    nr, nz, ne, nb = src.shape
    for j in prange(nz):
        for k in range(ne):
            for i in range(nr):
                for b in range(nb):
                    m = rmask[i] * zmask[j, b]
                    th = theta[k, b] * m
                    a1 = r1[i, k, b] * th if i > 0 else 0.0
                    a2 = r2[i, k, b] * th
                    a3 = r3[i, k, b] * th if i < nr - 1 else 0.0
                    if cn:
                        x = (1.0 - a2) * src[i, j, k, b] + qfac * q[i, j, k, b]
                        if i > 0:
                            x += a1 * src[i - 1, j, k, b]
                        if i < nr - 1:
                            x += a3 * src[i + 1, j, k, b]
                    else:
                        x = src[i, j, k, b] * m
                    if i > 0:
                        den = 1.0 + a2 + a1 * cp[j, i - 1, b]
                        dp[j, i, b] = (x + a1 * dp[j, i - 1, b]) / den
                    else:
                        den = 1.0 + a2
                        dp[j, i, b] = x / den
                    cp[j, i, b] = -a3 / den
            for i in range(nr - 1, -1, -1):
                for b in range(nb):
                    v = dp[j, i, b]
                    if i < nr - 1:
                        v -= cp[j, i, b] * out[i + 1, j, k, b]
                    out[i, j, k, b] = v
            if cn:
                for i in range(nr):
                    for b in range(nb):
                        out[i, j, k, b] = max(out[i, j, k, b], 0.0)


class _Workspace:
    """Scratch arrays (c', d' of the Thomas recurrences) reused across calls of the same shape."""

    def __init__(self) -> None:
        self.shape: tuple[int, ...] | None = None

    def get(self, shape: tuple[int, int, int, int]) -> _Workspace:
        if self.shape != shape:
            nr, nz, ne, nb = shape
            self.zc, self.zd = np.empty((nr, nz, nb)), np.empty((nr, nz, nb))
            self.pc, self.pd = np.empty((nr, ne, nb)), np.empty((nr, ne, nb))
            self.rc, self.rd = np.empty((nz, nr, nb)), np.empty((nz, nr, nb))
            self.shape = shape
        return self


_WS = _Workspace()


def _masks(op: TransportOperator, raw: bool) -> tuple[np.ndarray, np.ndarray]:
    if raw:
        return np.ones(op.shape[0]), np.ones(op.z_interior.shape)
    return op.r_interior.astype(np.float64), op.z_interior.astype(np.float64)


def _theta(op: TransportOperator, theta) -> np.ndarray:
    return np.ascontiguousarray(np.broadcast_to(np.asarray(theta, dtype=np.float64), op.shape[2:]))


def _run(op, d, theta, src, q, cn, qfac, raw, out=None):
    ws = _WS.get(op.shape)
    out = np.empty_like(src) if out is None else out
    rm, zm = _masks(op, raw)
    th = _theta(op, theta)
    if d == "z":
        _solve_z(op.z_a1, op.z_a2, op.z_a3, rm, zm, th, src, q, cn, qfac, out, ws.zc, ws.zd)
    elif d == "p":
        _solve_p(op.p_a1, op.p_a2, op.p_a3, op.loss_a2, op.loss_a3, op.gamma, rm, zm, th, src, q, cn, qfac,
                 out, ws.pc, ws.pd)
    elif d == "r":
        _solve_r(op.r_a1, op.r_a2, op.r_a3, rm, zm, th, src, q, cn, qfac, out, ws.rc, ws.rd)
    else:
        raise ValueError(f"direction must be one of 'r', 'z', 'p', got {d!r}")
    return out


def residual(op: TransportOperator, psi: np.ndarray, q: np.ndarray) -> np.ndarray:
    """Q - A psi on interior nodes, 0 on Dirichlet nodes."""
    out = np.empty_like(psi)
    _residual(op.r_a1, op.r_a2, op.r_a3, op.z_a1, op.z_a2, op.z_a3, op.p_a1, op.p_a2, op.p_a3,
              op.loss_a2, op.loss_a3, op.gamma, op.r_interior.astype(np.float64),
              op.z_interior.astype(np.float64), psi, q, out)
    return out


def solve(op: TransportOperator, d: str, theta, rhs: np.ndarray, raw: bool = False) -> np.ndarray:
    """Solve (I + theta A_d) x = rhs along direction d (see numpy_backend.solve)."""
    return _run(op, d, theta, np.ascontiguousarray(rhs), rhs, False, 0.0, raw)


def cn_sweep(op: TransportOperator, d: str, dt_s: float, psi: np.ndarray, q: np.ndarray) -> np.ndarray:
    """One GALPROP Crank-Nicolson sweep (see numpy_backend.cn_sweep)."""
    return _run(op, d, 0.5 * dt_s, psi, q, True, dt_s / 3.0, True)


def reset_dirichlet(op: TransportOperator, psi: np.ndarray, d: str | None = None) -> None:
    """Set psi = 0 in place on the Dirichlet nodes of direction d ('r', 'z' or both)."""
    if d in (None, "z"):
        psi *= op.z_interior[None, :, None, :]
    if d in (None, "r"):
        psi *= op.r_interior[:, None, None, None]


def douglas_step(op: TransportOperator, tau_s: np.ndarray, psi: np.ndarray, q: np.ndarray
                 ) -> tuple[np.ndarray, np.ndarray]:
    """One Douglas ADI step in delta form (see numpy_backend.douglas_step)."""
    res = residual(op, psi, q)
    d = res * tau_s[None, None]
    d = _run(op, "z", tau_s, d, d, False, 0.0, False)
    d2 = _run(op, "p", tau_s, d, d, False, 0.0, False)
    d = _run(op, "r", tau_s, d2, d2, False, 0.0, False, out=d)
    d += psi
    return d, res


def set_threads(n: int) -> None:
    """Number of CPU threads for the prange loops."""
    numba.set_num_threads(n)
