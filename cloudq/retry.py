"""When to try a failed task again: a pure function of the attempt number and the exception.

Celery's rules: a task retries only when asked, by raising ``task.retry(...)`` (a ``Retry``) or an
exception in its ``autoretry_for`` (cloudq's ``retry_on``), and at most ``max_retries`` times
(``None``: forever). An autoretry waits ``retry_backoff`` (exponential, capped at
``retry_backoff_max``, with full jitter when ``retry_jitter``) or, with backoff off, the
``countdown`` of ``retry_kwargs``, else ``default_retry_delay``; ``task.retry()`` without a
countdown or eta waits ``default_retry_delay``.
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable
from dataclasses import dataclass

from .errors import Retry

DEFAULT_RETRY_DELAY_S = 180.0  # Celery's Task.default_retry_delay
# A task with max_retries=None retries forever, but a message whose worker keeps dying (crash, kill,
# OOM) is not retried forever: its retries are re-sent as new messages carrying their count, so a
# message delivered this many times without an outcome is dead-lettered as WorkerLost.
FOREVER_LOST_DELIVERIES = 10


def deliveries_allowed(max_retries: int | None) -> int:
    """How many deliveries of one message may run before it counts as lost."""
    return FOREVER_LOST_DELIVERIES if max_retries is None else max_retries + 1


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    """``attempt`` is the 1-based number of the attempt that just failed (``retries + 1``).

    ``backoff``: ``False`` is off (wait ``countdown``, else ``default_delay``); ``True`` is a factor
    of 1 s; a number is the factor in seconds (``0`` retries at once). The n-th retry waits
    ``min(backoff_max, factor * 2 ** (n - 1))``, times a uniform random number with ``jitter``."""

    max_retries: int | None = 3
    backoff: float | bool = False
    backoff_max: float = 600.0
    jitter: bool = True
    retry_on: tuple[type[BaseException], ...] = ()
    dont_retry_on: tuple[type[BaseException], ...] = ()
    default_delay: float = DEFAULT_RETRY_DELAY_S
    countdown: float | None = None  # retry_kwargs["countdown"] for autoretries

    def retries_left(self, attempt: int, max_retries: int | None = None, *, explicit: bool = False) -> bool:
        """True while another retry is allowed after ``attempt``; ``max_retries`` (when ``explicit``)
        overrides the task's, as ``task.retry(max_retries=...)`` does."""
        limit = max_retries if explicit and max_retries is not None else self.max_retries
        return limit is None or attempt <= limit

    def autoretries(self, exc: BaseException) -> bool:
        return isinstance(exc, self.retry_on) and not isinstance(exc, self.dont_retry_on)

    def backoff_delay(self, attempt: int, rand: Callable[[], float] = random.random) -> float:
        if self.backoff is False:
            return self.default_delay if self.countdown is None else max(0.0, self.countdown)
        factor = 1.0 if self.backoff is True else float(self.backoff)
        ceiling = min(self.backoff_max, factor * (2 ** (attempt - 1)))
        return float(ceiling * rand()) if self.jitter else float(ceiling)

    def next_delay(self, attempt: int, exc: BaseException, rand: Callable[[], float] = random.random) -> float | None:
        """Seconds to wait before the next attempt, or None when the task must not be retried."""
        if isinstance(exc, Retry):
            if not self.retries_left(attempt, exc.max_retries, explicit=True):
                return None
            if exc.countdown is not None:
                return max(0.0, exc.countdown)
            if exc.eta is not None:
                return max(0.0, exc.eta - time.time())
            return self.default_delay
        if not self.autoretries(exc) or not self.retries_left(attempt):
            return None
        return self.backoff_delay(attempt, rand)
