"""Messages this worker gave back (retried or deferred) and when each is due again.

Burst mode needs to know whether work is still coming, and queue counts cannot tell it
provider-neutrally: SQS reports a retried message (a visibility change) as in flight, not delayed,
and no broker says *when* a delayed message is due. The worker knows both for what it gave back
itself, so it records them here as the acker applies them.
"""

from __future__ import annotations

import itertools
import threading
import time
from collections.abc import Callable, Iterable

DUE_SLACK_S = 5.0  # a given-back message is still expected this long past its due time


class GiveBacks:
    """Due times (monotonic) by message id; an entry leaves when that message is received
    again or ``slack_s`` after it fell due (another worker may have taken it, or the broker sent
    it on under a new id)."""

    def __init__(self, slack_s: float = DUE_SLACK_S, clock: Callable[[], float] = time.monotonic) -> None:
        self.slack_s = slack_s
        self._clock = clock
        self._lock = threading.Lock()
        self._due: dict[str, float] = {}
        self._anonymous = itertools.count()  # keys for messages a broker gave no id

    def add(self, message_ids: Iterable[str], delay_s: float) -> None:
        """Messages just given back, receivable again after ``delay_s`` (counted from now, after
        the broker call returned, so a due time is never early)."""
        due = self._clock() + max(0.0, delay_s)
        with self._lock:
            for message_id in message_ids:
                self._due[message_id or f"#{next(self._anonymous)}"] = due

    def received(self, message_ids: Iterable[str]) -> None:
        with self._lock:
            for message_id in message_ids:
                self._due.pop(message_id, None)

    def pending(self) -> list[float]:
        """Due times of the messages still expected back, earliest first."""
        now = self._clock()
        with self._lock:
            self._due = {mid: due for mid, due in self._due.items() if due + self.slack_s > now}
            return sorted(self._due.values())
