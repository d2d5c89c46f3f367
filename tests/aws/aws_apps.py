"""Helpers for the AWS app tests: apps on SQS + DynamoDB, and burst workers in a thread."""

from __future__ import annotations

from typing import Any

from cloudq import App
from cloudq.testing.workers import run_burst  # noqa: F401 - re-exported for the tests


def sqs_app(prefix: str, broker_query: str = "", results_query: str = "", **config: Any) -> App:
    """An app on SQS queues and a DynamoDB table named with ``prefix`` (1 s long polls)."""
    return App(
        "aws-test",
        broker=f"sqs://?prefix={prefix}&wait=1{broker_query}",
        results=f"dynamodb://{prefix}results{results_query}",
        **{"retry_backoff": 0, **config},
    )
