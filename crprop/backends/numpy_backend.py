"""Reference backend in plain numpy: readable, vectorised over all lines at once.

Three primitives on the ``[r, z, E, model]`` layout (see crprop.operator):
* ``apply(op, d, psi)``: A_d psi for direction d in {"r", "z", "p"};
* ``solve(op, d, theta, rhs)``: (I + theta A_d) x = rhs by the Thomas algorithm along d;
* ``residual(op, psi, q)``: Q - A psi.
``raw=True`` uses GALPROP's rows on the Dirichlet nodes as well (its time stepping solves them and
resets them afterwards; a Dirichlet z row couples only to unknowns, TransportOperator.raw_z_coefficients, as on
GALPROP's grid, which ends at the halo boundary); ``raw=False`` makes Dirichlet rows the identity with x = 0
(exact steady state).
"""

from __future__ import annotations

import numpy as np

from crprop.backends import check_out
from crprop.operator import TransportOperator

AXIS = {"r": 0, "z": 1, "p": 2}
name = "numpy"


def _coefficients(op: TransportOperator, d: str, residual: bool = False, raw: bool = False
                  ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(a1, a2, a3) broadcastable to the field shape (n_r, n_z, n_E, B); ``residual``: the residual's p rows;
    ``raw``: GALPROP's z rows (TransportOperator.raw_z_coefficients: a Dirichlet row couples only to unknowns)."""
    if d == "r":
        return op.r_a1[:, None], op.r_a2[:, None], op.r_a3[:, None]
    if d == "z":
        z1, z2, z3 = op.raw_z_coefficients() if raw else (op.z_a1, op.z_a2, op.z_a3)
        return z1[None], z2[None], z3[None]
    if d == "p":
        return op.p_coefficients(residual)
    raise ValueError(f"direction must be one of 'r', 'z', 'p', got {d!r}")


def _shift(x: np.ndarray, axis: int, step: int) -> np.ndarray:
    """x at index i-step along axis (zero outside the grid)."""
    out = np.zeros_like(x)
    src = [slice(None)] * x.ndim
    dst = [slice(None)] * x.ndim
    if step > 0:
        src[axis], dst[axis] = slice(None, -step), slice(step, None)
    else:
        src[axis], dst[axis] = slice(-step, None), slice(None, step)
    out[tuple(dst)] = x[tuple(src)]
    return out


def apply(op: TransportOperator, d: str, psi: np.ndarray, raw: bool = False) -> np.ndarray:
    """A_d psi (s^-1 [psi]); rows of Dirichlet nodes are 0 unless ``raw``. In p this is the residual's
    loss stencil (second order, with its psi_k+2 term, when op.high_order_losses; :func:`solve` keeps the
    first-order rows)."""
    a1, a2, a3 = _coefficients(op, d, residual=True, raw=raw)
    ax = AXIS[d]
    out = -a1 * _shift(psi, ax, 1) + a2 * psi - a3 * _shift(psi, ax, -1)
    if d == "p" and op.high_order_losses:
        out += op.res_loss_a4[..., None] * _shift(psi, ax, -2)
    if not raw:
        out = np.where(op.interior_mask(), out, 0.0)
    return out


def residual(op: TransportOperator, psi: np.ndarray, q: np.ndarray) -> np.ndarray:
    """Q - A psi on interior nodes, 0 on Dirichlet nodes."""
    a_psi = apply(op, "r", psi) + apply(op, "z", psi) + apply(op, "p", psi)
    return np.where(op.interior_mask(), q - a_psi, 0.0)


def solve(op: TransportOperator, d: str, theta: np.ndarray | float, rhs: np.ndarray,
          raw: bool = False) -> np.ndarray:
    """Solve (I + theta A_d) x = rhs along direction d (p: the first-order loss rows loss_a2, loss_a3).

    theta: scalar or (n_E, B) pseudo-time step (s). Dirichlet rows are the identity with x = 0
    unless ``raw`` (GALPROP's time stepping).
    """
    a1, a2, a3 = _coefficients(op, d, raw=raw)
    th = np.broadcast_to(np.asarray(theta, dtype=np.float64), op.shape[2:])[None, None]
    shape = rhs.shape
    sub = np.broadcast_to(-th * a1, shape).copy()
    dia = np.broadcast_to(1.0 + th * a2, shape).copy()
    sup = np.broadcast_to(-th * a3, shape).copy()
    b = np.array(rhs, dtype=np.float64)  # a copy; the recurrences below are stored in b's dtype (int/float32 rhs)
    if not raw:
        fixed = np.broadcast_to(~op.interior_mask(), shape)
        sub[fixed] = 0.0
        sup[fixed] = 0.0
        dia[fixed] = 1.0
        b[fixed] = 0.0
    ax = AXIS[d]
    sub, dia, sup, b = (np.moveaxis(a, ax, 0) for a in (sub, dia, sup, b))
    n = b.shape[0]
    cp = np.empty_like(b)
    dp = np.empty_like(b)
    cp[0] = sup[0] / dia[0]
    dp[0] = b[0] / dia[0]
    for i in range(1, n):
        den = dia[i] - sub[i] * cp[i - 1]
        cp[i] = sup[i] / den
        dp[i] = (b[i] - sub[i] * dp[i - 1]) / den
    x = np.empty_like(b)
    x[n - 1] = dp[n - 1]
    for i in range(n - 2, -1, -1):
        x[i] = dp[i] - cp[i] * x[i + 1]
    return np.ascontiguousarray(np.moveaxis(x, 0, ax))


def reset_dirichlet(op: TransportOperator, psi: np.ndarray, d: str | None = None) -> None:
    """Set psi = 0 in place on the Dirichlet nodes of direction d ('r' or 'z'), or of both if None."""
    if d in (None, "z"):
        psi *= op.z_interior[None, :, None, :]
    if d in (None, "r"):
        psi *= op.r_interior[:, None, None, None]


def cn_sweep(op: TransportOperator, d: str, dt_s: float, psi: np.ndarray, q: np.ndarray,
             out: np.ndarray | None = None) -> np.ndarray:
    """One GALPROP Crank-Nicolson sweep in direction d with time step dt (s), source split Q/3.

    (1 + dt/2 A_d) psi' = (1 - dt/2 A_d) psi + dt Q/3, then negatives -> 0 (GALPROP's clip).
    Boundary resets are done by the caller, in GALPROP's order. ``out`` (may be psi) receives the result.
    """
    op.require_first_order_losses("cn_sweep")
    if out is not None:
        check_out(op.shape, out, "out", psi, q, may_be=psi)
    rhs = psi - 0.5 * dt_s * apply(op, d, psi, raw=True) + (dt_s / 3.0) * q
    x = solve(op, d, 0.5 * dt_s, rhs, raw=True)
    return np.maximum(x, 0.0, out=x if out is None else out)


def douglas_step(op: TransportOperator, tau_s: np.ndarray, psi: np.ndarray, q: np.ndarray,
                 out: np.ndarray | None = None, res_out: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """One Douglas ADI step (theta = 1) in delta form; returns (psi_new, residual of the input psi).

    d = tau (Q - A psi); (I + tau A_z) d1 = d; (I + tau A_p) d2 = d1; (I + tau A_r) d3 = d2;
    psi_new = psi + d3. Its fixed point is exactly A psi = Q for any tau > 0. tau_s: (n_E, B) in s.
    ``out``, ``res_out``: arrays to write psi_new and the residual into (solvers.douglas.iterate reuses them).
    """
    # the numba backend's rule: neither buffer may overlap psi, q or the other
    if out is not None:
        check_out(op.shape, out, "out", psi, q, *([] if res_out is None else [res_out]))
    if res_out is not None:
        check_out(op.shape, res_out, "res_out", psi, q)
    res = residual(op, psi, q)
    d = tau_s[None, None] * res
    d = solve(op, "z", tau_s, d)
    d = solve(op, "p", tau_s, d)
    d = solve(op, "r", tau_s, d)
    new = np.add(psi, d, out=out)
    if res_out is not None:
        res_out[...] = res
        res = res_out
    return new, res
