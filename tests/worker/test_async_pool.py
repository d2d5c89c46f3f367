"""The async pool (cloudq/runtime/aio.py): coroutines on one loop with no thread waiting on each,
``-c`` bounding what runs at once, sync tasks and failures on the same paths as the threads pool.

No test here measures time: concurrency is proven with events and barriers that only open when
enough tasks run side by side.
"""

from __future__ import annotations

import asyncio
import gc
import sys
import threading
from typing import Any

import pytest
from worker_helpers import Running, run_burst, wait_for

from cloudq import states
from cloudq.runtime.aio import DRIVERS, Spare
from cloudq.runtime.executor import Ack, Executor, Suspended
from cloudq.runtime.worker import Worker

pytestmark = pytest.mark.timeout(60)


@pytest.fixture
def make_app(make_app):
    """Apps with tracing off: a traced run keeps a thread for its span (the pool's documented
    fallback), and the suite's tracing tests leave a global tracer provider set in this process."""

    def make(**config: Any) -> Any:
        return make_app(**{"tracing": False, **config})

    return make


def test_a_thousand_coroutines_run_at_once_on_a_few_threads(make_app):
    app = make_app()
    n = 1000
    running = [0]
    threads_at_peak: list[int] = []
    all_in: asyncio.Event | None = None

    @app.task()
    async def wait(i: int) -> int:
        nonlocal all_in
        if all_in is None:
            all_in = asyncio.Event()  # made on the pool's loop
        running[0] += 1
        if running[0] == n:  # only when every task is awaiting at the same time
            threads_at_peak.append(threading.active_count())
            all_in.set()
        await all_in.wait()
        return i

    handles = wait.send_each(range(n))
    before = threading.active_count()
    assert run_burst(Worker(app, concurrency=n, pool="async", burst=True)) == 0
    assert [h.get(timeout=5) for h in handles] == list(range(n))
    # the drivers, the loop, the acker, the heartbeat...: not one thread per running coroutine
    assert threads_at_peak and threads_at_peak[0] - before < 20


def test_concurrency_bounds_the_coroutines_running_at_once(make_app):
    app = make_app()
    running = [0]
    peak = [0]
    gate: dict[str, asyncio.Event] = {}

    @app.task()
    async def step(i: int) -> int:
        running[0] += 1
        peak[0] = max(peak[0], running[0])
        if running[0] == 3:
            gate.setdefault("open", asyncio.Event()).set()  # three at once: let them all go on
        await gate.setdefault("open", asyncio.Event()).wait()
        running[0] -= 1
        return i

    handles = step.send_each(range(30))
    assert run_burst(Worker(app, concurrency=3, pool="async", burst=True)) == 0
    assert [h.get(timeout=5) for h in handles] == list(range(30))
    assert peak[0] == 3


def test_sync_tasks_still_run_side_by_side_up_to_the_concurrency(make_app):
    app = make_app()
    barrier = threading.Barrier(5, timeout=20)  # breaks (the tasks fail) unless all five run at once

    @app.task()
    def blocking(i: int) -> int:
        barrier.wait()
        return i

    handles = blocking.send_each(range(5))
    worker = Worker(app, concurrency=5, pool="async", burst=True)
    assert run_burst(worker) == 0
    assert [h.get(timeout=5) for h in handles] == list(range(5))
    assert worker.counts["ack"] == 5


def test_a_failing_coroutine_records_its_traceback_and_retries_like_the_threads_pool(make_app):
    app = make_app()
    attempts: list[int] = []

    @app.task(bind=True, autoretry_for=(KeyError,), max_retries=1, default_retry_delay=0)
    async def flaky(self, n: int) -> int:
        attempts.append(self.request.attempt)
        await asyncio.sleep(0)
        raise KeyError(f"attempt {self.request.attempt}")

    handle = flaky.delay(1)
    assert run_burst(Worker(app, concurrency=4, pool="async", burst=True)) == 0
    assert attempts == [1, 2]
    with pytest.raises(KeyError, match="attempt 2"):  # re-raised as the task raised it (Celery)
        handle.get(timeout=5)
    record = app.results.get(handle.id)
    assert record is not None and record.state == states.FAILURE
    assert "in flaky" in (record.traceback or "")  # the coroutine's own frame


def test_the_hard_time_limit_ends_a_coroutine_with_time_limit_exceeded(make_app):
    app = make_app()
    never = threading.Event()

    @app.task(time_limit=0.05, max_retries=0)
    async def hangs(n: int) -> int:
        await asyncio.get_running_loop().run_in_executor(None, never.wait, 30)
        return n

    handle = hangs.delay(1)
    assert run_burst(Worker(app, concurrency=4, pool="async", burst=True)) == 0
    never.set()
    record = app.results.get(handle.id)
    assert record is not None and record.state == states.FAILURE
    assert record.error_type == "cloudq.errors.TimeLimitExceeded"


def test_result_extended_and_the_request_hold_across_the_threads_a_run_passes(make_app):
    app = make_app(result_extended=True)
    seen: list[Any] = []

    @app.task(bind=True)
    async def report(self, page: int) -> str:
        await asyncio.sleep(0)
        seen.append((self.request.id, self.request.args))
        return f"page {page}"

    handle = report.delay(2)
    assert run_burst(Worker(app, concurrency=2, pool="async", burst=True)) == 0
    assert handle.get(timeout=5) == "page 2"
    assert seen == [(handle.id, [2])]
    assert (handle.args, handle.queue, handle.worker) == ([2], "default", app.executor.hostname)


def test_stopping_lets_the_running_coroutines_finish_and_acks_them(make_app):
    app = make_app()
    started = threading.Event()
    release: dict[str, Any] = {}

    @app.task()
    async def slow(i: int) -> int:
        loop = asyncio.get_running_loop()
        release.setdefault("event", asyncio.Event())
        release["loop"] = loop
        started.set()
        await release["event"].wait()
        return i

    handle = slow.delay(7)
    worker = Worker(app, concurrency=10, pool="async", grace=30)
    running = Running(worker)
    running.thread.start()
    assert started.wait(10)
    worker.stop()
    wait_for(lambda: worker.holding == 1)  # still running: the drivers wait for it
    release["loop"].call_soon_threadsafe(release["event"].set)
    assert running.join() == 0
    assert handle.get(timeout=5) == 7
    assert worker.counts["ack"] == 1
    assert app.broker.stats(app.queues()[0]).in_flight == 0


def test_the_pool_runs_with_its_few_drivers(make_app):
    app = make_app()

    @app.task()
    async def noop(i: int) -> int:
        return i

    handles = noop.send_each(range(3))
    worker = Worker(app, concurrency=500, pool="async", burst=True)
    assert run_burst(worker) == 0
    assert [h.get(timeout=5) for h in handles] == [0, 1, 2]
    assert len(worker.runners) == DRIVERS


def test_begin_stops_at_the_call_and_resume_finishes_the_run(make_app):
    app = make_app()

    @app.task()
    async def double(x: int) -> int:
        return 2 * x

    handle = double.delay(21)
    (delivery,) = app.broker.receive(app.queues()[0], 1, 60)
    executor = Executor(app)
    step = executor.begin(delivery)
    assert isinstance(step, Suspended)
    assert (step.call.task.name, step.call.args) == (double.name, [21])
    assert app.results.get(handle.id) is None  # nothing written before the call
    value = asyncio.run(step.coroutine())
    assert isinstance(step.resume(value, None), Ack)
    assert handle.get(timeout=1) == 42


def test_begin_answers_at_once_for_a_run_that_ends_before_its_call(make_app):
    app = make_app()

    @app.task()
    async def typed(x: int) -> int:
        return x

    typed.delay(1)
    typed.delay(2)
    (first, second) = app.broker.receive(app.queues()[0], 2, 60)
    executor = Executor(app)
    broken = type(first)(b"not json", first.receipt, 1, first.queue, first.message_id)
    outcome = executor.begin(broken)
    assert not isinstance(outcome, Suspended) and outcome is not None  # dead-lettered: no envelope
    assert isinstance(executor.begin(second), Suspended)


def test_a_suspended_run_dropped_unresumed_is_collected_without_an_error(make_app):
    app = make_app()

    @app.task()
    async def double(x: int) -> int:
        return 2 * x

    double.delay(1)
    (delivery,) = app.broker.receive(app.queues()[0], 1, 60)
    step = Executor(app).begin(delivery)
    assert isinstance(step, Suspended)
    seen: list[Any] = []
    hook, sys.unraisablehook = sys.unraisablehook, seen.append
    try:
        del step
        gc.collect()
    finally:
        sys.unraisablehook = hook
    assert seen == []  # was: ValueError, the ContextVar token "created in a different Context"


def test_spare_threads_start_only_when_none_is_idle():
    spare = Spare("test-spare")
    done = threading.Event()
    hold = threading.Event()
    spare.submit(hold.wait)
    spare.submit(hold.wait)  # the first is busy: a second thread
    assert spare.threads == 2
    hold.set()
    wait_for(lambda: spare.idle == 2)
    spare.submit(done.set)  # an idle one takes it
    assert done.wait(10)
    assert spare.threads == 2
    spare.close()


def test_a_streaming_broker_hears_of_each_finished_coroutine():
    from test_worker_stream import StreamingMemory

    from cloudq import App

    app = App("stream-async", broker="memory://", results="memory://", tracing=False)
    broker = StreamingMemory()
    app._broker = broker  # the streaming broker instead of the URL's, as test_worker_stream does

    @app.task(name="wait")
    async def wait(i: int) -> int:
        await asyncio.sleep(0)
        return i

    handles = [wait.delay(i) for i in range(25)]
    with Running(Worker(app, concurrency=4, pool="async", poll_wait_s=0.05)) as running:
        wait_for(lambda: running.worker.counts.get("ack", 0) == 25)
    assert [h.get(timeout=5) for h in handles] == list(range(25))
    (stream,) = broker.streams
    assert stream.finished_count == 25 and not stream.out  # none left counted against its flow control
    app.close()
