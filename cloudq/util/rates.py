"""Celery's rate syntax (``"10/s"``, ``"100/m"``, ``"1000/h"``), read where tasks are declared:
light on purpose, since ``import cloudq`` loads it (the buckets are in runtime/ratelimit.py)."""

from __future__ import annotations

from typing import Any

from ..errors import ConfigurationError

_PER = {"s": 1.0, "m": 60.0, "h": 3600.0}


def parse_rate(value: Any, where: str) -> float | None:
    """Tasks per second from Celery's syntax: ``"10/s"``, ``"100/m"``, ``"1000/h"``, a bare number
    (per second); None or 0 means no limit (as in Celery). ConfigurationError in one line otherwise."""
    if value is None:
        return None
    number: Any = value
    per = "s"
    if isinstance(value, str):
        number, _, per = value.strip().partition("/")
        per = per.strip() or "s"
    try:
        count = float(number) if not isinstance(number, bool) else None
    except (TypeError, ValueError):
        count = None
    if count is None or per not in _PER or count < 0 or count != count or count == float("inf"):
        raise ConfigurationError(
            f"{where}: rate_limit must be like '10/s', '100/m', '1000/h' or a number of tasks per second, got {value!r}"
        )
    return count / _PER[per] or None
