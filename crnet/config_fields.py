"""Type checks of config values read from TOML / JSON before they reach a dataclass.

A dataclass does not check its field types, so ``n_chains = "64"`` from a TOML file would only fail deep
inside a run (or, worse, ``check = "no"`` would count as true). :func:`check_fields` compares every given value
with its field's annotation and raises a ValueError naming the section, the key, the expected type and the
value. Numbers must be finite; an int is accepted where a float is expected, a bool never is a number.
"""

from __future__ import annotations

import dataclasses
import math
import types
import typing
from collections.abc import Mapping
from typing import Any


def _matches(value: Any, tp: Any) -> bool:
    origin = typing.get_origin(tp)
    if tp is Any:
        return True
    if origin in (typing.Union, types.UnionType):
        return any(_matches(value, t) for t in typing.get_args(tp))
    if tp is type(None):
        return value is None
    if tp is bool:
        return isinstance(value, bool)
    if tp is int:
        return isinstance(value, int) and not isinstance(value, bool)
    if tp is float:
        return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)
    if tp is str:
        return isinstance(value, str)
    if origin in (list, tuple):
        if not isinstance(value, list | tuple):
            return False
        args = typing.get_args(tp)
        if origin is tuple and args and args[-1] is not Ellipsis:
            return len(value) == len(args) and all(_matches(v, a) for v, a in zip(value, args, strict=True))
        return not args or all(_matches(v, args[0]) for v in value)
    if origin is dict or tp is dict:
        return isinstance(value, Mapping)
    if dataclasses.is_dataclass(tp):
        return isinstance(value, Mapping | tp)
    return True  # an annotation this checker does not model: left to the dataclass


def _name(tp: Any) -> str:
    return str(tp).replace("typing.", "").replace("<class '", "").replace("'>", "")


def check_fields(cls: type, raw: Mapping[str, Any], where: str) -> None:
    """Raise ValueError for a key of ``raw`` that is not a field of dataclass ``cls`` or whose value does not
    match the field's annotation; nested dataclass fields given as tables are checked too."""
    hints = typing.get_type_hints(cls)
    known = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(raw) - known)
    if unknown:
        raise ValueError(f"[{where}]: unknown keys {unknown}; allowed {sorted(known)}")
    for key, value in raw.items():
        tp = hints[key]
        if not _matches(value, tp):
            raise ValueError(f"[{where}] {key}: expected {_name(tp)} (numbers finite), got {value!r}")
        nested = [t for t in (typing.get_args(tp) or (tp,)) if dataclasses.is_dataclass(t)]
        if nested and isinstance(value, Mapping):
            check_fields(nested[0], value, f"{where}.{key}")


def check_seed(value: Any, field: str = "seed") -> None:
    """ValueError unless ``value`` is an integer >= 0 (Python or numpy; not a bool): numpy seeds are non-negative,
    and a negative one would otherwise fail only where the first generator is made, hours into a run."""
    import numbers

    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < 0:
        raise ValueError(f"{field} must be an integer >= 0 (numpy seeds are non-negative), got {value!r}")
