"""A chain step delivered twice sends its successor once: duplicates, and a worker lost between
the result write and the ack."""

from __future__ import annotations

import canvas_tasks
import pytest

from cloudq import App
from cloudq.testing.workers import run_burst


@pytest.fixture(autouse=True)
def _fresh_probes() -> None:
    canvas_tasks.calls.clear()


def _first_step(app: App, workflow) -> tuple[str, object]:
    ((queue, message),) = app.messages_for([workflow])
    return queue, message


@pytest.mark.parametrize("same_batch", [True, False])
def test_a_duplicate_of_a_finished_step_does_not_send_its_successor_again(app: App, same_batch: bool) -> None:
    add = app.tasks["canvas.add"]
    workflow = add.s(1, 1) | add.s(10)
    last = workflow.freeze()  # the ids the expansion keeps
    queue, message = _first_step(app, workflow)
    if same_batch:  # both copies in one receive: the settle step sends one successor
        app.broker.send(queue, [message, message])
        run_burst(app, timeout=30, concurrency=1)
    else:  # the copy arrives after the first run was settled: its children record says so
        app.broker.send(queue, [message])
        run_burst(app, timeout=30)
        app.broker.send(queue, [message])
        run_burst(app, timeout=30)
    assert canvas_tasks.calls["add:1,1"] == 2  # at-least-once: a non-idempotent task runs again
    assert canvas_tasks.calls["add:2,10"] == 1  # ...but its successor is sent once
    assert last.get(timeout=5) == 12


@pytest.mark.parametrize("task_name", ["canvas.add", "canvas.add_once"])
def test_a_worker_lost_between_the_result_write_and_the_ack_still_sends_the_successor_once(
    app: App, task_name: str
) -> None:
    step = app.tasks[task_name]
    add = app.tasks["canvas.add"]
    workflow = step.s(2, 3) | add.s(100)
    result = workflow.freeze()
    queue, message = _first_step(app, workflow)
    app.broker.send(queue, [message])
    (delivery,) = app.broker.receive(queue, 1, lease_s=60)
    app.executor.execute(delivery)  # the result is written; the worker dies before settling it
    assert app.results.get(result.parent.id).state == "SUCCESS"
    assert not app.broker.receive(queue, 10, lease_s=60)  # nothing was sent: the outcome was lost
    app.broker.nack([delivery], 0)  # its lease runs out: the message comes back
    run_burst(app, timeout=30)
    assert result.get(timeout=5) == 105
    assert canvas_tasks.calls["add:5,100"] == 1
    # an idempotent first step does not run again; a plain one does (at-least-once), and the
    # successor gets the first run's stored result either way
    assert canvas_tasks.calls[f"{task_name.split('.')[1]}:2,3"] == (1 if task_name == "canvas.add_once" else 2)
