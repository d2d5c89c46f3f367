"""The peers of the overhead benchmark, run the same way as cloudq in the same run.

- Celery 5 on kombu's in-memory transport, one solo worker in a thread (celery's own
  ``start_worker`` test harness), results off; completions counted in the task body.
- dramatiq StubBroker with a Worker of one thread; completions counted in the task body.
- huey SqliteHuey (WAL) with a consumer of two worker processes; completions counted from its
  result store (the task returns a non-None value, so each run stores one). SQLite's
  ``synchronous`` is set to cloudq's default (NORMAL), or left at huey's default (FULL).

The peers are tuned where a default would only measure sleeping: kombu's memory transport polls
every 10 ms (default 1 s) and huey's workers back off from 5 ms to at most 50 ms (default 0.1 s
to 10 s) when they find the queue empty.
"""

from __future__ import annotations

import functools
import logging
import sys
import tempfile
from pathlib import Path
from typing import Any

from _harness import (
    WARMUP,
    Completions,
    Measurement,
    Producer,
    child_env,
    each,
    python,
    run_in_process,
    spawn,
    stop,
    wait_until,
)

HUEY_WORKERS = 2


def celery_memory(n: int, timeout: float) -> Measurement:
    from celery import Celery
    from celery.contrib.testing.worker import start_worker

    done = Completions(n, warmup=WARMUP)
    app = Celery("bench", broker="memory://", set_as_current=False)
    app.conf.update(
        task_ignore_result=True,
        broker_transport_options={"polling_interval": 0.01},
        worker_hijack_root_logger=False,
        broker_connection_retry_on_startup=True,
    )

    @app.task(name="bench.noop")
    def noop(i: int) -> int:
        done.hit()
        return 1

    with start_worker(app, pool="solo", concurrency=1, perform_ping_check=False, loglevel="ERROR"):
        seconds = run_in_process(noop.delay, done, n, timeout, "celery memory://")
    return Measurement("celery memory:// 1 solo worker, results off", n, seconds)


def dramatiq_stub(n: int, timeout: float) -> Measurement:
    import dramatiq
    from dramatiq.brokers.stub import StubBroker

    logging.getLogger("dramatiq").setLevel(logging.ERROR)
    done = Completions(n, warmup=WARMUP)
    broker = StubBroker()
    broker.emit_after("process_boot")

    @dramatiq.actor(broker=broker, actor_name="bench_noop", max_retries=0)
    def noop(i: int) -> int:
        done.hit()
        return 1

    worker = dramatiq.Worker(broker, worker_threads=1, worker_timeout=100)
    worker.start()
    try:
        seconds = run_in_process(noop.send, done, n, timeout, "dramatiq StubBroker")
    finally:
        worker.stop()
        broker.close()
    return Measurement("dramatiq StubBroker 1 worker thread", n, seconds)


# -- huey: the consumer runs in its own processes, so the app is built from a module function ---


def make_huey(path: str, synchronous: str = "normal") -> tuple[Any, Any]:
    """A SqliteHuey on ``path`` whose connections use ``PRAGMA synchronous`` = ``synchronous``.

    huey's own default is FULL (an fsync per commit); cloudq's SQLite backend defaults to NORMAL
    (durable across process crashes, not power loss), so the main comparison sets huey to NORMAL
    too and ``?synchronous=full`` is compared with huey's default.
    """
    from huey import SqliteHuey
    from huey.storage import SqliteStorage

    class Storage(SqliteStorage):
        def _create_connection(self) -> Any:
            conn = super()._create_connection()
            conn.execute(f"PRAGMA synchronous={synchronous}")
            return conn

    # busy timeout as long as cloudq's (huey's default of 5 s fails its producer under load at FULL)
    huey = SqliteHuey("bench", filename=path, storage_class=Storage, timeout=30)

    @huey.task(name="bench_noop")
    def noop(i: int) -> int:
        return 1

    return huey, noop


def huey_consumer(path: str, workers: int, synchronous: str) -> None:
    """Child process entry point: a huey consumer with ``workers`` worker processes."""
    logging.basicConfig(level=logging.WARNING)
    huey, _ = make_huey(path, synchronous)
    consumer = huey.create_consumer(
        workers=workers, worker_type="process", periodic=False, initial_delay=0.005, backoff=1.15, max_delay=0.05
    )
    consumer.run()


def huey_sqlite(n: int, timeout: float, synchronous: str = "normal", workdir: str | None = None) -> Measurement:
    with tempfile.TemporaryDirectory(prefix="bench-huey-", dir=workdir) as tmp:
        path = str(Path(tmp) / "huey.db")
        huey, noop = make_huey(path, synchronous)
        code = f"import _peers; _peers.huey_consumer({path!r}, {HUEY_WORKERS}, {synchronous!r})"
        consumer = spawn([python(), "-c", code], tmp, child_env(), Path(tmp) / "consumer.log")
        try:
            for i in range(WARMUP):  # the consumer is up and its workers polling
                noop(i)
            wait_until(lambda: huey.result_count() >= WARMUP, 60, "huey warm-up")
            huey.storage.flush_results()
            producer = Producer(each(noop), n)
            producer.start()
            producer.finish(timeout)
            end = wait_until(lambda: huey.result_count() >= n, timeout, "huey SqliteHuey")
        except BaseException:
            sys.stderr.write((Path(tmp) / "consumer.log").read_text()[-2000:])
            raise
        finally:
            stop([consumer])
    system = f"huey SqliteHuey {HUEY_WORKERS} worker processes, synchronous={synchronous}"
    return Measurement(system, n, end - producer.started_at)


PEERS = {
    "celery": celery_memory,
    "dramatiq": dramatiq_stub,
    "huey": huey_sqlite,
    "huey-full": functools.partial(huey_sqlite, synchronous="full"),
}
