"""Lambda's SQS event records, read into the shape boto3's ReceiveMessage returns.

The SQS broker then turns each into a Delivery with its own code (receive counts, body encodings,
claim checks, cloudq's attributes), exactly as for messages it received itself. Lambda writes the
same message differently: camelCase keys, and message attributes as
``{"stringValue" | "binaryValue" (base64), "dataType", "stringListValues", "binaryListValues"}``.
"""

from __future__ import annotations

import base64
import binascii
from collections.abc import Mapping
from typing import Any

from cloudq.errors import CloudqError

EVENT_SOURCE = "aws:sqs"
_REQUIRED_TEXT = ("receiptHandle", "body", "eventSourceARN")


class InvalidEvent(CloudqError, ValueError):
    """The Lambda event is not an SQS batch cloudq can answer for (raised: the whole batch returns)."""


def records(event: Any) -> list[Mapping[str, Any]]:
    """The records of an SQS event, each with the ``messageId`` a partial batch response needs."""
    found = event.get("Records") if isinstance(event, Mapping) else None
    if not isinstance(found, list):
        raise InvalidEvent(
            f"not an SQS event: expected {{'Records': [...]}} from an SQS event source mapping, got {_kind(event)}"
        )
    for i, record in enumerate(found):
        if not isinstance(record, Mapping) or not isinstance(record.get("messageId"), str) or not record["messageId"]:
            raise InvalidEvent(f"SQS event record {i} has no messageId, so it cannot be reported as failed")
    return found


def problem(record: Mapping[str, Any]) -> str | None:
    """Why a record cannot be turned into a delivery, or None."""
    for key in _REQUIRED_TEXT:
        if not isinstance(record.get(key), str):
            return f"field {key!r} is missing or not a string"
    if record.get("eventSource", EVENT_SOURCE) != EVENT_SOURCE:
        return f"eventSource is {record.get('eventSource')!r}, not {EVENT_SOURCE!r}"
    if queue_name(record["eventSourceARN"]) is None:
        return f"eventSourceARN {record['eventSourceARN']!r} is not an SQS queue ARN"
    if not isinstance(record.get("attributes", {}), Mapping) or not isinstance(
        record.get("messageAttributes", {}), Mapping
    ):
        return "attributes / messageAttributes must be objects"
    return None


def queue_name(arn: str) -> str | None:
    """The SQS queue name in ``arn:PARTITION:sqs:REGION:ACCOUNT:NAME`` (None if it is no queue ARN)."""
    parts = arn.split(":")
    if len(parts) != 6 or parts[0] != "arn" or parts[2] != "sqs" or not parts[5]:
        return None
    return parts[5]


def received_message(record: Mapping[str, Any]) -> dict[str, Any]:
    """The record as ReceiveMessage would have returned it (raises InvalidEvent on bad attributes)."""
    attributes = record.get("messageAttributes") or {}
    return {
        "MessageId": record["messageId"],
        "ReceiptHandle": record["receiptHandle"],
        "Body": record["body"],
        "Attributes": record.get("attributes") or {},
        "MessageAttributes": {name: _attribute(name, value) for name, value in attributes.items()}
        if attributes
        else {},
    }


def _attribute(name: str, value: Any) -> dict[str, Any]:
    if not isinstance(value, Mapping):
        raise InvalidEvent(f"message attribute {name!r} is not an object")
    out: dict[str, Any] = {"DataType": value.get("dataType") or "String"}
    text = value.get("stringValue")
    if text is not None:
        out["StringValue"] = text
    binary = value.get("binaryValue")
    if binary is not None:
        try:
            out["BinaryValue"] = base64.b64decode(binary, validate=True)
        except (binascii.Error, TypeError, ValueError):
            raise InvalidEvent(f"message attribute {name!r} has a binaryValue that is not base64") from None
    return out


def _kind(value: Any) -> str:
    if isinstance(value, Mapping):
        keys = ", ".join(sorted(map(str, value))[:5])
        return f"an object with keys [{keys}]"
    return type(value).__name__
