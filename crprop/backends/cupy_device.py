"""Device memory and kernel launchers of the CuPy backend (crprop.backends.cupy_backend drives them).

:class:`Tables` (the operator's coefficients in the kernels' argument order), :class:`Workspace` (every buffer of
one batch shape and precision, allocated once) and :class:`CudaKernels` (launchers of the RawKernels in
cuda/sweeps.cu, one compiled module per grid shape and precision). Imports without CuPy: CuPy is imported when
a :class:`CudaKernels` is made; the numpy emulation (crprop.backends.cupy_emulation) uses the same workspace.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from crprop.operator import TransportOperator

PRECISIONS = ("float64", "float32")
SOURCE = Path(__file__).with_name("cuda") / "sweeps.cu"
BLOCK = 128
"""Threads per block of the line kernels (consecutive threads = consecutive models of one line)."""

_FIELDS = ("r_a1", "r_a2", "r_a3", "z_a1", "z_a2", "z_a3", "p_a1", "p_a2", "p_a3", "loss_a2", "loss_a3", "gamma")
_RES_LOSS_FIELDS = ("res_loss_a2", "res_loss_a3", "res_loss_a4")  # the residual's loss rows (after the masks)


def check_precision(precision: str) -> np.dtype:
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


def alloc_tables(xp, shape: tuple[int, int, int, int]) -> Tables:
    n_r, n_z, n_e, nb = shape
    shapes = [(n_r, n_e, nb)] * 3 + [(n_z, n_e, nb)] * 3 + [(n_e, nb)] * 3 + [(n_r, n_z, n_e)] * 3
    shapes += [(n_r,), (n_z, nb)] + [(n_r, n_z, n_e)] * len(_RES_LOSS_FIELDS)
    return Tables(*(xp.empty(s, np.float64) for s in shapes), nb=nb)


def fill_tables(xp, t: Tables, op: TransportOperator, raw: bool = False) -> tuple:
    """Copy op's coefficients and masks into t; returns t.args(). ``raw``: z1, z3 are GALPROP's raw z rows
    (TransportOperator.raw_z_coefficients: a Dirichlet row couples only to unknowns), for the raw sweeps of galprop
    mode; unknowns' rows are op's, so the residual kernels give the same numbers with either table."""
    values = {f: getattr(op, f) for f in _FIELDS}
    if raw:
        values["z_a1"], _, values["z_a3"] = op.raw_z_coefficients()
    for field_name, dst in zip(_FIELDS, (t.r1, t.r2, t.r3, t.z1, t.z2, t.z3, t.p1, t.p2, t.p3, t.l2, t.l3, t.gam),
                               strict=True):
        put(xp, dst, values[field_name])
    put(xp, t.rmask, op.r_interior.astype(np.float64))
    put(xp, t.zmask, op.z_interior.astype(np.float64))
    for field_name, dst in zip(_RES_LOSS_FIELDS, (t.rl2, t.rl3, t.rl4), strict=True):
        put(xp, dst, getattr(op, field_name))
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
        self.real = check_precision(precision)
        n_r, n_z, n_e, _ = shape
        key = (n_r, n_z, n_e, precision, tuple(int(u) for u in unroll), cupy.cuda.Device().id)  # per device
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
        """Flat launch: one thread per element (C-ordered arrays: the workspace's own buffers, or inputs the public
        primitives made contiguous; not re-checked at every launch, the CPU emulation checks it in the tests)."""
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
        """The non-blocking stream every solve on this device runs on (graph capture needs one). One per device for
        the process, not one per solve: CuPy's pool caches freed blocks per stream, and memory freed under a stream
        that is never used again comes back only when an allocation fails (cupy/cupy#8068)."""
        dev = self.xp.cuda.Device().id
        if dev not in _STREAMS:
            _STREAMS[dev] = self.xp.cuda.Stream(non_blocking=True)
        return _STREAMS[dev]

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



def put(xp, dst, src) -> None:
    """Copy src (numpy or device array) into the preallocated dst."""
    if xp is np or not isinstance(src, np.ndarray):
        dst[...] = src
    else:
        dst.set(np.ascontiguousarray(src, dtype=dst.dtype))


def to_host(x) -> np.ndarray:
    return x if isinstance(x, np.ndarray) else x.get()


class Workspace:
    """All device buffers of one batch shape and precision, allocated once and reused by every solve."""

    def __init__(self, xp, shape: tuple[int, int, int, int], precision: str, cycle: int) -> None:
        n_r, n_z, n_e, nb = shape
        real = check_precision(precision)
        f64 = np.float64
        self.xp, self.shape = xp, shape
        self.tables = alloc_tables(xp, shape)
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

    def load(self, op: TransportOperator, raw: bool = False) -> tuple:
        """Upload op's tables (``raw``: galprop mode's z rows, see fill_tables) into the preallocated buffers;
        returns the kernels' argument tuple."""
        return fill_tables(self.xp, self.tables, op, raw)

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


def require_c_order(kernel: str, args: tuple) -> None:
    """The kernels index every array as C-ordered: a Fortran-ordered or strided one would be read wrongly and
    silently (session-13 review: a residual far off for a Fortran-ordered psi), so it is refused. Called by the
    CPU emulation of the residual and sweep kernels (the ones taking caller arrays); on the device the arrays are
    the workspace's buffers or made contiguous by the public primitives, and the check is not paid at every
    launch."""
    bad = [i for i, a in enumerate(args) if hasattr(a, "flags") and not a.flags.c_contiguous]
    if bad:
        raise ValueError(f"CUDA kernel {kernel}: arguments {bad} are not C-contiguous arrays")


_STREAMS: dict[int, Any] = {}
"""Solve stream per CUDA device id (CudaKernels.stream)."""

_WS: dict[tuple, Workspace] = {}
SOLVE_LOCK = threading.Lock()
"""One solve at a time per process: ``_WS`` holds a whole solve's buffers (as in the numba backend)."""


def workspace(xp, shape: tuple[int, int, int, int], precision: str, cycle: int) -> Workspace:
    """The cached workspace of this shape (one at a time: a new shape frees the previous buffers)."""
    key = (xp.__name__, shape, precision, cycle, xp.cuda.Device().id if xp.__name__ == "cupy" else -1)
    if key not in _WS:
        _WS.clear()
        _WS[key] = Workspace(xp, shape, precision, cycle)
    return _WS[key]
