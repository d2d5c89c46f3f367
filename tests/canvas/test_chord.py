"""chord on memory and SQLite with a real worker: the body runs once, after every header task,
with their results in header order — also when header tasks are delivered twice or a worker
dies between a header's result write and its count."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from cloudq import App, GroupResult, chord
from cloudq.errors import ChordError
from cloudq.testing import CanvasContract
from cloudq.testing.chord_contract import BODY_RUNS, TOTAL, register_chord_tasks
from cloudq.testing.workers import run_burst


@pytest.fixture
def app(make_app: Callable[..., App]) -> App:
    app = make_app()
    register_chord_tasks(app)
    BODY_RUNS.clear()
    return app


class TestCanvasOnMemoryAndSQLite(CanvasContract):
    @pytest.fixture
    def chord_app(self, make_app: Callable[..., App]) -> App:
        return make_app()


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
    result = chord([])(app.tasks[TOTAL].s())
    run_burst(app)
    assert result.get(timeout=5) == 0


def test_a_chord_inside_a_chain(app: App) -> None:
    """Celery's guide: the previous step's result goes to every header task, the body's to the next step."""
    from cloudq import chain

    add, tsum = app.tasks["canvas.add"], app.tasks[TOTAL]
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
    body = app.tasks[TOTAL].s()
    body.link_error(on_chord_error.s())
    result = chord([add.s(1, 1), boom.s(1)], body).apply_async()
    run_burst(app)
    with pytest.raises(ChordError):
        result.get(timeout=10)
    assert seen == [result.id] and BODY_RUNS == []


def test_the_body_link_runs_after_the_body(app: App) -> None:
    add, tsum = app.tasks["canvas.add"], app.tasks[TOTAL]
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

    result = chord([quiet.s(1), quiet.s(2)], app.tasks[TOTAL].s()).apply_async()
    run_burst(app)
    assert result.get(timeout=10) == 9


def test_a_thousand_task_chord(app: App) -> None:
    add, tsum = app.tasks["canvas.add"], app.tasks[TOTAL]
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
    add, tsum = app.tasks["canvas.add"], app.tasks[TOTAL]
    result = chord([add.s(1, 1) | add.s(10), add.s(2, 2)], tsum.s()).apply_async()
    run_burst(app)
    assert result.get(timeout=10) == 16  # [12, 4]
    assert result.parent is not None and result.parent.get(timeout=5) == [12, 4]
