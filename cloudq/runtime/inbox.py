"""The worker's prefetch buffer: leased messages waiting for a pool slot, and the ones running.

No dedicated consumer thread: the pool slot that finds the buffer empty becomes the receiver
(leader/follower). It receives a batch for everyone while the other slots keep running or wait,
so a message reaches the slot that runs it without a thread hop, and with one slot the whole
receive/run/ack cycle stays on one thread.

Ordered queues (SQS FIFO groups, Pub/Sub ordering keys) hand over several messages of one key in
a single batch, in order: a message whose (queue, ordering key) is running waits in the buffer
until that one finishes, so one key never has two tasks running at once.

A ``gate`` (the worker's rate limits) may hold a buffered message back for some seconds: the
slots run other messages meanwhile and look again when it is due.

The async pool's few threads do not wait while a coroutine runs: its message stays running here
(``max_running`` bounds how many), and its completion comes back through ``resume`` for the next
thread asking for work to finish.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import deque
from collections.abc import Callable
from typing import TYPE_CHECKING

from ..interfaces import Delivery

if TYPE_CHECKING:
    from .consumer import Consumer

log = logging.getLogger("cloudq.worker")

RECEIVE_ERROR_BACKOFF_S = 0.5
# a failed receive costs nothing (no message, usually no request billed): probe often, so the
# worker resumes within a couple of seconds of the backend answering again
RECEIVE_ERROR_BACKOFF_MAX_S = 2.0


def receive_backoff(failures: int) -> float:
    """Seconds to wait after ``failures`` receives in a row failed: doubling, capped low."""
    return min(RECEIVE_ERROR_BACKOFF_MAX_S, RECEIVE_ERROR_BACKOFF_S * 2.0 ** min(max(failures, 1) - 1, 16))


class Held:
    """A message this worker holds, with the monotonic time its lease runs out."""

    __slots__ = ("deadline", "delivery")

    def __init__(self, delivery: Delivery, deadline: float) -> None:
        self.delivery = delivery
        self.deadline = deadline


def order_key(delivery: Delivery) -> tuple[str, str] | None:
    return (delivery.queue, delivery.ordering_key) if delivery.ordering_key else None


class Inbox:
    """Buffered and running messages, never more than ``capacity`` in total.

    A finished message leaves the count when its outcome is handed to the acker, which flushes
    it within milliseconds; flushing before every receive instead costs one more broker call
    per batch (a third of the throughput on SQLite at the default prefetch)."""

    def __init__(
        self,
        capacity: int,
        consumer: Consumer,
        release: Callable[[list[Delivery]], None],
        give_up_after_s: float | None = None,
        gate: Callable[[Delivery], float] | None = None,
        max_running: int | None = None,
    ) -> None:
        """``give_up_after_s`` (burst mode): stop once receives have failed for that long, with
        the last error in ``failure``; without it the worker keeps retrying (long-running).
        ``gate(delivery)``: 0 when it may start now, else seconds to hold it in the buffer.
        ``max_running``: messages started and not finished at most (default: one per slot thread)."""
        self.capacity = capacity
        self.max_running = max_running
        self._consumer = consumer
        self._release = release
        self._give_up_after_s = give_up_after_s
        self._gate = gate
        self._due: float | None = None  # seconds until a held-back message may start
        self.failure: str | None = None  # why receiving was given up
        self._cond = threading.Condition(threading.Lock())
        self._buffer: deque[Held] = deque()
        self._running: set[Held] = set()
        self._busy_keys: set[tuple[str, str]] = set()  # ordering keys with a task running
        self._resumed: deque[Callable[[], Held]] = deque()  # completions to finish (async pool)
        self._receiving = False
        self._retiring = 0  # slots asked to exit (autoscale shrinking): the next ones to ask for work
        self._stopping = False
        self.drained = False  # burst mode found the queues empty

    def take(self, done: Held | None = None) -> Held | None:
        """Mark ``done`` finished and return the next message to run; None once stopping."""
        work = self.work(done, resumed=False)
        assert not callable(work)
        return work

    def work(self, done: Held | None = None, resumed: bool = True) -> Held | Callable[[], Held] | None:
        """``take``, and with ``resumed`` a completion to finish first (``resume``): the call
        finishes that run and returns its Held, for the next ``done``. Once stopping, None only
        when nothing runs any more: a completion may still come back."""
        cond = self._cond
        while True:
            with cond:
                if done is not None:
                    self._finish(done)
                    done = None
                while True:
                    if resumed and self._resumed:
                        return self._resumed.popleft()
                    if self._retiring > 0 and not self._stopping:
                        self._retiring -= 1
                        return None
                    held = self._pop_runnable()
                    if held is not None:
                        return held
                    if self._stopping and not (resumed and self._running):
                        return None
                    if self._stopping:
                        cond.wait()
                        continue
                    if not self._receiving and self._free() > 0:
                        self._receiving = True
                        break
                    cond.wait(self._due)
            self._lead()

    def resume(self, finish: Callable[[], Held]) -> None:
        """A started run's completion, for a thread in ``work`` to call (from any thread)."""
        with self._cond:
            self._resumed.append(finish)
            self._cond.notify()

    def finish(self, held: Held) -> None:
        """``held`` is done (what ``take(done)`` does, for a thread that takes nothing next)."""
        with self._cond:
            self._finish(held)
            self._cond.notify()

    def _finish(self, held: Held) -> None:
        self._running.discard(held)
        if self._stopping and not self._running:
            self._cond.notify_all()  # the threads waiting for the last runs to end may exit
        key = order_key(held.delivery)
        if key is not None:
            self._busy_keys.discard(key)
            self._cond.notify_all()  # a buffered message of this key may run now

    def _pop_runnable(self) -> Held | None:
        """The oldest buffered message whose ordering key is not running (nor held back by the
        gate: a later message of its key waits behind it), marked as running."""
        self._due = None
        if self.max_running is not None and len(self._running) >= self.max_running:
            return None
        blocked: set[tuple[str, str]] = set()
        for index, held in enumerate(self._buffer):
            key = order_key(held.delivery)
            if key is None or (key not in self._busy_keys and key not in blocked):
                wait = self._gate(held.delivery) if self._gate is not None else 0.0
                if wait > 0:
                    self._due = wait if self._due is None else min(self._due, wait)
                    if key is not None:
                        blocked.add(key)
                    continue
                del self._buffer[index]
                if key is not None:
                    self._busy_keys.add(key)
                self._running.add(held)
                return held
        return None

    def _free(self) -> int:
        return self.capacity - len(self._running) - len(self._buffer)

    def _lead(self) -> None:
        """Receive for every slot into the buffer. Called with ``_receiving`` set."""
        try:
            batch = self._receive()
        except BaseException:
            with self._cond:
                self._receiving = False
                self._cond.notify()
            raise
        late: list[Delivery] = []
        try:
            with self._cond:
                # one critical section: a batch is never invisible to the next receiver's capacity count
                self._receiving = False
                if batch and not self._stopping:
                    self._buffer.extend(batch)
                    # wake the slots that can run them, plus one to receive for whoever comes next
                    self._cond.notify(len(batch))
                    return
                late = [held.delivery for held in batch]
                self._cond.notify()  # a waiting slot takes over receiving, or sees that we stop
        except BaseException:
            with self._cond:
                buffered = {id(held) for held in self._buffer}
            late = [held.delivery for held in batch if id(held) not in buffered]
            log.error("could not buffer %d received message(s): releasing them", len(late), exc_info=True)
            raise
        finally:
            if late:
                self._release(late)  # never started: at once for another worker, not after the lease

    def _receive(self) -> list[Held]:
        """Receive until something arrives; empty when stopping (or drained, in burst mode)."""
        failures = 0
        failing_since: float | None = None
        while True:
            with self._cond:
                if self._stopping:
                    return []
                free = self._free()
                idle = not self._running and not self._buffer
                due = self._due
            started = time.monotonic()
            try:
                got = self._consumer.fetch(free, idle, due)
            except Exception as exc:
                failing_since = started if failing_since is None else failing_since
                failing_for = time.monotonic() - failing_since
                failures += 1
                wait = self._backoff(receive_backoff(failures), failing_for, f"{type(exc).__name__}: {exc}")
                with self._cond:
                    if not self._stopping:
                        self._cond.wait(wait)
                continue
            failing_since, failures = None, 0  # the broker answers again
            if got is None:  # burst mode: nothing left anywhere
                with self._cond:
                    self.drained = self._stopping = True
                    self._cond.notify_all()
                return []
            if got or due is not None:
                return got  # empty: a held-back message is due, the slots look again

    def _backoff(self, backoff: float, failing_for: float, error: str) -> float:
        """Seconds to wait before the next receive after a failure, logged at ERROR (the error
        names the endpoint); past ``give_up_after_s`` of failures, stop instead (0)."""
        limit = self._give_up_after_s
        if limit is not None and failing_for >= limit:
            log.error("giving up: receiving has failed for %.0fs (burst mode): %s", failing_for, error)
            with self._cond:
                self.failure = error
                self._stopping = True
                self._cond.notify_all()
            return 0.0
        wait = backoff if limit is None else max(0.0, min(backoff, limit - failing_for))
        log.error("receive failed, retrying in %.1fs: %s", wait, error)
        return wait

    def resize(self, capacity: int, retire: int = 0) -> None:
        """Autoscale: hold at most ``capacity`` messages from now on, and let ``retire`` slots exit
        (``take`` returns None to the next ones asking, after their current task)."""
        with self._cond:
            self.capacity = capacity
            self._retiring += retire
            self._cond.notify_all()

    def retired(self) -> bool:
        """Whether a slot that got None from ``take`` was retired (rather than stopped)."""
        return not self._stopping

    def stop(self) -> list[Delivery]:
        """Stop handing out messages; return the buffered ones, which were never started."""
        with self._cond:
            self._stopping = True
            unstarted = [held.delivery for held in self._buffer]
            self._buffer.clear()
            self._cond.notify_all()
        return unstarted

    @property
    def stopping(self) -> bool:
        return self._stopping

    def running(self) -> list[Held]:
        with self._cond:
            return list(self._running)

    def held(self) -> list[Held]:
        """Every message whose lease this worker keeps alive: buffered and running."""
        with self._cond:
            return [*self._buffer, *self._running]

    def receiving(self) -> bool:
        return self._receiving
