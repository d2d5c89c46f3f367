"""Running a real worker from a test: ``run_burst(app)`` processes until the queues are empty."""

from __future__ import annotations

import os
import subprocess
import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any

from ..runtime.worker import Worker

if TYPE_CHECKING:
    from ..app import App


def run_burst(app: App, timeout: float = 60.0, **options: Any) -> Worker:
    """Run a burst worker (threads pool, concurrency 2 by default) in a thread until the queues are
    empty; a worker still running after ``timeout`` is stopped and fails the test."""
    worker = Worker(app, burst=True, **{"concurrency": 2, "poll_wait_s": 1.0, "grace": 30.0, **options})
    outcome: dict[str, Any] = {}

    def run() -> None:
        try:
            outcome["code"] = worker.run()
        except BaseException as exc:  # re-raised in the test's thread
            outcome["error"] = exc

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    thread.join(timeout)
    if thread.is_alive():
        worker.stop()
        thread.join(10)
        raise AssertionError(f"burst worker still running after {timeout}s")
    if "error" in outcome:
        raise outcome["error"]
    assert outcome["code"] == 0, f"worker exit code {outcome['code']}"
    return worker


def run_worker_process(
    app_path: str, cwd: str | os.PathLike[str], *args: str, timeout: float = 90.0
) -> subprocess.CompletedProcess[str]:
    """Run ``python -m cloudq worker -A app_path --burst`` as a real subprocess from ``cwd`` (put on
    its PYTHONPATH, so the app module imports) and return when it exits."""
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(cwd), os.environ.get("PYTHONPATH", "")])}
    command = [sys.executable, "-m", "cloudq", "worker", "-A", app_path, "--burst", *args]
    return subprocess.run(command, cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout)


@contextmanager
def running_worker(app: App, timeout: float = 30.0, **options: Any) -> Iterator[Worker]:
    """A worker (threads pool, concurrency 2 by default) running in a thread for the block, then
    stopped gracefully; one that does not stop within ``timeout`` fails the test."""
    worker = Worker(app, **{"concurrency": 2, "poll_wait_s": 0.5, "grace": 10.0, **options})
    thread = threading.Thread(target=worker.run, name="cloudq-test-worker", daemon=True)
    thread.start()
    try:
        yield worker
    finally:
        worker.stop()
        thread.join(timeout)
        if thread.is_alive():
            raise AssertionError(f"worker still running {timeout}s after stop()")
