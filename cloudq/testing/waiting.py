"""Polling until something holds: the one loop tests, examples and benchmarks share instead of
each writing its own."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TypeVar

T = TypeVar("T")


def poll(
    probe: Callable[[], T], accept: Callable[[T], object], timeout: float, interval: float = 0.01
) -> tuple[bool, T]:
    """Call ``probe`` until ``accept`` takes its value or ``timeout`` seconds pass (probing at
    least once, and once more at the deadline); returns (accepted, last value)."""
    deadline = time.monotonic() + timeout
    while True:
        value = probe()
        if accept(value):
            return True, value
        left = deadline - time.monotonic()
        if left <= 0:
            return False, value
        time.sleep(min(interval, left))


def wait_for(predicate: Callable[[], T], timeout: float = 10.0, interval: float = 0.01, what: str = "condition") -> T:
    """Poll until ``predicate()`` is truthy and return it; AssertionError after ``timeout``."""
    met, value = poll(predicate, bool, timeout, interval)
    if not met:
        raise AssertionError(f"{what} not met within {timeout:g}s")
    return value


def eventually(probe: Callable[[], T], accept: Callable[[T], bool], timeout: float, pause: float = 0.05) -> T:
    """Call ``probe`` until ``accept`` likes its value or ``timeout`` passes; return the last value
    (the caller asserts on it, so a failure shows what was seen)."""
    return poll(probe, accept, timeout, pause)[1]
