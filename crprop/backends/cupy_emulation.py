"""Plain-numpy emulation of the CUDA kernels in crprop/backends/cuda/sweeps.cu (for CI without a GPU).

Each ``emulate_*`` function runs a kernel's per-thread algorithm for all threads at once: the sequential
loop along the line is a Python loop, and the threads (line, model) are numpy array axes. The arithmetic
follows the kernel statement by statement, including where it rounds to ``REAL`` (float32 or float64)
and where it stays in double, so the emulation is a faithful model of what each GPU thread computes.
:class:`EmulatedKernels` has the launch interface of crprop.backends.cupy_device.CudaKernels, so the
whole device driver (solve_species with its on-device convergence flag) can be run on the CPU.

Arguments mirror the kernels: ``targs`` = (r1, r2, r3, z1, z2, z3, p1, p2, p3, l2, l3, gam, rmask, zmask,
rl2, rl3, rl4, nb) with the operator's table shapes (crprop/operator.py; rl2..rl4 are its res_loss_a2..a4, the
residual's loss rows), fields of shape (n_r, n_z, n_E, B).
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from crprop.backends.cupy_device import require_c_order

F64 = np.float64


def _unpack(targs: tuple) -> tuple:
    return targs[:-1]


def emulate_residual(targs: tuple, psi: np.ndarray) -> np.ndarray:
    """A psi per node (kernel apply_a), in double, summed in the kernel's order."""
    r1, r2, r3, z1, z2, z3, p1, p2, p3, _, _, gam, _, _, rl2, rl3, rl4 = _unpack(targs)
    a = (r2[:, None] + z2[None] + p2[None, None] + rl2[..., None] + gam[..., None]) * psi
    a[1:] -= r1[1:, None] * psi[:-1]
    a[:-1] -= r3[:-1, None] * psi[1:]
    a[:, 1:] -= z1[None, 1:] * psi[:, :-1]
    a[:, :-1] -= z3[None, :-1] * psi[:, 1:]
    a[:, :, 1:] -= p1[None, None, 1:] * psi[:, :, :-1]
    a[:, :, :-1] -= (p3[None, None, :-1] + rl3[..., :-1, None]) * psi[:, :, 1:]
    a[:, :, :-2] += rl4[..., :-2, None] * psi[:, :, 2:]
    return a


def _mask(targs: tuple) -> np.ndarray:
    rmask, zmask = targs[12], targs[13]
    return rmask[:, None, None, None] * zmask[None, :, None, :]


class _Line:
    """The kernel's line structs (LineZ, LineR, LineP) for all threads at once.

    view(x): x with the line axis first, so view(x)[t] is node t of every thread's line.
    """

    def __init__(self, d: str, targs: tuple, theta: np.ndarray, theta_s: float, theta_const: int,
                 srat: np.ndarray) -> None:
        self.d = d
        self.t = _unpack(targs)
        self.axis = {"r": 0, "z": 1, "p": 2}[d]
        self.n = self.t[12].size if d == "r" else (self.t[13].shape[0] if d == "z" else self.t[6].shape[0])
        self.theta_arr, self.theta_s, self.theta_const, self.srat = theta, theta_s, theta_const, srat

    def view(self, x: np.ndarray) -> np.ndarray:
        return np.moveaxis(x, self.axis, 0)

    def mask(self, t: int) -> np.ndarray:
        rmask, zmask = self.t[12], self.t[13]
        if self.d == "z":  # threads (i, k, b)
            return rmask[:, None, None] * zmask[t][None, None, :]
        if self.d == "r":  # threads (j, k, b)
            return rmask[t] * zmask[:, None, :]
        return rmask[:, None, None] * zmask[None, :, :]  # threads (i, j, b)

    def post(self, t: int) -> np.ndarray | float:
        if self.d == "z":
            return self.t[13][t][None, None, :]
        if self.d == "r":
            return self.mask(t)
        return 1.0

    def theta(self, t: int) -> np.ndarray | float:
        if self.theta_const:
            return self.theta_s
        return self.theta_arr[t] if self.d == "p" else self.theta_arr  # (B,) or (n_E, B)

    def coef(self, t: int) -> tuple:
        r1, r2, r3, z1, z2, z3, p1, p2, p3, l2, l3, gam = self.t[:12]
        last = t == self.n - 1
        if self.d in ("z", "r"):
            a1, a2, a3 = (z1, z2, z3) if self.d == "z" else (r1, r2, r3)
            return (a1[t] if t > 0 else 0.0), a2[t], (0.0 if last else a3[t])
        c1 = p1[t] * self.srat[0, t] if t > 0 else 0.0
        c2 = p2[t][None, None] + l2[:, :, t, None] + gam[:, :, t, None]
        c3 = 0.0 if last else (p3[t][None, None] + l3[:, :, t, None]) * self.srat[1, t]
        return c1, c2, c3


def emulate_thomas(line: _Line, raw: int, real: type, rhs: Callable, out: Callable) -> None:
    """The kernel's thomas(): forward elimination storing c', d' per thread, then back substitution."""
    cp: list = [None] * line.n
    dp: list = [None] * line.n
    for t in range(line.n):
        m = 1.0 if raw else line.mask(t)
        th = line.theta(t) * m
        c1, c2, c3 = line.coef(t)
        d1, d2, d3 = (np.asarray(c * th, dtype=F64) for c in (c1, c2, c3))
        a1, a2, a3 = (d.astype(real) for d in (d1, d2, d3))
        x = rhs(t, m, d1, d2, d3)
        if t > 0:
            den = real(1) + a2 + a1 * cp[t - 1]
            dp[t] = (x + a1 * dp[t - 1]) / den
        else:
            den = real(1) + a2
            dp[t] = x / den
        cp[t] = -a3 / den
    v = dp[-1]
    out(line.n - 1, v)
    for t in range(line.n - 2, -1, -1):
        v = dp[t] - cp[t] * v
        out(t, v)


def emulate_sweep(d: str, targs: tuple, theta, theta_s: float, theta_const: int, srat, src, qs, cn: int,
                  qfac: float, raw: int, post: int, out: np.ndarray, real: type) -> None:
    """Kernels sweep_z / sweep_r / sweep_p (see sweeps.cu), writing into out (may be src)."""
    line = _Line(d, targs, theta, theta_s, theta_const, srat)
    s_v, q_v = line.view(src).copy(), line.view(qs)
    o_v = line.view(out)

    def rhs(t, m, a1, a2, a3):  # a* in double (the kernel's d1, d2, d3)
        if not cn:
            return (s_v[t].astype(F64) * m).astype(real)
        x = qfac * q_v[t].astype(F64) - 2.0 * a2 * s_v[t].astype(F64)  # delta form, in double
        if t > 0:
            x = x + 2.0 * a1 * s_v[t - 1].astype(F64)
        if t < line.n - 1:
            x = x + 2.0 * a3 * s_v[t + 1].astype(F64)
        return x.astype(real)

    def store(t, v):
        if cn:
            x = s_v[t].astype(F64) + v.astype(F64)
            x = np.where(x > 0, x, 0.0)
            if post:
                x = x * line.post(t)
            v = x.astype(real)
        o_v[t] = v

    emulate_thomas(line, raw, real, rhs, store)


def _live(done) -> np.ndarray:
    """(B,) bool: the threads of models not yet frozen (the kernels return at once for done[b] = 1)."""
    return np.asarray(done) == 0


def emulate_douglas_z(targs: tuple, tau, sc, psi, q, d, norm2, real: type, done) -> None:
    """Kernel douglas_z: residual (double) -> tau res / s -> z solve into d; sum res^2 into norm2 (n_E, B)."""
    live = _live(done)
    res = (q - emulate_residual(targs, psi)) * _mask(targs)
    norm2[:, live] += (res * res).sum(axis=(0, 1))[:, live]
    line = _Line("z", targs, tau, 0.0, 0, None)
    out = np.empty_like(d)
    r_v, o_v = line.view(res), line.view(out)
    inv_s = 1.0 / sc
    emulate_thomas(line, 0, real, lambda t, m, a1, a2, a3: (r_v[t] * tau * inv_s).astype(real),
                   lambda t, v: o_v.__setitem__(t, v))
    d[..., live] = out[..., live]


def emulate_douglas_res(targs: tuple, tau, sc, psi, q, d, norm2, real: type, done) -> None:
    """Kernel douglas_res: d = tau res / s (rounded to REAL) and the norms, no solve."""
    live = _live(done)
    res = (q - emulate_residual(targs, psi)) * _mask(targs)
    norm2[:, live] += (res * res).sum(axis=(0, 1))[:, live]
    d[..., live] = (res * tau * (1.0 / sc)).astype(real)[..., live]


def emulate_douglas_r(targs: tuple, tau, sc, d, psi, real: type, done) -> None:
    """Kernel douglas_r: r solve of d, then psi += s * x (double)."""
    live = _live(done)
    line = _Line("r", targs, tau, 0.0, 0, None)
    new = psi.copy()
    d_v, p_v = line.view(d), line.view(new)

    def store(t, v):
        p_v[t] += sc * v.astype(F64)

    emulate_thomas(line, 0, real, lambda t, m, a1, a2, a3: (d_v[t].astype(F64) * m).astype(real), store)
    psi[..., live] = new[..., live]


def emulate_douglas_check(norm2, qnorm, tol: float, relres, state, done, model_step) -> None:
    """Kernel douglas_check: relres of the models not yet done, norm2 reset, newly converged models marked
    done at this step, the device flags and step counter updated (state[5]: models left)."""
    if state[0]:
        return
    live = _live(done)
    with np.errstate(invalid="ignore", divide="ignore"):
        ratio = np.where(qnorm > 0, np.sqrt(norm2) / np.where(qnorm > 0, qnorm, 1.0), 0.0)
    worst = ratio.max(axis=0)
    relres[live] = worst[live]
    norm2[:, live] = 0.0
    met = live & (worst <= tol)
    done[met] = 1
    model_step[met] = state[4]
    left = int(np.sum(live & ~met))
    state[5] = left
    if left == 0:
        state[2] = state[4]
        state[0] = 1
    else:
        state[4] += 1


class EmulatedKernels:
    """CudaKernels' interface, running the emulate_* functions on numpy arrays."""

    xp = np

    def __init__(self, shape: tuple[int, int, int, int], precision: str) -> None:
        self.shape = shape
        self.real = np.dtype(precision)
        self._r = np.float32 if self.real == np.float32 else np.float64

    def residual(self, targs: tuple, psi, q, out) -> None:
        require_c_order("residual", (psi, q, out))
        out[...] = (q - emulate_residual(targs, psi)) * _mask(targs)

    def sweep(self, d: str, targs: tuple, theta, theta_s: float, theta_const: int, srat, src, qs, cn: int,
              qfac: float, raw: int, post: int, state, out) -> None:
        require_c_order(f"sweep_{d}", (theta, srat, src, qs, out))  # the layout the CUDA kernels assume
        if not state[0]:
            emulate_sweep(d, targs, theta, theta_s, theta_const, srat, src, qs, cn, qfac, raw, post, out, self._r)

    def douglas_z(self, targs: tuple, tau, sc, psi, q, d, norm2, state, done) -> None:
        if not state[0]:
            emulate_douglas_z(targs, tau, sc, psi, q, d, norm2, self._r, done)

    def douglas_res(self, targs: tuple, tau, sc, psi, q, d, norm2, state, done) -> None:
        if not state[0]:
            emulate_douglas_res(targs, tau, sc, psi, q, d, norm2, self._r, done)

    def douglas_r(self, targs: tuple, tau, sc, d, psi, state, done) -> None:
        if not state[0]:
            emulate_douglas_r(targs, tau, sc, d, psi, self._r, done)

    def check(self, norm2, qnorm, tol: float, relres, state, done, model_step) -> None:
        emulate_douglas_check(norm2, qnorm, tol, relres, state, done, model_step)
