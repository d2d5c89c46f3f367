"""The async pool: ``async def`` tasks as coroutines on one event loop, and no thread waiting on one.

A couple of driver threads take messages from the Inbox and run each up to its task's call
(``Executor.begin``). An ``async def`` task's coroutine goes to the loop (many per wake-up of the
loop); its completion comes back through the Inbox for a driver to finish (result write, signals,
the outcome to the acker). What may block — a sync task's body, a traced run — runs in a thread
of its own (``Spare``), started only when no such thread is idle. The Inbox's ``max_running``
(the concurrency) bounds the messages running at once, however they run.

A thread per running coroutine, blocked until it ends, cost about twice the CPU per task of
this at ``-c 1000`` and left the loop waiting for the GIL behind hundreds of woken threads.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import queue
import threading
from collections import deque
from collections.abc import Callable
from typing import Any

from ..interfaces import Delivery
from .child import describe
from .executor import Executor, Outcome, Suspended, give_back
from .inbox import Held, Inbox
from .pools import Runner
from .presence import Tracker

log = logging.getLogger("cloudq.worker")

DRIVERS = 2  # one may sit in a long poll (it receives for everyone) while the other finishes runs


class Spare:
    """Daemon threads for work that blocks, one started whenever none is idle (the Inbox bounds
    how many can be busy); an idle one waits for the next."""

    def __init__(self, name: str) -> None:
        self._name = name
        self._queue: queue.SimpleQueue[Callable[[], object] | None] = queue.SimpleQueue()
        self._lock = threading.Lock()
        self._idle = 0  # threads waiting for work that no submit has counted on yet
        self.threads = 0

    @property
    def idle(self) -> int:
        return self._idle

    def submit(self, work: Callable[[], object]) -> None:
        with self._lock:
            start = self._idle == 0
            if start:
                self.threads += 1
            else:
                self._idle -= 1
        self._queue.put(work)
        if start:
            threading.Thread(target=self._serve, name=f"{self._name}-{self.threads}", daemon=True).start()

    def _serve(self) -> None:
        while True:
            work = self._queue.get()
            if work is None:
                return
            try:
                work()
            except BaseException:  # the work hands its own outcome on; this is a bug in cloudq
                log.exception("a pool thread's work failed")
            with self._lock:
                self._idle += 1

    def close(self) -> None:
        """Let idle threads exit (a busy one exits after its work)."""
        for _ in range(self.threads):
            self._queue.put(None)


class AsyncPool:
    """Runs the Inbox's messages with ``DRIVERS`` threads; ``drive`` is each driver's body."""

    def __init__(
        self,
        executor: Executor,
        loop: asyncio.AbstractEventLoop,
        inbox: Inbox,
        put: Callable[[Delivery, Outcome], None],
        tracker: Tracker,
        prelude: Callable[[Delivery], Outcome | None],
        runner: Runner,
        active: dict[int, tuple[Delivery, Runner]],
    ) -> None:
        """``put`` hands an outcome to the acker; ``prelude`` answers a delivery that must not run
        (known revoked) before it starts; ``active`` lists what runs, with ``runner``, for revokes."""
        self.executor = executor
        self.loop = loop
        self.inbox = inbox
        self._put = put
        self._tracker = tracker
        self._prelude = prelude
        self._runner = runner
        self._active = active
        self.spare = Spare("cloudq-slot")
        self._starting: deque[tuple[Held, Suspended, float]] = deque()  # coroutines for the loop
        self._scheduled = False  # the loop is due to start what is in _starting

    def drive(self) -> None:
        """One driver thread: start messages and finish completions until the Inbox stops."""
        done: Held | None = None
        while True:
            work = self.inbox.work(done)
            done = None
            if work is None:
                return
            done = work() if callable(work) else self._start(work)

    def _start(self, held: Held) -> Held | None:
        """Run ``held`` up to its task's call; the Held when it is done already."""
        delivery = held.delivery
        started = self._tracker.started(delivery)
        outcome = self._prelude(delivery)
        if outcome is not None:
            return self._end(held, outcome, started)
        self._active[id(delivery)] = (delivery, self._runner)
        step = self.executor.begin(delivery)
        if step is None:  # it may block (a traced run): the whole run in a thread of its own
            self.spare.submit(lambda: self._end(held, self._runner.run(delivery), started, finish=True))
        elif isinstance(step, Suspended):
            if step.call.task.is_async:
                self._to_loop(held, step, started)
            else:  # a sync task's body blocks its thread
                self.spare.submit(lambda: self._end(held, step.call_here(), started, finish=True))
        else:
            self._end(held, step, started)
            return held
        return None

    def _end(self, held: Held, outcome: Outcome, started: float, finish: bool = False) -> Held:
        delivery = held.delivery
        self._active.pop(id(delivery), None)
        self._tracker.ended(delivery, outcome, started)
        self._put(delivery, outcome)
        if finish:
            self.inbox.finish(held)
        return held

    # -- the loop side ---------------------------------------------------------------------------

    def _to_loop(self, held: Held, step: Suspended, started: float) -> None:
        """Queue the coroutine; one wake-up of the loop starts all that are queued by then."""
        self._starting.append((held, step, started))
        if not self._scheduled:
            self._scheduled = True
            try:
                self.loop.call_soon_threadsafe(self._start_all)
            except RuntimeError as exc:  # the loop is closed: the worker is past its shutdown
                self._scheduled = False
                self._fail_queued(f"the event loop is not running: {describe(exc)}")

    def _start_all(self) -> None:
        self._scheduled = False  # before draining: a later append schedules another call
        starting = self._starting
        while starting:
            held, step, started = starting.popleft()
            try:
                task = self.loop.create_task(step.coroutine())
            except BaseException as exc:  # building the coroutine ran task code (a __call__ override)
                self.inbox.resume(self._finisher(held, step, started, None, exc))
                continue
            task.add_done_callback(functools.partial(self._done, held, step, started))

    def _done(self, held: Held, step: Suspended, started: float, task: asyncio.Task[Any]) -> None:
        if task.cancelled():
            error: BaseException | None = asyncio.CancelledError()
            value = None
        else:
            error = task.exception()
            value = None if error is not None else task.result()
        self.inbox.resume(self._finisher(held, step, started, value, error))

    def _finisher(
        self, held: Held, step: Suspended, started: float, value: Any, error: BaseException | None
    ) -> Callable[[], Held]:
        return lambda: self._end(held, step.resume(value, error), started)

    def _fail_queued(self, reason: str) -> None:
        while self._starting:
            held, _, started = self._starting.popleft()
            self.inbox.resume(functools.partial(self._end, held, give_back(held.delivery, reason), started))

    def close(self) -> None:
        self.spare.close()
