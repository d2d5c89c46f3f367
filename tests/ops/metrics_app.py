"""Tasks for tests/ops/test_metrics.py's ``cloudq worker`` subprocess (and its pool children).

Broker and results come from CLOUDQ_BROKER / CLOUDQ_RESULTS (a temporary SQLite file per test)."""

from __future__ import annotations

from typing import Any

from cloudq import App

app = App("metrics-tests", retry_backoff=0)


@app.task(name="add")
def add(a: int, b: int) -> int:
    return a + b


@app.task(name="boom")
def boom() -> None:
    raise ValueError("boom, on purpose")


@app.task(name="flaky", bind=True)
def flaky(self: Any) -> str:
    """Retries once, then succeeds."""
    if self.request.retries == 0:
        raise self.retry(countdown=0)
    return "ok"
