"""Options from a backend URL's query string, merged over the settings' *_options."""

from __future__ import annotations

from typing import Any
from urllib.parse import parse_qsl, urlsplit

from ..errors import ConfigurationError

_TRUE = {"1", "true", "yes", "on"}
_FALSE = {"0", "false", "no", "off"}


def url_options(url: str, base: dict[str, Any] | None = None) -> dict[str, Any]:
    options = dict(base or {})
    options.update(parse_qsl(urlsplit(url).query))
    return options


def number(options: dict[str, Any], name: str, default: float) -> float:
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
