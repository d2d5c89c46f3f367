"""chord on Pub/Sub + Firestore emulators: the body runs exactly once with every header task
delivered twice, and after a worker died between a header's result write and its count."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from gcp_apps import gcp_app, run_burst

from cloudq import App, chord
from cloudq.interfaces import AtomicCounter

pytestmark = [pytest.mark.gcp, pytest.mark.timeout(180)]

BODY_RUNS: list[int] = []


@pytest.fixture
def app(pubsub_emulator, firestore_emulator, project: str, unique: str) -> Iterator[App]:
    application = gcp_app(project, unique)

    @application.task(name="c.add")
    def add(x: int, y: int) -> int:
        return x + y

    @application.task(name="c.tsum")
    def tsum(numbers: list[int]) -> int:
        BODY_RUNS.append(sum(numbers))
        return sum(numbers)

    BODY_RUNS.clear()
    yield application
    application.close()


def test_the_body_runs_once_when_every_header_task_is_delivered_twice(app: App) -> None:
    add, tsum = app.tasks["c.add"], app.tasks["c.tsum"]
    result = chord(add.s(i, i) for i in range(12))(tsum.s())
    queue = app.queue_for(add)
    done = 0
    while done < 12:
        deliveries = app.broker.receive(queue, 10, lease_s=30, wait_s=2)
        for delivery in deliveries:
            if delivery.attributes.get("task") != "c.add":
                app.broker.nack([delivery])  # the body or a chord_unlock: the worker runs it
                continue
            app.executor.execute(delivery)
            app.executor.execute(delivery)  # the duplicate delivery of the same message
            app.broker.ack([delivery])
            done += 1
    run_burst(app)
    assert result.get(timeout=30) == 132
    assert BODY_RUNS == [132]


def test_a_lost_count_is_recovered_by_the_redelivery(app: App) -> None:
    store = app.results
    if not isinstance(store, AtomicCounter):
        pytest.skip("Firestore has no counter in this build: chords are polled by chord_unlock")
    add, tsum = app.tasks["c.add"], app.tasks["c.tsum"]
    result = chord([add.s(i, i) for i in range(5)], tsum.s()).apply_async()
    increment = store.increment
    crashed: list[str] = []

    def crash_once(key: str, by: int = 1, expires_at: float | None = None) -> int:
        if not crashed:  # the worker dies after the result write, before the count
            crashed.append(key)
            raise ConnectionError("worker killed")
        return increment(key, by, expires_at)

    store.increment = crash_once  # type: ignore[method-assign]
    try:
        run_burst(app, timeout=90)
    finally:
        store.increment = increment  # type: ignore[method-assign]
    assert crashed and result.get(timeout=30) == 20
    assert BODY_RUNS == [20]
