"""Backend reads shared by every open tab: each key is read at most once per ``ttl_s``, so the
dashboard's cost per minute is bounded by the pages it has, not by how many people watch."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Hashable
from typing import Any


class TTLCache:
    """Values by key, kept ``ttl_s`` seconds. Concurrent misses of one key wait for the one read
    in progress instead of each calling the backend."""

    def __init__(self, ttl_s: float, clock: Callable[[], float] = time.monotonic) -> None:
        self.ttl_s = ttl_s
        self.clock = clock
        self._values: dict[Hashable, tuple[float, Any]] = {}
        self._locks: dict[Hashable, threading.Lock] = {}
        self._guard = threading.Lock()

    def get(self, key: Hashable, load: Callable[[], Any]) -> Any:
        with self._guard:
            lock = self._locks.setdefault(key, threading.Lock())
        with lock:
            kept = self._values.get(key)
            if kept is not None and self.clock() - kept[0] < self.ttl_s:
                return kept[1]
            value = load()
            self._values[key] = (self.clock(), value)
            return value

    def clear(self) -> None:
        """Forget everything (after an action, so its effect shows on the next page)."""
        with self._guard:
            self._values.clear()
