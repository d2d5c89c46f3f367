"""How cloudq messages are written to and read from SQS.

SQS bodies are Unicode text from a restricted character set and message attributes must be
non-empty strings; brokers move arbitrary bytes. Bodies that are not valid SQS text travel
base64-encoded, flagged by a ``cloudq-encoding`` attribute. Attribute and body sizes are counted
the way SQS counts them, so size limits are enforced before a request is made. ``BatchCall`` reads
a *Batch response's partial failures the same way for the sync and the async sends.
"""

from __future__ import annotations

import base64
import hashlib
import logging
import math
import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, TypeVar

from cloudq.errors import BrokerError
from cloudq.interfaces import OutgoingMessage
from cloudq.util.packing import billed_batches

from .resources import (
    SQS_BILLING_CHUNK_BYTES,
    SQS_MAX_BATCH_BYTES,
    SQS_MAX_BATCH_ENTRIES,
    SQS_MAX_DELAY_S,
    SQS_MAX_MESSAGE_ATTRIBUTES,
)

ENCODING = "cloudq-encoding"  # "base64" or "empty"
CLAIM_CHECK = "cloudq-claim-check"  # "s3": the body is a pointer to an S3 object
PRIOR_DELIVERIES = "cloudq-prior-deliveries"  # receives of the message this one replaced
DEAD_LETTER_REASON = "cloudq-dead-letter-reason"
SOURCE_QUEUE = "cloudq-source-queue"
MESSAGE_ID = "cloudq-message-id"  # the id of the first send, kept when a message is sent again (release, dead letter)
INTERNAL_ATTRIBUTES = frozenset({ENCODING, CLAIM_CHECK, PRIOR_DELIVERIES, DEAD_LETTER_REASON, SOURCE_QUEUE, MESSAGE_ID})
MAX_REASON_CHARS = 1000
MAX_DELIVERY_COUNT = 1_000_000  # far above any redrive's maxReceiveCount (1000): larger is forged
LEGACY_BATCH_BYTES = 262_144  # SendMessageBatch's total on queues from before the 1 MiB limit
UNREADABLE = "cloudq:unreadable"  # key a converted Lambda record carries when part of it is unreadable
EMPTY_VALUE_TYPE = "String.cloudq-empty"  # SQS refuses empty attribute values: this type stands for ""

_NOT_SQS_TEXT = re.compile("[^\t\n\r\x20-\ud7ff\ue000-\ufffd\U00010000-\U0010ffff]")
_TOKEN = re.compile(r"^[!-~]{1,128}$")  # MessageGroupId / MessageDeduplicationId alphabet
_FORWARDED = ("DataType", "StringValue", "BinaryValue")  # the keys SendMessage takes of an attribute

log = logging.getLogger("cloudq.sqs")
T = TypeVar("T")


class Malformed(ValueError):
    """One message's transport layer cannot be decoded; the text says precisely why."""


def safe_token(value: str) -> str:
    """A valid group or deduplication id for ``value`` (hashed when SQS would refuse it)."""
    return value if _TOKEN.match(value) else hashlib.sha256(value.encode()).hexdigest()


def attribute(value: str) -> dict[str, str]:
    if value == "":
        return {"DataType": EMPTY_VALUE_TYPE, "StringValue": "-"}
    return {"DataType": "String", "StringValue": value}


def attribute_value(raw: Mapping[str, Any]) -> str:
    if raw.get("DataType") == EMPTY_VALUE_TYPE:
        return ""
    if "StringValue" in raw:
        return str(raw["StringValue"])
    binary = raw.get("BinaryValue")
    return base64.b64encode(binary).decode() if isinstance(binary, bytes) else ""


def attributes_size(attributes: Mapping[str, Mapping[str, Any]]) -> int:
    """SQS counts each attribute's name, data type and value towards the message size."""
    total = 0
    for name, raw in attributes.items():
        total += len(name.encode()) + len(str(raw.get("DataType", "")).encode())
        total += len(str(raw.get("StringValue", "")).encode()) + len(raw.get("BinaryValue", b"") or b"")
    return total


@dataclass(slots=True)
class Entry:
    """One message as SendMessage / SendMessageBatch will carry it."""

    body: str
    attributes: dict[str, dict[str, str]] = field(default_factory=dict)
    delay_s: int = 0
    group_id: str | None = None
    dedup_id: str | None = None
    payload_bytes: int = 0  # size of the original body, for error messages

    @property
    def size(self) -> int:
        return len(self.body.encode()) + attributes_size(self.attributes)

    def request(self) -> dict[str, Any]:
        fields: dict[str, Any] = {"MessageBody": self.body}
        if self.attributes:
            fields["MessageAttributes"] = self.attributes
        if self.delay_s:
            fields["DelaySeconds"] = self.delay_s
        if self.group_id is not None:
            fields["MessageGroupId"] = self.group_id
        if self.dedup_id is not None:
            fields["MessageDeduplicationId"] = self.dedup_id
        return fields


def encode_body(body: bytes) -> tuple[str, str | None]:
    """SQS text for ``body`` and the encoding flag to attach (None: sent as is)."""
    if not body:
        return "-", "empty"
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError:
        text = None
    if text is not None and not _NOT_SQS_TEXT.search(text):
        return text, None
    return base64.b64encode(body).decode("ascii"), "base64"


def decode_body(text: str, encoding: str | None) -> bytes:
    """The bytes ``text`` stands for under ``encoding``; Malformed when they do not match."""
    if encoding is None:
        return text.encode("utf-8")
    if encoding == "base64":
        try:
            return base64.b64decode(text, validate=True)
        except ValueError:  # binascii.Error, or non-ASCII text
            raise Malformed(f"attribute {ENCODING!r} is base64 but the body is not ({len(text)} chars)") from None
    if encoding == "empty":
        if text != "-":
            raise Malformed(f"attribute {ENCODING!r} is empty but the body has {len(text)} chars")
        return b""
    raise Malformed(f"attribute {ENCODING!r} is {_shown(encoding)}, not base64 or empty")


def delivery_count(system: Mapping[str, Any], internal: Mapping[str, str]) -> int:
    """SQS's receive count plus the receives of the copies this message replaced; Malformed
    when either is not a plausible count."""
    received = _count("ApproximateReceiveCount", system.get("ApproximateReceiveCount", "1"), 1)
    prior = internal.get(PRIOR_DELIVERIES)  # absent on most messages: 0
    return received if prior is None else received + _count(PRIOR_DELIVERIES, prior, 0)


def receive_count(system: Mapping[str, Any]) -> int:
    """SQS's receive count, or 1 when it is unreadable (for a message that will only be dead-lettered)."""
    try:
        return _count("ApproximateReceiveCount", system.get("ApproximateReceiveCount", "1"), 1)
    except Malformed:
        return 1


def message_id(internal: Mapping[str, str], sqs_id: str) -> str:
    """The id of the message's first send (kept across re-sends), else SQS's id for this copy."""
    value = internal.get(MESSAGE_ID)
    if value is None:
        return sqs_id
    if not _TOKEN.match(value):
        raise Malformed(f"attribute {MESSAGE_ID!r} is {_shown(value)}, not 1-128 printable ASCII characters")
    return value


def _count(name: str, value: object, minimum: int) -> int:
    # 1 to 7 ASCII digits (str methods, not a regex: this runs twice per message received)
    if isinstance(value, str) and len(value) <= 7 and value.isdigit() and value.isascii():
        count = int(value)
        if minimum <= count <= MAX_DELIVERY_COUNT:
            return count
    raise Malformed(f"attribute {name!r} is {_shown(value)}, not a count from {minimum} to {MAX_DELIVERY_COUNT}")


def _shown(value: object) -> str:
    text = repr(value)
    return text if len(text) <= 60 else f"{text[:57]}..."


def batch_bytes(max_message_bytes: int) -> int:
    """SendMessageBatch's total size for a queue: 1 MiB, or 256 KiB on a queue still at the old limit."""
    return SQS_MAX_BATCH_BYTES if max_message_bytes > LEGACY_BATCH_BYTES else LEGACY_BATCH_BYTES


def send_batches(items: Sequence[T], max_message_bytes: int, weigh: Callable[[T], int]) -> list[list[T]]:
    """SendMessageBatch requests' items (each weighing its message's SQS size) for a queue whose
    MaximumMessageSize is ``max_message_bytes``: at most 10 and the batch byte limit each, cut
    where SQS bills the fewest 64 KiB chunks (ten 20 KB messages bill 4, nine bill 3)."""
    limit = batch_bytes(max_message_bytes)
    return billed_batches(items, SQS_MAX_BATCH_ENTRIES, limit, SQS_BILLING_CHUNK_BYTES, weigh)


def entry_batches(entries: Sequence[Entry], max_message_bytes: int) -> list[list[Entry]]:
    """``send_batches`` of message entries."""
    return send_batches(entries, max_message_bytes, _entry_size)


def _entry_size(entry: Entry) -> int:
    return entry.size


def build_entry(message: OutgoingMessage, fifo: bool) -> Entry:
    text, encoding = encode_body(message.body)
    attributes = {name: attribute(value) for name, value in message.attributes.items()}
    if encoding:
        attributes[ENCODING] = attribute(encoding)
    if len(attributes) > SQS_MAX_MESSAGE_ATTRIBUTES:
        raise BrokerError(
            f"SQS allows {SQS_MAX_MESSAGE_ATTRIBUTES} message attributes, this message has {len(attributes)}: "
            f"{', '.join(sorted(attributes))}"
        )
    entry = Entry(text, attributes, payload_bytes=len(message.body))
    if fifo:
        dedup = safe_token(message.dedup_id) if message.dedup_id else None
        entry.dedup_id = dedup or hashlib.sha256(message.body).hexdigest()
        # without an ordering key every message is its own group: no ordering, full parallelism
        entry.group_id = safe_token(message.ordering_key) if message.ordering_key else entry.dedup_id
    elif message.delay_s > 0:
        entry.delay_s = min(math.ceil(message.delay_s), SQS_MAX_DELAY_S)
    return entry


def forwardable(raw_attributes: Mapping[str, Mapping[str, Any]]) -> dict[str, dict[str, Any]]:
    """Received message attributes in the shape SendMessage accepts."""
    out: dict[str, dict[str, Any]] = {}
    for name, raw in raw_attributes.items():
        kept = out[name] = {}
        for key in _FORWARDED:  # a loop, not a comprehension: this runs for every message received
            if key in raw:
                kept[key] = raw[key]
    return out


def split_attributes(raw_attributes: Mapping[str, Mapping[str, Any]]) -> tuple[dict[str, str], dict[str, str]]:
    """(user attributes, cloudq's own attributes) as plain strings."""
    user: dict[str, str] = {}
    internal: dict[str, str] = {}
    for name, raw in raw_attributes.items():
        (internal if name in INTERNAL_ATTRIBUTES else user)[name] = attribute_value(raw)
    return user, internal


class BatchCall:
    """One *Batch request through SQS's partial failures, written once for the sync and the async
    callers: feed each response to ``record`` while ``pending`` has entries to send. Entries that
    failed on the server side (none a SenderFault) are sent once more when ``retry`` is set;
    failures with a code in ``tolerate`` are logged and skipped; any other raises BrokerError."""

    def __init__(
        self,
        action: str,
        resource: str,
        entries: list[dict[str, Any]],
        *,
        retry: bool = False,
        tolerate: frozenset[str] | set[str] = frozenset(),
    ) -> None:
        self.action = action
        self.resource = resource
        self.entries = entries
        self.retry = retry
        self.tolerate = tolerate
        self.pending = entries  # what the next request sends; empty once settled
        self.done: dict[str, dict[str, Any]] = {}  # successful entries by Id
        self._attempts = 0

    def record(self, response: Mapping[str, Any]) -> None:
        self._attempts += 1
        for item in response.get("Successful", []):
            self.done[item["Id"]] = item
        failed = response.get("Failed", [])
        sent, self.pending = self.pending, []
        if not failed:
            return
        if self.retry and self._attempts == 1 and not any(f.get("SenderFault") for f in failed):
            again = {f["Id"] for f in failed}
            self.pending = [e for e in sent if e["Id"] in again]
            return
        for f in failed:
            if f.get("Code") in self.tolerate:
                log.info(
                    "%s on %s: entry %s skipped: %s %s",
                    self.action,
                    self.resource,
                    f["Id"],
                    f.get("Code"),
                    f.get("Message", ""),
                )
        real = [f for f in failed if f.get("Code") not in self.tolerate]
        if real:
            problems = "; ".join(f"{f.get('Code')}: {f.get('Message', '')}" for f in real[:3])
            raise BrokerError(
                f"sqs:{self.action} on {self.resource} failed for {len(real)} of {len(self.entries)} entries: {problems}"
            )


def batch_request(entries: Iterable[Entry]) -> list[dict[str, Any]]:
    """SendMessageBatch's Entries for ``entries``, with their positions as Ids."""
    return [{"Id": str(i), **e.request()} for i, e in enumerate(entries)]
