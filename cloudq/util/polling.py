"""One polling schedule for every wait on a result: sync, async, with or without progress callbacks."""

from __future__ import annotations

import time

FIRST_PAUSE_S = 0.005


class PollSchedule:
    """Pauses between polls: 5 ms (or ``first``) doubling up to ``interval``, never past the
    deadline, so a quick task is seen quickly and a slow one costs few store reads."""

    def __init__(self, timeout: float | None, interval: float, first: float = FIRST_PAUSE_S) -> None:
        self.deadline = None if timeout is None else time.monotonic() + timeout
        self.interval = interval
        self._pause = min(first, interval)

    def expired(self) -> bool:
        return self.deadline is not None and time.monotonic() >= self.deadline

    def next_pause(self) -> float:
        """How long to sleep before the next poll (then the pause grows)."""
        pause = self._pause
        if self.deadline is not None:
            pause = min(pause, max(0.0, self.deadline - time.monotonic()))
        self._pause = min(self._pause * 2, self.interval)
        return pause
