"""Helpers for the worker tests: a Worker in a background thread, and polling with a deadline."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

from cloudq.runtime.worker import Worker


class Running:
    """A Worker running in a background thread (run() installs no signal handlers there)."""

    def __init__(self, worker: Worker) -> None:
        self.worker = worker
        self.code: int | None = None
        self.error: BaseException | None = None
        self.thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        try:
            self.code = self.worker.run()
        except BaseException as exc:
            self.error = exc

    def __enter__(self) -> Running:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def stop(self, timeout: float = 30.0) -> int | None:
        self.worker.stop()
        return self.join(timeout)

    def join(self, timeout: float = 30.0) -> int | None:
        self.thread.join(timeout)
        assert not self.thread.is_alive(), "worker did not stop"
        if self.error is not None:
            raise self.error
        return self.code


def run_burst(worker: Worker, timeout: float = 30.0) -> int | None:
    """Run a burst-mode worker to completion (in a thread, so a hang fails instead of blocking)."""
    running = Running(worker)
    running.thread.start()
    return running.join(timeout)


def wait_for(predicate: Callable[[], object], timeout: float = 10.0, interval: float = 0.01) -> None:
    end = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > end:
            raise AssertionError(f"condition not met within {timeout}s")
        time.sleep(interval)
