"""A clock for tests of time-based behaviour (rate limits, autoscale keepalive) without wall time."""

from __future__ import annotations


class FakeClock:
    """A monotonic clock that only the test moves: ``clock.now += 60``."""

    def __init__(self, now: float = 1000.0) -> None:
        self.now = now
        self.slept: list[float] = []

    def __call__(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        """A ``time.sleep`` that passes the time at once (and records it)."""
        self.slept.append(seconds)
        self.now += seconds
