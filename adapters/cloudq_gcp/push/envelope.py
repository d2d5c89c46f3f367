"""The JSON body of a Pub/Sub push request, checked and read into the shape of a pulled message.

Pub/Sub pushes ``{"message": {"data": base64, "attributes", "messageId", "publishTime",
"orderingKey"}, "subscription", "deliveryAttempt"}`` (ids and times also in snake_case;
``deliveryAttempt`` only under a dead-letter policy). ``PushedMessage`` has the fields of the
client library's ``ReceivedMessage`` that the broker reads (``ack_id``, ``delivery_attempt``,
``message.data`` ...), so ``PubSubBroker`` turns it into a Delivery with its own code. No Google
import here: a malformed request is refused without loading the client library.
"""

from __future__ import annotations

import base64
import binascii
import json
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from cloudq.errors import CloudqError


class MalformedPush(CloudqError, ValueError):
    """The request is not a Pub/Sub push message (answered 400; nothing runs)."""


@dataclass(frozen=True, slots=True)
class Message:
    data: bytes
    attributes: dict[str, str]
    message_id: str
    publish_time: datetime
    ordering_key: str = ""


@dataclass(frozen=True, slots=True)
class PushedMessage:
    """One pushed message, shaped like ``google.pubsub_v1.ReceivedMessage`` (no ack id: the HTTP
    answer is the ack)."""

    message: Message
    subscription: str
    delivery_attempt: int = 0  # 0: the subscription has no dead-letter policy, Pub/Sub does not count
    ack_id: str = field(default="")


def parse(body: bytes | str) -> PushedMessage:
    """Read a push request body; MalformedPush says what is wrong with it."""
    try:
        document = json.loads(body)
    except (ValueError, UnicodeDecodeError) as exc:
        raise MalformedPush(f"body is not JSON: {exc}") from None
    if not isinstance(document, dict):
        raise MalformedPush(f"body is a JSON {type(document).__name__}, not a push envelope object")
    return from_mapping(document)


def from_mapping(document: dict[str, Any]) -> PushedMessage:
    """Read an already-decoded push envelope (a CloudEvent's ``data`` has the same shape)."""
    message = document.get("message")
    if not isinstance(message, dict):
        raise MalformedPush("'message' is missing or not an object")
    subscription = document.get("subscription", "")
    if not isinstance(subscription, str):
        raise MalformedPush("'subscription' is not a string")
    attempt = document.get("deliveryAttempt", document.get("delivery_attempt", 0))
    if attempt is None:
        attempt = 0
    if type(attempt) is not int or attempt < 0:
        raise MalformedPush(f"'deliveryAttempt' must be a whole number >= 0, got {attempt!r}")
    return PushedMessage(_message(message), subscription, attempt)


def _message(raw: dict[str, Any]) -> Message:
    message_id = raw.get("messageId", raw.get("message_id"))
    if not isinstance(message_id, str) or not message_id:
        raise MalformedPush("'message.messageId' is missing or not a string")
    data = raw.get("data", "")
    if not isinstance(data, str):
        raise MalformedPush("'message.data' is not a base64 string")
    try:
        payload = base64.b64decode(data, validate=True)
    except (binascii.Error, ValueError):
        raise MalformedPush("'message.data' is not valid base64") from None
    attributes = raw.get("attributes") or {}
    if not isinstance(attributes, dict) or not all(
        isinstance(k, str) and isinstance(v, str) for k, v in attributes.items()
    ):
        raise MalformedPush("'message.attributes' must be an object of strings")
    ordering_key = raw.get("orderingKey", raw.get("ordering_key", "")) or ""
    if not isinstance(ordering_key, str):
        raise MalformedPush("'message.orderingKey' is not a string")
    published = raw.get("publishTime", raw.get("publish_time"))
    return Message(payload, dict(attributes), message_id, _timestamp(published), ordering_key)


def _timestamp(value: Any) -> datetime:
    """RFC 3339 as Pub/Sub writes it (``2026-11-24T11:22:33.123456789Z``); absent: now."""
    if value is None:
        return datetime.now(UTC)
    if not isinstance(value, str):
        raise MalformedPush("'message.publishTime' is not a string")
    text = value.strip().replace("Z", "+00:00").replace("z", "+00:00")
    head, dot, rest = text.partition(".")
    if dot:  # Python reads at most 6 fractional digits; Pub/Sub may write 9
        digits = "".join(c for c in rest if c.isdigit())
        text = f"{head}.{digits[:6]}{rest[len(digits) :]}"
    try:
        stamp = datetime.fromisoformat(text)
    except ValueError:
        raise MalformedPush(f"'message.publishTime' {value!r} is not an RFC 3339 time") from None
    return stamp if stamp.tzinfo else stamp.replace(tzinfo=UTC)
