"""Result writes gathered into one transaction, for stores that can write many at once (SQLite).

A store transaction per task costs more than the task on the embedded backend. The worker hands
the executor a ``BatchedResults`` instead of the store: records wait at most ``flush_after_s``
(or until ``max_batch`` are waiting), and the acker flushes them before it acks anything, so a
result is always durable before the ack of the message it records. If a flush fails, the records
stay pending and the acker leaves the batch's messages to come back after their lease.
"""

from __future__ import annotations

from ..interfaces import ManyWriter, ResultRecord
from .batching import Batcher

FLUSH_AFTER_S = 0.005
MAX_BATCH = 500


class BatchedResults:
    def __init__(self, store: ManyWriter, flush_after_s: float = FLUSH_AFTER_S, max_batch: int = MAX_BATCH) -> None:
        self._batcher: Batcher[ResultRecord] = Batcher(
            store.set_many, max_batch=max_batch, window_s=flush_after_s, name="cloudq-results"
        )
        self._batcher.start()

    def set(self, record: ResultRecord) -> bool:
        """Queue a write; whether a terminal record already existed is decided at flush time."""
        self._batcher.put(record)
        return True

    def flush(self) -> None:
        """Write everything queued so far; raises (keeping the records) when the store fails."""
        self._batcher.flush()

    def close(self) -> None:
        self._batcher.close()
