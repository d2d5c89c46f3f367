"""Options from a backend URL's query string, merged over the settings' *_options."""

from __future__ import annotations

from typing import Any
from urllib.parse import parse_qsl, urlsplit


def url_options(url: str, base: dict[str, Any] | None = None) -> dict[str, Any]:
    options = dict(base or {})
    options.update(parse_qsl(urlsplit(url).query))
    return options


def number(options: dict[str, Any], name: str, default: float) -> float:
    from ..errors import ConfigurationError

    value = options.get(name, default)
    try:
        return float(value)
    except (TypeError, ValueError):
        raise ConfigurationError(f"option {name!r} must be a number, got {value!r}") from None
