"""Tasks for the worker tests that run in other processes (pool children, ``cloudq worker``).

Broker and results come from CLOUDQ_BROKER / CLOUDQ_RESULTS (a temporary SQLite file per test).
Tasks leave marks in files so a test can count how often each one really ran.
"""

from __future__ import annotations

import os
import time
from pathlib import Path

from cloudq import App, signals

app = App("worker-tests", retry_backoff=0)


def _mark(path: str, line: str) -> None:
    with Path(path).open("a") as fh:
        fh.write(line + "\n")


@app.task()
def add(a: int, b: int) -> int:
    return a + b


@app.task()
def mark(path: str, token: str) -> str:
    _mark(path, token)
    return token


@app.task()
def slow(path: str, seconds: float) -> str:
    """Marks that it started, then takes ``seconds``."""
    _mark(path, "started")
    time.sleep(seconds)
    return "done"


@app.task(bind=True)
def sleep_first_attempt(self, path: str, seconds: float) -> int:
    """Marks every start; only the first attempt is slow (the one a test kills)."""
    attempt = self.request.attempt
    _mark(path, f"attempt {attempt}")
    if attempt == 1:
        time.sleep(seconds)
    return attempt


@app.task(time_limit=0.5, max_retries=0)
def stuck(seconds: float) -> None:
    """Blocks in C (time.sleep), where the soft limit cannot reach: only a kill stops it."""
    time.sleep(seconds)


@app.task(max_retries=1)
def die(code: int) -> None:
    os._exit(code)


# the process pool's lifecycle signals, fired in each child (marks go to CLOUDQ_TEST_PROCESS_MARKS)
_process_inits: list[int] = []


@signals.worker_process_init.connect
def _child_started(**_: object) -> None:
    _process_inits.append(os.getpid())
    if os.environ.get("CLOUDQ_TEST_PROCESS_MARKS"):
        _mark(os.environ["CLOUDQ_TEST_PROCESS_MARKS"], f"init {os.getpid()}")


@signals.worker_process_shutdown.connect
def _child_stopped(pid: int = 0, exitcode: int = -1, **_: object) -> None:
    if os.environ.get("CLOUDQ_TEST_PROCESS_MARKS"):
        _mark(os.environ["CLOUDQ_TEST_PROCESS_MARKS"], f"shutdown {pid} {exitcode}")


@app.task()
def process_inits() -> list[int]:
    """The pids worker_process_init fired for in this process, before this task ran."""
    return list(_process_inits)


@app.task()
def pid(i: int) -> int:
    """The process that ran it: tells pool children apart (max tasks / memory per child)."""
    return os.getpid()


@app.task(bind=True)
def node(self) -> str:
    """self.request.hostname where it ran (a pool child: the worker's -n node name too)."""
    return str(self.request.hostname)


@app.task(rate_limit="1/m")
def limited(i: int) -> int:
    """Rate-limited: the worker's one bucket holds it back in the parent, whatever the pool."""
    return os.getpid()
