"""Celery's ``rate_limit``: a token bucket per task name, per runtime process.

As in Celery the limit is per worker, not global: every slot of one ``cloudq worker`` (threads,
process pool or async) shares one bucket per task, held in the parent. The Lambda handler and the
push handler keep one per function instance. The bucket holds one token (Celery's capacity), so a
limit of ``10/s`` runs a task at most every 0.1 s, never ten at once after an idle spell.

A message over its rate waits leased (the worker holds it in its buffer and its heartbeat
extends the lease; other tasks run meanwhile): it is not a retry, spends no delivery and is never
dead-lettered for waiting. A Lambda invocation or a push request waits in place as long as it can,
then sends the message again delayed until its token (``later``). The syntax: util/rates.py.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import TYPE_CHECKING

from ..envelope import peek
from ..interfaces import Delivery, OutgoingMessage
from .executor import Requeue

if TYPE_CHECKING:
    from ..app import App


class TokenBucket:
    """One token at most, refilled at ``rate`` per second; ``clock`` is injectable for tests."""

    def __init__(self, rate: float, clock: Callable[[], float] = time.monotonic) -> None:
        self.rate = rate
        self._clock = clock
        self._tokens = 1.0
        self._last = clock()

    def take(self) -> float:
        """Take the token if there is one (0.0), else the seconds until there will be one."""
        now = self._clock()
        self._tokens = min(1.0, self._tokens + (now - self._last) * self.rate)
        self._last = now
        if self._tokens >= 1.0:
            self._tokens -= 1.0
            return 0.0
        return (1.0 - self._tokens) / self.rate


class RateLimits:
    """The buckets of one runtime process, by task name, created when first needed (a task's
    limit is read from the app each time, so tasks registered later are limited too)."""

    def __init__(
        self,
        app: App,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        """``clock`` and ``sleep`` are injectable, so tests need no wall time."""
        self.app = app
        self._clock = clock
        self._sleep = sleep
        self._buckets: dict[str, TokenBucket] = {}
        self._lock = threading.Lock()
        self.waited = 0  # deliveries that had to wait for their token: for logs and tests

    def active(self) -> bool:
        """Whether any task is limited (and limits are not switched off)."""
        if self.app.settings.disable_rate_limits:
            return False
        return any(task.rate_per_s for task in self.app.tasks.values())

    def delay(self, delivery: Delivery) -> float:
        """0.0 when ``delivery`` may run now (its token is taken), else seconds to wait. A body
        that cannot be read is never held back: the executor dead-letters it."""
        if self.app.settings.disable_rate_limits:
            return 0.0
        # the producer's "task" attribute (present on claim-checked bodies too), else the body's,
        # read only when some task is limited (active() looks at every task: not once per record)
        name = delivery.attributes.get("task")
        if not name:
            if not self.active():
                return 0.0
            name = peek(delivery.body).get("task")
        task = self.app.tasks.get(name) if isinstance(name, str) else None
        if task is None or not task.rate_per_s:
            return 0.0
        rate = task.rate_per_s
        with self._lock:
            bucket = self._buckets.get(task.name)
            if bucket is None or bucket.rate != rate:
                bucket = self._buckets[task.name] = TokenBucket(rate, self._clock)
            return bucket.take()

    def wait(self, delivery: Delivery, within_s: float | None = None) -> float:
        """Block until ``delivery`` may run (the Lambda and push handlers: the message stays leased
        while the function instance waits): 0.0. When that would take longer than ``within_s``
        (what is left of an invocation), the seconds until its token instead, at once."""
        pause = self.delay(delivery)
        if pause > 0:
            self.waited += 1
        while pause > 0:
            if within_s is not None and pause > within_s:
                return pause
            self._sleep(pause)
            within_s = None if within_s is None else within_s - pause
            pause = self.delay(delivery)
        return 0.0


def later(delivery: Delivery, pause: float, max_delay_s: float | None) -> Requeue:
    """The same message again in ``pause`` seconds (capped at the broker's delay limit: it then
    waits again): a new message with the same envelope, so waiting spends no delivery and no
    retry. For a runtime that cannot hold the message that long (a Lambda invocation, a push
    request). Only the producer's ``task`` attribute is kept (a broker's own bookkeeping
    attributes belong to the delivered copy); deliveries lost before this one are not carried."""
    delay = pause if max_delay_s is None else min(pause, max_delay_s)
    name = delivery.attributes.get("task")
    message = OutgoingMessage(delivery.body, delay, delivery.ordering_key, None, {"task": name} if name else {})
    return Requeue(message, event="rate-limited")
