"""Helpers for the GCP app tests: apps on Pub/Sub + Firestore, and burst workers in a thread."""

from __future__ import annotations

import threading
from typing import Any

from cloudq import App
from cloudq.runtime.worker import Worker


def gcp_urls(project: str, unique: str, broker_query: str = "") -> tuple[str, str]:
    """Broker and result URLs whose topics, subscriptions and collection are this test's own."""
    return (
        f"pubsub://{project}?prefix=t{unique}-&ack_deadline=10{broker_query}",
        f"firestore://results-{unique}?project={project}",
    )


def gcp_app(project: str, unique: str, broker_query: str = "", **config: Any) -> App:
    broker, results = gcp_urls(project, unique, broker_query)
    return App("gcp-test", broker=broker, results=results, **{"retry_backoff": 0, **config})


def run_burst(app: App, timeout: float = 60.0, **options: Any) -> Worker:
    """Run a burst worker (threads pool, concurrency 2 by default) until the queues are empty."""
    worker = Worker(app, burst=True, **{"concurrency": 2, "poll_wait_s": 1.0, "grace": 30.0, **options})
    outcome: dict[str, Any] = {}

    def run() -> None:
        try:
            outcome["code"] = worker.run()
        except BaseException as exc:  # re-raised in the test thread
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
