"""Burst mode's decision: may an idle worker exit, and what does it leave behind?

It waits while the queues report messages ready or delayed, or while a message this worker gave
back (a retry, a deferred ETA hop) is due within ``max_wait_s``, but never longer than
``max_wait_s`` with nothing to run: one task with ``eta=tomorrow`` must not keep a CI job alive.
The bound runs from when the worker last went idle, so a chain of short retries is waited for.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from datetime import UTC, datetime

from ..interfaces import Broker, Delivery
from .givebacks import GiveBacks

DEFAULT_MAX_WAIT_S = 60.0


class Burst:
    def __init__(
        self,
        broker: Broker,
        queues: Sequence[str],
        givebacks: GiveBacks,
        max_wait_s: float,
        settle: Callable[[], None],
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        """``settle`` applies the outcomes still waiting for a batch, so the retries among them
        are recorded in ``givebacks`` before the check."""
        self.broker = broker
        self.queues = list(queues)
        self.givebacks = givebacks
        self.max_wait_s = max_wait_s
        self._settle = settle
        self._clock = clock
        self._idle_since: float | None = None
        self.summary = "the queues are empty"  # what was left, once drained

    def received(self, deliveries: Sequence[Delivery]) -> None:
        """Work arrived: the wait bound starts again at the next idle moment."""
        self._idle_since = None
        self.givebacks.received(d.message_id for d in deliveries if d.message_id)

    def drained(self) -> bool:
        """Called when nothing is held and a receive found nothing: True when the worker may exit."""
        self._settle()
        now = self._clock()
        if self._idle_since is None:
            self._idle_since = now
        end = self._idle_since + self.max_wait_s
        ready = delayed = 0
        for queue in self.queues:
            stats = self.broker.stats(queue)
            ready += max(0, stats.ready)  # UNKNOWN (-1) counts as nothing seen
            delayed += max(0, stats.delayed)
        due = self.givebacks.pending()
        if now < end and (ready or delayed or (due and due[0] <= end)):
            return False
        self.summary = self._left(ready, delayed, due, now)
        return True

    def _left(self, ready: int, delayed: int, due: list[float], now: float) -> str:
        if not (ready or delayed or due):
            return "the queues are empty"
        parts = []
        if ready:
            parts.append(f"{ready} ready that no receive returned")
        count = max(delayed, len(due))
        if count:
            pieces = []
            if due:
                span = (
                    f"at {_wall(due[0], now)}"
                    if len(due) == 1
                    else f"from {_wall(due[0], now)} to {_wall(due[-1], now)}"
                )
                pieces.append(f"{len(due)} due {span}")
            if delayed > len(due):
                pieces.append(f"{delayed - len(due)} at a time the broker does not report")
            parts.append(f"{count} delayed message(s): {', '.join(pieces)}")
        return f"nothing due within max_wait={self.max_wait_s:g}s; left {'; '.join(parts)}"


def _wall(due: float, now: float) -> str:
    """A monotonic due time as UTC wall-clock time, for the log."""
    when = datetime.fromtimestamp(time.time() + (due - now), UTC)
    return when.isoformat(timespec="seconds").replace("+00:00", "Z")
