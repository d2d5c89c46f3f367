"""Shared pieces of the overhead benchmark: the measurement record, the completion signal that
in-process task bodies share, a concurrent producer thread, and child-process helpers.

Every case measures the same thing: wall time from the first enqueue to the last task done,
with a producer enqueueing while the workers work, and a no-op task ``noop(i: int) -> int``.
"""

from __future__ import annotations

import itertools
import os
import signal
import statistics
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar

HERE = Path(__file__).resolve().parent
BATCH = 100  # tasks per batched send (task.send_each / send_many), where a system has one
LOGLEVEL_ENV = "BENCH_WORKER_LOGLEVEL"  # --loglevel of the cloudq worker processes (WARNING unless set)
WARMUP = 10  # tasks run before the clock starts: lazy set-up (validators, connections) is not timed


@dataclass(frozen=True)
class Measurement:
    system: str
    n: int
    seconds: float
    note: str = ""

    @property
    def per_second(self) -> float:
        return self.n / self.seconds

    @property
    def us_per_task(self) -> float:
        return self.seconds / self.n * 1e6


M = TypeVar("M", bound=Measurement)


def median_run(runs: Sequence[M]) -> M:
    """The run whose tasks/s is closest to the median of ``runs``."""
    rate = statistics.median(m.per_second for m in runs)
    return min(runs, key=lambda m: abs(m.per_second - rate))


def select_cases(only: str | None, names: Sequence[str]) -> list[str]:
    """The case names ``--only`` picks (comma-separated names or prefixes), in ``names`` order."""
    if not only:
        return list(names)
    wanted = [w.strip() for w in only.split(",") if w.strip()]
    unknown = [w for w in wanted if not any(name.startswith(w) for name in names)]
    if unknown:
        raise SystemExit(f"unknown case(s) {', '.join(unknown)}; cases: {', '.join(names)}")
    # a case's full name selects that case alone ("huey" is not also "huey-full")
    return [name for name in names if any(name == w or (w not in names and name.startswith(w)) for w in wanted)]


class Completions:
    """Counts task bodies run in this process; records when the last one ran.

    The first ``warmup`` runs are the warm-up (``wait_warm``), the ``n`` after them the measured
    ones. ``next()`` on an itertools.count is atomic under the GIL, so worker threads need no
    lock; the cost (well under 1 µs) is the same for every in-process system.
    """

    def __init__(self, n: int, warmup: int = 0) -> None:
        self.n = n
        self.warmup = warmup
        self._count = itertools.count(1)
        self.warm = threading.Event()
        self.done = threading.Event()
        self.finished_at = 0.0
        if not warmup:
            self.warm.set()

    def hit(self) -> None:
        count = next(self._count)
        if count == self.warmup:
            self.warm.set()
        elif count == self.n + self.warmup:
            self.finished_at = time.perf_counter()
            self.done.set()

    def wait_warm(self, timeout: float, what: str) -> None:
        if not self.warm.wait(timeout):
            raise TimeoutError(f"{what}: the {self.warmup} warm-up tasks did not run within {timeout:.0f}s")

    def wait(self, timeout: float, what: str) -> float:
        if not self.done.wait(timeout):
            raise TimeoutError(f"{what}: not all {self.n} tasks ran within {timeout:.0f}s")
        return self.finished_at


class Producer(threading.Thread):
    """Runs ``send(chunk)`` over ``items`` split in chunks, recording when it started and ended."""

    def __init__(self, send: Callable[[range], object], n: int, chunk: int = 1) -> None:
        super().__init__(name="producer", daemon=True)
        self._send = send
        self._chunks = [range(i, min(i + chunk, n)) for i in range(0, n, chunk)]
        self.started_at = 0.0
        self.ended_at = 0.0
        self.error: BaseException | None = None

    def run(self) -> None:
        self.started_at = time.perf_counter()
        try:
            for chunk in self._chunks:
                self._send(chunk)
        except BaseException as exc:  # reported by the case, not lost in a thread
            self.error = exc
        self.ended_at = time.perf_counter()

    def finish(self, timeout: float = 600.0) -> None:
        self.join(timeout)
        if self.error is not None:
            raise RuntimeError(f"producer failed: {self.error!r}") from self.error


def each(send_one: Callable[[int], object]) -> Callable[[Iterable[int]], None]:
    """A chunk sender that sends the items of a chunk one call at a time."""

    def send(chunk: Iterable[int]) -> None:
        for i in chunk:
            send_one(i)

    return send


def run_in_process(
    send_one: Callable[[int], object],
    done: Completions,
    n: int,
    timeout: float,
    what: str,
    send_chunk: Callable[[Iterable[int]], object] | None = None,
) -> float:
    """Warm up with ``done.warmup`` tasks, then time ``n`` sent by a producer thread while this
    process's worker runs them: seconds from the first send to the last task body."""
    for i in range(done.warmup):
        send_one(i)
    done.wait_warm(timeout, f"{what} warm-up")
    producer = Producer(send_chunk or each(send_one), n)
    producer.start()
    end = done.wait(timeout, what)
    producer.finish()
    return end - producer.started_at


def wait_until(condition: Callable[[], bool], timeout: float, what: str, interval: float = 0.01) -> float:
    """Poll ``condition`` until true; return the time it first held."""
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise TimeoutError(f"{what}: not done within {timeout:.0f}s")
        time.sleep(interval)
    return time.perf_counter()


def child_env(**extra: str) -> dict[str, str]:
    """Environment for child processes: this folder importable, no stray user configuration."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("CLOUDQ_")}
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(HERE), env.get("PYTHONPATH", "")]))
    env.update(extra)
    return env


def spawn(args: list[str], cwd: str, env: dict[str, str], log: Path) -> subprocess.Popen[bytes]:
    """Start a child (own process group) writing its output to ``log``."""
    with log.open("ab") as out:
        return subprocess.Popen(args, cwd=cwd, env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True)


def stop(procs: list[subprocess.Popen[bytes]], sig: int = signal.SIGTERM, timeout: float = 15.0) -> None:
    """Stop children we started: ``sig`` to their groups, then SIGKILL whatever is left."""
    for proc in procs:
        if proc.poll() is None:
            os.killpg(proc.pid, sig)
    deadline = time.monotonic() + timeout
    for proc in procs:
        try:
            proc.wait(max(0.1, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()


def python() -> str:
    return sys.executable
