"""cloudq's cases of the overhead benchmark.

- memory:// broker and results, one Worker with one thread slot running in this process, a
  producer thread calling ``.delay()`` meanwhile; completions counted in the task body (as for
  Celery and dramatiq). Argument validation is always on; results on, or ``ignore_result=True``.
- sqlite (one WAL file for broker and results, the backend's defaults) with two
  ``cloudq worker`` processes of one thread slot each, while this process sends with ``.delay()``
  or with ``task.send_each()`` in batches; done when the queue has nothing ready, delayed or in flight.
"""

from __future__ import annotations

import os
import random
import tempfile
import threading
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

from _harness import (
    BATCH,
    LOGLEVEL_ENV,
    WARMUP,
    Completions,
    Measurement,
    Producer,
    child_env,
    python,
    run_in_process,
    spawn,
    stop,
    wait_until,
)

from cloudq import App, AsyncResult, Task

TASK_NAME = "bench.noop"
SQLITE_WORKERS = 2
WORKER_APP_ENV = "BENCH_WORKER_APP"  # another app module for the workers, e.g. one trying out a patch
SAMPLE = 100  # results read back after a run, to prove the tasks really ran


def define(app: App, on_run: Callable[[], None] | None = None, ignore_result: bool = False) -> Task[Any, Any]:
    """The benchmark task on ``app``: a no-op with one validated int argument."""
    if on_run is None:

        @app.task(name=TASK_NAME, ignore_result=ignore_result)
        def noop(i: int) -> int:
            return 1

    else:

        @app.task(name=TASK_NAME, ignore_result=ignore_result)
        def noop(i: int) -> int:
            on_run()
            return 1

    return noop


def _sender(task: Task[Any, Any], batched: bool, handles: list[AsyncResult]) -> Callable[[Iterable[int]], None]:
    if batched:

        def send_batch(chunk: Iterable[int]) -> None:
            handles.extend(task.send_each(chunk))

        return send_batch

    def send_each(chunk: Iterable[int]) -> None:
        delay, keep = task.delay, handles.append
        for i in chunk:
            keep(delay(i))

    return send_each


def _check_results(handles: list[AsyncResult], what: str) -> None:
    for handle in random.sample(handles, min(SAMPLE, len(handles))):
        value = handle.get(timeout=30)
        if value != 1:
            raise AssertionError(f"{what}: task {handle.id} returned {value!r}")


def memory(n: int, timeout: float, ignore_result: bool = False) -> Measurement:
    from cloudq.runtime.worker import Worker

    done = Completions(n, warmup=WARMUP)
    app = App("bench", broker="memory://", results="memory://")
    noop = define(app, done.hit, ignore_result)
    worker = Worker(app, concurrency=1, pool="threads")
    thread = threading.Thread(target=worker.run, name="cloudq-worker", daemon=True)
    thread.start()
    handles: list[AsyncResult] = []
    try:
        seconds = run_in_process(noop.delay, done, n, timeout, "cloudq memory", _sender(noop, False, handles))
        if not ignore_result:
            _check_results(handles, "cloudq memory")
    finally:
        worker.stop()
        thread.join(30)
    results = "ignore_result" if ignore_result else "results on"
    return Measurement(f"cloudq memory:// 1 worker thread, {results}", n, seconds)


def sqlite(
    n: int, timeout: float, batched: bool = False, synchronous: str = "normal", workdir: str | None = None
) -> Measurement:
    with tempfile.TemporaryDirectory(prefix="bench-cloudq-", dir=workdir) as tmp:
        url = f"sqlite:///{Path(tmp).resolve() / 'bench.db'}?synchronous={synchronous}"
        env = child_env(CLOUDQ_BROKER=url, CLOUDQ_RESULTS=url)
        app = App("bench", broker=url, results=url)
        noop = define(app)
        queue = app.queue_for(noop)
        loglevel = os.environ.get(LOGLEVEL_ENV, "WARNING")
        app_path = os.environ.get(WORKER_APP_ENV, "_cloudq_app:app")
        cmd = [python(), "-m", "cloudq", "worker", "-A", app_path, "-c", "1", "--loglevel", loglevel]
        workers = [spawn(cmd, tmp, env, Path(tmp) / f"worker{i}.log") for i in range(SQLITE_WORKERS)]
        handles: list[AsyncResult] = []

        def drained() -> bool:
            stats = app.broker.stats(queue)
            if stats.dead_lettered:
                raise AssertionError(f"cloudq sqlite: {stats.dead_lettered} message(s) dead-lettered")
            return not (stats.ready or stats.in_flight or stats.delayed)

        try:
            for warm in [noop.delay(i) for i in range(SQLITE_WORKERS * 2)]:
                warm.get(timeout=60)
            producer = Producer(_sender(noop, batched, handles), n, BATCH if batched else 1)
            producer.start()
            producer.finish(timeout)
            end = wait_until(drained, timeout, "cloudq sqlite")
            _check_results(handles, "cloudq sqlite")
        except BaseException:
            for log in sorted(Path(tmp).glob("worker*.log")):
                print(f"--- {log.name}\n{log.read_text()[-2000:]}")
            raise
        finally:
            stop(workers)
            app.close()
    how = f"send_each() batches of {BATCH}" if batched else "delay()"
    system = f"cloudq sqlite {SQLITE_WORKERS} worker processes, {how}, synchronous={synchronous}"
    if loglevel != "WARNING":
        system += f", log {loglevel}"
    return Measurement(system, n, end - producer.started_at)
