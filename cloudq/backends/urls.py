"""Backend options: a URL's query string over the settings' ``*_options``, parsed strictly.

Every backend (built-in and adapters) reads its options through ``read_options`` so a typo is an
error naming the option, the close match and the allowed names, never silently ignored.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from difflib import get_close_matches
from typing import Any
from urllib.parse import parse_qsl, urlsplit

from ..errors import ConfigurationError

Parser = Callable[[str, Any], Any]  # (option name, raw value) -> parsed value, or ConfigurationError

_TRUE = {"1", "true", "yes", "on"}
_FALSE = {"0", "false", "no", "off"}


def url_options(url: str, base: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """The raw options: ``base`` overridden by the URL's query parameters (nothing checked)."""
    options = dict(base or {})
    options.update(parse_qsl(urlsplit(url).query))
    return options


def close_match(name: str, known: Iterable[str]) -> str:
    """`` (did you mean 'x'?)`` for the nearest known name, or an empty string."""
    found = get_close_matches(name, list(known), n=1, cutoff=0.6)
    return f" (did you mean {found[0]!r}?)" if found else ""


def read_options(
    url: str,
    base: Mapping[str, Any],
    parsers: Mapping[str, Parser],
    defaults: Mapping[str, Any] | None = None,
    *,
    base_name: str = "options",
) -> dict[str, Any]:
    """``defaults`` updated with the URL query over ``base`` (``base_name`` says which setting it
    is, for messages), each value parsed by its parser; an unknown name is a ConfigurationError."""
    query = dict(parse_qsl(urlsplit(url).query))
    raw = {**base, **query}
    unknown = [name for name in raw if name not in parsers]
    if unknown:
        where = url.split("?")[0]
        problems = "; ".join(
            f"unknown option {name!r} {'in the URL' if name in query else f'in {base_name}'}"
            f"{close_match(name, parsers)}"
            for name in unknown
        )
        raise ConfigurationError(f"{where}: {problems}; allowed options: {', '.join(sorted(parsers))}")
    options = dict(defaults or {})
    for name, value in raw.items():
        options[name] = parsers[name](name, value)
    return options


def number(options: Mapping[str, Any], name: str, default: float) -> float:
    value = options.get(name, default)
    try:
        return float(value)
    except (TypeError, ValueError):
        raise ConfigurationError(f"option {name!r} must be a number, got {value!r}") from None


def as_bool(name: str, value: Any) -> bool:
    """An option's boolean from a URL query (``1/true/yes/on``, ``0/false/no/off``) or a setting."""
    if isinstance(value, bool):
        return value
    text = str(value).strip().lower()
    if text in _TRUE:
        return True
    if text in _FALSE:
        return False
    raise ConfigurationError(f"option {name!r} must be true or false, got {value!r}")


def as_number(name: str, value: Any, low: float, high: float) -> float:
    try:
        result = float(value)
    except (TypeError, ValueError):
        raise ConfigurationError(f"option {name!r} must be a number, got {value!r}") from None
    if not low <= result <= high:
        raise ConfigurationError(f"option {name!r} must be between {low:g} and {high:g}, got {value!r}")
    return result


def as_text(name: str, value: Any) -> str | None:
    """A string option; empty means unset."""
    if value is None:
        return None
    if not isinstance(value, str):
        raise ConfigurationError(f"option {name!r} must be a string, got {value!r}")
    return value or None


def number_in(low: float, high: float) -> Parser:
    """A parser for a number between ``low`` and ``high``."""
    return lambda name, value: as_number(name, value, low, high)


def integer_in(low: int, high: int) -> Parser:
    """A parser for a whole number between ``low`` and ``high``."""
    return lambda name, value: int(as_number(name, value, low, high))


def one_of(*choices: str) -> Parser:
    """A parser for one of ``choices`` (case-insensitive)."""

    def parse(name: str, value: Any) -> str:
        text = str(value).strip().lower()
        if text not in choices:
            raise ConfigurationError(f"option {name!r} must be one of {', '.join(choices)}, got {value!r}")
        return text

    return parse
