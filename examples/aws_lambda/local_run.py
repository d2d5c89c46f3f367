"""Run the Lambda example on this machine: a moto server stands in for AWS, and this script plays the
Lambda service (receive a batch, invoke ``tasks.handler`` with an SQS event, delete what it did not
report as failed) until the queue is empty. No AWS account and no Docker needed.

    python examples/aws_lambda/local_run.py
"""

from __future__ import annotations

import base64
import importlib.util
import os
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from cloudq_aws.testing import MotoServer

# module -> the package that provides it: what this script needs beyond README command 1
NEEDS = {"boto3": "boto3", "moto": "moto[server]", "flask": "moto[server]"}
INSTALL = "pip install -e '.[moto]' (from the checkout's root; elsewhere pip install 'cloudq[moto]')"


class Context:
    """The part of Lambda's context the handler reads: a 60 s function with time to spare."""

    def __init__(self, timeout_s: float = 60.0) -> None:
        self.deadline = time.monotonic() + timeout_s

    def get_remaining_time_in_millis(self) -> int:
        return int((self.deadline - time.monotonic()) * 1000)


def record(message: dict[str, Any], arn: str) -> dict[str, Any]:
    """One received message as a record of Lambda's SQS event."""
    attributes = {}
    for name, raw in message.get("MessageAttributes", {}).items():
        value: dict[str, Any] = {"dataType": raw["DataType"], "stringListValues": [], "binaryListValues": []}
        if "StringValue" in raw:
            value["stringValue"] = raw["StringValue"]
        if "BinaryValue" in raw:
            value["binaryValue"] = base64.b64encode(raw["BinaryValue"]).decode()
        attributes[name] = value
    return {
        "messageId": message["MessageId"],
        "receiptHandle": message["ReceiptHandle"],
        "body": message["Body"],
        "attributes": message["Attributes"],
        "messageAttributes": attributes,
        "md5OfBody": message["MD5OfBody"],
        "eventSource": "aws:sqs",
        "eventSourceARN": arn,
        "awsRegion": "us-east-1",
    }


def missing_packages() -> list[str]:
    """The packages of NEEDS that are not installed, each named once."""
    return sorted({package for module, package in NEEDS.items() if importlib.util.find_spec(module) is None})


def main() -> None:
    missing = missing_packages()
    if missing:
        sys.exit(f"local_run.py needs {' and '.join(missing)}, not installed here: {INSTALL}")
    with tempfile.TemporaryDirectory() as workdir, MotoServer(workdir=Path(workdir)) as moto:
        os.environ.update(moto.environment())
        import tasks  # after the environment points boto3 at moto

        results = [tasks.thumbnail.delay(f"uploads/{i}.png", 128) for i in range(5)]
        results.append(tasks.charge.delay("order-1", 1999))
        results.append(tasks.charge.delay("order-2", 0))  # fails for good: dead-lettered with the reason
        results.append(tasks.nightly_report.delay("2026-11-24"))
        print(f"sent {len(results)} tasks; invoking the handler like the Lambda service would")

        sqs = tasks.app.broker.clients.get("sqs")  # type: ignore[attr-defined]
        url = tasks.app.broker.queue("default").url  # type: ignore[attr-defined]
        arn = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
        while True:
            messages = sqs.receive_message(
                QueueUrl=url, MaxNumberOfMessages=10, WaitTimeSeconds=1, MessageAttributeNames=["All"],
                MessageSystemAttributeNames=["All"],
            ).get("Messages", [])  # fmt: skip
            if not messages:
                break
            response = tasks.handler({"Records": [record(m, arn) for m in messages]}, Context())
            failed = {f["itemIdentifier"] for f in response["batchItemFailures"]}
            done = [m for m in messages if m["MessageId"] not in failed]
            if done:
                entries = [{"Id": str(i), "ReceiptHandle": m["ReceiptHandle"]} for i, m in enumerate(done)]
                sqs.delete_message_batch(QueueUrl=url, Entries=entries)
            print(f"batch of {len(messages)}: {len(done)} done, {len(failed)} to retry")
        for result in results:
            try:
                print(f"{result.id[:8]}  {result.status:<8} {result.get(timeout=10)!r}")
            except Exception as exc:
                print(f"{result.id[:8]}  {result.status:<8} {type(exc).__name__}: {exc}")
        for letter in tasks.app.broker.dead_letters("default"):
            print(f"dead letter {letter.message_id[:8]}: {letter.reason}")


if __name__ == "__main__":
    main()
