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

This module imports without CuPy (CI has no GPU): CuPy is imported inside the functions, and with
``emulate=True`` every entry point runs crprop.backends.cupy_emulation, a numpy emulation of each
kernel's per-thread algorithm, through the same driver.
"""

from __future__ import annotations

import contextlib
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from crprop.backends import array_module
from crprop.operator import TransportOperator
from crprop.solvers import douglas
from crprop.solvers.galprop_cn import TimeLadder
from crprop.solvers.result import SolveResult, residual_scale

name = "cupy"
PRECISIONS = ("float64", "float32")
SOURCE = Path(__file__).with_name("cuda") / "sweeps.cu"
BLOCK = 128
"""Threads per block of the line kernels (consecutive threads = consecutive models of one line)."""

_FIELDS = ("r_a1", "r_a2", "r_a3", "z_a1", "z_a2", "z_a3", "p_a1", "p_a2", "p_a3", "loss_a2", "loss_a3", "gamma")
_RES_LOSS_FIELDS = ("res_loss_a2", "res_loss_a3", "res_loss_a4")  # the residual's loss rows (after the masks)


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
        _check_precision(OPTIONS.precision)


def _check_precision(precision: str) -> np.dtype:
    if precision not in PRECISIONS:
        raise ValueError(f"precision must be one of {PRECISIONS}, got {precision!r}")
    return np.dtype(precision)


# --------------------------------------------------------------------------------------------- kernels
@dataclass
class Tables:
    """Operator tables on the device (or host, when emulating), in the kernels' argument order."""

    r1: Any
    r2: Any
    r3: Any
    z1: Any
    z2: Any
    z3: Any
    p1: Any
    p2: Any
    p3: Any
    l2: Any
    l3: Any
    gam: Any
    rmask: Any
    zmask: Any
    rl2: Any
    rl3: Any
    rl4: Any
    nb: int

    def args(self) -> tuple:
        """(r1, ..., zmask, rl2, rl3, rl4, nb) as the kernels take them (OP_PARAMS in sweeps.cu)."""
        return tuple(getattr(self, k) for k in self.__dataclass_fields__ if k != "nb") + (np.int32(self.nb),)


def _alloc_tables(xp, shape: tuple[int, int, int, int]) -> Tables:
    n_r, n_z, n_e, nb = shape
    shapes = [(n_r, n_e, nb)] * 3 + [(n_z, n_e, nb)] * 3 + [(n_e, nb)] * 3 + [(n_r, n_z, n_e)] * 3
    shapes += [(n_r,), (n_z, nb)] + [(n_r, n_z, n_e)] * len(_RES_LOSS_FIELDS)
    return Tables(*(xp.empty(s, np.float64) for s in shapes), nb=nb)


def _fill_tables(xp, t: Tables, op: TransportOperator) -> tuple:
    """Copy op's coefficients and masks into t; returns t.args()."""
    for field_name, dst in zip(_FIELDS, (t.r1, t.r2, t.r3, t.z1, t.z2, t.z3, t.p1, t.p2, t.p3, t.l2, t.l3, t.gam),
                               strict=True):
        _put(xp, dst, getattr(op, field_name))
    _put(xp, t.rmask, op.r_interior.astype(np.float64))
    _put(xp, t.zmask, op.z_interior.astype(np.float64))
    for field_name, dst in zip(_RES_LOSS_FIELDS, (t.rl2, t.rl3, t.rl4), strict=True):
        _put(xp, dst, getattr(op, field_name))
    return t.args()


_MODULES: dict[tuple, Any] = {}
GRAPH_ERROR = ""
"""Why CUDA-graph capture of a pseudo-time cycle last failed ('' if it never did; the solve then runs eagerly)."""


class CudaKernels:
    """Launchers of the RawKernels in cuda/sweeps.cu for one grid shape and precision."""

    def __init__(self, shape: tuple[int, int, int, int], precision: str, unroll: tuple[int, int, int]) -> None:
        import cupy

        self.xp = cupy
        self.shape = shape
        self.real = _check_precision(precision)
        n_r, n_z, n_e, _ = shape
        key = (n_r, n_z, n_e, precision, tuple(int(u) for u in unroll))
        if key not in _MODULES:
            opts = ("-std=c++17", f"-DREAL={'float' if self.real == np.float32 else 'double'}",
                    f"-DNR={n_r}", f"-DNZ={n_z}", f"-DNE={n_e}",
                    f"-DUNROLL_Z={key[4][0]}", f"-DUNROLL_R={key[4][1]}", f"-DUNROLL_P={key[4][2]}")
            _MODULES[key] = cupy.RawModule(code=SOURCE.read_text(), options=opts)
        self.module = _MODULES[key]
        self._fn = {k: self.module.get_function(k) for k in
                    ("sweep_z", "sweep_r", "sweep_p", "cn_z", "cn_r", "cn_p", "douglas_z", "douglas_res", "douglas_r",
                     "douglas_check", "residual")}

    def _launch(self, kernel: str, n_threads: int, args: tuple) -> None:
        """Flat launch: one thread per element."""
        self._fn[kernel](((n_threads + BLOCK - 1) // BLOCK,), (BLOCK,), args)

    def _launch_lines(self, kernel: str, d: str, args: tuple) -> None:
        """One thread per (line, model): blocks of up to BLOCK models, the line index fastest over blocks."""
        n_r, n_z, n_e, nb = self.shape
        n_lines = {"z": n_r * n_e, "r": n_z * n_e, "p": n_r * n_z}[d]
        block = min(BLOCK, 32 * ((nb + 31) // 32))
        self._fn[kernel]((n_lines * ((nb + block - 1) // block),), (block,), args)

    # Every launcher takes the operator's argument tuple ``targs`` (Tables.args()) first.
    def residual(self, targs: tuple, psi, q, out) -> None:
        self._launch("residual", psi.size, targs + (psi, q, out))

    def sweep(self, d: str, targs: tuple, theta, theta_s: float, theta_const: int, srat, src, qs, cn: int,
              qfac: float, raw: int, post: int, state, out) -> None:
        args = targs + (theta, np.float64(theta_s), np.int32(theta_const), srat, src, qs,
                        np.float64(qfac), np.int32(raw), np.int32(post), state, out)
        self._launch_lines(f"{'cn' if cn else 'sweep'}_{d}", d, args)

    def douglas_z(self, targs: tuple, tau, sc, psi, q, d, norm2, state, done) -> None:
        self._launch_lines("douglas_z", "z", targs + (tau, sc, psi, q, d, norm2, state, done))

    def douglas_res(self, targs: tuple, tau, sc, psi, q, d, norm2, state, done) -> None:
        self._launch_lines("douglas_res", "z", targs + (tau, sc, psi, q, d, norm2, state, done))

    def douglas_r(self, targs: tuple, tau, sc, d, psi, state, done) -> None:
        self._launch_lines("douglas_r", "r", targs + (tau, sc, d, psi, state, done))

    def check(self, norm2, qnorm, tol: float, relres, state, done, model_step) -> None:
        nb = relres.size
        self._launch("douglas_check", nb,
                     (norm2, qnorm, np.float64(tol), relres, state, np.int32(nb), done, model_step))

    def stream(self):
        """A non-blocking stream the whole solve runs on (graph capture needs one)."""
        if not hasattr(self, "_stream"):
            self._stream = self.xp.cuda.Stream(non_blocking=True)
        return self._stream

    def capture(self, launches) -> Any:
        """A CUDA graph of the kernels that ``launches()`` enqueues on self.stream(), or None if capture fails."""
        global GRAPH_ERROR
        stream = self.stream()
        try:
            stream.begin_capture()
            try:
                launches()
            finally:
                graph = stream.end_capture()
            return graph
        except Exception as exc:  # CuPy/driver without graph support: run eagerly
            GRAPH_ERROR = f"{type(exc).__name__}: {exc}"
            return None


def _kernels(shape: tuple[int, int, int, int], precision: str, emulate: bool):
    if emulate:
        from crprop.backends.cupy_emulation import EmulatedKernels

        return EmulatedKernels(shape, precision)
    return CudaKernels(shape, precision, OPTIONS.unroll)


def _put(xp, dst, src) -> None:
    """Copy src (numpy or device array) into the preallocated dst."""
    if xp is np or not isinstance(src, np.ndarray):
        dst[...] = src
    else:
        dst.set(np.ascontiguousarray(src, dtype=dst.dtype))


def _to_host(x) -> np.ndarray:
    return x if isinstance(x, np.ndarray) else x.get()


class Workspace:
    """All device buffers of one batch shape and precision, allocated once and reused by every solve."""

    def __init__(self, xp, shape: tuple[int, int, int, int], precision: str, cycle: int) -> None:
        n_r, n_z, n_e, nb = shape
        real = _check_precision(precision)
        f64 = np.float64
        self.xp, self.shape = xp, shape
        self.tables = _alloc_tables(xp, shape)
        self.psi, self.q, self.res = (xp.empty(shape, f64) for _ in range(3))  # psi, Q, residual: float64
        self.d = xp.empty(shape, real)  # fast: the correction; galprop: psi / psi_ref
        self.qs = xp.empty(shape, real)  # galprop: Q / psi_ref
        self.norm2, self.qnorm, self.sc = (xp.empty((n_e, nb), f64) for _ in range(3))
        self.srat = xp.empty((2, n_e, nb), f64)
        self.taus = xp.empty((cycle, n_e, nb), f64)
        self.relres = xp.empty(nb, f64)
        self.done = xp.zeros(nb, np.int32)  # per model: 1 once its residual met tol (then frozen)
        self.model_step = xp.zeros(nb, np.int32)  # per model: the step it stopped at
        self.state = xp.zeros(8, np.int32)  # [all done, n_bad, done step, blocks, step counter, models left]
        self.no_state = xp.zeros(8, np.int32)  # never set: kernels run unconditionally

    def load(self, op: TransportOperator) -> tuple:
        """Upload op's tables into the preallocated buffers; returns the kernels' argument tuple."""
        return _fill_tables(self.xp, self.tables, op)

    def packed(self, keep: np.ndarray) -> Workspace:
        """The models ``keep`` (host indices into this batch) as a smaller batch in the same memory.

        Every per-model buffer is gathered into a prefix view of itself (the kernels take the batch size as an
        argument, so a prefix of a C-ordered [..., model] buffer is a valid smaller batch); the shared tables and
        the state flags are the same arrays. norm2 and done start at zero, as after a convergence check.
        """
        xp, nb = self.xp, int(keep.size)
        idx = xp.asarray(keep)

        def view(a):
            lead = a.shape[:-1]
            return a.reshape(-1)[: int(np.prod(lead, dtype=np.int64)) * nb].reshape(lead + (nb,))

        def take(a):
            gathered = a[..., idx]  # advanced indexing: a copy, so the overlapping prefix can be written
            out = view(a)
            out[...] = gathered
            return out

        new = object.__new__(Workspace)
        new.xp, new.shape = xp, self.shape[:3] + (nb,)
        t = self.tables
        new.tables = Tables(*(take(a) for a in (t.r1, t.r2, t.r3, t.z1, t.z2, t.z3, t.p1, t.p2, t.p3)),
                            t.l2, t.l3, t.gam, t.rmask, take(t.zmask), t.rl2, t.rl3, t.rl4, nb=nb)
        for name in ("psi", "q", "qnorm", "sc", "srat", "taus"):
            setattr(new, name, take(getattr(self, name)))
        for name in ("res", "d", "qs", "norm2", "relres", "done", "model_step"):  # rewritten before they are read
            setattr(new, name, view(getattr(self, name)))
        new.norm2[...] = 0.0
        new.done[...] = 0
        new.state, new.no_state = self.state, self.no_state
        return new


_WS: dict[tuple, Workspace] = {}
_SOLVE_LOCK = threading.Lock()
"""One solve at a time per process: ``_WS`` holds a whole solve's buffers (as in the numba backend)."""


def workspace(xp, shape: tuple[int, int, int, int], precision: str, cycle: int) -> Workspace:
    """The cached workspace of this shape (one at a time: a new shape frees the previous buffers)."""
    key = (xp.__name__, shape, precision, cycle)
    if key not in _WS:
        _WS.clear()
        _WS[key] = Workspace(xp, shape, precision, cycle)
    return _WS[key]


def _relres(xp, res, qnorm) -> np.ndarray:
    """relative_residual (crprop.solvers.result) on the device; ``qnorm`` holds the scales of residual_scale."""
    num = xp.sqrt((res * res).sum(axis=(0, 1)))
    ratio = xp.where(qnorm > 0, num / xp.where(qnorm > 0, qnorm, 1.0), 0.0)
    return _to_host(ratio.max(axis=0))


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
        state = _to_host(ws.state).copy()
        if state[0] or step >= max_steps:
            break
        n_live = ws.shape[3]
        if n_live - int(state[5]) >= douglas.COMPACT_FRACTION * n_live:
            done = _to_host(ws.done).astype(bool)
            frozen = np.nonzero(done)[0]
            if psi_out is None:
                psi_out = xp.empty(ws.psi.shape[:3] + (n_models,), np.float64)
            psi_out[..., xp.asarray(live[frozen])] = ws.psi[..., xp.asarray(frozen)]
            residual[live[frozen]] = _to_host(ws.relres)[frozen]
            model_steps[live[frozen]] = _to_host(ws.model_step)[frozen]
            keep = np.nonzero(~done)[0]
            live = live[keep]
            ws = ws.packed(keep)
            graph = capture(ws)
    done = _to_host(ws.done).astype(bool)
    res_live = _to_host(ws.relres).copy()
    if not state[0]:  # max_steps: models that never met tol get the residual of their last psi
        k.residual(ws.tables.args(), ws.psi, ws.q, ws.res)
        res_live = np.where(done, res_live, _relres(xp, ws.res, ws.qnorm))
    residual[live] = res_live
    model_steps[live] = np.where(done, _to_host(ws.model_step), max_steps)
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
    _check_precision(precision)
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
    with _SOLVE_LOCK, (contextlib.nullcontext() if emulate else k.stream()):
        ws = workspace(xp, op.shape, precision, taus.shape[0])
        targs = ws.load(op)
        _put(xp, ws.taus, taus)
        _put(xp, ws.q, q)
        ws.qnorm[...] = residual_scale(xp.sqrt((ws.q * ws.q).sum(axis=(0, 1))))  # zero slices still checked
        if psi0 is None:
            ws.psi[...] = 0.0
        else:
            _put(xp, ws.psi, psi0)
            reset_dirichlet(op, ws.psi)
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
    if on_nonconverged == "raise" and not result.converged.all():
        raise RuntimeError(f"{mode}/{result.backend}: models {np.nonzero(~result.converged)[0].tolist()} "
                           f"not converged (residuals {result.residual[~result.converged]})")
    if on_nonconverged == "warn":
        result.warn_if_not_converged()
    return result


# ------------------------------------------------------------------------------------------ primitives
def _prim(op: TransportOperator, x, precision: str, emulate: bool):
    """Kernels, array module, operator arguments and a 'back to the caller's side' function."""
    k = _kernels(op.shape, precision, emulate)
    xp = k.xp
    targs = _fill_tables(xp, _alloc_tables(xp, op.shape), op)
    keep = xp is np or not isinstance(x, np.ndarray)
    return k, xp, targs, ((lambda a: a) if keep else _to_host)


def residual(op: TransportOperator, psi, q, *, emulate: bool = False):
    """Q - A psi on interior nodes, 0 on Dirichlet nodes (float64), s^-1 [psi]."""
    k, xp, targs, back = _prim(op, psi, "float64", emulate)
    out = xp.empty(op.shape)
    k.residual(targs, xp.asarray(psi, dtype=np.float64), xp.asarray(q, dtype=np.float64), out)
    return back(out)


def solve(op: TransportOperator, d: str, theta, rhs, raw: bool = False, *, precision: str = "float64",
          emulate: bool = False):
    """Solve (I + theta A_d) x = rhs along direction d; theta scalar or (n_E, B) in s (numpy_backend.solve)."""
    if d not in ("r", "z", "p"):
        raise ValueError(f"direction must be one of 'r', 'z', 'p', got {d!r}")
    k, xp, targs, back = _prim(op, rhs, precision, emulate)
    th = xp.ascontiguousarray(xp.broadcast_to(xp.asarray(theta, dtype=np.float64), op.shape[2:]))
    src = xp.asarray(rhs).astype(k.real)
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
    k, xp, targs, back = _prim(op, psi, precision, emulate)
    src = xp.asarray(psi).astype(k.real)
    qs = xp.asarray(q).astype(k.real)
    out = xp.empty(op.shape, k.real)
    ones = xp.ones((2,) + op.shape[2:])
    k.sweep(d, targs, ones[0], 0.5 * dt_s, 1, ones, src, qs, 1, dt_s / 3.0, 1, 0, xp.zeros(8, np.int32), out)
    return back(out.astype(np.float64))


def douglas_step(op: TransportOperator, tau_s, psi, q, *, precision: str = "float64", emulate: bool = False):
    """One Douglas ADI step with the fused kernels; returns (psi_new, residual of psi) (numpy_backend)."""
    k, xp, targs, back = _prim(op, psi, precision, emulate)
    shape = op.shape
    tau = xp.ascontiguousarray(xp.broadcast_to(xp.asarray(tau_s, dtype=np.float64), shape[2:]))
    new = xp.array(psi, dtype=np.float64, copy=True)
    qq = xp.asarray(q, dtype=np.float64)
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
