"""Celery's task guide on rate limits and its worker settings, as a Celery user writes them:
``@app.task(rate_limit="10/m")``, ``task_default_rate_limit``, the ``task_annotations`` example,
``worker_max_tasks_per_child`` / ``worker_max_memory_per_child``; run by a real Worker (SQLite
and memory) with a clock the test moves."""

from __future__ import annotations

import threading

import pytest

from cloudq import App, ConfigurationError, states
from cloudq.runtime.ratelimit import RateLimits
from cloudq.runtime.worker import Worker
from cloudq.testing.clock import FakeClock
from cloudq.testing.waiting import wait_for

pytestmark = pytest.mark.timeout(60)


def test_rate_limit_as_the_task_guide_writes_it(app: App) -> None:
    @app.task(rate_limit="10/m")
    def fetch_page(url: str) -> str:
        return url

    assert fetch_page.rate_limit == "10/m"  # Celery's Task.rate_limit shows what was given


def test_task_default_rate_limit_and_the_annotations_example(app: App) -> None:
    app.conf.task_default_rate_limit = "100/m"
    app.conf.task_annotations = {"tasks.add": {"rate_limit": "10/s"}}  # Celery's routing guide

    @app.task(name="tasks.add")
    def add(x: int, y: int) -> int:
        return x + y

    @app.task(name="tasks.mul")
    def mul(x: int, y: int) -> int:
        return x * y

    assert (add.rate_limit, mul.rate_limit) == ("10/s", "100/m")
    assert add.rate_per_s == 10.0 and mul.rate_per_s == pytest.approx(100 / 60)


def test_a_bad_rate_limit_fails_at_declaration_in_one_line(app: App) -> None:
    with pytest.raises(ConfigurationError, match=r"rate_limit must be like '10/s', '100/m', '1000/h'") as caught:

        @app.task(rate_limit="10 per minute")
        def nope() -> None: ...

    assert "\n" not in str(caught.value)


def test_a_rate_limited_task_runs_at_its_rate_per_worker_and_is_never_retried(app: App) -> None:
    """Two slots, one bucket: with the clock stopped only the first of three runs, whatever the
    number of slots; each later one runs when its token is due, on its first delivery."""

    @app.task(rate_limit="2/m")
    def report(n: int) -> int:
        return n

    handles = [report.delay(n) for n in range(3)]
    clock = FakeClock()
    worker = Worker(app, concurrency=2, poll_wait_s=0.05)
    worker.rate_limits = RateLimits(app, clock)
    thread = threading.Thread(target=worker.run, daemon=True)
    thread.start()
    try:
        wait_for(lambda: handles[0].ready())
        assert [h.ready() for h in handles[1:]] == [False, False]
        clock.now += 30  # 2/m: a token every 30 s
        wait_for(lambda: handles[1].ready())
        assert not handles[2].ready()
        clock.now += 30
        wait_for(lambda: handles[2].ready())
    finally:
        worker.stop()
        thread.join(30)
    assert [h.get(timeout=1) for h in handles] == [0, 1, 2]
    assert all(h.state == states.SUCCESS and h.record and h.record.attempts == 1 for h in handles)


def test_worker_max_tasks_per_child_is_the_process_pools(app: App) -> None:
    app.conf.worker_max_tasks_per_child = 100
    app.conf.worker_max_memory_per_child = 200_000
    assert (app.settings.max_tasks_per_child, app.settings.max_memory_per_child) == (100, 200_000)

    @app.task()
    def noop() -> None: ...

    with pytest.raises(ConfigurationError, match=r"need the process pool \(--pool process or prefork\), not threads"):
        Worker(app, pool="threads")


def test_worker_disable_rate_limits_and_worker_pool(app: App) -> None:
    app.conf.update(worker_disable_rate_limits=True, worker_pool="solo")

    @app.task(rate_limit="1/h")
    def report() -> None: ...

    assert app.settings.disable_rate_limits and app.settings.pool == "solo"
    assert not RateLimits(app).active()  # the bucket is never consulted
    worker = Worker(app)
    assert (worker.pool, worker.concurrency) == ("threads", 1)


def test_a_class_based_task_sets_rate_limit_as_a_class_attribute(app: App) -> None:
    from cloudq import Task

    class FetchPage(Task):  # type: ignore[type-arg]
        name = "tasks.fetch_page"
        rate_limit = "100/h"

        def run(self, url: str) -> str:
            return url

    task = app.register_task(FetchPage())
    assert task.rate_limit == "100/h" and task.rate_per_s == pytest.approx(100 / 3600)
