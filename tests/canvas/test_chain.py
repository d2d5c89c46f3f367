"""Chains and links on a real (burst) worker: Celery's canvas guide examples and failure rules."""

from __future__ import annotations

import canvas_tasks
import pytest

from cloudq import App, chain, states
from cloudq.testing.workers import run_burst


@pytest.fixture(autouse=True)
def _fresh_probes() -> None:
    canvas_tasks.calls.clear()
    canvas_tasks.errbacks.clear()


def test_celery_guide_chain_prepends_each_result_and_parent_walks_back(app: App) -> None:
    add = app.tasks["canvas.add"]
    result = (add.s(2, 2) | add.s(4) | add.s(8)).apply_async()
    run_burst(app, timeout=30)
    assert result.get(timeout=5) == 16
    assert [result.parent.get(timeout=5), result.parent.parent.get(timeout=5)] == [8, 4]
    assert result.parent.parent.parent is None
    first = app.results.get(result.parent.parent.id)
    assert first is not None and first.state == states.SUCCESS


def test_chain_function_immutable_steps_and_options(app: App) -> None:
    add = app.tasks["canvas.add"]
    result = chain(add.s(1, 1), add.si(5, 5), add.s(1)).apply_async(task_id="the-chain", queue="canvas")
    assert result.id == "the-chain"  # Celery: the chain's id is its last task's
    run_burst(app, timeout=30, queues=["canvas", app.settings.default_queue])
    assert result.get(timeout=5) == 11  # 5 + 5, then + 1: the immutable step ignored the 2
    assert canvas_tasks.calls["add:1,1"] == 1


def test_partial_arguments_to_a_chain_go_to_its_first_step(app: App) -> None:
    add = app.tasks["canvas.add"]
    result = (add.s(1) | add.s(10)).delay(5)
    run_burst(app, timeout=30)
    assert result.get(timeout=5) == 16


def test_link_sends_the_callback_with_the_result_prepended(app: App) -> None:
    add = app.tasks["canvas.add"]
    callback = add.s(100)
    frozen = callback.freeze()
    first = add.apply_async((1, 2), link=callback)
    run_burst(app, timeout=30)
    assert first.get(timeout=5) == 3 and frozen.get(timeout=5) == 103
    children = app.results.get(f"{first.id}.children")
    assert children is not None and children.result == [frozen.id]


def test_a_failing_step_stops_the_chain_fails_the_rest_and_fires_link_error(app: App) -> None:
    add, fail = app.tasks["canvas.add"], app.tasks["canvas.fail"]
    workflow = chain(add.s(1, 1), fail.s(), add.s(5))
    workflow.link_error(app.tasks["canvas.on_error"].s())  # called in the worker: (request, exc, traceback)
    by_id = app.tasks["canvas.failed_id"].s()
    notified = by_id.freeze()
    workflow.link_error(by_id)  # sent as a task with the failed task's id
    result = workflow.apply_async()
    run_burst(app, timeout=30)
    failing = result.parent
    assert failing.state == states.FAILURE and result.state == states.FAILURE
    with pytest.raises(ValueError, match="boom 2"):
        result.get(timeout=5)  # never waits forever: the step that will not run is failed too
    assert canvas_tasks.calls["add:2,5"] == 0 and canvas_tasks.calls["fail:2"] == 1
    assert canvas_tasks.errbacks == [(failing.id, "ValueError('boom 2')", "Traceback (most recent call last):")]
    assert notified.get(timeout=5) == f"failed:{failing.id}"


def test_eager_mode_runs_the_whole_chain_in_place(make_app) -> None:
    app = make_app(task_always_eager=True)
    add = app.tasks["canvas.add"]
    result = (add.s(2, 2) | add.s(4) | add.s(8)).apply_async()
    assert result.get(timeout=1) == 16


def test_chain_apply_runs_locally(app: App) -> None:
    add = app.tasks["canvas.add"]
    assert (add.s(2, 2) | add.s(4)).apply().get() == 8


def test_an_expired_step_revokes_the_rest_of_its_chain(app: App) -> None:
    from cloudq import TaskRevokedError

    add = app.tasks["canvas.add"]
    from datetime import UTC, datetime

    result = (add.s(1, 1).set(expires=datetime(2000, 1, 1, tzinfo=UTC)) | add.s(2)).apply_async()
    run_burst(app, timeout=30)
    with pytest.raises(TaskRevokedError):
        result.get(timeout=5)
    assert canvas_tasks.calls["add:1,1"] == 0
