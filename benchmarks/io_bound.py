"""I/O-bound tasks: N tasks that each wait 50 ms, one worker process, cloudq beside taskiq and Celery.

The work is waiting, so a worker's throughput is bounded by its concurrency: c tasks every 50 ms,
the *ceiling* (20,000/s at c=1000, 2,000/s at c=100). The benchmark reports tasks/s, the fraction
of that ceiling reached and the ratio to each peer of the same run.

  c=1000, ``async def`` tasks (``await asyncio.sleep``)
      cloudq-async     a Worker with ``pool="async"``, concurrency 1000 (what ``cloudq worker
                       --pool async -c 1000`` runs)
      taskiq           taskiq's worker loop (its ``Receiver``, as ``taskiq worker`` runs it) with
                       ``max_async_tasks=1000`` and its other defaults
      celery-gevent    Celery's I/O pool: gevent, concurrency 1000 (the task's ``time.sleep`` is
                       gevent's, cooperative, after ``monkey.patch_all()``)
  c=100, sync tasks (``time.sleep``) in threads
      cloudq-threads   ``pool="threads"``, concurrency 100
      taskiq-threads   sync tasks in taskiq's thread pool of 100 (``max_async_tasks=100``)
      celery-threads   Celery's threads pool, concurrency 100

How it is fair: every system runs in one fresh interpreter with its broker and its result store in
memory in that process (cloudq ``memory://`` for both; taskiq a queue broker whose ``listen`` reads
an in-process queue, the same shape as cloudq's memory broker, and its ``InmemoryResultBackend``;
Celery kombu's ``memory://`` transport, polled every 10 ms instead of its default 1 s, and a
key-value result backend on a dict, as ``cache+memory://`` but shared by all threads). Results are on everywhere and a sample is read back after the
run. All N tasks are enqueued before the worker starts; the clock runs from the first task body's
start to the last one's end, so sending costs nothing and the figure is the worker's alone. Each
task validates one ``int`` argument (taskiq's default parses it too).

    python benchmarks/io_bound.py [--n 10000] [--repeat 3] [--only cloudq-async,taskiq] [--quick]

Exit status 0 when every case that could run ran (a missed target is reported, not an error): a
peer that is not installed prints "skipped: not installed".
"""

from __future__ import annotations

import argparse
import asyncio
import importlib.util
import json
import os
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from _harness import HERE, Completions, Measurement, child_env, median_run, python, select_cases

SLEEP_S = 0.05
SAMPLE = 100  # results read back after a run
SEND_BATCH = 500


class Span(Completions):
    """Completions, plus when the first task body started (the clock's start) and the process's
    CPU time over the same span: on a busy machine CPU per task moves far less than tasks/s."""

    def __init__(self, n: int) -> None:
        super().__init__(n)
        self.first_at = 0.0
        self.cpu_at_first = 0.0
        self.cpu_at_end = 0.0

    def begin(self) -> None:
        if not self.first_at:
            self.first_at = time.perf_counter()
            self.cpu_at_first = time.process_time()

    def hit(self) -> None:
        super().hit()
        if self.done.is_set() and not self.cpu_at_end:
            self.cpu_at_end = time.process_time()

    def seconds(self, timeout: float, what: str) -> float:
        return self.wait(timeout, what) - self.first_at

    def result(self, seconds: float) -> tuple[float, float]:
        """(wall seconds, CPU seconds) of the span."""
        return seconds, self.cpu_at_end - self.cpu_at_first


@dataclass(frozen=True)
class Run(Measurement):
    cpu_s: float = 0.0  # the process's CPU seconds over the same span

    @property
    def cpu_us_per_task(self) -> float:
        return self.cpu_s / self.n * 1e6


@dataclass(frozen=True)
class Case:
    name: str
    concurrency: int
    needs: tuple[str, ...]  # importable modules the case needs (peers may not be installed)
    system: str


CASES = {
    case.name: case
    for case in (
        Case("cloudq-async", 1000, ("cloudq",), "cloudq pool=async -c 1000"),
        Case("taskiq", 1000, ("taskiq",), "taskiq Receiver max_async_tasks=1000"),
        Case("celery-gevent", 1000, ("celery", "gevent"), "Celery -P gevent -c 1000"),
        Case("cloudq-threads", 100, ("cloudq",), "cloudq pool=threads -c 100"),
        Case("taskiq-threads", 100, ("taskiq",), "taskiq sync tasks, 100 threads"),
        Case("celery-threads", 100, ("celery",), "Celery -P threads -c 100"),
    )
}
PAIRS = [
    ("cloudq-async", "taskiq"),
    ("cloudq-async", "celery-gevent"),
    ("cloudq-async", "celery-threads"),
    ("cloudq-threads", "taskiq-threads"),
    ("cloudq-threads", "celery-threads"),
]


def ceiling(case: Case, sleep_s: float) -> float:
    return case.concurrency / sleep_s


# -- cloudq ---------------------------------------------------------------------------------------


def run_cloudq(n: int, timeout: float, sleep_s: float, pool: str, concurrency: int) -> tuple[float, float]:
    from cloudq import App
    from cloudq.runtime.worker import Worker

    span = Span(n)
    app = App("bench", broker="memory://", results="memory://")
    if pool == "async":

        @app.task(name="bench.io")
        async def io(i: int) -> int:
            span.begin()
            await asyncio.sleep(sleep_s)
            span.hit()
            return 1

        task: Any = io
    else:

        @app.task(name="bench.io")
        def io_sync(i: int) -> int:
            span.begin()
            time.sleep(sleep_s)
            span.hit()
            return 1

        task = io_sync
    handles = []
    for start in range(0, n, SEND_BATCH):
        handles += task.send_each(range(start, min(start + SEND_BATCH, n)))
    worker = Worker(app, concurrency=concurrency, pool=pool)
    thread = threading.Thread(target=worker.run, name="cloudq-worker", daemon=True)
    thread.start()
    try:
        seconds = span.seconds(timeout, f"cloudq {pool}")
        for handle in handles[:: max(1, n // SAMPLE)]:
            if handle.get(timeout=30) != 1:
                raise AssertionError(f"cloudq: task {handle.id} returned a wrong result")
    finally:
        worker.stop()
        thread.join(30)
    return span.result(seconds)


# -- taskiq ---------------------------------------------------------------------------------------


def run_taskiq(n: int, timeout: float, sleep_s: float, sync: bool, concurrency: int) -> tuple[float, float]:
    from concurrent.futures import ThreadPoolExecutor

    from taskiq import AsyncBroker
    from taskiq.brokers.inmemory_broker import InmemoryResultBackend
    from taskiq.message import BrokerMessage
    from taskiq.receiver import Receiver

    class QueueBroker(AsyncBroker):
        """An in-process queue: ``kick`` puts the message, ``listen`` (the worker's side) gets it,
        as cloudq's memory broker does (taskiq's InMemoryBroker runs a task inside ``kick``)."""

        def __init__(self) -> None:
            super().__init__()
            self.queue: asyncio.Queue[bytes] = asyncio.Queue()

        async def kick(self, message: BrokerMessage) -> None:
            self.queue.put_nowait(message.message)

        async def listen(self) -> Any:
            while True:
                yield await self.queue.get()

    span = Span(n)
    broker = QueueBroker().with_result_backend(InmemoryResultBackend(max_stored_results=-1))
    if sync:

        @broker.task(task_name="bench.io")
        def io_sync(i: int) -> int:
            span.begin()
            time.sleep(sleep_s)
            span.hit()
            return 1

        task: Any = io_sync
    else:

        @broker.task(task_name="bench.io")
        async def io(i: int) -> int:
            span.begin()
            await asyncio.sleep(sleep_s)
            span.hit()
            return 1

        task = io

    async def main() -> tuple[float, float]:
        await broker.startup()
        handles = [await task.kiq(i) for i in range(n)]
        finish = asyncio.Event()
        with ThreadPoolExecutor(concurrency) as pool:
            receiver = Receiver(broker, executor=pool, max_async_tasks=concurrency, run_startup=False)
            listening = asyncio.create_task(receiver.listen(finish))
            try:
                started = time.monotonic()
                while not span.done.is_set():
                    if time.monotonic() - started > timeout:
                        raise TimeoutError(f"taskiq: not all {n} tasks ran within {timeout:.0f}s")
                    await asyncio.sleep(0.01)
                for handle in handles[:: max(1, n // SAMPLE)]:
                    result = await handle.wait_result(timeout=30)
                    if result.return_value != 1:
                        raise AssertionError(f"taskiq: task {handle.task_id} returned {result.return_value!r}")
            finally:
                finish.set()
                listening.cancel()
                try:
                    await listening
                except (asyncio.CancelledError, Exception):
                    pass
        return span.result(span.finished_at - span.first_at)

    return asyncio.run(main())


# -- Celery -----------------------------------------------------------------------------------------


def run_celery(n: int, timeout: float, sleep_s: float, pool: str, concurrency: int) -> tuple[float, float]:
    """``pool="gevent"`` needs ``gevent.monkey.patch_all()`` before anything else is imported:
    its child interpreter is started that way (see ``child_command``)."""
    import logging

    from celery import Celery
    from celery.backends.base import KeyValueStoreBackend
    from celery.contrib.testing.worker import start_worker

    store: dict[Any, Any] = {}

    class SharedMemoryBackend(KeyValueStoreBackend):  # type: ignore[misc]
        """A dict every thread shares: Celery's ``cache+memory://`` keeps one per backend object,
        and the app's backend is per thread (the worker's writes are invisible to this thread's
        reads), holding only 5,000 results."""

        def get(self, key: Any) -> Any:
            return store.get(key)

        def mget(self, keys: Any) -> list[Any]:
            return [store.get(key) for key in keys]

        def set(self, key: Any, value: Any) -> None:
            store[key] = value

        def delete(self, key: Any) -> None:
            store.pop(key, None)

    logging.getLogger("celery").setLevel(logging.ERROR)
    span = Span(n)
    app = Celery("bench", broker="memory://", backend=SharedMemoryBackend, set_as_current=False)
    app.conf.update(
        broker_transport_options={"polling_interval": 0.01},
        worker_hijack_root_logger=False,
        broker_connection_retry_on_startup=True,
    )

    @app.task(name="bench.io")
    def io(i: int) -> int:
        span.begin()
        time.sleep(sleep_s)  # gevent's sleep under the gevent pool: it yields to the other greenlets
        span.hit()
        return 1

    handles = [io.delay(i) for i in range(n)]
    with start_worker(app, pool=pool, concurrency=concurrency, perform_ping_check=False, loglevel="ERROR"):
        seconds = span.seconds(timeout, f"celery {pool}")
        for handle in handles[:: max(1, n // SAMPLE)]:
            if handle.get(timeout=30) != 1:
                raise AssertionError(f"celery: task {handle.id} returned a wrong result")
    return span.result(seconds)


RUNNERS: dict[str, Callable[[int, float, float], tuple[float, float]]] = {
    "cloudq-async": lambda n, t, s: run_cloudq(n, t, s, "async", 1000),
    "cloudq-threads": lambda n, t, s: run_cloudq(n, t, s, "threads", 100),
    "taskiq": lambda n, t, s: run_taskiq(n, t, s, False, 1000),
    "taskiq-threads": lambda n, t, s: run_taskiq(n, t, s, True, 100),
    "celery-gevent": lambda n, t, s: run_celery(n, t, s, "gevent", 1000),
    "celery-threads": lambda n, t, s: run_celery(n, t, s, "threads", 100),
}


# -- the parent: one fresh interpreter per case ------------------------------------------------------


def installed(case: Case) -> bool:
    return all(importlib.util.find_spec(name) is not None for name in case.needs)


def child_command(name: str, n: int, timeout: float, sleep_s: float) -> list[str]:
    args = ["--run-case", name, "--n", str(n), "--timeout", str(timeout), "--sleep", str(sleep_s)]
    if name == "celery-gevent":  # patched before anything else is imported
        code = f"from gevent import monkey; monkey.patch_all(); import io_bound, sys; sys.exit(io_bound.main({args!r}))"
        return [python(), "-c", code]
    return [python(), str(HERE / "io_bound.py"), *args]


def run_child(name: str, n: int, timeout: float, sleep_s: float) -> Run:
    """Run one case in a fresh interpreter; its last stdout line is the measurement as JSON."""
    proc = subprocess.run(
        child_command(name, n, timeout, sleep_s),
        cwd=HERE,
        env=child_env(),
        capture_output=True,
        text=True,
        timeout=timeout * 2 + 120,
    )
    lines = [line for line in proc.stdout.splitlines() if line.startswith("{")]
    if proc.returncode != 0 or not lines:
        raise RuntimeError(f"case {name} failed (exit {proc.returncode}):\n{(proc.stdout + proc.stderr)[-3000:]}")
    data = json.loads(lines[-1])
    return Run(CASES[name].system, data["n"], data["seconds"], cpu_s=data["cpu_s"])


def report(results: dict[str, list[Run]], sleep_s: float) -> None:
    rows = {name: median_run(runs) for name, runs in results.items()}
    print(f"{'case':16} {'system':38} {'tasks/s':>9} {'ceiling':>8} {'reached':>8} {'CPU µs/task':>12}  runs")
    for name, m in rows.items():
        case = CASES[name]
        runs = ", ".join(f"{r.per_second:,.0f}" for r in results[name])
        top = ceiling(case, sleep_s)
        reached = m.per_second / top
        cpu = m.cpu_us_per_task
        print(f"{name:16} {case.system:38} {m.per_second:9,.0f} {top:8,.0f} {reached:8.1%} {cpu:12,.0f}  {runs}")
    print()
    for ours, peer in PAIRS:
        if ours in rows and peer in rows:
            print(f"ratio {ours} / {peer}: {rows[ours].per_second / rows[peer].per_second:.2f}x")
    async_peers = [rows[p] for p in ("taskiq", "celery-gevent", "celery-threads") if p in rows]
    if "cloudq-async" in rows and async_peers:
        best = max(async_peers, key=lambda m: m.per_second)
        ratio = rows["cloudq-async"].per_second / best.per_second
        verdict = "met" if ratio >= 1 else "MISSED"
        print(f"target cloudq-async >= the best peer ({best.system}): {ratio:.2f}x, {verdict}")


def select(only: str | None) -> list[str]:
    return select_cases(only, list(CASES))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--n", type=int, help="tasks per case (default 10,000; 2,000 with --quick)")
    parser.add_argument("--sleep", type=float, default=SLEEP_S, help="seconds each task waits (default 0.05)")
    parser.add_argument("--only", help=f"comma-separated case names or prefixes: {', '.join(CASES)}")
    parser.add_argument("--quick", action="store_true", help="a CI smoke run: small N, one round")
    parser.add_argument("--repeat", type=int, default=1, help="interleaved rounds; the median is reported")
    parser.add_argument("--timeout", type=float, default=120.0, help="seconds a case may take")
    parser.add_argument("--run-case", help=argparse.SUPPRESS)  # internal: run one case here
    opts = parser.parse_args(argv)
    n = opts.n or (2_000 if opts.quick else 10_000)

    if opts.run_case:
        seconds, cpu_s = RUNNERS[opts.run_case](n, opts.timeout, opts.sleep)
        print(json.dumps({"n": n, "seconds": seconds, "cpu_s": cpu_s}), flush=True)
        return 0

    names = select(opts.only)
    print(
        f"io_bound: N={n:,} tasks of {opts.sleep * 1000:g} ms per case, {opts.repeat} round(s), "
        f"{os.cpu_count()} CPUs, load average before {os.getloadavg()[0]:.2f}"
    )
    results: dict[str, list[Run]] = {}
    failed = False
    for name in [name for name in names if not installed(CASES[name])]:
        print(f"  {name}: skipped: not installed ({', '.join(CASES[name].needs)})")
    names = [name for name in names if installed(CASES[name])]
    for _ in range(opts.repeat):
        for name in names:
            try:
                m = run_child(name, n, opts.timeout, opts.sleep)
            except (RuntimeError, subprocess.TimeoutExpired) as exc:
                failed = True
                print(f"  {name}: FAILED\n{exc}", file=sys.stderr)
                continue
            results.setdefault(name, []).append(m)
            print(
                f"  {name}: {m.per_second:,.0f} tasks/s ({m.seconds:.2f} s, {m.cpu_us_per_task:,.0f} µs CPU/task)",
                flush=True,
            )
    print(f"load average after: {os.getloadavg()[0]:.2f} (figures from a busy machine are noisy)\n")
    report(results, opts.sleep)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
