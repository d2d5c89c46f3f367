"""One poison message never takes its receive batch down: it is dead-lettered with its reason,
the canaries leased with it all succeed at their first delivery, nothing loops."""

from __future__ import annotations

import sqlite3
from typing import Any

from worker_helpers import Running, run_burst, wait_for

from cloudq import App, states
from cloudq.errors import BackendUnavailable
from cloudq.interfaces import OutgoingMessage
from cloudq.runtime.inbox import RECEIVE_ERROR_BACKOFF_MAX_S, receive_backoff
from cloudq.runtime.worker import Worker

DEEP = b"[" * 100_000 + b"]" * 100_000


def test_a_deeply_nested_body_is_dead_lettered_and_its_batch_runs(make_app, clean_env, caplog):
    url = f"sqlite:///{clean_env / 'poison.db'}"
    app: App = make_app(broker=url, results=url)

    @app.task()
    def add(a: int, b: int) -> int:
        return a + b

    queue = app.queues()[0]
    before = [add.delay(i, 1) for i in range(4)]
    app.broker.send(queue, [OutgoingMessage(DEEP)])
    after = [add.delay(i, 2) for i in range(4)]
    worker = Worker(app, concurrency=2, burst=True, max_wait_s=5)
    with caplog.at_level("INFO", logger="cloudq"):  # the received lines read every body
        assert run_burst(worker, timeout=30) == 0
    for i, handle in enumerate(before + after):
        assert handle.get(timeout=1) == i % 4 + 1 + i // 4
        record = app.results.get(handle.id)
        assert record is not None and record.state == states.SUCCESS and record.attempts == 1
    [dead] = app.broker.dead_letters(queue)
    assert dead.reason == "MalformedMessage: body is nested too deeply to decode"
    with sqlite3.connect(clean_env / "poison.db") as db:
        assert db.execute("SELECT deliveries FROM cloudq_dead_letters").fetchall() == [(1,)]
        assert db.execute("SELECT count(*) FROM cloudq_messages").fetchone() == (0,)
    assert worker.counts.get("nack", 0) == 0 and worker.counts["dead_letter"] == 1
    assert not [r for r in caplog.records if r.getMessage().startswith("receive failed")]


class OneQueueDown:
    """A real memory broker whose receives from one queue fail, as a deleted queue's would."""

    def __init__(self, inner: Any, broken: str) -> None:
        self.inner, self.broken = inner, broken

    def receive(self, queue: str, *args: Any, **kwargs: Any) -> Any:
        if queue == self.broken:
            raise BackendUnavailable(f"queue {queue} does not answer")
        return self.inner.receive(queue, *args, **kwargs)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)


def test_a_failing_queue_does_not_lose_what_the_other_queues_leased(make_app, caplog):
    app: App = make_app()

    @app.task()
    def add(a: int, b: int) -> int:
        return a + b

    handles = [add.delay(i, i) for i in range(6)]
    app._broker = OneQueueDown(app.broker, "broken")
    worker = Worker(app, queues=["broken", app.queues()[0]], concurrency=2)
    with caplog.at_level("ERROR", logger="cloudq.worker"), Running(worker):
        wait_for(lambda: worker.counts.get("ack") == 6, timeout=20)
    assert [h.get(timeout=1) for h in handles] == [2 * i for i in range(6)]
    assert any("receive from queue broken failed: BackendUnavailable" in r.getMessage() for r in caplog.records)


def test_after_an_outage_the_worker_probes_again_within_a_couple_of_seconds():
    waits = [receive_backoff(failures) for failures in range(1, 200)]
    assert waits[:3] == [0.5, 1.0, 2.0]
    assert max(waits) == RECEIVE_ERROR_BACKOFF_MAX_S <= 2.0
