"""Backends: numpy (reference), numba (parallel CPU), cupy (GPU). Chosen by name or "auto".

A backend is a module exposing ``residual, solve, cn_sweep, douglas_step, reset_dirichlet`` and a
``name``. "auto" picks cupy when CuPy sees a CUDA device, else numba. The CPU backends' ``cn_sweep`` takes
``out=`` (which may be ``psi`` itself) and their ``douglas_step`` takes ``out=`` / ``res_out=``: the CPU loops of
crprop.solvers (galprop_cn.march, douglas.iterate) reuse their field buffers. A device backend exposes
``solve_species`` instead and keeps the whole loop on the device, so those loops never call its sweeps.
"""

from __future__ import annotations

import gc
import importlib
import sys
from types import ModuleType

BACKENDS = ("numpy", "numba", "cupy")


def check_out(shape: tuple[int, ...], out, name: str, *inputs, may_be=None):
    """The CPU backends' one rule for an ``out=`` buffer: a writeable C-contiguous float64 array of ``shape`` that
    shares no memory with ``inputs``, except that it may be ``may_be`` itself (the very same array: a sweep reads
    each line before writing it, so ``cn_sweep(..., out=psi)`` is exact, while a partial overlap, e.g. a view offset
    by half a row, is not; review of session 16: numba returned values off by up to 81 %). Returns ``out``; raises
    ValueError naming ``name`` otherwise."""
    import numpy as np

    if not (isinstance(out, np.ndarray) and out.dtype == np.float64 and out.flags.c_contiguous
            and out.flags.writeable and out.shape == tuple(shape)):
        raise ValueError(f"{name} must be a writeable C-contiguous float64 array of shape {tuple(shape)}")
    if may_be is not None and out is may_be:
        return out
    if any(np.may_share_memory(out, x) for x in inputs):
        raise ValueError(f"{name} must not share memory with the step's inputs"
                         + (" (it may be psi itself)" if may_be is not None else ""))
    return out


def cupy_available() -> tuple[bool, str]:
    """(True, '') when CuPy imports and sees a CUDA device; else (False, reason)."""
    try:
        import cupy  # noqa: F401
    except Exception as exc:  # ImportError, or a broken CUDA install raising at import
        return False, f"CuPy is not importable ({type(exc).__name__}: {exc})"
    try:
        import cupy

        n = cupy.cuda.runtime.getDeviceCount()
    except Exception as exc:
        return False, f"CuPy sees no CUDA device ({type(exc).__name__}: {exc})"
    if n < 1:
        return False, "CuPy sees no CUDA device"
    return True, ""


def array_module(array) -> ModuleType:
    """numpy, or cupy for a CuPy array (cupy is imported only when such an array is given)."""
    if type(array).__module__.split(".")[0] == "cupy":
        return importlib.import_module("cupy")
    return importlib.import_module("numpy")


def get_backend(name: str = "auto") -> ModuleType:
    """Backend module by name: 'auto', 'numpy', 'numba' or 'cupy'."""
    if name == "auto":
        ok, _ = cupy_available()
        name = "cupy" if ok else "numba"
    if name not in BACKENDS:
        raise ValueError(f"backend must be one of {('auto',) + BACKENDS}, got {name!r}")
    if name == "cupy":
        ok, why = cupy_available()
        if not ok:
            raise RuntimeError(f"backend 'cupy' needs a CUDA GPU: {why}. Use backend='numba' on a CPU machine.")
    return importlib.import_module(f"crprop.backends.{name}_backend")


def release_cached_device_memory() -> int:
    """Hand the GPU memory CuPy's pools keep for reuse back to the driver; returns the bytes freed (0 when CuPy
    was never imported, which also keeps this free of a CuPy import on CPU machines).

    CuPy caches freed blocks, so after a scan (batched fluxes, warm-start psi) a later PyTorch allocation in the
    same process can fail with "CUDA out of memory" although no live array needs the memory: it happened once
    on the H100 in session 6 (training after a 15,000-mock scan). The pipeline calls this between stages."""
    cupy = sys.modules.get("cupy")
    if cupy is None:
        return 0
    device = sys.modules.get("crprop.backends.cupy_device")
    if device is not None:  # the last solve's workspace (psi, Q, residual buffers: GBs for a large batch)
        with device.SOLVE_LOCK:
            device._WS.clear()
    gc.collect()  # drop unreachable arrays first, so their blocks are in the pool's free list
    pool = cupy.get_default_memory_pool()
    before = pool.total_bytes()
    pool.free_all_blocks()
    cupy.get_default_pinned_memory_pool().free_all_blocks()
    return int(before - pool.total_bytes())
