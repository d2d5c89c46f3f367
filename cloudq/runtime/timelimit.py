"""Time limits for tasks running in threads.

One watchdog thread per process raises TimeLimitExceeded (``time_limit``) or
SoftTimeLimitExceeded (``soft_time_limit``, which the task may catch to clean up and return a
value, as in Celery) inside a task's thread when its limit passes. Python only delivers it between bytecodes: a task blocked inside C code is interrupted
when it returns to Python. The process pool adds a hard limit by killing the child.
"""

from __future__ import annotations

import ctypes
import heapq
import itertools
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager

from ..errors import SoftTimeLimitExceeded, TimeLimitExceeded


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
