"""Shared pieces of the push tests: an app on the emulator, switching a queue's subscription to push,
plain HTTP requests, and push bodies as Pub/Sub writes them."""

from __future__ import annotations

import base64
import json
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from cloudq_gcp.pubsub_admin import QueuePaths, queue_paths

from cloudq import App


def make_app(project: str, unique: str, bucket: str | None = None, **config: Any) -> App:
    """An app whose broker is the emulator (its own prefix per test) with in-memory results: the
    servers run in this process, so the test reads the results the handler wrote."""
    broker = f"pubsub://{project}?prefix=t{unique}-&ack_deadline=10&max_delivery_attempts=5&timeout=10"
    if bucket:
        broker += f"&bucket={bucket}"
    return App("push-test", broker=broker, results="memory://", retry_jitter=False, **config)


def ensure_queue(app: App, queue: str = "default") -> QueuePaths:
    """Create the queue's topic, subscription and dead-letter topic, as the broker does on first use."""
    app.broker.stats(queue)
    return queue_paths(app.broker.options, queue)  # type: ignore[attr-defined]


def push_to(app: App, endpoint: str, queue: str = "default") -> QueuePaths:
    """Switch the queue's own subscription (with its dead-letter policy) to push to ``endpoint``."""
    from google.cloud import pubsub_v1  # type: ignore[import-untyped]

    paths = ensure_queue(app, queue)
    subscriber = pubsub_v1.SubscriberClient()
    try:
        subscriber.modify_push_config(
            request={"subscription": paths.subscription, "push_config": {"push_endpoint": endpoint}}
        )
    finally:
        subscriber.close()
    return paths


def post(url: str, body: bytes, headers: dict[str, str] | None = None) -> tuple[int, dict[str, Any], dict[str, str]]:
    """POST and return (status, JSON body, headers), whatever the status."""
    request = urllib.request.Request(
        url, data=body, method="POST", headers={"Content-Type": "application/json", **(headers or {})}
    )
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            return response.status, json.loads(response.read() or b"{}"), dict(response.headers)
    except urllib.error.HTTPError as error:
        return error.code, json.loads(error.read() or b"{}"), dict(error.headers)


def push_body(
    data: bytes,
    subscription: str,
    *,
    attributes: dict[str, str] | None = None,
    attempt: int | None = None,
    message_id: str = "1001",
) -> bytes:
    """A push request body exactly as Pub/Sub writes it (both spellings of ids and times)."""
    published = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
    message = {
        "data": base64.b64encode(data).decode(),
        "attributes": attributes or {},
        "messageId": message_id,
        "message_id": message_id,
        "publishTime": published,
        "publish_time": published,
    }
    envelope: dict[str, Any] = {"message": message, "subscription": subscription}
    if attempt is not None:
        envelope["deliveryAttempt"] = attempt
    return json.dumps(envelope).encode()


def wait_for(predicate: Callable[[], Any], timeout: float = 20.0, what: str = "condition") -> Any:
    """Poll until ``predicate()`` is truthy (returns it), or fail after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.1)
    raise AssertionError(f"timed out after {timeout}s waiting for {what}")
