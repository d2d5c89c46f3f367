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

from ..sqs_messages import UNREADABLE

EVENT_SOURCE = "aws:sqs"


class InvalidEvent(CloudqError, ValueError):
    """The Lambda event is not an SQS batch cloudq can answer for (raised: the whole batch returns)."""


def records(event: Any) -> list[dict[str, Any]]:
    """The records of an SQS event, each with the ``messageId`` a partial batch response needs."""
    found = event.get("Records") if isinstance(event, Mapping) else None
    if not isinstance(found, list):
        raise InvalidEvent(
            f"not an SQS event: expected {{'Records': [...]}} from an SQS event source mapping, got {_kind(event)}"
        )
    for i, record in enumerate(found):
        if not isinstance(record, dict) or type(record.get("messageId")) is not str or not record["messageId"]:
            raise InvalidEvent(f"SQS event record {i} has no messageId, so it cannot be reported as failed")
    return found


class InvalidRecord(InvalidEvent):
    """One record cannot be turned into a delivery: it is reported failed, the others go on."""


def queue_name(arn: str) -> str | None:
    """The SQS queue name in ``arn:PARTITION:sqs:REGION:ACCOUNT:NAME`` (None if it is no queue ARN)."""
    parts = arn.split(":")
    if len(parts) != 6 or parts[0] != "arn" or parts[2] != "sqs" or not parts[5]:
        return None
    return parts[5]


def received_message(record: Mapping[str, Any]) -> dict[str, Any]:
    """The record as ReceiveMessage would have returned it. A record that cannot even be settled
    (no receipt handle, no body, not from SQS) raises InvalidRecord; one whose message attributes
    are unreadable carries why under ``UNREADABLE``, so the broker hands it over as malformed and
    it is dead-lettered with that reason. (Checked in the same pass: this runs for every record.)"""
    handle, body = record.get("receiptHandle"), record.get("body")
    if type(handle) is not str or type(body) is not str:
        name = "receiptHandle" if type(handle) is not str else "body"
        raise InvalidRecord(f"field {name!r} is missing or not a string")
    source = record.get("eventSource", EVENT_SOURCE)
    if source != EVENT_SOURCE:
        raise InvalidRecord(f"eventSource is {source!r}, not {EVENT_SOURCE!r}")
    system = record.get("attributes") or {}
    attributes = record.get("messageAttributes") or {}
    message: dict[str, Any] = {"MessageId": record["messageId"], "ReceiptHandle": handle, "Body": body}
    if not isinstance(system, dict) or not isinstance(attributes, dict):
        name = "attributes" if not isinstance(system, dict) else "messageAttributes"
        return {
            **message,
            "Attributes": {},
            "MessageAttributes": {},
            UNREADABLE: f"record field {name!r} is not an object",
        }
    message["Attributes"] = system
    try:
        message["MessageAttributes"] = {name: _attribute(name, value) for name, value in attributes.items()}
    except InvalidRecord as exc:
        message["MessageAttributes"] = {}
        message[UNREADABLE] = str(exc)
    return message


def _attribute(name: str, value: Any) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise InvalidRecord(f"message attribute {name!r} is not an object")
    out: dict[str, Any] = {"DataType": value.get("dataType") or "String"}
    text = value.get("stringValue")
    if text is not None:
        out["StringValue"] = text
    binary = value.get("binaryValue")
    if binary is not None:
        try:
            out["BinaryValue"] = base64.b64decode(binary, validate=True)
        except (binascii.Error, TypeError, ValueError):
            raise InvalidRecord(f"message attribute {name!r} has a binaryValue that is not base64") from None
    return out


def _kind(value: Any) -> str:
    if isinstance(value, Mapping):
        keys = ", ".join(sorted(map(str, value))[:5])
        return f"an object with keys [{keys}]"
    return type(value).__name__
