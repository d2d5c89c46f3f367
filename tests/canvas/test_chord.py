"""chord on memory and SQLite with a real worker: the body runs once, after every header task,
with their results in header order — also when header tasks are delivered twice or a worker
dies between a header's result write and its count."""

from __future__ import annotations

from collections.abc import Callable

import pytest
from group_tasks import BODY_RUNS, register_sums

from cloudq import App, GroupResult, chord, states
from cloudq.errors import ChordError
from cloudq.interfaces import AtomicCounter
from cloudq.testing.workers import run_burst


@pytest.fixture
def app(make_app: Callable[..., App]) -> App:
    return register_sums(make_app())


def test_celery_guide_chord(app: App) -> None:
    add, tsum = app.tasks["canvas.add"], app.tasks["t.tsum"]
    result = chord(add.s(i, i) for i in range(10))(tsum.s())  # the canvas guide's example
    run_burst(app)
    assert result.get(timeout=10) == 90


def test_the_body_gets_the_results_in_header_order(app: App) -> None:
    add = app.tasks["canvas.add"]

    @app.task(name="t.echo")
    def echo(values: list[int], tag: str) -> list[int]:
        return [*values, tag]

    result = chord([add.s(i, 100) for i in range(12)], echo.s("end")).apply_async(group_id="hdr-1")
    run_burst(app)
    assert result.get(timeout=10) == [*(100 + i for i in range(12)), "end"]
    header = GroupResult.restore("hdr-1", app=app)  # saved by the chord
    assert header is not None and header.get(timeout=5) == [100 + i for i in range(12)]


def test_an_empty_header_calls_the_body_at_once_with_an_empty_list(app: App) -> None:
    result = chord([])(app.tasks["t.tsum"].s())
    run_burst(app)
    assert result.get(timeout=5) == 0


def test_a_failed_header_task_fails_the_chord_and_the_body_never_runs(app: App) -> None:
    add, boom = app.tasks["canvas.add"], app.tasks["canvas.fail"]
    result = chord([add.s(1, 1), boom.s(7), add.s(2, 2)], app.tasks["t.body"].s()).apply_async()
    run_burst(app)
    with pytest.raises(ChordError, match=r"Dependency .* raised ValueError: boom 7"):
        result.get(timeout=10)
    assert result.state == states.FAILURE and BODY_RUNS == []


def _run_each_twice(app: App, queue: str) -> int:
    """Deliver every header message of ``queue`` twice (as SQS may) before acking it; returns how many."""
    count = 0
    while deliveries := app.broker.receive(queue, 10, lease_s=30):
        header = [d for d in deliveries if d.attributes.get("task") == "canvas.add"]
        app.broker.release([d for d in deliveries if d not in header])  # the body: the worker runs it
        for delivery in header:
            app.executor.execute(delivery)
            app.executor.execute(delivery)  # the duplicate delivery of the same message
        app.broker.ack(header)
        count += len(header)
        if not header:
            break
    return count


def test_header_tasks_delivered_twice_send_the_body_once(app: App) -> None:
    add = app.tasks["canvas.add"]
    result = chord([add.s(i, i) for i in range(8)], app.tasks["t.body"].s()).apply_async()
    assert _run_each_twice(app, app.queue_for(add)) >= 8
    run_burst(app)  # the body (and any chord_unlock poller)
    assert result.get(timeout=10) == 56
    assert BODY_RUNS == [56]


def test_a_worker_lost_between_a_header_result_and_its_count_still_sends_the_body_once(app: App) -> None:
    store = app.results
    if not isinstance(store, AtomicCounter):
        pytest.skip("this store has no counter yet: its chords are polled by chord_unlock")
    add = app.tasks["canvas.add"]
    result = chord([add.s(i, i) for i in range(4)], app.tasks["t.body"].s()).apply_async()
    increment = store.increment
    crashed: list[str] = []

    def crash_once(key: str, by: int = 1, expires_at: float | None = None) -> int:
        if not crashed:  # the process dies after the result write, before the count
            crashed.append(key)
            raise ConnectionError("worker killed")
        return increment(key, by, expires_at)

    store.increment = crash_once  # type: ignore[method-assign]
    try:
        run_burst(app, timeout=60)
    finally:
        store.increment = increment  # type: ignore[method-assign]
    assert crashed
    assert result.get(timeout=30) == 12
    assert BODY_RUNS == [12]


def test_a_chord_inside_a_chain(app: App) -> None:
    """Celery's guide: the previous step's result goes to every header task, the body's to the next step."""
    from cloudq import chain

    add, tsum = app.tasks["canvas.add"], app.tasks["t.tsum"]
    result = chain(add.s(1, 1), chord([add.s(10), add.s(20)], tsum.s()), add.s(1000)).apply_async()
    run_burst(app)
    assert result.get(timeout=10) == 1034  # 2 -> [12, 22] -> 34 -> 1034
    assert result.parent is not None and result.parent.get(timeout=5) == 34


def test_the_body_link_error_fires_with_the_body_id_when_a_header_task_fails(app: App) -> None:
    seen: list[str] = []

    @app.task(name="t.on_chord_error")
    def on_chord_error(task_id: str) -> None:
        seen.append(task_id)

    add, boom = app.tasks["canvas.add"], app.tasks["canvas.fail"]
    body = app.tasks["t.body"].s()
    body.link_error(on_chord_error.s())
    result = chord([add.s(1, 1), boom.s(1)], body).apply_async()
    run_burst(app)
    with pytest.raises(ChordError):
        result.get(timeout=10)
    assert seen == [result.id] and BODY_RUNS == []


def test_the_body_link_runs_after_the_body(app: App) -> None:
    add, tsum = app.tasks["canvas.add"], app.tasks["t.tsum"]
    after = add.s(1)
    linked = after.freeze().id
    body = tsum.s()
    body.link(after)
    result = chord([add.s(1, 1), add.s(2, 2)], body).apply_async()
    run_burst(app)
    assert result.get(timeout=10) == 6
    assert app.AsyncResult(linked).get(timeout=5) == 7


def test_a_chord_header_keeps_results_of_ignore_result_tasks(app: App) -> None:
    @app.task(name="t.quiet", ignore_result=True)
    def quiet(x: int) -> int:
        return x * 3

    result = chord([quiet.s(1), quiet.s(2)], app.tasks["t.tsum"].s()).apply_async()
    run_burst(app)
    assert result.get(timeout=10) == 9


def test_a_thousand_task_chord(app: App) -> None:
    add, tsum = app.tasks["canvas.add"], app.tasks["t.tsum"]
    result = chord(add.s(i, 1) for i in range(1000))(tsum.s())
    run_burst(app, timeout=240, concurrency=4)
    assert result.get(timeout=30) == sum(range(1, 1001))


def test_eager_mode_runs_the_chord_in_place() -> None:
    app = App("eager-chord", eager=True)

    @app.task(name="t.sq")
    def sq(x: int) -> int:
        return x * x

    @app.task(name="t.total")
    def total(values: list[int]) -> int:
        return sum(values)

    assert chord(sq.s(i) for i in range(4))(total.s()).get(timeout=5) == 14


def test_a_chain_in_the_header_counts_when_its_last_step_ends(app: App) -> None:
    add, tsum = app.tasks["canvas.add"], app.tasks["t.tsum"]
    result = chord([add.s(1, 1) | add.s(10), add.s(2, 2)], tsum.s()).apply_async()
    run_burst(app)
    assert result.get(timeout=10) == 16  # [12, 4]
    assert result.parent is not None and result.parent.get(timeout=5) == [12, 4]
