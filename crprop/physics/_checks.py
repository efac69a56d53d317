"""Input validation shared by the physics-ingredient modules (private).

Every public function of :mod:`crprop.physics` converts its inputs through these helpers so that
bad input raises ``ValueError`` naming the argument and the allowed range, instead of silently
producing NaN or negative rates.
"""

from __future__ import annotations

import numbers
from decimal import Decimal

import numpy as np

REAL_DTYPE_KINDS = frozenset("iuf")
"""numpy dtype kinds accepted as real numbers: signed and unsigned integers, floating point (not bool 'b',
complex 'c', strings 'U'/'S', dates 'M'/'m')."""


def _not_real(value: object) -> str | None:
    """Why ``value`` (a scalar, or a list / tuple of them, nested) is not a real number, or None.

    bools (Python or numpy) are refused: ``float(True) == 1.0`` would turn a flag passed by mistake
    into a value; strings too (``float("0.5")`` parses). Any numpy integer or floating scalar is fine.
    """
    if isinstance(value, list | tuple):
        for item in value:
            why = _not_real(item)
            if why is not None:
                return why
        return None
    if isinstance(value, bool | np.bool_):
        return f"a bool ({value!r})"
    if isinstance(value, str | bytes | np.str_ | np.bytes_):
        return f"a string ({value!r})"
    return None


def _float64(raw: np.ndarray, value: object) -> tuple[np.ndarray | None, str | None]:
    """(``raw`` as float64, None) when its dtype (or every element of an object array) is real, else
    (None, why)."""
    if raw.dtype.kind == "O":
        bad = [v for v in raw.ravel()
               if isinstance(v, bool | np.bool_) or not isinstance(v, numbers.Real | Decimal)]
        if bad:
            return None, f"{type(bad[0]).__name__} {bad[0]!r}"
        return raw.astype(np.float64), None
    if raw.dtype.kind not in REAL_DTYPE_KINDS:
        if raw.ndim:
            return None, f"an array of dtype {raw.dtype}, shape {raw.shape}"
        return None, f"a value of dtype {raw.dtype} ({value!r})"
    return raw.astype(np.float64, copy=False), None


def as_real(value: object) -> tuple[np.ndarray | None, str | None]:
    """(``value`` as a float64 array, None) when it is a real number or an array / nested sequence of them
    (Python int / float, any numpy integer or floating type), else (None, why not): bools, strings, complex
    numbers and other objects. The one rule behind :func:`real_array` and crprop.params' scalar fields."""
    why = _not_real(value)
    if why is not None:
        return None, why
    try:
        raw = np.asarray(value)
    except (TypeError, ValueError):  # ragged nesting
        return None, f"{type(value).__name__} {value!r}"
    return _float64(raw, value)


def real_array(name: str, value: object, allowed: str) -> np.ndarray:
    """``value`` (a real number or an array / nested sequence of them: Python int / float, any numpy integer
    or floating type) as a float64 array; ValueError naming ``name`` and ``allowed`` for bools, strings,
    complex numbers and other non-real objects (:func:`as_real`). Finiteness and range are the caller's checks."""
    arr, why = as_real(value)
    if arr is None:
        raise ValueError(f"{name} must be a real number or array of real numbers (Python or numpy int / float, "
                         f"not bool, string or complex), got {why}; allowed: {allowed}")
    return arr


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
    """``value`` as a float64 array, checked to be finite and inside the interval (and of ``ndim``).

    bools, strings and complex numbers are refused (see :func:`real_array`), numpy real scalars accepted.
    """
    arr = real_array(name, value, _range_text(lo, hi, lo_open, hi_open))
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
    """``value`` as a Python int in [lo, hi]; ValueError otherwise (bools, Python or numpy, and strings too)."""
    if _not_real(value) is not None or isinstance(value, list | tuple):
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
