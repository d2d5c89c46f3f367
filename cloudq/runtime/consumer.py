"""Receiving for the worker: batched, fair across queues, long-polling only when idle.

What the broker leased is never dropped: a failure after a receive (a later call of the same
fetch, another queue, a log line) is logged and the messages already leased are still handed on.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING

from ..envelope import peek as peek_fields
from ..interfaces import Broker, Delivery, MessageStream
from .inbox import Held

if TYPE_CHECKING:
    from .burst import Burst

task_log = logging.getLogger("cloudq.task")
log = logging.getLogger("cloudq.worker")

IDLE_PAUSE_MIN_S = 0.01


class Consumer:
    """Leases up to ``want`` messages per call from the worker's queues.

    Every call first asks each queue without waiting, starting from a rotating queue and giving
    each an equal share of what is wanted, so a busy queue cannot starve the others. Only when
    all are empty does it long-poll one queue (rotating) for ``poll_wait_s``, which bounds how
    long a stop request or a message on another queue waits.
    """

    def __init__(
        self,
        broker: Broker,
        queues: Sequence[str],
        lease_s: float,
        poll_wait_s: float,
        burst: Burst | None = None,
        unsettled: Callable[[], int] | None = None,
        settle: Callable[[], None] | None = None,
        screen: Callable[[list[Delivery]], None] | None = None,
        stream: MessageStream | None = None,
    ) -> None:
        """``screen`` sees every fetched batch once, before any of it runs (the revoke check).
        ``stream``: receive from the broker's open stream (``StreamingReceiver``) instead of
        asking it per call; settling still goes through the broker."""
        self.broker = broker
        self._source: Broker | MessageStream = stream if stream is not None else broker
        self._screen = screen
        self.queues = list(queues)
        self.lease_s = lease_s
        self.poll_wait_s = poll_wait_s
        self.max_batch = max(1, broker.limits.max_batch)
        self._burst = burst  # burst mode: says when nothing is left to do anywhere
        self._unsettled = unsettled  # finished messages whose outcome waits for a batch
        self._settle = settle  # flushes those outcomes now
        self._next = 0
        self._idle_pause = IDLE_PAUSE_MIN_S

    def fetch(self, want: int, idle: bool, max_wait_s: float | None = None) -> list[Held] | None:
        """Lease up to ``want`` messages. None only in burst mode, when ``idle`` and drained.
        ``max_wait_s`` shortens the long poll (a buffered message is due to start by then)."""
        got = self._fetch(want, idle, max_wait_s)
        if got and self._screen is not None:
            try:
                self._screen([held.delivery for held in got])
            except Exception as exc:  # never loses what was leased
                log.error("screening %d received message(s) failed: %s: %s", len(got), type(exc).__name__, exc)
        return got

    def _fetch(self, want: int, idle: bool, max_wait_s: float | None) -> list[Held] | None:
        """Outcomes linger to fill batches only while there is more work: before settling into a
        long poll on empty queues, the ones waiting are flushed."""
        poll = self.poll_wait_s if max_wait_s is None else min(self.poll_wait_s, max_wait_s)
        if self._burst is not None and idle:
            got = self._round(want, wait=False)
            if got or not self._burst.drained():
                return got or self._round(want, wait=True, poll=poll)
            return None
        if self._unsettled is not None and self._settle is not None and self._unsettled():
            got = self._round(want, wait=False)
            if got:
                return got
            self._settle()
        return self._round(want, wait=True, poll=poll)

    def _round(self, want: int, wait: bool, poll: float | None = None) -> list[Held]:
        queues = self.queues
        count = len(queues)
        start = self._next
        self._next = (start + 1) % count
        poll = self.poll_wait_s if poll is None else poll
        if count == 1:
            got = self._receive(queues[0], want, poll if wait else 0.0)
        else:
            got = self._fair(queues, start, want, wait, poll)
        if got:
            self._idle_pause = IDLE_PAUSE_MIN_S
            return got
        return self._nothing() if wait else got

    def _fair(self, queues: list[str], start: int, want: int, wait: bool, poll: float) -> list[Held]:
        """One failing queue neither loses what the others leased nor keeps them from being asked;
        the error is raised only when nothing was leased at all (the inbox then backs off)."""
        count = len(queues)
        got: list[Held] = []
        failure: Exception | None = None
        for i in range(count):
            left = want - len(got)
            if left <= 0:
                break
            share = -(-left // (count - i))  # ceil: later queues get what earlier ones left
            queue = queues[(start + i) % count]
            try:
                got += self._receive(queue, share, 0.0)
            except Exception as exc:
                failure = exc
                log.error("receive from queue %s failed: %s: %s", queue, type(exc).__name__, exc)
        if got:
            return got
        if failure is not None:
            raise failure
        return self._receive(queues[start], want, poll) if wait else got

    def _nothing(self) -> list[Held]:
        """A broker without long polling answered at once: pause (growing, up to the poll wait)
        instead of asking again in a busy loop."""
        if self.broker.limits.max_wait_s <= 0:
            time.sleep(min(self._idle_pause, self.poll_wait_s))
            self._idle_pause = min(self._idle_pause * 2, max(self.poll_wait_s, IDLE_PAUSE_MIN_S))
        return []

    def _receive(self, queue: str, want: int, wait_s: float) -> list[Held]:
        """Several calls as needed, up to the broker's batch limit each; only the first waits.
        After the first, only full batches are asked for: a call for the last few messages
        would cost a request for little (the rest comes with the next receive)."""
        held: list[Held] = []
        while want > 0:
            ask = min(want, self.max_batch)
            if held and ask < self.max_batch:
                break
            started = time.monotonic()  # the lease runs from before the call: err on the early side
            try:
                batch = self._source.receive(queue, ask, self.lease_s, wait_s)
            except Exception as exc:
                if not held:
                    raise
                log.error("receive from queue %s failed: %s: %s", queue, type(exc).__name__, exc)
                break  # what the earlier calls leased is handed on
            deadline = started + self.lease_s
            held += [Held(delivery, deadline) for delivery in batch]
            if batch:
                self._received(batch)
            if len(batch) < ask:
                break
            want -= ask
            wait_s = 0.0
        return held

    def _received(self, batch: list[Delivery]) -> None:
        """Bookkeeping for leased messages; its failure must not lose them."""
        try:
            if self._burst is not None:
                self._burst.received(batch)
            if task_log.isEnabledFor(logging.INFO):
                log_received(batch)
        except Exception as exc:
            log.error("after receiving %d message(s): %s: %s", len(batch), type(exc).__name__, exc)


def log_received(batch: Sequence[Delivery]) -> None:
    """One line per message; a body that cannot be read is logged with ``?`` fields."""
    for delivery in batch:
        task_id, name, retries = peek(delivery.body)
        task_log.info(
            "event=received task_id=%s task=%s queue=%s attempt=%d message_id=%s",
            task_id,
            name,
            delivery.queue,
            retries + max(1, delivery.delivery_count),
            delivery.message_id,
        )


def peek(body: bytes) -> tuple[str, str, int]:
    """Task id, name and earlier attempts for log lines, validating nothing (the executor does);
    never raises, whatever the body holds."""
    data = peek_fields(body)
    retries = data.get("retries")
    return (
        str(data.get("id", "?"))[:256],
        str(data.get("task", "?"))[:256],
        retries if type(retries) is int and 0 <= retries < 2**31 else 0,
    )
