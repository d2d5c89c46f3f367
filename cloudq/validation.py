"""Task argument validation from the function's type hints, with pydantic.

The producer validates and sends the JSON form of the validated values; the worker validates
that JSON again and calls the function with the rebuilt Python values (models, dataclasses...).
Plain annotations (int, str, list[int], ``X | None``...) given values of their exact type take a
fast path without pydantic (cloudq/plaintypes.py); anything else, errors included, goes to the
task's pydantic model, built (and pydantic imported) only when a call first needs it.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, get_type_hints

from .errors import InvalidArguments, NotSerializable
from .plaintypes import Check, Defer, check_for, is_json

if TYPE_CHECKING:
    from pydantic import BaseModel, ValidationError

_KINDS = inspect.Parameter


class ArgumentValidator:
    """Binds call arguments to a signature and validates them in one pydantic model."""

    __slots__ = (
        "_checks",
        "_fields",
        "_layout",
        "_model",
        "_name",
        "_names",
        "_params",
        "_positional",
        "_required",
        "_signature",
        "_simple",
        "_specs",
        "_typing",
    )

    def __init__(self, fn: Callable[..., Any], task_name: str, skip_first: bool = False, typing: bool = True) -> None:
        """``typing=False`` (Celery's task option) checks nothing: arguments go as given (JSON)."""
        self._name = task_name
        self._typing = typing
        signature = inspect.signature(fn)
        params = list(signature.parameters.values())
        if skip_first and params:
            params = params[1:]
        self._signature = signature.replace(parameters=params)
        self._params = params
        # most tasks take plain named parameters: bind those without inspect.Signature.bind
        self._simple = all(p.kind in (_KINDS.POSITIONAL_OR_KEYWORD, _KINDS.KEYWORD_ONLY) for p in params)
        self._positional = tuple(p.name for p in params if p.kind is _KINDS.POSITIONAL_OR_KEYWORD)
        self._names = frozenset(p.name for p in params)
        self._required = frozenset(p.name for p in params if p.default is _KINDS.empty)
        self._layout = tuple((p.name, p.kind) for p in params)
        try:
            hints = get_type_hints(fn)
        except Exception:  # unresolvable forward references: validate what we can
            hints = {}
        # pydantic takes names starting with "_" for private attributes and drops them: such
        # parameters (``_``, ``*_args``, ``**_``) get a field name of their own, aliased to theirs
        self._fields = tuple(
            (p.name, p.name if not p.name.startswith("_") else f"arg{i}{p.name}") for i, p in enumerate(params)
        )
        self._specs = [(param, hints.get(param.name, Any)) for param in params]
        self._model: type[BaseModel] | None = None
        self._checks = _fast_checks(self._specs)

    @property
    def model(self) -> type[BaseModel]:
        """The pydantic model of the arguments, built on first need (it imports pydantic)."""
        if self._model is None:
            self._model = _build_model(self._name, self._specs, self._fields)
        return self._model

    def _arguments(self, args: tuple[Any, ...] | list[Any], kwargs: dict[str, Any]) -> dict[str, Any]:
        if not self._simple:
            try:
                return dict(self._signature.bind(*args, **kwargs).arguments)
            except TypeError as exc:
                raise InvalidArguments(f"{self._name}: {exc}") from None
        if len(args) > len(self._positional):
            raise InvalidArguments(f"{self._name}: too many positional arguments")
        values = dict(zip(self._positional, args, strict=False))
        for key, value in kwargs.items():
            if key not in self._names:
                raise InvalidArguments(f"{self._name}: got an unexpected keyword argument {key!r}")
            if key in values:
                raise InvalidArguments(f"{self._name}: multiple values for argument {key!r}")
            values[key] = value
        if len(values) < len(self._required):
            missing = sorted(self._required - values.keys())
            if missing:
                raise InvalidArguments(f"{self._name}: missing a required argument: {missing[0]!r}")
        return values

    def _fast(self, arguments: dict[str, Any]) -> dict[str, Any] | None:
        """The validated values by parameter name without pydantic, or None: pydantic decides."""
        checks = self._checks
        if checks is None:
            return None
        values: dict[str, Any] = {}
        try:
            for name, check, default in checks:
                if name in arguments:
                    values[name] = check(arguments[name])
                elif default is _NO_FAST_DEFAULT:
                    return None
                else:
                    values[name] = default() if callable(default) else default
        except Defer:
            return None
        return values

    def _bind(self, arguments: dict[str, Any]) -> BaseModel:
        from pydantic import ValidationError

        try:
            return self.model.model_validate(arguments)
        except ValidationError as exc:
            raise InvalidArguments(f"{self._name}: {_summarise(exc)}") from None

    def to_message(self, args: tuple[Any, ...] | list[Any], kwargs: dict[str, Any]) -> tuple[list[Any], dict[str, Any]]:
        """Validate on the producer side; return JSON-ready (args, kwargs) for the envelope."""
        if not self._typing:
            return (
                to_json_value(list(args), f"arguments of {self._name}"),
                to_json_value(dict(kwargs), f"arguments of {self._name}"),
            )
        arguments = self._arguments(args, kwargs)
        fast = self._fast(arguments)
        if fast is not None:
            return self._as_called(fast, len(args), kwargs)
        from pydantic_core import PydanticSerializationError

        model = self._bind(arguments)
        try:
            data = model.model_dump(mode="json", by_alias=True)
        except PydanticSerializationError as exc:
            raise NotSerializable(f"{self._name}: arguments are not JSON-serialisable: {exc}") from None
        return self._as_called(data, len(args), kwargs)

    def to_call(self, args: list[Any], kwargs: dict[str, Any]) -> tuple[list[Any], dict[str, Any]]:
        """Validate on the worker side; return the Python values to call the function with."""
        if not self._typing:
            return list(args), dict(kwargs)
        arguments = self._arguments(args, kwargs)
        fast = self._fast(arguments)
        if fast is not None:
            return self._split(fast)
        model = self._bind(arguments)
        return self._split({name: getattr(model, field_name) for name, field_name in self._fields})

    def _as_called(
        self, values: dict[str, Any], n_positional: int, keywords: dict[str, Any]
    ) -> tuple[list[Any], dict[str, Any]]:
        """The validated values in the caller's shape, as Celery sends them: what was passed by
        position stays in ``args``, by name in ``kwargs``, and parameters left to their defaults
        are not sent (the worker's defaults apply, as in Celery; ``self.request`` sees the call)."""
        call_args: list[Any] = []
        call_kwargs: dict[str, Any] = {}
        position = 0
        for name, kind in self._layout:
            if kind is _KINDS.VAR_POSITIONAL:
                call_args.extend(values.get(name, ()))
            elif kind is _KINDS.VAR_KEYWORD:
                call_kwargs.update(values.get(name, {}))
            elif name in keywords:
                call_kwargs[name] = values[name]
            elif kind is not _KINDS.KEYWORD_ONLY and position < n_positional:
                call_args.append(values[name])
                position += 1
        return call_args, call_kwargs

    def _split(self, values: dict[str, Any]) -> tuple[list[Any], dict[str, Any]]:
        call_args: list[Any] = []
        call_kwargs: dict[str, Any] = {}
        for name, kind in self._layout:
            value = values[name]
            if kind is _KINDS.VAR_POSITIONAL:
                call_args.extend(value)
            elif kind is _KINDS.VAR_KEYWORD:
                call_kwargs.update(value)
            elif kind is _KINDS.KEYWORD_ONLY:
                call_kwargs[name] = value
            else:
                call_args.append(value)
        return call_args, call_kwargs


# a parameter whose default the fast path cannot hand out as pydantic would (a mutable or
# non-JSON default): a call that leaves it out goes to pydantic
_NO_FAST_DEFAULT = object()
_EMPTY_LIST: Any = list  # *args not given: pydantic's default ()
_EMPTY_DICT: Any = dict  # **kwargs not given


def _fast_checks(specs: list[tuple[inspect.Parameter, Any]]) -> tuple[tuple[str, Check, Any], ...] | None:
    """(name, check, default) per parameter when every annotation is plain, else None."""
    checks = []
    for param, annotation in specs:
        if param.kind is _KINDS.VAR_POSITIONAL:
            check, default = check_for(tuple[annotation, ...]), _EMPTY_LIST  # type: ignore[valid-type]
        elif param.kind is _KINDS.VAR_KEYWORD:
            check, default = check_for(dict[str, annotation]), _EMPTY_DICT  # type: ignore[valid-type]
        else:
            check = check_for(annotation)
            default = param.default
            if default is _KINDS.empty or not _immutable_json(default):
                default = _NO_FAST_DEFAULT
        if check is None:
            return None
        checks.append((param.name, check, default))
    return tuple(checks)


def _immutable_json(value: Any) -> bool:
    """A default pydantic hands out as it is, and whose JSON form is itself."""
    return type(value) in (str, int, float, bool, type(None)) and is_json(value)


def _build_model(task_name: str, specs: list[tuple[inspect.Parameter, Any]], names: tuple[tuple[str, str], ...]) -> Any:
    from pydantic import ConfigDict, Field, create_model

    fields: dict[str, Any] = {}
    for (param, annotation), (_, field_name) in zip(specs, names, strict=True):
        if param.kind is _KINDS.VAR_POSITIONAL:
            spec: tuple[Any, Any] = (tuple[annotation, ...], ())  # type: ignore[valid-type]
        elif param.kind is _KINDS.VAR_KEYWORD:
            spec = (dict[str, annotation], {})  # type: ignore[valid-type]
        elif param.default is _KINDS.empty:
            spec = (annotation, ...)
        else:
            spec = (annotation, param.default)
        if field_name != param.name:
            spec = (spec[0], Field(spec[1], alias=param.name))
        fields[field_name] = spec
    return create_model(  # type: ignore[call-overload]
        f"{task_name}__args",
        __config__=ConfigDict(arbitrary_types_allowed=True, protected_namespaces=()),
        **fields,
    )


def _summarise(exc: ValidationError) -> str:
    return "; ".join(
        f"argument {'.'.join(map(str, e['loc']))!s}: {e['msg']} (got {e.get('input')!r:.80})" for e in exc.errors()
    )


def to_json_value(value: Any, what: str) -> Any:
    """A JSON-compatible form of ``value`` (pydantic models and dataclasses included)."""
    if is_json(value):
        return value
    from pydantic_core import PydanticSerializationError, to_jsonable_python

    try:
        return to_jsonable_python(value)
    except PydanticSerializationError as exc:
        raise NotSerializable(f"{what} is not JSON-serialisable: {exc}") from None
