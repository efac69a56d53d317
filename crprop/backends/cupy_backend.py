"""GPU backend (CuPy): fused tridiagonal RawKernels, one thread per (line, model), whole solves on the device.

The CUDA C++ source is crprop/backends/cuda/sweeps.cu (one source for float and double: ``REAL`` and the
grid sizes are compile-time macros; one module is compiled per grid shape and precision and cached).
Semantics equal crprop.backends.numpy_backend: the primitives ``residual, solve, cn_sweep, douglas_step,
reset_dirichlet`` take and return numpy arrays (or CuPy arrays, which stay on the device), and
:func:`solve_species` runs the `fast` (Douglas ADI) and `galprop` (split Crank-Nicolson ladder) modes
entirely on the device: no Python work per step beyond kernel launches, every buffer preallocated per
batch shape, and one host synchronisation every ``check_every`` steps. Per-model device flags freeze each
model at the first step whose residual meets ``tol`` (the batch stops when all are frozen), and the host
re-packs the models still iterating at its checks, so the result equals the CPU backends'.

Precision (``precision=``): ``"float64"``, or ``"float32"``: the swept field is float32 and scaled by
psi_ref(E, model) = max_{r,z}|Q| / lambda_lo (the steady-state scale, so values are O(1)). In `fast`
mode psi itself and the residual Q - A psi stay float64 (mixed-precision iterative refinement: the
float32 sweeps only compute the correction), so the converged flag is the honest float64 residual. In
`galprop` mode psi/psi_ref is stored in float32 (as in GALPROP's float build) but every Crank-Nicolson
sweep is solved in delta form: the right-hand side is formed in double and the float32 recurrence only
computes the increment, so rounding is relative to the increment (240-step ladder: 2-4e-6 from float64
instead of 1.8e-5 with the direct form); its final residual is evaluated in float64.

Device buffers and kernel launchers live in crprop.backends.cupy_device; this module holds the options, the
drivers and the primitives. It imports without CuPy (CI has no GPU): CuPy is imported inside the functions, and with
``emulate=True`` every entry point runs crprop.backends.cupy_emulation, a numpy emulation of each
kernel's per-thread algorithm, through the same driver.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass
from typing import Any

import numpy as np

from crprop.backends import array_module
from crprop.backends.cupy_device import (  # noqa: F401 - BLOCK, PRECISIONS, SOURCE, Tables: this backend's API
    BLOCK,
    PRECISIONS,
    SOLVE_LOCK,
    SOURCE,
    CudaKernels,
    Tables,
    Workspace,
    alloc_tables,
    check_precision,
    fill_tables,
    put,
    to_host,
    workspace,
)
from crprop.operator import TransportOperator
from crprop.solvers import douglas
from crprop.solvers.galprop_cn import TimeLadder
from crprop.solvers.result import SolveResult, residual_scale

name = "cupy"


@dataclass
class DeviceOptions:
    """Defaults of :func:`solve_species` (crprop.solvers.solve_species passes none of these).

    precision : "float64" | "float32" | None. None (the default) picks float32 in `fast` mode, where psi and the
    residual stay float64 (mixed-precision refinement: the same converged flag, results within ~3e-12 of
    float64 on crml_base, 1.44 times faster on an H100), and float64 in `galprop` mode, where float32 stores
    psi itself (2-4e-6 from float64). check_every : host checks of the device's convergence flag,
    in steps (default: one pseudo-time cycle). keep_on_device : return psi as a CuPy array.
    unroll : (z, r, p) 1 = that sweep's Thomas loop fully unrolled (registers), 0 = rolled (local memory).
    fused_residual : True = one kernel for the residual and the z sweep (douglas_z); False = douglas_res then
    sweep_z (same numbers). Defaults are the fastest float32 variant measured on an H100 at B = 2048
    (benchmarks/results/gpu_solver_speed.md: 317 us per model-species vs 329 fused; float64 is ~4 % faster
    fused).
    """

    precision: str | None = None
    check_every: int = douglas.DEFAULT_CYCLE
    keep_on_device: bool = False
    unroll: tuple[int, int, int] = (1, 1, 0)
    fused_residual: bool = False


OPTIONS = DeviceOptions()


def set_defaults(**kwargs: Any) -> None:
    """Change :data:`OPTIONS`, e.g. ``set_defaults(precision="float32", keep_on_device=True)``."""
    for key, value in kwargs.items():
        if not hasattr(OPTIONS, key):
            raise ValueError(f"unknown option {key!r}; options are {list(DeviceOptions.__dataclass_fields__)}")
        setattr(OPTIONS, key, value)
    if OPTIONS.precision is not None:
        check_precision(OPTIONS.precision)


def _kernels(shape: tuple[int, int, int, int], precision: str, emulate: bool):
    if emulate:
        from crprop.backends.cupy_emulation import EmulatedKernels

        return EmulatedKernels(shape, precision)
    return CudaKernels(shape, precision, OPTIONS.unroll)


def _relres(xp, res, qnorm) -> np.ndarray:
    """relative_residual (crprop.solvers.result) on the device; ``qnorm`` holds the scales of residual_scale."""
    num = xp.sqrt((res * res).sum(axis=(0, 1)))
    ratio = xp.where(qnorm > 0, num / xp.where(qnorm > 0, qnorm, 1.0), 0.0)
    return to_host(ratio.max(axis=0))


def _set_scale(ws: Workspace, precision: str, psi0) -> None:
    """psi_ref(E, model) in ws.sc (1 in float64) and its neighbour ratios s_{k-+1}/s_k in ws.srat."""
    xp = ws.xp
    if precision == "float64":
        ws.sc[...] = 1.0
        ws.srat[...] = 1.0
        return
    s = xp.abs(ws.q).max(axis=(0, 1)) * ws.taus[0]  # Q / lambda_lo, the steady-state scale
    if psi0 is not None:
        s = xp.maximum(s, xp.abs(ws.psi).max(axis=(0, 1)))
    pos = s > 0
    floor = xp.where(pos, s, xp.inf).min(axis=0)
    floor = xp.where(xp.isfinite(floor), floor, 1.0)
    ws.sc[...] = xp.where(pos, s, floor[None, :])
    ws.srat[...] = 1.0
    ws.srat[0, 1:] = ws.sc[:-1] / ws.sc[1:]
    ws.srat[1, :-1] = ws.sc[1:] / ws.sc[:-1]


# ------------------------------------------------------------------------------------------- drivers
def _douglas_z(k, targs: tuple, tau, sc, psi, q, d, norm2, state, done) -> None:
    """d = solve_z(tau (Q - A psi) / s), norms into norm2: fused kernel or residual kernel + z sweep."""
    if OPTIONS.fused_residual:
        k.douglas_z(targs, tau, sc, psi, q, d, norm2, state, done)
    else:
        k.douglas_res(targs, tau, sc, psi, q, d, norm2, state, done)
        k.sweep("z", targs, tau, 0.0, 0, sc, d, d, 0, 0.0, 0, 0, state, d)  # (a z sweep ignores srat)


def _douglas_steps(k, ws: Workspace, tol: float, first: int, n: int) -> None:
    """Enqueue Douglas steps first .. first+n-1 (no synchronisation)."""
    targs = ws.tables.args()
    for step in range(first, first + n):
        tau = ws.taus[step % ws.taus.shape[0]]
        _douglas_z(k, targs, tau, ws.sc, ws.psi, ws.q, ws.d, ws.norm2, ws.state, ws.done)
        k.check(ws.norm2, ws.qnorm, tol, ws.relres, ws.state, ws.done, ws.model_step)
        k.sweep("p", targs, tau, 0.0, 0, ws.srat, ws.d, ws.d, 0, 0.0, 0, 0, ws.state, ws.d)
        k.douglas_r(targs, tau, ws.sc, ws.d, ws.psi, ws.state, ws.done)


@dataclass
class _FastRun:
    """What _run_fast hands back: (B,) residuals and per-model steps on the host, the batch's steps, and the
    whole batch's psi when the batch was re-packed (None: psi is the workspace's own ws.psi)."""

    residual: np.ndarray
    steps: int
    model_steps: np.ndarray
    psi: Any


def _run_fast(k, ws: Workspace, tol: float, max_steps: int, check_every: int, use_graph: bool) -> _FastRun:
    """Douglas iteration on the device with a per-model stop, as douglas.iterate does.

    Each model freezes on the device at its own converged step (douglas_check's done flags). At every host
    check, once the frozen models are douglas.COMPACT_FRACTION of the batch, their psi is copied out and the
    rest is re-packed into a smaller batch (Workspace.packed), so later steps cost only the models still
    iterating; a CUDA graph of the cycle is captured again for the new batch.
    """
    xp, n_models = ws.xp, ws.shape[3]
    ws.state[...] = 0
    ws.norm2[...] = 0.0
    ws.done[...] = 0
    ws.model_step[...] = max_steps
    cycle = ws.taus.shape[0]
    graph_ok = use_graph and check_every % cycle == 0 and max_steps >= check_every

    def capture(w: Workspace):
        return k.capture(lambda: _douglas_steps(k, w, tol, 0, cycle)) if graph_ok else None

    residual = np.full(n_models, np.inf)
    model_steps = np.full(n_models, max_steps)
    live = np.arange(n_models)  # host indices of the packed batch's models
    psi_out = None
    graph = capture(ws)
    step = 0
    while step < max_steps:  # runs at least once: solve_species checks max_steps >= 1
        n = min(check_every, max_steps - step)
        if graph is not None and n == check_every:
            for _ in range(n // cycle):
                graph.launch(k.stream())
        else:
            _douglas_steps(k, ws, tol, step, n)
        step += n
        state = to_host(ws.state).copy()
        if state[0] or step >= max_steps:
            break
        n_live = ws.shape[3]
        if n_live - int(state[5]) >= douglas.COMPACT_FRACTION * n_live:
            done = to_host(ws.done).astype(bool)
            frozen = np.nonzero(done)[0]
            if psi_out is None:
                psi_out = xp.empty(ws.psi.shape[:3] + (n_models,), np.float64)
            psi_out[..., xp.asarray(live[frozen])] = ws.psi[..., xp.asarray(frozen)]
            residual[live[frozen]] = to_host(ws.relres)[frozen]
            model_steps[live[frozen]] = to_host(ws.model_step)[frozen]
            keep = np.nonzero(~done)[0]
            live = live[keep]
            ws = ws.packed(keep)
            graph = capture(ws)
    done = to_host(ws.done).astype(bool)
    res_live = to_host(ws.relres).copy()
    if not state[0]:  # max_steps: models that never met tol get the residual of their last psi
        k.residual(ws.tables.args(), ws.psi, ws.q, ws.res)
        res_live = np.where(done, res_live, _relres(xp, ws.res, ws.qnorm))
    residual[live] = res_live
    model_steps[live] = np.where(done, to_host(ws.model_step), max_steps)
    if psi_out is not None:
        psi_out[..., xp.asarray(live)] = ws.psi
    return _FastRun(residual, int(state[2]) if state[0] else max_steps, model_steps, psi_out)


def _run_galprop(k, ws: Workspace, targs: tuple, ladder: TimeLadder, psi0) -> tuple[np.ndarray, int]:
    """GALPROP's ladder on psi / psi_ref (in ws.d); leaves psi (float64) in ws.psi."""
    xp = ws.xp
    sc = ws.sc[None, None]
    if psi0 is None:
        ws.d[...] = 0
    else:
        ws.d[...] = (ws.psi / sc).astype(ws.d.dtype)
    ws.qs[...] = (ws.q / sc).astype(ws.qs.dtype)
    steps = ladder.steps_s()
    for dt in steps:
        dt = float(dt)
        for d, post in (("z", 1), ("p", 0), ("r", 1)):  # GALPROP: reset z after z, r and z after r
            k.sweep(d, targs, ws.sc, 0.5 * dt, 1, ws.srat, ws.d, ws.qs, 1, dt / 3.0, 1, post, ws.no_state, ws.d)
    ws.psi[...] = ws.d.astype(xp.float64) * sc
    k.residual(targs, ws.psi, ws.q, ws.res)
    return _relres(xp, ws.res, ws.qnorm), int(steps.size)


def solve_species(op: TransportOperator, q, mode: str = "fast", tol: float = 1e-6, max_steps: int = 600,
                  ladder: TimeLadder | None = None, psi0=None, on_nonconverged: str = "warn", *,
                  precision: str | None = None, check_every: int | None = None,
                  keep_on_device: bool | None = None, use_graph: bool = True, emulate: bool = False) -> SolveResult:
    """Steady state of one species for B models, entirely on the GPU (see crprop.solvers.solve_species).

    op : operator (s^-1, host arrays). q : source (n_r, n_z, n_E, B), numpy or CuPy, per unit momentum
    per s. mode : 'fast' | 'galprop'. tol : relative residual of the converged flag (and the stop test of
    'fast'). psi0 : warm start (numpy or CuPy). precision / check_every / keep_on_device default to
    :data:`OPTIONS`. keep_on_device : psi of the result is a CuPy array (a copy, safe to keep), e.g. for
    the secondary sources of the next species. use_graph : replay one pseudo-time cycle as a CUDA graph
    (when check_every is a multiple of the cycle). emulate : run the numpy kernel emulation (no GPU).
    psi is in units of [Q] * s; residual, converged and steps are host numpy values.
    """
    precision = precision or OPTIONS.precision or ("float32" if mode == "fast" else "float64")
    check_precision(precision)
    check_every = int(check_every or OPTIONS.check_every)
    keep = OPTIONS.keep_on_device if keep_on_device is None else keep_on_device
    if mode not in ("fast", "galprop"):
        raise ValueError(f"the cupy backend solves mode 'fast' or 'galprop', got {mode!r}")
    if mode == "galprop":
        op.require_first_order_losses("mode 'galprop'")
    if check_every < 1 or max_steps < 1:
        raise ValueError(f"check_every and max_steps must be >= 1, got {check_every}, {max_steps}")
    if on_nonconverged not in ("warn", "raise", "ignore"):
        raise ValueError(f"on_nonconverged must be 'warn', 'raise' or 'ignore', got {on_nonconverged!r}")
    k = _kernels(op.shape, precision, emulate)
    xp = k.xp
    for arr, what in ((q, "source"), (psi0, "psi0")):
        if arr is not None and (tuple(arr.shape) != op.shape or not bool(xp.isfinite(xp.asarray(arr)).all())):
            raise ValueError(f"{what} must be finite with shape {op.shape} (n_r, n_z, n_E, B), got {arr.shape}")
    taus = douglas.pseudo_time_cycle(op)
    if not emulate:  # the solve stream waits for the work that made the caller's device arrays (q, psi0)
        k.stream().wait_event(xp.cuda.get_current_stream().record())
    with SOLVE_LOCK, (contextlib.nullcontext() if emulate else k.stream()):
        ws = workspace(xp, op.shape, precision, taus.shape[0])
        targs = ws.load(op, raw=mode == "galprop")  # galprop: GALPROP's z rows on Dirichlet nodes (fill_tables)
        put(xp, ws.taus, taus)
        put(xp, ws.q, q)
        ws.qnorm[...] = residual_scale(xp.sqrt((ws.q * ws.q).sum(axis=(0, 1))))  # zero slices still checked
        if psi0 is None:
            ws.psi[...] = 0.0
        else:
            put(xp, ws.psi, psi0)
            reset_dirichlet(op, ws.psi)
            ws.psi *= douglas.has_source(ws.q).astype(ws.psi.dtype)  # as douglas.iterate and galprop_cn.march
        _set_scale(ws, precision, psi0)
        model_steps = None
        if mode == "fast":
            run = _run_fast(k, ws, tol, max_steps, check_every, use_graph and not emulate)
            res, steps, model_steps = run.residual, run.steps, run.model_steps
            if run.psi is not None:  # re-packed: the whole batch's psi is a separate array already
                psi = run.psi if (keep or emulate) else run.psi.get()
            else:
                psi = ws.psi.copy() if (keep or emulate) else ws.psi.get()
        else:
            res, steps = _run_galprop(k, ws, targs, ladder or TimeLadder(), psi0)
            psi = ws.psi.copy() if (keep or emulate) else ws.psi.get()
        if not emulate:
            k.stream().synchronize()
    label = "cupy-emulated" if emulate else name
    result = SolveResult(psi, res <= tol, res, steps, mode, f"{label}-{precision}", tol, model_steps)
    result.flag_nonfinite()
    if on_nonconverged == "raise" and not result.converged.all():
        raise RuntimeError(f"{mode}/{result.backend}: models {np.nonzero(~result.converged)[0].tolist()} "
                           f"not converged (residuals {result.residual[~result.converged]})")
    if on_nonconverged == "warn":
        result.warn_if_not_converged()
    return result


# ------------------------------------------------------------------------------------------ primitives
def _prim(op: TransportOperator, x, precision: str, emulate: bool, raw: bool = False):
    """Kernels, array module, operator arguments (``raw``: GALPROP's z rows, fill_tables) and a 'back to the
    caller's side' function."""
    k = _kernels(op.shape, precision, emulate)
    xp = k.xp
    targs = fill_tables(xp, alloc_tables(xp, op.shape), op, raw)
    keep = xp is np or not isinstance(x, np.ndarray)
    return k, xp, targs, ((lambda a: a) if keep else to_host)


def residual(op: TransportOperator, psi, q, *, emulate: bool = False):
    """Q - A psi on interior nodes, 0 on Dirichlet nodes (float64), s^-1 [psi]."""
    k, xp, targs, back = _prim(op, psi, "float64", emulate)
    out = xp.empty(op.shape)
    k.residual(targs, xp.ascontiguousarray(psi, dtype=np.float64), xp.ascontiguousarray(q, dtype=np.float64), out)
    return back(out)


def solve(op: TransportOperator, d: str, theta, rhs, raw: bool = False, *, precision: str = "float64",
          emulate: bool = False):
    """Solve (I + theta A_d) x = rhs along direction d; theta scalar or (n_E, B) in s (numpy_backend.solve)."""
    if d not in ("r", "z", "p"):
        raise ValueError(f"direction must be one of 'r', 'z', 'p', got {d!r}")
    k, xp, targs, back = _prim(op, rhs, precision, emulate, raw)
    th = xp.ascontiguousarray(xp.broadcast_to(xp.asarray(theta, dtype=np.float64), op.shape[2:]))
    src = xp.ascontiguousarray(rhs, dtype=k.real)
    out = xp.empty(op.shape, k.real)
    k.sweep(d, targs, th, 0.0, 0, xp.ones((2,) + op.shape[2:]), src, src, 0, 0.0, int(raw), 0,
            xp.zeros(8, np.int32), out)
    return back(out.astype(np.float64))


def cn_sweep(op: TransportOperator, d: str, dt_s: float, psi, q, *, precision: str = "float64",
             emulate: bool = False):
    """One GALPROP Crank-Nicolson sweep with time step dt_s (s), negatives clipped (numpy_backend.cn_sweep)."""
    op.require_first_order_losses("cn_sweep")
    if d not in ("r", "z", "p"):
        raise ValueError(f"direction must be one of 'r', 'z', 'p', got {d!r}")
    k, xp, targs, back = _prim(op, psi, precision, emulate, raw=True)
    src = xp.ascontiguousarray(psi, dtype=k.real)
    qs = xp.ascontiguousarray(q, dtype=k.real)
    out = xp.empty(op.shape, k.real)
    ones = xp.ones((2,) + op.shape[2:])
    k.sweep(d, targs, ones[0], 0.5 * dt_s, 1, ones, src, qs, 1, dt_s / 3.0, 1, 0, xp.zeros(8, np.int32), out)
    return back(out.astype(np.float64))


def douglas_step(op: TransportOperator, tau_s, psi, q, *, precision: str = "float64", emulate: bool = False):
    """One Douglas ADI step with the fused kernels; returns (psi_new, residual of psi) (numpy_backend)."""
    k, xp, targs, back = _prim(op, psi, precision, emulate)
    shape = op.shape
    tau = xp.ascontiguousarray(xp.broadcast_to(xp.asarray(tau_s, dtype=np.float64), shape[2:]))
    new = xp.array(psi, dtype=np.float64, copy=True, order="C")
    qq = xp.ascontiguousarray(q, dtype=np.float64)
    res = xp.empty(shape)
    k.residual(targs, new, qq, res)
    ones, d = xp.ones((2,) + shape[2:]), xp.empty(shape, k.real)
    state, norm2, done = xp.zeros(8, np.int32), xp.zeros(shape[2:]), xp.zeros(shape[3], np.int32)
    _douglas_z(k, targs, tau, ones[0], new, qq, d, norm2, state, done)
    k.sweep("p", targs, tau, 0.0, 0, ones, d, d, 0, 0.0, 0, 0, state, d)
    k.douglas_r(targs, tau, ones[0], d, new, state, done)
    return back(new), back(res)


def reset_dirichlet(op: TransportOperator, psi, d: str | None = None) -> None:
    """Set psi = 0 in place on the Dirichlet nodes of direction d ('r', 'z' or both); numpy or CuPy psi."""
    xp = array_module(psi)
    if d in (None, "z"):
        psi *= xp.asarray(op.z_interior[None, :, None, :])
    if d in (None, "r"):
        psi *= xp.asarray(op.r_interior[:, None, None, None])


def to_torch(array):
    """A PyTorch tensor viewing the CuPy (or numpy) array's memory through DLPack, without a copy."""
    import torch

    return torch.from_dlpack(array)
