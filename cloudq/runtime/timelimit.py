"""Time limits for tasks running in threads, and the soft limit of ``async def`` tasks.

One watchdog thread per process raises TimeLimitExceeded (``time_limit``) or
SoftTimeLimitExceeded (``soft_time_limit``, which the task may catch to clean up and return a
value, as in Celery) inside a task's thread when its limit passes. Python only delivers it between
bytecodes: a task blocked inside C code is interrupted when it returns to Python. The process pool
adds a hard limit by killing the child.

A coroutine gets SoftTimeLimitExceeded at the ``await`` it is suspended in (``soft_limited``): its
task is cancelled to wake it and the cancellation is turned into the soft limit, so the coroutine
can catch it and return its recovery value. A coroutine that never awaits is not reached.
"""

from __future__ import annotations

import ctypes
import heapq
import itertools
import threading
import time
from collections.abc import Coroutine, Generator, Iterator
from contextlib import contextmanager
from typing import Any, TypeVar

from ..errors import SoftTimeLimitExceeded, TimeLimitExceeded

T = TypeVar("T")


class _Watchdog:
    def __init__(self) -> None:
        self._cond = threading.Condition()
        self._heap: list[tuple[float, int, int, type[BaseException]]] = []
        self._live: set[int] = set()
        self._ids = itertools.count()
        self._thread: threading.Thread | None = None

    def arm(self, deadline: float, thread_id: int, error: type[BaseException] = TimeLimitExceeded) -> int:
        token = next(self._ids)
        with self._cond:
            heapq.heappush(self._heap, (deadline, token, thread_id, error))
            self._live.add(token)
            if self._thread is None:
                self._thread = threading.Thread(target=self._run, name="cloudq-timelimit", daemon=True)
                self._thread.start()
            self._cond.notify()
        return token

    def disarm(self, token: int) -> bool:
        """Cancel the limit; True when it had already fired."""
        with self._cond:
            if token in self._live:
                self._live.discard(token)
                return False
            return True

    def _run(self) -> None:
        with self._cond:
            while True:
                while self._heap and self._heap[0][1] not in self._live:
                    heapq.heappop(self._heap)
                if not self._heap:
                    self._cond.wait()
                    continue
                deadline, token, thread_id, error = self._heap[0]
                delay = deadline - time.monotonic()
                if delay > 0:
                    self._cond.wait(delay)
                    continue
                heapq.heappop(self._heap)
                self._live.discard(token)
                ctypes.pythonapi.PyThreadState_SetAsyncExc(ctypes.c_ulong(thread_id), ctypes.py_object(error))


_watchdog = _Watchdog()


@contextmanager
def time_limit(seconds: float | None) -> Iterator[None]:
    if not seconds:
        yield
        return
    thread_id = threading.get_ident()
    token = _watchdog.arm(time.monotonic() + seconds, thread_id)
    try:
        yield
    finally:
        if _watchdog.disarm(token):
            # fired as the task was returning: drop a still-pending async exception so it
            # cannot surface later in unrelated code, and report the limit here instead
            ctypes.pythonapi.PyThreadState_SetAsyncExc(ctypes.c_ulong(thread_id), None)
            raise TimeLimitExceeded(f"task exceeded its time limit of {seconds}s")


@contextmanager
def soft_time_limit(seconds: float | None) -> Iterator[None]:
    """Raise SoftTimeLimitExceeded in this thread after ``seconds``; a task that catches it and
    returns keeps its value. Fired as the task was returning: the task finished, nothing raised."""
    if not seconds:
        yield
        return
    thread_id = threading.get_ident()
    token = _watchdog.arm(time.monotonic() + seconds, thread_id, SoftTimeLimitExceeded)
    try:
        yield
    finally:
        if _watchdog.disarm(token):
            ctypes.pythonapi.PyThreadState_SetAsyncExc(ctypes.c_ulong(thread_id), None)


class _SoftLimited:
    """Drives ``coro`` inside the awaiting task (as ``await coro`` would) and, ``seconds`` after
    the first step, throws SoftTimeLimitExceeded into it at its current ``await``."""

    __slots__ = ("_coro", "_seconds")

    def __init__(self, coro: Coroutine[Any, Any, Any], seconds: float) -> None:
        self._coro = coro
        self._seconds = seconds

    def __await__(self) -> Generator[Any, Any, Any]:
        import asyncio  # already loaded by whatever runs the coroutine; not by a sync-only process

        coro, task = self._coro, asyncio.current_task()
        assert task is not None, "soft_limited runs inside an asyncio task"
        fired = [False]  # the timer cancelled the task; reset once converted

        def fire() -> None:
            fired[0] = True
            task.cancel()  # wakes the coroutine wherever it waits

        timer = asyncio.get_running_loop().call_later(self._seconds, fire)
        value: Any = None
        error: BaseException | None = None
        try:
            while True:
                try:
                    step = coro.send(value) if error is None else coro.throw(error)
                except StopIteration as stop:
                    return stop.value
                value, error = None, None
                try:
                    value = yield step
                except asyncio.CancelledError as cancelled:
                    if fired[0]:
                        fired[0] = False
                        task.uncancel()  # ours, not the caller's: asyncio.timeout() inside keeps counting right
                        error = SoftTimeLimitExceeded(f"task exceeded its soft time limit of {self._seconds}s")
                    else:
                        error = cancelled
                except GeneratorExit:
                    coro.close()
                    raise
                except BaseException as exc:
                    error = exc
        finally:
            timer.cancel()


async def soft_limited(coro: Coroutine[Any, Any, T], seconds: float | None) -> T:
    """``await coro`` with Celery's soft time limit (see the module docstring)."""
    if not seconds:
        return await coro
    result: T = await _SoftLimited(coro, seconds)
    return result
