"""The app the fault tests' worker processes run (``-A fault_app:app``).

Broker and results come from CLOUDQ_BROKER / CLOUDQ_RESULTS. Every task appends one line to a
journal file *from inside the task* (``start TOKEN PID TIME``), so a test can tell which tasks
ran, how often, and in which worker process, whatever the worker itself reports.
"""

from __future__ import annotations

import os
import time

from cloudq import App

app = App("faults", retry_backoff=0, max_retries=1)


def journal(path: str, event: str, token: str) -> None:
    """One O_APPEND write per line: lines from several processes never interleave."""
    line = f"{event} {token} {os.getpid()} {time.time():.6f}\n".encode()
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        os.write(fd, line)
    finally:
        os.close(fd)


@app.task()
def canary(path: str, token: str) -> str:
    journal(path, "start", token)
    return token


@app.task(bind=True, max_retries=10)  # survives several kills of its worker
def work(self, path: str, token: str, seconds: float) -> int:
    """Takes ``seconds``; returns the attempt it ran as (1 unless a delivery was spent)."""
    journal(path, "start", token)
    time.sleep(seconds)
    return int(self.request.attempt)


@app.task(idempotent=True, max_retries=10)
def once(path: str, token: str, seconds: float) -> str:
    journal(path, "start", token)
    time.sleep(seconds)
    return token
