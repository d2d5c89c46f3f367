"""What the Lambda service does for an SQS event source mapping, done by hand against moto.

moto cannot invoke functions here (no Docker) and an event source mapping would make it try on
every send, so tests, the local example and the benchmarks play the poller: receive a batch from
the real queue, format each message as Lambda does (every field, Lambda's own attribute shapes),
invoke the handler with a context that reports the time left, then delete what the response did
not report as failed. The caller passes the SQS client: this module imports no SDK.
"""

from __future__ import annotations

import base64
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

# the system attributes Lambda puts on each record (FIFO queues add the last three)
STANDARD_ATTRIBUTES = ("ApproximateReceiveCount", "SentTimestamp", "SenderId", "ApproximateFirstReceiveTimestamp")
FIFO_ATTRIBUTES = ("MessageGroupId", "MessageDeduplicationId", "SequenceNumber")


@dataclass
class FakeLambdaContext:
    """Lambda's context object. Time only passes when a test says so (``spend``): no wall clock."""

    remaining_ms: int = 900_000
    function_name: str = "cloudq-test"
    function_version: str = "$LATEST"
    invoked_function_arn: str = "arn:aws:lambda:us-east-1:123456789012:function:cloudq-test"
    memory_limit_in_mb: int = 512
    aws_request_id: str = "c6af9ac6-7b61-11e6-9a41-93e812345678"
    log_group_name: str = "/aws/lambda/cloudq-test"
    log_stream_name: str = "2026/11/24/[$LATEST]abcdef"
    calls: int = 0

    def get_remaining_time_in_millis(self) -> int:
        self.calls += 1
        return self.remaining_ms

    def spend(self, seconds: float) -> None:
        self.remaining_ms = max(0, self.remaining_ms - int(seconds * 1000))


def lambda_attribute(raw: Mapping[str, Any]) -> dict[str, Any]:
    """One message attribute as Lambda writes it (binary values base64-encoded)."""
    out: dict[str, Any] = {"stringListValues": [], "binaryListValues": [], "dataType": raw["DataType"]}
    if "StringValue" in raw:
        out["stringValue"] = raw["StringValue"]
    if "BinaryValue" in raw:
        out["binaryValue"] = base64.b64encode(raw["BinaryValue"]).decode()
    return out


def lambda_record(message: Mapping[str, Any], queue_arn: str, region: str) -> dict[str, Any]:
    """One ReceiveMessage message (asked with all attributes) as a record of Lambda's SQS event."""
    system = message.get("Attributes", {})
    names = STANDARD_ATTRIBUTES + (FIFO_ATTRIBUTES if queue_arn.endswith(".fifo") else ())
    record: dict[str, Any] = {
        "messageId": message["MessageId"],
        "receiptHandle": message["ReceiptHandle"],
        "body": message["Body"],
        "attributes": {name: system[name] for name in names if name in system},
        "messageAttributes": {k: lambda_attribute(v) for k, v in message.get("MessageAttributes", {}).items()},
        "md5OfBody": message["MD5OfBody"],
        "eventSource": "aws:sqs",
        "eventSourceARN": queue_arn,
        "awsRegion": region,
    }
    if "MD5OfMessageAttributes" in message:
        record["md5OfMessageAttributes"] = message["MD5OfMessageAttributes"]
    return record


@dataclass
class Invocation:
    event: dict[str, Any]
    response: dict[str, Any]
    ids: list[str]  # message ids in event order

    @property
    def failed(self) -> list[str]:
        return [f["itemIdentifier"] for f in self.response["batchItemFailures"]]


@dataclass
class SQSPoller:
    """The Lambda service's side of one event source mapping with ReportBatchItemFailures."""

    sqs: Any  # a boto3 SQS client on the moto server
    queue_url: str
    region: str = "us-east-1"
    visibility_s: int = 30
    queue_arn: str = field(init=False)

    def __post_init__(self) -> None:
        attrs = self.sqs.get_queue_attributes(QueueUrl=self.queue_url, AttributeNames=["QueueArn"])
        self.queue_arn = attrs["Attributes"]["QueueArn"]

    def receive(self, max_messages: int = 10, wait_s: int = 1) -> list[dict[str, Any]]:
        response = self.sqs.receive_message(
            QueueUrl=self.queue_url,
            MaxNumberOfMessages=max_messages,
            VisibilityTimeout=self.visibility_s,
            WaitTimeSeconds=wait_s,
            MessageAttributeNames=["All"],
            MessageSystemAttributeNames=["All"],
        )
        messages: list[dict[str, Any]] = response.get("Messages", [])
        return messages

    def receive_all(self, count: int, wait_s: int = 2) -> list[dict[str, Any]]:
        """Receive until ``count`` messages arrived (or a receive came back empty)."""
        got: list[dict[str, Any]] = []
        while len(got) < count:
            batch = self.receive(min(10, count - len(got)), wait_s)
            if not batch:
                break
            got += batch
        return got

    def event(self, messages: list[dict[str, Any]]) -> dict[str, Any]:
        return {"Records": [lambda_record(m, self.queue_arn, self.region) for m in messages]}

    def invoke(
        self, handler: Callable[..., dict[str, Any]], messages: list[dict[str, Any]], context: Any = None
    ) -> Invocation:
        """Invoke with these messages, then delete the ones not reported as failed, as Lambda does."""
        event = self.event(messages)
        response = handler(event, context if context is not None else FakeLambdaContext())
        failed = {f["itemIdentifier"] for f in response["batchItemFailures"]}
        done = [m for m in messages if m["MessageId"] not in failed]
        for start in range(0, len(done), 10):
            entries = [
                {"Id": str(i), "ReceiptHandle": m["ReceiptHandle"]} for i, m in enumerate(done[start : start + 10])
            ]
            self.sqs.delete_message_batch(QueueUrl=self.queue_url, Entries=entries)
        return Invocation(event, response, [m["MessageId"] for m in messages])

    def counts(self) -> tuple[int, int]:
        """(visible, in flight) messages on the queue."""
        attrs = self.sqs.get_queue_attributes(
            QueueUrl=self.queue_url,
            AttributeNames=["ApproximateNumberOfMessages", "ApproximateNumberOfMessagesNotVisible"],
        )["Attributes"]
        return int(attrs["ApproximateNumberOfMessages"]), int(attrs["ApproximateNumberOfMessagesNotVisible"])
