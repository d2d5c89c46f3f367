"""The Lambda example: an app, its tasks, and ``handler``, the function an SQS event source mapping
invokes (Lambda handler setting: ``tasks.handler``). Producers import this same module and call
``.delay()``; the function runs the tasks.

Broker and results come from CLOUDQ_BROKER / CLOUDQ_RESULTS when set (the function's environment),
else the example's own queue prefix and table.
"""

from __future__ import annotations

import hashlib
import os

from cloudq_aws.lambda_.handler import make_handler

from cloudq import App
from cloudq.schedules import crontab

app = App(
    "lambda_example",
    broker=os.environ.get("CLOUDQ_BROKER", "sqs://?prefix=example-"),
    results=os.environ.get("CLOUDQ_RESULTS", "dynamodb://example-results"),
)


@app.task()
def thumbnail(image_key: str, width: int) -> dict[str, str | int]:
    """Pretend image work: the key of the thumbnail it would write."""
    digest = hashlib.sha256(f"{image_key}:{width}".encode()).hexdigest()[:12]
    return {"source": image_key, "thumbnail": f"thumbs/{width}/{digest}.jpg", "width": width}


@app.task(idempotent=True, max_retries=5, retry_backoff=2, retry_on=ConnectionError)
def charge(order_id: str, cents: int) -> str:
    """Runs once per order even if SQS delivers the message twice (idempotent=True). A ConnectionError
    is retried with backoff; any other error is final: the message goes to the dead-letter queue."""
    if cents <= 0:
        raise ValueError(f"order {order_id}: nothing to charge ({cents} cents)")
    return f"charged {cents} cents for {order_id}"


@app.task(time_limit=20)
def nightly_report(day: str) -> str:
    """With a time_limit, the handler starts it only when the invocation has 20 s (+ margin) left."""
    return f"report for {day}"


@app.periodic_task(crontab(minute=0, hour=2, timezone="Europe/Paris"), name="nightly-cleanup")
def cleanup() -> str:
    """Every night at 02:00 Paris time: `cloudq deploy` makes it an EventBridge Scheduler schedule that
    sends it to the queue (no beat to run); locally, `cloudq beat -A tasks:app` sends it."""
    return "cleaned"


# Lambda calls handler(event, context) for each batch; clients are made on the first call and reused
handler = make_handler(app)
