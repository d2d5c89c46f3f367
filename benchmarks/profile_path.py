"""Profile cloudq's per-task path on the memory backend, one stage at a time.

Stages, each timed without the profiler first (µs per task), then profiled with cProfile:

  produce   ``noop.delay(i)`` N times into a memory broker (validation, envelope, send)
  map       ``noop.send_each(range(N))`` in batches of 100 (one send call per batch)
  execute   ``executor.execute(delivery)`` for N received deliveries, then acked in batches
            (decode, validation, call, result write) with no worker threads around it
  worker    the end-to-end overhead case of benchmarks/overhead.py (producer thread + Worker;
            timed only: cProfile sees one thread)
  sqlite-produce / sqlite-map / sqlite-execute   the same stages on sqlite:// broker and results

    python benchmarks/profile_path.py [--n 20000] [--stage produce,execute] [--top 25] [--sort tottime]
"""

from __future__ import annotations

import argparse
import cProfile
import io
import pstats
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from _cloudq import define
from _harness import BATCH

from cloudq import App

QUEUE = "default"


def _app(url: str, ignore_result: bool = False) -> tuple[App, Any]:
    app = App("profile", broker=url, results=url)
    noop = define(app, ignore_result=ignore_result)
    noop.delay(0)  # build the validator and the backends outside the measurement
    app.broker.purge(QUEUE)
    return app, noop


def stage_produce(n: int, url: str) -> Callable[[], None]:
    app, noop = _app(url)

    def run() -> None:
        delay = noop.delay
        for i in range(n):
            delay(i)
        app.broker.purge(QUEUE)

    return run


def stage_map(n: int, url: str) -> Callable[[], None]:
    app, noop = _app(url)

    def run() -> None:
        for start in range(0, n, BATCH):
            noop.send_each(range(start, min(start + BATCH, n)))
        app.broker.purge(QUEUE)

    return run


def stage_execute(n: int, url: str) -> Callable[[], None]:
    app, noop = _app(url)
    executor = app.executor

    def run() -> None:
        broker = app.broker
        for start in range(0, n, BATCH):
            noop.send_each(range(start, min(start + BATCH, n)))
        batch_size = broker.limits.max_batch
        left = n
        while left:
            deliveries = broker.receive(QUEUE, min(batch_size, left), 60.0)
            if not deliveries:
                raise RuntimeError("broker returned nothing while messages were left")
            for delivery in deliveries:
                executor.execute(delivery)
            broker.ack(deliveries)
            left -= len(deliveries)

    return run


def stage_worker(n: int, url: str) -> Callable[[], None]:
    def run() -> None:
        import _cloudq

        m = _cloudq.memory(n, 120.0)
        print(f"   worker case alone: {m.us_per_task:.1f} µs per task ({m.per_second:,.0f}/s); the stage time below")
        print("   also counts starting and stopping the worker")

    return run


STAGES: dict[str, tuple[Callable[[int, str], Callable[[], None]], str]] = {
    "produce": (stage_produce, "memory://"),
    "map": (stage_map, "memory://"),
    "execute": (stage_execute, "memory://"),
    "worker": (stage_worker, "memory://"),
    "sqlite-produce": (stage_produce, "sqlite"),
    "sqlite-map": (stage_map, "sqlite"),
    "sqlite-execute": (stage_execute, "sqlite"),
}
# what an `execute` run also spends producing its input, subtracted from its time
INPUT_COST = {"execute": "map", "sqlite-execute": "sqlite-map"}


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--n", type=int, default=20_000)
    parser.add_argument("--stage", default="produce,map,execute,worker", help=f"comma-separated: {', '.join(STAGES)}")
    parser.add_argument("--top", type=int, default=25)
    parser.add_argument("--sort", default="tottime", choices=["tottime", "cumulative"])
    parser.add_argument("--no-profile", action="store_true", help="timings only")
    opts = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="cloudq-profile-") as tmp:
        for name in [s.strip() for s in opts.stage.split(",") if s.strip()]:
            make, url = STAGES[name]
            if url == "sqlite":
                url = f"sqlite:///{Path(tmp).resolve() / (name + '.db')}"
            run = make(opts.n, url)
            started = time.perf_counter()
            run()
            elapsed = time.perf_counter() - started
            print(f"== {name}: {elapsed / opts.n * 1e6:.1f} µs per task ({opts.n / elapsed:,.0f}/s, no profiler)")
            if name in INPUT_COST:
                print(f"   (includes producing the input with map(); see the '{INPUT_COST[name]}' stage)")
            if opts.no_profile or name == "worker":  # cProfile sees only this thread: timings only
                continue
            run = make(opts.n, url)
            profiler = cProfile.Profile()
            profiler.enable()
            run()
            profiler.disable()
            out = io.StringIO()
            pstats.Stats(profiler, stream=out).sort_stats(opts.sort).print_stats(opts.top)
            print(out.getvalue())


if __name__ == "__main__":
    main()
