"""What groups and chords must do on every broker + result store pair, as a pytest class to subclass.

::

    class TestMyBackends(ChordContract):
        @pytest.fixture
        def chord_app(self):
            app = App("x", broker=..., results=...)
            yield app
            app.close()

The contract registers its own tasks on the app (names under ``chord_contract.``) and runs them
with a real burst worker in this process; header redeliveries are forced by running the same
delivery twice through the app's executor before acknowledging it.
"""

from __future__ import annotations

import threading
from typing import Any

import pytest

from ..app import App
from ..canvas.chord import chord
from ..canvas.group import group
from ..errors import ChordError
from ..interfaces import AtomicCounter
from .workers import run_burst

ADD, TOTAL, FAIL = "chord_contract.add", "chord_contract.total", "chord_contract.fail"
BODY_RUNS: list[int] = []  # what each body run summed, across the burst worker's threads
_lock = threading.Lock()


def register_chord_tasks(app: App) -> None:
    """The contract's tasks (once per app)."""
    if ADD in app.tasks:
        return

    @app.task(name=ADD)
    def add(x: int, y: int) -> int:
        return x + y

    @app.task(name=TOTAL)
    def total(values: list[int]) -> int:
        with _lock:
            BODY_RUNS.append(sum(values))
        return sum(values)

    @app.task(name=FAIL)
    def fail(x: int) -> int:
        raise ValueError(f"boom {x}")


def run_headers_twice(app: App, expected: int, wait_s: float = 1.0) -> int:
    """Deliver each of ``expected`` header messages twice (as SQS and Pub/Sub may) before acking
    it; other messages (the body, chord_unlock) are given back for the worker. Returns how many."""
    queue = app.queue_for(app.tasks[ADD])
    done = 0
    for _ in range(100):
        if done >= expected:
            break
        deliveries = app.broker.receive(queue, 10, lease_s=60, wait_s=wait_s)
        header = [d for d in deliveries if d.attributes.get("task") == ADD]
        app.broker.release([d for d in deliveries if d not in header])
        for delivery in header:
            app.executor.execute(delivery)
            app.executor.execute(delivery)  # the duplicate delivery of the same message
        app.broker.ack(header)
        done += len(header)
    return done


class ChordContract:
    """Groups and chords on one backend pair: results in order, exactly-once bodies."""

    @pytest.fixture
    def chord_app(self) -> Any:
        raise NotImplementedError("provide a chord_app fixture: an App on the backends under test")

    @pytest.fixture
    def app(self, chord_app: App) -> App:
        register_chord_tasks(chord_app)
        BODY_RUNS.clear()
        return chord_app

    def test_a_group_lists_its_results_in_order(self, app: App) -> None:
        add = app.tasks[ADD]
        result = group(add.s(i, i) for i in range(15)).apply_async()
        run_burst(app)
        assert result.get(timeout=30) == [2 * i for i in range(15)]
        assert result.completed_count() == 15

    def test_the_guide_chord(self, app: App) -> None:
        add, total = app.tasks[ADD], app.tasks[TOTAL]
        result = chord(add.s(i, i) for i in range(10))(total.s())
        run_burst(app)
        assert result.get(timeout=30) == 90
        assert BODY_RUNS == [90]

    def test_a_failed_header_task_fails_the_body_which_never_runs(self, app: App) -> None:
        add, fail, total = app.tasks[ADD], app.tasks[FAIL], app.tasks[TOTAL]
        result = chord([add.s(1, 1), fail.s(7)], total.s()).apply_async()
        run_burst(app)
        with pytest.raises(ChordError, match="boom 7"):
            result.get(timeout=30)
        assert BODY_RUNS == []

    def test_header_tasks_delivered_twice_run_the_body_once(self, app: App) -> None:
        add, total = app.tasks[ADD], app.tasks[TOTAL]
        result = chord(add.s(i, i) for i in range(12))(total.s())
        assert run_headers_twice(app, 12) == 12
        run_burst(app)
        assert result.get(timeout=30) == 132
        assert BODY_RUNS == [132]

    def test_a_count_lost_between_result_write_and_increment_is_made_up(self, app: App) -> None:
        store = app.results
        if not isinstance(store, AtomicCounter):
            pytest.skip("this store has no counter: its chords are polled by chord_unlock")
        add, total = app.tasks[ADD], app.tasks[TOTAL]
        result = chord([add.s(i, i) for i in range(5)], total.s()).apply_async()
        increment = store.increment
        lost: list[str] = []

        def lose_once(key: str, by: int = 1, expires_at: float | None = None) -> int:
            if not lost:  # as if the worker died after the header's result write
                lost.append(key)
                raise ConnectionError("worker killed")
            return increment(key, by, expires_at)

        store.increment = lose_once  # type: ignore[method-assign]
        try:
            run_burst(app, timeout=120)
        finally:
            store.increment = increment  # type: ignore[method-assign]
        assert lost and result.get(timeout=30) == 20
        assert BODY_RUNS == [20]

    def test_an_increment_counted_twice_does_not_send_the_body_early(self, app: App) -> None:
        store = app.results
        if not isinstance(store, AtomicCounter):
            pytest.skip("this store has no counter: its chords are polled by chord_unlock")
        add, total = app.tasks[ADD], app.tasks[TOTAL]
        result = chord([add.s(i, 1) for i in range(5)], total.s()).apply_async()
        increment = store.increment
        doubled: list[str] = []

        def twice_once(key: str, by: int = 1, expires_at: float | None = None) -> int:
            if not doubled:  # a request retried after its response was lost: it counted twice
                doubled.append(key)
                increment(key, by, expires_at)
            return increment(key, by, expires_at)

        store.increment = twice_once  # type: ignore[method-assign]
        try:
            run_burst(app, timeout=120)
        finally:
            store.increment = increment  # type: ignore[method-assign]
        assert doubled and result.get(timeout=30) == 15  # every header's result, not four of them
        assert BODY_RUNS == [15]
