"""Input validation shared by the physics-ingredient modules (private).

Every public function of :mod:`crprop.physics` converts its inputs through these helpers so that
bad input raises ``ValueError`` naming the argument and the allowed range, instead of silently
producing NaN or negative rates.
"""

from __future__ import annotations

import numpy as np


def _range_text(lo: float | None, hi: float | None, lo_open: bool, hi_open: bool) -> str:
    if lo is None and hi is None:
        return "finite"
    left = "(" if lo_open else "["
    right = ")" if hi_open else "]"
    lo_s = "-inf" if lo is None else f"{lo:g}"
    hi_s = "+inf" if hi is None else f"{hi:g}"
    return f"finite and in {left}{lo_s}, {hi_s}{right}"


def check_range(
    name: str,
    arr: np.ndarray,
    lo: float | None = None,
    hi: float | None = None,
    *,
    lo_open: bool = False,
    hi_open: bool = False,
) -> None:
    """Raise ValueError unless every element of ``arr`` is finite and inside the given interval."""
    allowed = _range_text(lo, hi, lo_open, hi_open)
    if not np.all(np.isfinite(arr)):
        raise ValueError(f"{name} must be {allowed}; got NaN or inf")
    if lo is not None:
        bad = arr <= lo if lo_open else arr < lo
        if np.any(bad):
            raise ValueError(f"{name} must be {allowed}; got minimum {np.min(arr)!r}")
    if hi is not None:
        bad = arr >= hi if hi_open else arr > hi
        if np.any(bad):
            raise ValueError(f"{name} must be {allowed}; got maximum {np.max(arr)!r}")


def as_array(
    name: str,
    value: object,
    lo: float | None = None,
    hi: float | None = None,
    *,
    lo_open: bool = False,
    hi_open: bool = False,
    ndim: int | None = None,
) -> np.ndarray:
    """``value`` as a float64 array, checked to be finite and inside the interval (and of ``ndim``)."""
    try:
        arr = np.asarray(value, dtype=np.float64)
    except (TypeError, ValueError) as exc:
        raise ValueError(f"{name} must be a real number or array of real numbers") from exc
    if ndim is not None and arr.ndim != ndim:
        raise ValueError(f"{name} must be a {ndim}-D array, got shape {arr.shape}")
    if arr.size == 0:
        raise ValueError(f"{name} must not be empty")
    check_range(name, arr, lo, hi, lo_open=lo_open, hi_open=hi_open)
    return arr


def as_params(**named: np.ndarray) -> tuple[np.ndarray, ...]:
    """Broadcast already-validated model parameters to a common 1-D shape ``(B,)``.

    Each parameter may be a scalar or a 1-D array; all 1-D arrays must share one length ``B``
    (length-1 arrays and scalars broadcast).
    """
    arrays = {}
    for name, arr in named.items():
        a = np.atleast_1d(np.asarray(arr, dtype=np.float64))
        if a.ndim != 1:
            raise ValueError(f"{name} must be a scalar or a 1-D array of shape (B,), got shape {a.shape}")
        arrays[name] = a
    sizes = {a.size for a in arrays.values() if a.size != 1}
    if len(sizes) > 1:
        desc = ", ".join(f"{k}: {v.size}" for k, v in arrays.items())
        raise ValueError(f"batched parameters must share one length B (or be scalars); got {desc}")
    n_models = sizes.pop() if sizes else 1
    return tuple(np.broadcast_to(a, (n_models,)) for a in arrays.values())


def as_int(name: str, value: object, lo: int, hi: int | None = None) -> int:
    """``value`` as a Python int in [lo, hi]; ValueError otherwise."""
    if isinstance(value, bool):
        raise ValueError(f"{name} must be an integer >= {lo}, got {value!r}")
    try:
        as_float = float(value)  # type: ignore[arg-type]
    except (TypeError, ValueError) as exc:
        raise ValueError(f"{name} must be an integer >= {lo}, got {value!r}") from exc
    if not np.isfinite(as_float) or as_float != int(as_float):
        raise ValueError(f"{name} must be an integer >= {lo}, got {value!r}")
    out = int(as_float)
    if out < lo or (hi is not None and out > hi):
        upper = "" if hi is None else f" and <= {hi}"
        raise ValueError(f"{name} must be an integer >= {lo}{upper}, got {out}")
    return out
