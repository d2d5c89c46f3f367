"""The container worker in-process, on the memory backend: Worker in a thread, stop() or --burst."""

from __future__ import annotations

import asyncio
import json
import threading
import time
import uuid
from typing import Any

import pytest
from worker_helpers import Running, run_burst, wait_for

from cloudq import App, TaskFailed, states
from cloudq.envelope import Envelope
from cloudq.errors import BackendUnavailable
from cloudq.interfaces import OutgoingMessage
from cloudq.runtime.worker import Worker

pytestmark = pytest.mark.timeout(60)


def test_burst_runs_every_task_and_acks_it(make_app):
    app = make_app()

    @app.task()
    def add(a: int, b: int) -> int:
        return a + b

    handles = add.send_each([(i, i) for i in range(50)])
    assert run_burst(Worker(app, concurrency=2, burst=True)) == 0
    assert [h.get(timeout=1) for h in handles] == [2 * i for i in range(50)]
    stats = app.broker.stats(app.queues()[0])
    assert (stats.ready, stats.in_flight, stats.delayed, stats.dead_lettered) == (0, 0, 0, 0)


def test_retry_with_backoff_then_success_in_burst_mode(make_app):
    app = make_app()
    calls: list[float] = []

    @app.task(bind=True, max_retries=3, retry_backoff=0.1, retry_jitter=False, autoretry_for=(ConnectionError,))
    def flaky(self) -> int:
        calls.append(time.monotonic())
        if self.request.attempt < 3:
            raise ConnectionError("flaky network")
        return self.request.attempt

    handle = flaky.delay()
    # burst mode must wait for the delayed retries instead of stopping when nothing is ready
    assert run_burst(Worker(app, concurrency=1, burst=True)) == 0
    assert handle.get(timeout=1) == 3
    assert handle.record is not None and handle.record.attempts == 3
    assert len(calls) == 3
    # exponential backoff: 0.1 s then 0.2 s (no jitter)
    assert calls[1] - calls[0] >= 0.1 and calls[2] - calls[1] >= 0.2


def test_dead_letter_after_max_retries(make_app):
    app = make_app()

    @app.task(max_retries=2, autoretry_for=(ValueError,))
    def always_fails() -> None:
        raise ValueError("broken for good")

    handle = always_fails.delay()
    worker = Worker(app, concurrency=1, burst=True)
    assert run_burst(worker) == 0
    record = handle.record
    assert record is not None and record.state == states.FAILURE and record.attempts == 3
    [dead] = app.broker.dead_letters(app.queues()[0])
    assert "ValueError: broken for good" in dead.reason and "retries exhausted" in dead.reason
    assert worker.counts["nack"] == 2 and worker.counts["dead_letter"] == 1


def test_soft_time_limit_in_a_thread_fails_the_task_and_the_worker_goes_on(make_app):
    app = make_app()

    @app.task(time_limit=0.2, max_retries=0)
    def spins() -> None:
        while True:  # pure Python: the soft limit interrupts it between bytecodes
            sum(range(100))

    @app.task()
    def ok() -> str:
        return "ok"

    slow, good = spins.delay(), ok.delay()
    assert run_burst(Worker(app, concurrency=1, burst=True)) == 0
    assert slow.record is not None and slow.record.state == states.FAILURE
    assert slow.record.error_type == "cloudq.errors.TimeLimitExceeded"
    assert good.get(timeout=1) == "ok"


def test_task_calling_sys_exit_does_not_stop_the_worker(make_app):
    app = make_app()

    @app.task(max_retries=0)
    def exits() -> None:
        raise SystemExit(3)

    @app.task()
    def ok() -> str:
        return "ok"

    exiting = exits.delay()
    good = ok.delay()
    with Running(Worker(app, concurrency=1)) as running:
        assert good.get(timeout=10) == "ok"
        # a task's SystemExit is the task failing, like any exception: recorded and dead-lettered
        with pytest.raises(TaskFailed, match="SystemExit: 3"):  # never re-raised as SystemExit
            exiting.get(timeout=10)
    assert running.code == 0
    stats = app.broker.stats(app.queues()[0])
    assert stats.dead_lettered == 1 and stats.delayed + stats.ready == 0


def test_heartbeat_keeps_a_task_longer_than_its_lease_from_running_twice(make_app):
    app = make_app()
    runs: list[str] = []

    @app.task()
    def long_task() -> str:
        runs.append(threading.current_thread().name)
        time.sleep(2.5)  # more than two 1 s leases
        return "done"

    handle = long_task.delay()
    first, second = Worker(app, concurrency=1, lease_s=1), Worker(app, concurrency=1, lease_s=1)
    with Running(first), Running(second):
        assert handle.get(timeout=20) == "done"
        time.sleep(1.2)  # a lease that had lapsed would have redelivered by now
    assert len(runs) == 1
    assert first.extended + second.extended >= 2


def test_graceful_stop_releases_prefetched_messages_at_once(make_app):
    app = make_app()
    started, finish = threading.Event(), threading.Event()

    @app.task()
    def blocker() -> str:
        started.set()
        finish.wait(20)
        return "finished"

    @app.task()
    def quick(i: int) -> int:
        return i

    queue = app.queues()[0]
    slow = blocker.delay()
    quick.send_each(range(3))
    worker = Worker(app, concurrency=1, prefetch_multiplier=4, lease_s=60)
    running = Running(worker).__enter__()
    assert started.wait(10)
    assert app.broker.stats(queue).in_flight == 4  # one running, three prefetched
    worker.stop()
    # released while the running task is still going: long before their 60 s lease could lapse
    wait_for(lambda: app.broker.stats(queue).ready == 3)
    assert running.thread.is_alive() and not slow.ready()
    finish.set()
    assert running.join() == 0
    assert slow.get(timeout=1) == "finished"
    assert app.broker.stats(queue).in_flight == 0
    [message] = [m for m in app.broker.receive(queue, 10, 60) if b"blocker" in m.body] or [None]
    assert message is None  # the finished task was acked, not released


def test_stop_after_grace_returns_while_a_thread_task_still_runs(make_app):
    app = make_app()
    started, finish = threading.Event(), threading.Event()

    @app.task()
    def stuck() -> None:
        started.set()
        finish.wait(20)

    stuck.delay()
    running = Running(Worker(app, concurrency=1, grace=0.1, lease_s=60)).__enter__()
    assert started.wait(10)
    assert running.stop() == 0
    # the abandoned task's message stays leased: it comes back after its lease, never lost
    assert app.broker.stats(app.queues()[0]).in_flight == 1
    finish.set()


def _raw(app: App, queue: str, body: bytes) -> None:
    app.broker.send(queue, [OutgoingMessage(body)])


def test_bad_input_is_dead_lettered_with_its_reason_and_good_messages_still_run(make_app):
    key = "test-signing-key"
    app = make_app(signing_key=key)

    @app.task()
    def add(a: int, b: int) -> int:
        return a + b

    queue = app.queues()[0]
    good_before = add.delay(1, 2)
    _raw(app, queue, b"{not json")
    _raw(app, queue, Envelope(id="unknown", task="no.such.task").encode(key.encode()))
    _raw(app, queue, Envelope(id="badargs", task=add.name, args=["x", "y"]).encode(key.encode()))
    _raw(app, queue, json.dumps({"v": 99, "id": "future", "task": add.name}).encode())
    _raw(app, queue, Envelope(id="unsigned", task=add.name, args=[1, 1]).encode())
    tampered = json.loads(Envelope(id="tampered", task=add.name, args=[1, 1]).encode(key.encode()))
    tampered["args"] = [1000, 1000]
    _raw(app, queue, json.dumps(tampered).encode())
    good_after = add.delay(3, 4)

    assert run_burst(Worker(app, concurrency=2, burst=True)) == 0
    assert (good_before.get(timeout=1), good_after.get(timeout=1)) == (3, 7)
    reasons = sorted(d.reason for d in app.broker.dead_letters(queue))
    assert len(reasons) == 6
    expected = [
        "InvalidArguments",
        "MalformedMessage: body is not JSON",
        "SignatureInvalid: message is unsigned",
        "SignatureInvalid: message signature does not match",
        "UnknownTask",
        "UnsupportedVersion: envelope version 99",
    ]
    for want in expected:
        assert any(reason.startswith(want) for reason in reasons), (want, reasons)
    assert app.results.get("badargs").state == states.FAILURE  # type: ignore[union-attr]
    assert app.results.get("tampered") is None  # a forged id must not overwrite anyone's record


class Unreachable:
    """Wraps a broker or result store whose ``method`` fails its first ``failures`` calls."""

    def __init__(self, inner: Any, method: str, failures: int) -> None:
        self.inner, self.method, self.failures = inner, method, failures

    def __getattr__(self, name: str) -> Any:
        attr = getattr(self.inner, name)
        if name != self.method:
            return attr

        def call(*args: Any, **kwargs: Any) -> Any:
            if self.failures > 0:
                self.failures -= 1
                raise BackendUnavailable(f"{name}: service unreachable")
            return attr(*args, **kwargs)

        return call


def test_executor_failure_gives_the_message_back_with_a_backoff(make_app, caplog):
    app = make_app()

    @app.task()
    def add(a: int, b: int) -> int:
        return a + b

    app._results = Unreachable(app.results, "set", failures=1)
    handle = add.delay(2, 2)
    worker = Worker(app, concurrency=1, burst=True)
    with caplog.at_level("WARNING", logger="cloudq.worker"):
        assert run_burst(worker) == 0
    assert handle.get(timeout=1) == 4
    assert worker.counts["nack"] == 1 and worker.counts["ack"] == 1
    [line] = [r.getMessage() for r in caplog.records if "event=failed" in r.getMessage()]
    assert "BackendUnavailable: set: service unreachable" in line and "giving it back in 1s" in line


def test_receive_errors_are_logged_and_retried_without_stopping_the_worker(make_app, caplog):
    app = make_app()

    @app.task()
    def add(a: int, b: int) -> int:
        return a + b

    handle = add.delay(1, 1)
    app._broker = Unreachable(app.broker, "receive", failures=2)
    with caplog.at_level("WARNING", logger="cloudq.worker"):
        assert run_burst(Worker(app, concurrency=1, burst=True)) == 0
    assert handle.get(timeout=1) == 2
    warnings = [r.getMessage() for r in caplog.records if r.getMessage().startswith("receive failed")]
    assert len(warnings) == 2 and "BackendUnavailable: receive: service unreachable" in warnings[0]


def test_consumption_is_fair_across_queues(make_app):
    app = make_app()
    order: list[str] = []

    @app.task(queue="bulk")
    def bulk(i: int) -> None:
        order.append("bulk")

    @app.task(queue="urgent")
    def urgent(i: int) -> None:
        order.append("urgent")

    bulk.send_each(range(300))
    urgent.send_each(range(5))
    assert run_burst(Worker(app, queues=["bulk", "urgent"], concurrency=1, prefetch_multiplier=4, burst=True)) == 0
    assert len(order) == 305
    assert max(i for i, q in enumerate(order) if q == "urgent") < 20  # not stuck behind 300 bulk tasks


@pytest.mark.parametrize(("concurrency", "multiplier", "capacity"), [(2, 3, 10), (4, 5, 20)])
def test_never_holds_more_than_its_capacity(make_app, concurrency, multiplier, capacity):
    """prefetch x concurrency, but at least one full SQS-sized receive (10)."""
    app = make_app()
    seen: list[int] = []
    worker = Worker(app, concurrency=concurrency, prefetch_multiplier=multiplier, burst=True)
    assert worker.capacity(app.broker) == capacity

    @app.task()
    def probe(i: int) -> None:
        seen.append(worker.holding)

    probe.send_each(range(60))
    assert run_burst(worker) == 0
    assert len(seen) == 60 and max(seen) == capacity  # buffered + running, counted while each task runs


def test_requeue_outcome_sends_the_copy_then_acks(make_app):
    app = make_app()

    @app.task()
    def later() -> str:
        return "ran"

    queue = app.queues()[0]
    # delivered before its eta (as after a broker's delay cap): the executor sends it on again
    early = Envelope(id=str(uuid.uuid4()), task=later.name, eta=time.time() + 0.3)
    _raw(app, queue, early.encode())
    worker = Worker(app, concurrency=1, burst=True)
    assert run_burst(worker) == 0
    assert app.AsyncResult(early.id).get(timeout=1) == "ran"
    assert worker.counts["requeued"] == 1


def test_async_pool_runs_async_tasks(make_app):
    app = make_app()

    @app.task()
    async def double(x: int) -> int:
        await asyncio.sleep(0.01)
        return 2 * x

    handles = double.send_each(range(5))
    assert run_burst(Worker(app, concurrency=2, pool="async", burst=True)) == 0
    assert [h.get(timeout=1) for h in handles] == [0, 2, 4, 6, 8]


def test_received_and_lifecycle_lines_are_logged_without_arguments(make_app, caplog):
    app = make_app()

    @app.task()
    def secret(token: str) -> int:
        return len(token)

    handle = secret.delay("hunter2-very-secret")
    with caplog.at_level("INFO", logger="cloudq"):
        assert run_burst(Worker(app, concurrency=1, burst=True)) == 0
    lines = [r.getMessage() for r in caplog.records]
    assert any(f"event=received task_id={handle.id}" in line and "attempt=1" in line for line in lines)
    assert any(line.startswith("worker started:") for line in lines)
    assert any(line.startswith("worker stopped:") for line in lines)
    assert not any("hunter2" in line for line in lines)


def test_invalid_configuration_is_refused(make_app):
    app = make_app()

    @app.task()
    def noop() -> None:
        pass

    with pytest.raises(Exception, match="app_path"):
        Worker(app, pool="process")
    with pytest.raises(Exception, match="unknown pool"):
        Worker(app, pool="gevent")


def test_acks_linger_only_while_there_is_more_work(make_app):
    app = make_app()

    @app.task()
    def add(a: int, b: int) -> int:
        return a + b

    handle = add.delay(1, 2)
    worker = Worker(app, concurrency=1, lease_s=600, ack_interval_s=60)
    with Running(worker):
        assert handle.get(timeout=10) == 3
        # the queue is empty: the ack goes out now, not after the 60 s linger
        wait_for(lambda: app.broker.stats(app.queues()[0]).in_flight == 0, timeout=10)
        assert worker.counts["ack"] == 1


def test_one_ordering_key_never_runs_two_tasks_at_once_and_keeps_its_order(make_app):
    app = make_app()
    lock = threading.Lock()
    running: dict[str, int] = {}
    overlaps: list[str] = []
    order: dict[str, list[int]] = {"a": [], "b": []}
    peak = [0]

    @app.task()
    def step(key: str, n: int) -> None:
        with lock:
            running[key] = running.get(key, 0) + 1
            if running[key] > 1:
                overlaps.append(key)
            peak[0] = max(peak[0], sum(running.values()))
            order[key].append(n)
        time.sleep(0.01)
        with lock:
            running[key] -= 1

    # one send per key, in order: the broker hands several of one key over in a single batch
    for n in range(12):
        for key in ("a", "b"):
            step.apply_async((key, n), ordering_key=key)
    assert run_burst(Worker(app, concurrency=4, burst=True)) == 0
    assert overlaps == []
    assert order == {"a": list(range(12)), "b": list(range(12))}
    assert peak[0] == 2  # the two keys still ran side by side


def test_async_pool_runs_coroutines_concurrently_on_one_loop(make_app):
    app = make_app()
    loops: set[int] = set()
    running = [0]
    peak = [0]
    attempts: list[int] = []

    @app.task(bind=True)
    async def fetch(self, n: int) -> int:
        loops.add(id(asyncio.get_running_loop()))
        attempts.append(self.request.attempt)  # task.request reaches the coroutine
        running[0] += 1
        peak[0] = max(peak[0], running[0])
        await asyncio.sleep(0.2)
        running[0] -= 1
        return n

    handles = fetch.send_each(range(8))
    assert run_burst(Worker(app, concurrency=8, pool="async", burst=True)) == 0
    assert [h.get(timeout=5) for h in handles] == list(range(8))
    assert len(loops) == 1  # one shared event loop, not one per task
    assert peak[0] > 1  # coroutines overlapped on it
    assert attempts == [1] * 8
