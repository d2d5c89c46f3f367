"""Items gathered by a background thread and applied in batches: the worker's acks and its
result writes both trade a few milliseconds of latency for far fewer broker or store calls."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from typing import Generic, TypeVar

T = TypeVar("T")
log = logging.getLogger("cloudq.worker")

RETRY_AFTER_S = 0.5


class Batcher(Generic[T]):
    """Applies what was put when ``max_batch`` items wait, or ``window_s`` after the first one
    (``urgent_window_s`` once an urgent item waits), and on every ``flush``/``close``.

    When ``apply`` raises, the batch is put back in front, ``flush`` re-raises, and the background
    thread tries again after RETRY_AFTER_S.
    """

    def __init__(
        self,
        apply: Callable[[list[T]], None],
        *,
        max_batch: int,
        window_s: float,
        urgent_window_s: float | None = None,
        name: str = "cloudq-batcher",
    ) -> None:
        self._apply = apply
        self.max_batch = max(1, max_batch)
        self.window_s = window_s
        self.urgent_window_s = window_s if urgent_window_s is None else urgent_window_s
        self._pending: list[T] = []
        self._first_at = 0.0  # when the oldest pending item arrived
        self._urgent = False
        self._cond = threading.Condition(threading.Lock())
        self._flushing = threading.Lock()
        self._closed = False
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)

    def start(self) -> None:
        self._thread.start()

    def put(self, item: T, urgent: bool = False) -> None:
        with self._cond:
            pending = self._pending
            pending.append(item)
            if len(pending) == 1:
                self._first_at = time.monotonic()
                self._cond.notify()
            elif len(pending) >= self.max_batch:
                self._cond.notify()
            if urgent and not self._urgent:
                self._urgent = True
                self._cond.notify()

    def pending(self) -> int:
        """Items waiting for their flush (read without the lock: a hint)."""
        return len(self._pending)

    def flush(self) -> None:
        """Apply everything put so far; returns when it is applied, or raises with it kept."""
        with self._flushing:
            with self._cond:
                batch, self._pending, self._urgent = self._pending, [], False
            if not batch:
                return
            try:
                self._apply(batch)
            except BaseException:
                with self._cond:
                    self._pending[:0] = batch
                raise

    def close(self) -> None:
        with self._cond:
            self._closed = True
            self._cond.notify()
        if self._thread.is_alive():
            self._thread.join()
        self.flush()

    def _run(self) -> None:
        with self._cond:
            while not self._closed:
                if not self._pending:
                    self._cond.wait()
                    continue
                window = self.urgent_window_s if self._urgent else self.window_s
                left = self._first_at + window - time.monotonic()
                if left > 0 and len(self._pending) < self.max_batch:
                    self._cond.wait(left)  # gather more, unless a full batch or an urgent item arrives
                    continue
                self._cond.release()
                try:
                    self.flush()
                except Exception as exc:
                    log.warning(
                        "%s failed, retrying in %.1fs: %s: %s",
                        self._thread.name,
                        RETRY_AFTER_S,
                        type(exc).__name__,
                        exc,
                    )
                    time.sleep(RETRY_AFTER_S)
                finally:
                    self._cond.acquire()
