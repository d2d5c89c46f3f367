"""Result writes gathered into one transaction, for stores that can write many at once (SQLite).

A store transaction per task costs more than the task on the embedded backend. The worker hands
the executor a ``BatchedResults`` instead of the store: records wait at most ``flush_after_s``
(or until ``max_batch`` are waiting), and the acker flushes them before it acks anything, so a
result is always durable before the ack of the message it records. If a flush fails, the records
stay pending and the acker gives the batch's messages back instead of acking them.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Sequence
from typing import Protocol

from ..interfaces import ResultRecord

log = logging.getLogger("cloudq.worker")

FLUSH_AFTER_S = 0.005
MAX_BATCH = 500
RETRY_AFTER_S = 0.5


class ManyWriter(Protocol):
    def set_many(self, records: Sequence[ResultRecord]) -> None: ...


class BatchedResults:
    def __init__(self, store: ManyWriter, flush_after_s: float = FLUSH_AFTER_S, max_batch: int = MAX_BATCH) -> None:
        self.store = store
        self.flush_after_s = flush_after_s
        self.max_batch = max_batch
        self._pending: list[ResultRecord] = []
        self._cond = threading.Condition(threading.Lock())
        self._flushing = threading.Lock()
        self._closed = False
        self._thread = threading.Thread(target=self._run, name="cloudq-results", daemon=True)
        self._thread.start()

    def set(self, record: ResultRecord) -> bool:
        """Queue a write; whether a terminal record already existed is decided at flush time."""
        with self._cond:
            self._pending.append(record)
            if len(self._pending) == 1 or len(self._pending) >= self.max_batch:
                self._cond.notify()
        return True

    def flush(self) -> None:
        """Write everything queued so far; raises (keeping the records) when the store fails."""
        with self._flushing:
            with self._cond:
                batch, self._pending = self._pending, []
            if not batch:
                return
            try:
                self.store.set_many(batch)
            except BaseException:
                with self._cond:
                    self._pending[:0] = batch
                raise

    def close(self) -> None:
        with self._cond:
            self._closed = True
            self._cond.notify()
        self._thread.join()
        self.flush()

    def _run(self) -> None:
        with self._cond:
            while not self._closed:
                if not self._pending:
                    self._cond.wait()
                    continue
                if len(self._pending) < self.max_batch:
                    self._cond.wait(self.flush_after_s)
                    if self._closed:
                        return
                self._cond.release()
                try:
                    self.flush()
                except Exception as exc:
                    log.warning(
                        "result write failed, retrying in %.1fs: %s: %s", RETRY_AFTER_S, type(exc).__name__, exc
                    )
                    with self._cond:
                        self._cond.wait(RETRY_AFTER_S)
                finally:
                    self._cond.acquire()
