"""Batched result writes: one transaction for many, always durable before the acks they record."""

from __future__ import annotations

import threading
from collections.abc import Sequence

import pytest
from worker_helpers import run_burst, wait_for

from cloudq import states
from cloudq.backends.memory import MemoryBroker
from cloudq.backends.sqlite_results import SQLiteResultStore
from cloudq.interfaces import OutgoingMessage, ResultRecord
from cloudq.runtime.acker import Acker
from cloudq.runtime.executor import Ack
from cloudq.runtime.result_batch import BatchedResults
from cloudq.runtime.worker import Worker

pytestmark = pytest.mark.timeout(60)


class CountingStore:
    """A real SQLite store that records how its writes were grouped and can be made to fail."""

    def __init__(self, path: str) -> None:
        self.store = SQLiteResultStore(path)
        self.batches: list[int] = []
        self.fail = threading.Event()

    def set_many(self, records: Sequence[ResultRecord]) -> None:
        if self.fail.is_set():
            raise OSError("disk unavailable")
        self.batches.append(len(records))
        self.store.set_many(records)


def record(task_id: str, state: str = states.SUCCESS) -> ResultRecord:
    return ResultRecord(task_id, state, "t", result=task_id)


def test_set_many_keeps_terminal_records(tmp_path):
    store = SQLiteResultStore(str(tmp_path / "r.db"))
    store.set_many([record("a"), record("b", states.RETRY)])
    store.set_many([record("a", states.FAILURE), record("b")])
    assert store.get("a").state == states.SUCCESS  # a terminal record is never overwritten
    assert store.get("b").state == states.SUCCESS


def test_writes_are_grouped_and_flushed_within_the_window(tmp_path):
    counting = CountingStore(str(tmp_path / "r.db"))
    batched = BatchedResults(counting, flush_after_s=0.05)
    for i in range(20):
        batched.set(record(f"t{i}"))
    wait_for(lambda: counting.store.get("t19") is not None, timeout=5)
    batched.close()
    assert sum(counting.batches) == 20 and len(counting.batches) <= 2


def test_the_acker_writes_results_before_acking_and_acks_nothing_when_they_fail(tmp_path):
    counting = CountingStore(str(tmp_path / "r.db"))
    batched = BatchedResults(counting, flush_after_s=60)  # only the acker flushes in this test
    broker = MemoryBroker()
    broker.send("q", [OutgoingMessage(b"{}"), OutgoingMessage(b"{}")])
    first, second = broker.receive("q", 2, lease_s=0.2)
    acker = Acker(broker, interval_s=60, before_apply=batched.flush)

    counting.fail.set()
    batched.set(record("t1"))
    acker.put(first, Ack())
    acker.flush()
    assert broker.stats("q").in_flight == 2  # not acked: its result is not durable
    assert counting.store.get("t1") is None

    counting.fail.clear()
    batched.set(record("t2"))
    acker.put(second, Ack())
    acker.flush()
    assert counting.store.get("t1") is not None and counting.store.get("t2") is not None  # kept, then written
    assert broker.stats("q").in_flight == 1  # the second is acked; the first comes back after its lease
    batched.close()


def test_a_sqlite_worker_batches_its_result_writes(make_app, tmp_path):
    app = make_app(broker=f"sqlite:///{tmp_path / 'q.db'}", results=f"sqlite:///{tmp_path / 'q.db'}")

    @app.task()
    def square(n: int) -> int:
        return n * n

    handles = square.send_each(range(200))
    worker = Worker(app, concurrency=2, burst=True)
    assert run_burst(worker) == 0
    assert isinstance(worker._batched, BatchedResults)  # SQLite writes many at once
    assert [h.get(timeout=5) for h in handles] == [n * n for n in range(200)]
