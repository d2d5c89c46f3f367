"""Argument checks for plain annotations that need no pydantic: the validation fast path.

A check takes a value and returns exactly what pydantic would (same type, same value), or raises
``Defer`` when it cannot tell without pydantic: then the caller asks pydantic, which accepts
(coercing, e.g. ``"3"`` -> 3) or rejects with its own error. So the fast path only ever accepts
values of the exact annotated type; every conversion and every error stays pydantic's.

Plain annotations: int, str, float, bool, None, Any (JSON values), ``X | None`` / Optional[X],
``list[X]``, ``dict[str, X]``, ``tuple[X, ...]`` of plain X.
"""

from __future__ import annotations

import math
import types
import typing
from collections.abc import Callable
from typing import Any

Check = Callable[[Any], Any]


class Defer(Exception):
    """The fast path cannot decide this value: pydantic must."""


_DEFER = Defer()  # one instance: raising it allocates nothing


def _int(value: Any) -> Any:
    if type(value) is int:
        return value
    raise _DEFER


def _str(value: Any) -> Any:
    if type(value) is str:
        return value
    raise _DEFER


def _bool(value: Any) -> Any:
    if type(value) is bool:
        return value
    raise _DEFER


def _float(value: Any) -> Any:
    kind = type(value)
    if kind is float and math.isfinite(value):  # inf/nan: pydantic's JSON form decides
        return value
    if kind is int:  # pydantic's lax float: 3 -> 3.0
        return float(value)
    raise _DEFER


def _none(value: Any) -> Any:
    if value is None:
        return value
    raise _DEFER


def is_json(value: Any) -> bool:
    """Whether ``value`` is JSON data as it stands (str keys, finite floats): pydantic's JSON form
    of it is itself."""
    kind = type(value)
    if kind is str or kind is int or kind is bool or value is None:
        return True
    if kind is float:
        return math.isfinite(value)
    if kind is list:
        return all(is_json(item) for item in value)
    if kind is dict:
        return all(type(key) is str and is_json(item) for key, item in value.items())
    return False


def _any(value: Any) -> Any:
    if is_json(value):
        return value
    raise _DEFER


def _optional(inner: Check) -> Check:
    def check(value: Any) -> Any:
        return None if value is None else inner(value)

    return check


def _list(inner: Check) -> Check:
    def check(value: Any) -> Any:
        if type(value) is list:
            return [inner(item) for item in value]
        raise _DEFER

    return check


def _dict(inner: Check) -> Check:
    def check(value: Any) -> Any:
        if type(value) is dict:
            out = {}
            for key, item in value.items():
                if type(key) is not str:
                    raise _DEFER
                out[key] = inner(item)
            return out
        raise _DEFER

    return check


def _tuple(inner: Check) -> Check:
    """``*args``: pydantic's tuple[X, ...]; given as a tuple (bound call) or a list (from JSON)."""

    def check(value: Any) -> Any:
        if type(value) is tuple or type(value) is list:
            return tuple(inner(item) for item in value)
        raise _DEFER

    return check


_SCALARS: dict[Any, Check] = {int: _int, str: _str, float: _float, bool: _bool, type(None): _none, None: _none}
_ANY: tuple[Any, ...] = (Any, object)


def check_for(annotation: Any) -> Check | None:
    """The fast check of ``annotation``, or None when it is not plain (pydantic validates it)."""
    found = _SCALARS.get(annotation) if isinstance(annotation, typing.Hashable) else None
    if found is not None:
        return found
    if annotation in _ANY:
        return _any
    origin, args = typing.get_origin(annotation), typing.get_args(annotation)
    if origin is typing.Union or origin is types.UnionType:
        others = [arg for arg in args if arg is not type(None)]
        if len(others) == 1 and len(args) == 2:
            inner = check_for(others[0])
            return None if inner is None else _optional(inner)
        return None
    if origin is list and len(args) == 1:
        inner = check_for(args[0])
        return None if inner is None else _list(inner)
    if origin is dict and len(args) == 2 and args[0] is str:
        inner = check_for(args[1])
        return None if inner is None else _dict(inner)
    if origin is tuple and len(args) == 2 and args[1] is Ellipsis:
        inner = check_for(args[0])
        return None if inner is None else _tuple(inner)
    return None
