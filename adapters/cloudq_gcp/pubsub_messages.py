"""What cloudq puts on a Pub/Sub message besides the body, and the receipt it hands out.

Attributes named ``cloudq-*`` are the broker's own and never reach ``Delivery.attributes``; every
other attribute round-trips unchanged.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Protocol

from . import deferral

PUBSUB_MAX_REQUEST_BYTES = 10_000_000  # a publish request: data + attributes + ordering key
ATTRIBUTE_RESERVE_BYTES = 64 * 1024  # room kept for attributes next to the largest body
PUBSUB_MAX_BODY_BYTES = PUBSUB_MAX_REQUEST_BYTES - ATTRIBUTE_RESERVE_BYTES
PUBSUB_MAX_ATTRIBUTE_VALUE_BYTES = 1024
TOPIC_RESERVE_BYTES = 512  # the request's topic name (<= 255 characters after the project) and framing

MESSAGE_ID = "cloudq-id"  # cloudq's id for a message: kept by every copy, and by dead letters
CONTENT_TYPE = "cloudq-content-type"
ENVELOPE_VERSION = "cloudq-envelope-version"
CLAIM = "cloudq-claim"  # gs:// reference of an offloaded body
DEAD_REASON = "cloudq-dead-reason"
DEAD_QUEUE = "cloudq-dead-queue"
NATIVE_DEAD_COUNT = "CloudPubSubDeadLetterSourceDeliveryCount"  # set by Pub/Sub's dead-letter policy
INTERNAL_PREFIX = "cloudq-"
STALE_MARGIN_S = 0.5  # a lease closer than this to its end may already belong to someone else


class Message(Protocol):
    @property
    def data(self) -> bytes: ...
    @property
    def attributes(self) -> Mapping[str, str]: ...
    @property
    def message_id(self) -> str: ...
    @property
    def publish_time(self) -> datetime: ...
    @property
    def ordering_key(self) -> str: ...


class Received(Protocol):
    """What the broker reads of a message that arrived other than by its own pull: a push
    request's ``PushedMessage`` (push/envelope.py) has these fields of ``ReceivedMessage``."""

    @property
    def ack_id(self) -> str: ...
    @property
    def delivery_attempt(self) -> int: ...
    @property
    def message(self) -> Message: ...


@dataclass(frozen=True, slots=True)
class Streamed:
    """A message that arrived over streaming pull (``Received``'s fields), with ``drop``: take it out
    of the client's lease management and flow control once the broker settles it itself."""

    ack_id: str
    delivery_attempt: int
    message: Message
    drop: Callable[[], None]


@dataclass(slots=True)
class PubSubReceipt:
    """A lease: the ack id, until when (monotonic) this broker knows it to be the current one, and
    the broker's own attributes, which a republished copy keeps. ``drop`` (streaming pull): stops
    the client managing the lease, called once whatever settles it."""

    subscription: str
    ack_id: str
    leased_until: float
    internal: dict[str, str]
    drop: Callable[[], None] | None = None

    @property
    def claim(self) -> str | None:
        return self.internal.get(CLAIM)

    def unmanage(self) -> None:
        """Streaming pull: the client stops extending this lease and counts it no more against
        its flow control (no request is made). A no-op for pulled messages and after the first call."""
        drop, self.drop = self.drop, None
        if drop is not None:
            drop()

    def current(self, margin_s: float = STALE_MARGIN_S) -> bool:
        """Whether the lease surely still holds (for ``margin_s`` more), so acting on it cannot
        touch a later delivery of the message."""
        return self.leased_until - time.monotonic() > margin_s


@dataclass(frozen=True, slots=True)
class Outgoing:
    """One message ready to publish."""

    data: bytes
    attributes: dict[str, str]
    ordering_key: str = ""

    def size(self) -> int:
        """Bytes in a publish request, with a few bytes of framing per attribute."""
        size = len(self.data) + len(self.ordering_key.encode())
        return size + sum(len(k.encode()) + len(v.encode()) + 8 for k, v in self.attributes.items())

    def too_big(self) -> bool:
        """Beyond what cloudq sends (room kept for the attributes a copy adds)."""
        return len(self.data) > PUBSUB_MAX_BODY_BYTES or self.size() > PUBSUB_MAX_REQUEST_BYTES - 1024

    def fits(self) -> bool:
        """Publishable at all: a copy of a message another producer filled to the limit may not be."""
        return self.size() <= PUBSUB_MAX_REQUEST_BYTES - TOPIC_RESERVE_BYTES


def public(attributes: dict[str, str]) -> dict[str, str]:
    return {k: v for k, v in attributes.items() if not k.startswith(INTERNAL_PREFIX)}


def clip(text: str, limit: int = PUBSUB_MAX_ATTRIBUTE_VALUE_BYTES) -> str:
    """An attribute value within Pub/Sub's 1024-byte limit."""
    return text.encode()[:limit].decode(errors="ignore")


def dead_reason(attributes: dict[str, str], subscription: str) -> str:
    """Why a message is in the dead-letter subscription: cloudq's reason, or the policy's."""
    return attributes.get(DEAD_REASON) or (
        f"MaxDeliveryAttempts: delivered {attributes.get(NATIVE_DEAD_COUNT, '?')} times without an ack "
        f"(dead-letter policy of {subscription})"
    )


def copy_attributes(attributes: dict[str, str], spent: int, not_before: float | None = None) -> dict[str, str]:
    """Attributes for a republished copy: the deliveries spent so far, and the delay if any."""
    out = {k: v for k, v in attributes.items() if k != deferral.NOT_BEFORE}
    out[deferral.PRIOR] = str(spent)
    if not_before is not None:
        out[deferral.NOT_BEFORE] = f"{not_before:.6f}"
    return out
