"""Rules every backend applies the same way, kept in one place so memory and SQLite agree."""

from __future__ import annotations

from collections.abc import Sequence

from .. import states
from ..errors import InvalidArguments, MessageTooLarge, ResultStoreError
from ..interfaces import OutgoingMessage, ResultRecord

MAX_LEASE_S = 12 * 3600.0  # SQS's ceiling; no backend holds a lease longer
# Counters (AtomicCounter) share the results table of the cloud stores: their keys carry this
# prefix and their items a ``kind`` of COUNTER_KIND, so no record read ever returns one.
COUNTER_PREFIX = "cloudq.counter:"
COUNTER_KIND = "counter"
# Worker presence records (HeartbeatStore) likewise, in stores that keep them in the results table
WORKER_PREFIX = "cloudq.worker:"
WORKER_KIND = "worker"
RESERVED_PREFIXES = (COUNTER_PREFIX, WORKER_PREFIX)


def check_sizes(messages: Sequence[OutgoingMessage], limit: int) -> None:
    """Refuse the whole batch before anything is sent if one body is over ``limit``."""
    for msg in messages:
        if not isinstance(msg.body, bytes):
            raise TypeError(f"message bodies are bytes, got {type(msg.body).__name__}")
        if len(msg.body) > limit:
            raise MessageTooLarge(len(msg.body), limit)


def max_deliveries_reason(deliveries: int) -> str:
    return f"MaxDeliveries: received {deliveries} times without an ack"


def is_live(record: ResultRecord, now: float) -> bool:
    """Expired records read as absent."""
    return record.expires_at is None or record.expires_at > now


def claim_refused(current: ResultRecord | None, owner: str, now: float) -> bool:
    """A claim fails on a terminal record, or one claimed by someone else until after ``now``."""
    if current is None:
        return False
    if current.terminal:
        return True
    held = current.claim_until is not None and current.claim_until > now
    return held and current.claim_owner != owner


def claimed(
    current: ResultRecord | None, task_id: str, owner: str, until: float, task_name: str, now: float
) -> ResultRecord:
    """The STARTED record a successful claim writes, keeping the attempt count and expiry."""
    return ResultRecord(
        task_id,
        states.STARTED,
        task_name or (current.task_name if current else ""),
        started_at=now,
        claim_owner=owner,
        claim_until=until,
        attempts=current.attempts if current else 0,
        expires_at=current.expires_at if current else None,
    )


def counter_id(key: str, by: int = 1) -> str:
    """The stored id of counter ``key``; checks the arguments of ``increment`` first."""
    if not isinstance(key, str) or not key:
        raise InvalidArguments(f"a counter key is a non-empty string, got {key!r}")
    if not isinstance(by, int) or isinstance(by, bool):
        raise InvalidArguments(f"a counter is incremented by an integer, got {by!r}")
    return COUNTER_PREFIX + key


def check_task_id(task_id: str) -> None:
    """Refuse a task id in the counters' or workers' namespace (stores that keep them in one table)."""
    for prefix in RESERVED_PREFIXES:
        if task_id.startswith(prefix):
            what = "counters" if prefix == COUNTER_PREFIX else "worker presence records"
            raise ResultStoreError(f"task id {task_id!r}: ids starting with {prefix!r} are reserved for {what}")


def counter_live(expires_at: float | None, now: float) -> bool:
    """A counter past its expiry is gone: the next increment starts again at 0."""
    return expires_at is None or expires_at > now
