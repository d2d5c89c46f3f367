"""The contracts between the core and its backends.

Brokers move bytes and leases; they know nothing of tasks. Result stores keep one record
per task id with conditional writes. Both are protocols so adapters need not subclass.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol, runtime_checkable

from .states import TERMINAL_STATES


@dataclass(frozen=True, slots=True)
class BrokerLimits:
    """What a broker can do, so the core adapts instead of failing at run time."""

    max_body_bytes: int
    max_delay_s: float | None  # None: any delay is native
    max_batch: int  # entries per send/receive/ack call
    max_lease_s: float
    max_wait_s: float = 0.0  # longest server-side long poll
    per_message_delay: bool = True  # False on SQS FIFO
    native_dead_letter: bool = True
    counts_deliveries: bool = True  # False: retries must re-enqueue with the count in the envelope
    ordering: bool = False  # honours ordering keys (one in flight per key)


@dataclass(frozen=True, slots=True)
class OutgoingMessage:
    body: bytes
    delay_s: float = 0.0
    ordering_key: str | None = None
    dedup_id: str | None = None
    attributes: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class Delivery:
    """One leased message. ``receipt`` is opaque to everyone but the broker that made it.

    ``malformed`` is set by a broker whose transport layer could not decode this message (forged
    or corrupt transport attributes, an unreadable claim-check pointer, ...): it says why, and the
    executor dead-letters the message with that reason without reading the body. A broker never
    fails a whole receive because of one message."""

    body: bytes
    receipt: Any
    delivery_count: int
    queue: str
    message_id: str = ""
    attributes: Mapping[str, str] = field(default_factory=dict)
    ordering_key: str | None = None
    malformed: str | None = None


UNKNOWN = -1  # a count the service cannot tell (Pub/Sub's backlog lives in Cloud Monitoring)


@dataclass(frozen=True, slots=True)
class QueueStats:
    """Message counts of a queue; ``UNKNOWN`` (-1) where the service cannot tell."""

    queue: str
    ready: int
    in_flight: int
    delayed: int
    dead_lettered: int


@runtime_checkable
class Broker(Protocol):
    """A queue service with SQS-like lease semantics.

    ``receive`` leases up to ``max_messages`` for ``lease_s`` seconds; a leased message not
    acked within its lease is delivered again with ``delivery_count`` one higher.
    """

    limits: BrokerLimits

    def send(self, queue: str, messages: Sequence[OutgoingMessage]) -> list[str]: ...

    def receive(self, queue: str, max_messages: int, lease_s: float, wait_s: float = 0.0) -> list[Delivery]: ...

    def ack(self, deliveries: Sequence[Delivery]) -> None: ...

    def nack(self, deliveries: Sequence[Delivery], delay_s: float = 0.0) -> None:
        """Give messages back; they become receivable after ``delay_s``."""

    def release(self, deliveries: Sequence[Delivery]) -> None:
        """Give back messages that were never started, as if never received where possible."""

    def extend(self, deliveries: Sequence[Delivery], lease_s: float) -> None:
        """Reset the lease of messages still being worked on to ``lease_s`` from now."""

    def dead_letter(self, deliveries: Sequence[Delivery], reason: str) -> None:
        """Move messages to the queue's dead-letter queue, recording ``reason``."""

    def stats(self, queue: str) -> QueueStats: ...

    def purge(self, queue: str) -> int: ...

    def dead_letters(self, queue: str, limit: int = 100) -> list[DeadLetter]: ...

    def close(self) -> None: ...


@dataclass(frozen=True, slots=True)
class DeadLetter:
    body: bytes
    reason: str
    queue: str
    message_id: str = ""


@dataclass(slots=True)
class ResultRecord:
    """What the result store keeps per task id. ``result`` is already JSON-compatible."""

    task_id: str
    state: str
    task_name: str = ""
    result: Any = None
    error_type: str | None = None
    error_message: str | None = None
    traceback: str | None = None
    attempts: int = 0
    started_at: float | None = None
    finished_at: float | None = None
    expires_at: float | None = None  # epoch seconds; absent on read after this
    claim_owner: str | None = None
    claim_until: float | None = None

    @property
    def terminal(self) -> bool:
        return self.state in TERMINAL_STATES

    def to_dict(self) -> dict[str, Any]:
        return {name: getattr(self, name) for name in self.__slots__}  # type: ignore[attr-defined]

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> ResultRecord:
        names = cls.__slots__  # type: ignore[attr-defined]
        return cls(**{k: v for k, v in data.items() if k in names})


@dataclass(frozen=True, slots=True)
class Claim:
    """Outcome of an idempotency claim: ``acquired`` or the record that holds it."""

    acquired: bool
    record: ResultRecord | None


@runtime_checkable
class ResultStore(Protocol):
    def get(self, task_id: str) -> ResultRecord | None:
        """The record, or None when absent or expired (strongly consistent)."""

    def set(self, record: ResultRecord) -> bool:
        """Write unless a terminal record exists. Returns whether it was written."""

    def claim(self, task_id: str, owner: str, until: float, task_name: str = "") -> Claim:
        """Claim a task for running: succeeds unless it is terminal or claimed by someone
        else until a time still in the future."""

    def forget(self, task_id: str) -> None: ...

    def close(self) -> None: ...
