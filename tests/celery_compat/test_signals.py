"""cloudq.signals as Celery's signals guide uses them: connected with the decorator or
``connect``, fired by the executor (so in every runtime: here the drain loop, eager runs, a real
burst worker and the Lambda handler on a real SQS batch), by the send path, and by each runtime's
lifecycle (the worker_* signals; the push handler's are in tests/push/test_push_signals.py)."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from typing import Any

import pytest

from cloudq import App, signals, states
from cloudq.runtime.executor import Ack
from cloudq.testing import HookScenario
from cloudq.testing.workers import run_burst

from .conftest import drain

TASK_SIGNALS = ("task_prerun", "task_postrun", "task_success", "task_failure", "task_retry", "task_revoked")


@pytest.fixture
def fired() -> Iterator[list[tuple[str, dict[str, Any]]]]:
    """Every task_* and publish signal's name and arguments, in order."""
    events: list[tuple[str, dict[str, Any]]] = []
    receivers = []
    for name in (*TASK_SIGNALS, "before_task_publish", "after_task_publish"):

        def receiver(sender: Any = None, signal: Any = None, _name: str = name, **kwargs: Any) -> None:
            events.append((_name, {"sender": sender, **kwargs}))

        getattr(signals, name).connect(receiver)
        receivers.append((getattr(signals, name), receiver))
    yield events
    for signal, receiver in receivers:
        assert signal.disconnect(receiver)


def _names(events: list[tuple[str, dict[str, Any]]], prefix: str = "task_") -> list[str]:
    return [name for name, _ in events if name.startswith(prefix)]


def test_task_signals_in_order_with_celerys_arguments(app: App, fired: list[tuple[str, dict[str, Any]]]) -> None:
    @app.task(autoretry_for=(KeyError,), max_retries=1, default_retry_delay=0)
    def flaky(x: int) -> int:
        if x < 0:
            raise KeyError("neg")
        return x * 2

    ok = flaky.delay(4)
    drain(app)
    assert _names(fired) == ["task_prerun", "task_success", "task_postrun"]
    prerun, success, postrun = (kwargs for name, kwargs in fired if name.startswith("task_"))
    assert prerun["sender"] is flaky and prerun["task_id"] == ok.id and prerun["args"] == [4]
    assert success["sender"] is flaky and success["result"] == 8
    assert (postrun["retval"], postrun["state"], postrun["task"]) == (8, states.SUCCESS, flaky)
    fired.clear()
    bad = flaky.delay(-1)
    drain(app, wait_delays=True)
    assert _names(fired) == [
        "task_prerun",
        "task_retry",
        "task_postrun",
        "task_prerun",
        "task_failure",
        "task_postrun",
    ]
    retry = dict(fired)["task_retry"]
    assert retry["request"].id == bad.id and isinstance(retry["reason"], KeyError) and "KeyError" in str(retry["einfo"])
    failure = next(kwargs for name, kwargs in fired if name == "task_failure")
    assert failure["task_id"] == bad.id and isinstance(failure["exception"], KeyError)
    assert failure["args"] == [-1] and failure["traceback"] is not None


def test_task_revoked_fires_for_an_expired_task(app: App, fired: list[tuple[str, dict[str, Any]]]) -> None:
    @app.task()
    def late() -> None: ...

    result = late.apply_async(expires=0.0001)
    import time

    time.sleep(0.01)
    drain(app)
    assert _names(fired) == ["task_revoked"]
    revoked = fired[-1][1]
    assert revoked["expired"] is True and revoked["terminated"] is False and revoked["request"].id == result.id


def test_publish_signals_can_add_headers(app: App, fired: list[tuple[str, dict[str, Any]]]) -> None:
    seen: list[dict[str, str]] = []

    @signals.before_task_publish.connect
    def add_trace(sender: Any = None, headers: dict[str, str] | None = None, **_: Any) -> None:
        assert headers is not None
        headers["traceparent"] = "00-abc-01"

    @app.task(bind=True)
    def traced(self: Any) -> None:
        seen.append(dict(self.request.headers))

    try:
        result = traced.delay()
    finally:
        signals.before_task_publish.disconnect(add_trace)
    publish = [(name, kwargs) for name, kwargs in fired if name.endswith("_publish")]
    assert [name for name, _ in publish] == ["before_task_publish", "after_task_publish"]
    before, after = publish[0][1], publish[1][1]
    assert before["sender"] == traced.name and before["body"]["id"] == result.id and before["routing_key"] == "default"
    assert after["body"]["id"] == result.id and after["routing_key"] == "default"
    drain(app)
    assert seen == [{"traceparent": "00-abc-01"}]


def test_a_failing_receiver_is_logged_and_never_loses_the_task(app: App, caplog: pytest.LogCaptureFixture) -> None:
    @app.task()
    def add(x: int, y: int) -> int:
        return x + y

    def broken(**_: Any) -> None:
        raise RuntimeError("receiver bug")

    for name in ("task_prerun", "task_success", "task_postrun", "before_task_publish", "after_task_publish"):
        getattr(signals, name).connect(broken)
    try:
        with caplog.at_level(logging.ERROR, logger="cloudq.signals"):
            result = add.delay(2, 2)
            outcomes = drain(app)
    finally:
        for name in ("task_prerun", "task_success", "task_postrun", "before_task_publish", "after_task_publish"):
            getattr(signals, name).disconnect(broken)
    assert [type(o) for o in outcomes] == [Ack] and result.get(timeout=5) == 4
    assert sum("receiver bug" in r.getMessage() for r in caplog.records) == 5


def test_connect_with_sender_filters_and_eager_runs_fire_too(make_app: Any) -> None:
    app = make_app(task_always_eager=True)
    got: list[Any] = []

    @app.task()
    def one() -> int:
        return 1

    @app.task()
    def two() -> int:
        return 2

    @signals.task_success.connect(sender=two)
    def only_two(sender: Any = None, result: Any = None, **_: Any) -> None:
        got.append(result)

    try:
        assert one.delay().get() == 1 and two.delay().get() == 2
        two.apply()
    finally:
        assert signals.task_success.disconnect(only_two, sender=two)
    assert got == [2, 2]


def test_the_worker_fires_the_task_hooks_and_its_lifecycle_signals(app: App) -> None:
    scenario = HookScenario(app)
    with scenario.recorder as recorder:
        app.broker.send(app.settings.default_queue, scenario.messages())
        worker = run_burst(app, concurrency=1)
    assert scenario.trace() == scenario.expected()
    lifecycle = recorder.named("worker_init", "worker_ready", "worker_shutting_down", "worker_shutdown")
    assert [name for name, _ in lifecycle] == ["worker_init", "worker_ready", "worker_shutting_down", "worker_shutdown"]
    assert all(arguments["sender"] is worker for _, arguments in lifecycle)
    assert lifecycle[2][1] == {"sender": worker, "sig": None, "how": "Warm", "exitcode": 0}
    assert not recorder.named("worker_process_init")  # the threads pool has no child processes (as Celery's solo)


def test_worker_ready_comes_before_the_first_task_and_a_failing_receiver_stops_nothing(app: App) -> None:
    order: list[str] = []

    @app.task()
    def job() -> str:
        order.append("task")
        return "done"

    def broken(**_: Any) -> None:
        order.append("signal")
        raise RuntimeError("receiver bug")

    signals.worker_ready.connect(broken)
    signals.worker_init.connect(broken)
    try:
        result = job.delay()
        worker = run_burst(app, concurrency=1)
    finally:
        signals.worker_ready.disconnect(broken)
        signals.worker_init.disconnect(broken)
    assert order == ["signal", "signal", "task"] and result.get(timeout=5) == "done"
    assert worker.counts["ack"] == 1


@pytest.mark.aws
@pytest.mark.timeout(60)
def test_task_signals_fire_in_the_lambda_handler_on_a_real_sqs_batch(
    sqs: Any, prefix: str, fired: list[tuple[str, dict[str, Any]]]
) -> None:
    from cloudq_aws.testing import SQSPoller

    app = App("lambda-signals", broker=f"sqs://?prefix={prefix}&wait=0", results="memory://")

    @app.task()
    def add(x: int, y: int) -> int:
        return x + y

    @app.task()
    def fail() -> None:
        raise ValueError("bad")

    handler = app.lambda_handler()
    results = add.send_each([(1, 2), (3, 4)])
    failed = fail.delay()
    poller = SQSPoller(sqs, app.broker.queue("default").url)  # type: ignore[attr-defined]
    fired.clear()
    invocation = poller.invoke(handler, poller.receive_all(3))
    assert invocation.response == {"batchItemFailures": []}  # the failure was recorded and dead-lettered
    successes = sorted(kwargs["result"] for name, kwargs in fired if name == "task_success")
    failures = [kwargs["task_id"] for name, kwargs in fired if name == "task_failure"]
    assert successes == [3, 7] and failures == [failed.id]
    assert _names(fired).count("task_prerun") == 3 == _names(fired).count("task_postrun")
    assert [r.get(timeout=5) for r in results] == [3, 7]
    app.close()


@pytest.mark.aws
@pytest.mark.timeout(60)
def test_the_lambda_handler_fires_the_same_hooks_and_a_cold_start(sqs: Any, prefix: str) -> None:
    from cloudq_aws.testing import SQSPoller

    app = App("lambda-hooks", broker=f"sqs://?prefix={prefix}&wait=0", results="memory://")
    scenario = HookScenario(app)
    handler = app.lambda_handler()
    app.broker.send("default", scenario.messages())
    poller = SQSPoller(sqs, app.broker.queue("default").url)  # type: ignore[attr-defined]
    with scenario.recorder as recorder:
        first = poller.invoke(handler, poller.receive_all(4))
        assert len(first.failed) == 1  # the retry: visibility 0, reported failed
        second = poller.invoke(handler, poller.receive_all(1))
        assert second.response == {"batchItemFailures": []}
    assert scenario.trace() == scenario.expected()
    lifecycle = recorder.named(*(n for n in signals.__all__ if n.startswith("worker_")))
    assert [(name, arguments["sender"]) for name, arguments in lifecycle] == [
        ("worker_init", handler),
        ("worker_ready", handler),
    ]  # once per function instance, before its first task; Lambda gives no shutdown hook
    assert recorder.events.index(lifecycle[1]) < recorder.events.index(recorder.named("task_prerun")[0])
    app.close()
