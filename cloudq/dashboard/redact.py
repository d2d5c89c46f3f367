"""What a task page shows of a task's arguments (``dashboard_redact``): by default each
argument's name and type but never its value, since arguments carry e-mail addresses, tokens and
other personal data that a monitoring page must not spread."""

from __future__ import annotations

import inspect
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from ..deadletters import REDACTED


@dataclass(frozen=True, slots=True)
class Argument:
    name: str  # the parameter's name when the task's signature tells it, else args[i]
    type: str  # the JSON type of the value as sent
    value: str  # its repr, or REDACTED


def _type_name(value: Any) -> str:
    return "null" if value is None else type(value).__name__


def _names(fn: Callable[..., Any] | None, count: int, skip_first: bool) -> list[str]:
    """Names of the first ``count`` positional parameters of ``fn`` (``args[i]`` past them)."""
    names: list[str] = []
    if fn is not None:
        try:
            params = list(inspect.signature(fn).parameters.values())
        except (TypeError, ValueError):
            params = []
        params = params[1:] if skip_first else params
        names = [p.name for p in params if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)]
    return [names[i] if i < len(names) else f"args[{i}]" for i in range(count)]


def arguments(
    args: Sequence[Any] | None,
    kwargs: dict[str, Any] | None,
    redact: bool | Sequence[str],
    fn: Callable[..., Any] | None = None,
    bound: bool = False,
) -> list[Argument]:
    """The call's arguments as shown: ``redact`` True hides every value, a list hides the values
    of the arguments so named (positional ones named from ``fn``'s signature; ``bound``: its first
    parameter is ``self``), False hides none."""
    args, kwargs = list(args or ()), dict(kwargs or {})
    named = list(zip(_names(fn, len(args), bound), args, strict=True)) + list(kwargs.items())
    names: frozenset[str] | None = None if redact is True else frozenset(() if redact is False else redact)
    return [
        Argument(name, _type_name(value), REDACTED if names is None or name in names else repr(value))
        for name, value in named
    ]


SCRUB_MIN = 4  # shorter values (1, "ok") would blank out unrelated text


def hidden_values(args: Sequence[Any] | None, kwargs: dict[str, Any] | None, shown: Sequence[Argument]) -> list[str]:
    """The text of each hidden argument value, to scrub from error messages and tracebacks that
    quote it (``raise ValueError(f"bad {email}")``)."""
    values = [*(args or ()), *(kwargs or {}).values()]
    found = {str(v) for v, a in zip(values, shown, strict=False) if a.value == REDACTED and not isinstance(v, bool)}
    return sorted((v for v in found if len(v) >= SCRUB_MIN), key=len, reverse=True)


def scrub(text: str | None, values: Sequence[str]) -> str | None:
    """``text`` with each of ``values`` replaced by REDACTED."""
    if text is None:
        return None
    for value in values:
        text = text.replace(value, REDACTED)
    return text
