"""When to try a failed task again: a pure function of the attempt number and the exception."""

from __future__ import annotations

import random
from collections.abc import Callable
from dataclasses import dataclass

from .errors import Retry


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    """Exponential backoff with full jitter, capped (the AWS Architecture Blog's "Full Jitter").

    ``attempt`` is the 1-based number of the attempt that just failed.
    """

    max_retries: int = 3
    backoff: float = 1.0
    backoff_max: float = 600.0
    jitter: bool = True
    retry_on: tuple[type[BaseException], ...] = (Exception,)

    def retries_left(self, attempt: int) -> bool:
        return attempt <= self.max_retries

    def next_delay(self, attempt: int, exc: BaseException, rand: Callable[[], float] = random.random) -> float | None:
        """Seconds to wait before the next attempt, or None when the task must not be retried."""
        if not self.retries_left(attempt):
            return None
        if isinstance(exc, Retry):
            if exc.countdown is not None:
                return max(0.0, exc.countdown)
        elif not isinstance(exc, self.retry_on):
            return None
        ceiling = min(self.backoff_max, self.backoff * (2 ** (attempt - 1)))
        return float(ceiling * rand()) if self.jitter else float(ceiling)
