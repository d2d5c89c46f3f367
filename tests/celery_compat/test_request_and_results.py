"""``self.request``, progress with custom states, and AsyncResult's extras, as Celery's task and
calling guides use them."""

from __future__ import annotations

import threading
import time
from datetime import UTC, datetime
from typing import Any

import pytest

from cloudq import App, Task, states

from .conftest import drain


def test_self_request_carries_celerys_fields(app: App) -> None:
    seen: dict[str, Any] = {}

    @app.task(bind=True, time_limit=30, soft_time_limit=20)
    def child(self: Task[Any, Any]) -> None:
        seen["child"] = self.request

    @app.task(bind=True)
    def parent(self: Task[Any, Any], x: int, *, y: int = 0) -> None:
        seen["parent"] = self.request
        child.delay()

    sent = parent.apply_async((1,), {"y": 2}, headers={"trace": "t1"}, expires=600, group_id="g1")
    drain(app)
    req = seen["parent"]
    assert (req.id, req.retries, req.args, req.kwargs, req.headers) == (sent.id, 0, [1], {"y": 2}, {"trace": "t1"})
    assert req.delivery_info == {"routing_key": "default", "queue": "default", "redelivered": False}
    assert req.hostname.startswith("cloudq@") and req.expires is not None and req.expires > time.time()
    assert (req.called_directly, req.is_eager, req.group, req.correlation_id) == (False, False, "g1", sent.id)
    assert (req.root_id, req.parent_id, req.timelimit) == (sent.id, None, (None, None))
    kid = seen["child"]
    assert (kid.parent_id, kid.root_id, kid.timelimit) == (sent.id, sent.id, (30, 20))


def test_request_is_never_none(app: App) -> None:
    @app.task(bind=True)
    def whoami(self: Task[Any, Any]) -> Any:
        return [self.request.id, self.request.called_directly, self.request.is_eager]

    assert whoami() == [None, True, False]  # called directly, as a function
    assert whoami.request.called_directly
    eager = whoami.apply()
    assert eager.get() == [eager.id, False, True]


def test_redelivered_is_set_on_a_second_delivery(sqlite_app: App) -> None:
    app = sqlite_app
    seen: list[bool] = []

    @app.task(bind=True)
    def once(self: Task[Any, Any]) -> None:
        seen.append(self.request.delivery_info["redelivered"])

    once.delay()
    [first] = app.broker.receive("default", 1, 0.1, wait_s=0)  # taken, never acked: the lease lapses
    time.sleep(0.3)
    drain(app)
    assert first.delivery_count == 1 and seen == [True]


def test_update_state_progress_is_seen_by_state_info_and_on_message(sqlite_app: App) -> None:
    # celery docs: self.update_state(state='PROGRESS', meta={'current': i, 'total': n})
    app = sqlite_app
    go = threading.Event()

    @app.task(bind=True)
    def upload(self: Task[Any, Any], n: int) -> str:
        for i in range(n):
            self.update_state(state="PROGRESS", meta={"current": i + 1, "total": n})
            go.wait(5)
            go.clear()
        return "done"

    result = upload.delay(2)
    messages: list[dict[str, Any]] = []

    def on_message(body: dict[str, Any]) -> None:
        messages.append(body)
        if body["status"] == "PROGRESS":
            go.set()

    worker = threading.Thread(target=drain, args=(app,))
    worker.start()
    try:
        assert result.get(timeout=10, on_message=on_message, interval=0.05) == "done"
    finally:
        go.set()
        worker.join(10)
    progress = [m["result"] for m in messages if m["status"] == "PROGRESS"]
    assert progress == [{"current": 1, "total": 2}, {"current": 2, "total": 2}]
    assert messages[-1]["status"] == states.SUCCESS and messages[-1]["result"] == "done"
    assert messages[-1]["task_id"] == result.id and messages[-1]["date_done"]


def test_custom_state_shows_in_state_and_info(app: App) -> None:
    @app.task()
    def step() -> None: ...

    step.update_state(task_id="t-progress", state="PROGRESS", meta={"pct": 50})
    handle = app.AsyncResult("t-progress")
    assert (handle.state, handle.info, handle.result, handle.ready()) == ("PROGRESS", {"pct": 50}, {"pct": 50}, False)
    with pytest.raises(Exception, match="written by cloudq"):
        step.update_state(task_id="t-progress", state=states.SUCCESS)


def test_async_result_extras(app: App) -> None:
    @app.task(name="proj.add", autoretry_for=(KeyError,), default_retry_delay=0, max_retries=2)
    def add(x: int, y: int) -> int:
        if not hasattr(add, "tried"):
            add.tried = True  # type: ignore[attr-defined]
            raise KeyError("once")
        return x + y

    @app.task()
    def fail() -> None:
        raise ValueError("no")

    before = datetime.now(UTC)
    ok, bad = add.delay(1, 2), fail.delay()
    assert ok.date_done is None and ok.name is None and not ok.failed()
    ok.maybe_throw()  # pending: nothing to raise
    drain(app, wait_delays=True)
    assert ok.wait(timeout=5) == 3  # wait = get
    assert ok.name == "proj.add" and ok.retries == 1 and ok.date_done is not None and ok.date_done >= before
    assert (ok.args, ok.kwargs, ok.queue) == (None, None, None)  # result_extended is off by default, as in Celery
    assert bad.failed() and not ok.failed()
    with pytest.raises(ValueError, match="no"):
        bad.maybe_throw()
    got: list[Any] = []
    ok.maybe_throw(callback=got.append)
    assert got == [3]


def test_result_extended_keeps_the_call_the_queue_and_the_worker_in_every_state(make_app: Any) -> None:
    app = make_app(result_extended=True)
    seen: list[tuple[Any, ...]] = []

    @app.task(bind=True, autoretry_for=(KeyError,), default_retry_delay=0, max_retries=1, track_started=True)
    def report(self: Task[Any, Any], when: str, page: int = 1, *, tags: list[str]) -> str:
        self.update_state(state="PROGRESS", meta={"page": page})
        progress = app.AsyncResult(self.request.id or "").record
        assert progress is not None
        seen.append((progress.state, progress.args, progress.kwargs, progress.queue))
        if self.request.retries == 0:
            raise KeyError("first try")
        return f"{when}:{page}:{','.join(tags)}"

    @app.task(queue="other")
    def fail(n: int) -> None:
        raise ValueError(n)

    result = report.apply_async(("today",), {"page": 2, "tags": ["a", "b"]})
    failed = fail.delay(5)
    drain(app, wait_delays=True)
    drain(app, "other")
    assert result.get(timeout=1) == "today:2:a,b"
    call = (["today"], {"page": 2, "tags": ["a", "b"]})  # as called (self.request.args/kwargs), as in Celery
    assert (result.args, result.kwargs, result.queue, result.name) == (*call, "default", report.name)
    assert result.worker == app.executor.hostname  # Celery's worker: the node name (cloudq@host)
    assert seen == [("PROGRESS", *call, "default")] * 2
    assert failed.failed() and (failed.args, failed.kwargs, failed.queue) == ([5], {}, "other")


def test_an_embedded_database_from_before_extended_results_reads_as_is(tmp_path: Any) -> None:
    import json
    import sqlite3

    url = f"sqlite:///{tmp_path / 'old.db'}"
    App("old", broker=url, results=url).results.get("warm-up")  # creates the table
    old_row = {"task_id": "t-old", "state": states.SUCCESS, "task_name": "proj.add", "result": 3, "attempts": 1}
    with sqlite3.connect(tmp_path / "old.db") as db:  # a row as cloudq wrote it before the extended fields
        db.execute(
            "INSERT INTO cloudq_results (task_id, terminal, expires_at, data) VALUES (?, 1, NULL, ?)",
            ("t-old", json.dumps(old_row)),
        )
    app = App("new", broker=url, results=url, result_extended=True)
    old = app.AsyncResult("t-old")
    assert (old.get(timeout=1), old.name, old.args, old.kwargs, old.queue, old.worker) == (
        3,
        "proj.add",
        None,
        None,
        None,
        None,
    )
    app.close()


def test_then_calls_back_when_ready(sqlite_app: App) -> None:
    app = sqlite_app

    @app.task()
    def add(x: int, y: int) -> int:
        return x + y

    result = add.delay(1, 2)
    called = threading.Event()
    values: list[Any] = []
    assert result.then(lambda r: (values.append(r.result), called.set())) is result
    assert not called.wait(0.2)  # not ready yet
    drain(app)
    assert called.wait(5) and values == [3]
    result.then(lambda r: values.append("now"))  # ready: at once
    assert values == [3, "now"]


@pytest.mark.aws
@pytest.mark.timeout(90)
def test_result_extended_through_the_lambda_handler_on_dynamodb_costs_no_request(
    aws: Any, sqs: Any, prefix: str
) -> None:
    from cloudq_aws.testing import SQSPoller

    costs = []
    for extended in (False, True):
        app = App(
            f"lambda-extended-{extended}",
            broker=f"sqs://?prefix={prefix}{int(extended)}&wait=0",
            results=f"dynamodb://{prefix}results",
            result_extended=extended,
            presence_interval=0,  # counted: the result write alone (presence adds one PutItem per 30 s)
        )

        @app.task()
        def add(x: int, y: int) -> int:
            return x + y

        handler = app.lambda_handler()
        result = add.delay(2, y=3)
        app.results.get("warm-up")  # the table exists before counting
        poller = SQSPoller(sqs, app.broker.queue("default").url)  # type: ignore[attr-defined]
        batch = poller.receive_all(1)
        with aws.count_requests() as counts:
            assert handler(poller.event(batch)) == {"batchItemFailures": []}
        costs.append(dict(counts))
        assert result.get(timeout=5) == 5
        if extended:
            assert (result.args, result.kwargs, result.queue) == ([2], {"y": 3}, "default")  # as called, as in Celery
            assert result.worker == handler.executor.hostname
        else:
            assert (result.args, result.kwargs, result.queue) == (None, None, None)
        app.close()
    # the same one PutItem (and the revoke check's one BatchGetItem of the batch) either way
    assert costs[0] == costs[1] == {"dynamodb:BatchGetItem": 1, "dynamodb:PutItem": 1}, costs


def test_the_request_keeps_the_callers_shape_and_leaves_defaults_to_the_worker(make_app: Any) -> None:
    """Celery sends the call as made: ``add.delay(2, y=3)`` runs with ``request.args == [2]`` and
    ``request.kwargs == {"y": 3}``, and a parameter left to its default is not in the message."""
    app = make_app()
    seen: list[tuple[list[Any], dict[str, Any], int]] = []

    @app.task(bind=True)
    def add(self: Task[Any, Any], x: int, y: int, z: int = 10, *, scale: int = 1) -> int:
        seen.append((self.request.args, self.request.kwargs, z))
        return (x + y + z) * scale

    calls = [add.delay(2, y=3), add.delay(2, 3), add.apply_async((2,), {"y": 3, "scale": 2}), add.delay("2", "3", "4")]
    drain(app)
    assert [c.get(timeout=1) for c in calls] == [15, 15, 30, 9]
    assert seen == [
        ([2], {"y": 3}, 10),
        ([2, 3], {}, 10),
        ([2], {"y": 3, "scale": 2}, 10),
        ([2, 3, 4], {}, 4),  # validated: the ints the task is typed for
    ]
