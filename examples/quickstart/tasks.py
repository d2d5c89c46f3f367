"""The quickstart app: an adder, a task that fails once and retries, and a slow task.

As in Celery, a task retries only when asked: ``autoretry_for`` names the exceptions that retry
(``self.retry(exc=..., countdown=...)`` asks from inside the task).

With nothing configured, broker and results live in ./cloudq.db (SQLite, the embedded default);
set CLOUDQ_BROKER / CLOUDQ_RESULTS (e.g. sqs:// and dynamodb://cloudq-results) to move to the cloud.
"""

from __future__ import annotations

import time

from cloudq import App
from cloudq.schedules import every

app = App("quickstart")


@app.task()
def add(a: int, b: int) -> int:
    return a + b


@app.task(bind=True, autoretry_for=(ConnectionError,), retry_kwargs={"max_retries": 3}, retry_backoff=0.2)
def flaky_fetch(self, url: str) -> str:
    """Fails on its first attempt, as a flaky network call would; the retry succeeds."""
    if self.request.attempt < 2:
        raise ConnectionError(f"{url} timed out on attempt {self.request.attempt}")
    return f"fetched {url} on attempt {self.request.attempt}"


@app.task(time_limit=30)
def slow(seconds: float) -> str:
    time.sleep(seconds)
    return f"slept {seconds}s"


@app.periodic_task(every(60), name="heartbeat")
def heartbeat() -> str:
    """Once a minute while `cloudq beat -A tasks:app` runs (on any number of machines: each run is sent once)."""
    return "alive"
