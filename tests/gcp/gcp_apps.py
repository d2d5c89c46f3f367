"""Helpers for the GCP app tests: apps on Pub/Sub + Firestore, and burst workers in a thread."""

from __future__ import annotations

from typing import Any

from cloudq import App
from cloudq.testing.workers import run_burst  # noqa: F401 - re-exported for the tests


def gcp_urls(project: str, unique: str, broker_query: str = "") -> tuple[str, str]:
    """Broker and result URLs whose topics, subscriptions and collection are this test's own."""
    return (
        f"pubsub://{project}?prefix=t{unique}-&ack_deadline=10{broker_query}",
        f"firestore://results-{unique}?project={project}",
    )


def gcp_app(project: str, unique: str, broker_query: str = "", **config: Any) -> App:
    broker, results = gcp_urls(project, unique, broker_query)
    return App("gcp-test", broker=broker, results=results, **{"retry_backoff": 0, **config})
