"""In-process broker and result store: fast, no persistence, for tests and benchmarks.

Same lease semantics as SQS: a leased message not acked within its lease is delivered again.
"""

from __future__ import annotations

import copy
import heapq
import itertools
import threading
import time
from collections import deque
from collections.abc import Callable, Collection, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from ..interfaces import (
    BrokerLimits,
    Claim,
    DeadLetter,
    Delivery,
    Heartbeat,
    OutgoingMessage,
    QueueStats,
    ResultRecord,
    TaskSummary,
)
from .common import (
    MAX_LEASE_S,
    check_sizes,
    claim_refused,
    claimed,
    counter_id,
    counter_live,
    is_live,
    max_deliveries_reason,
)
from .urls import Parser, integer_in, read_options

if TYPE_CHECKING:
    from ..config import Settings

MEMORY_MAX_BODY = 10 * 1024 * 1024
MEMORY_MAX_BATCH = 1000
# the broker's options; the result store accepts them too, since by default it shares the broker's URL
OPTION_PARSERS: dict[str, Parser] = {
    "max_body_bytes": integer_in(1, 2**31 - 1),
    "max_deliveries": integer_in(0, 1_000_000),
}
OPTION_DEFAULTS = {"max_body_bytes": MEMORY_MAX_BODY, "max_deliveries": 0}


@dataclass(slots=True)
class _Message:
    id: str
    body: bytes
    attributes: dict[str, str]
    ordering_key: str | None
    deliveries: int = 0
    receipt: int = 0  # the receipt of the current lease; older receipts are stale


@dataclass(slots=True)
class _Queue:
    ready: deque[_Message] = field(default_factory=deque)
    delayed: list[tuple[float, int, _Message]] = field(default_factory=list)
    leased: dict[int, tuple[_Message, float]] = field(default_factory=dict)
    lease_heap: list[tuple[float, int]] = field(default_factory=list)
    dead: list[tuple[DeadLetter, _Message]] = field(default_factory=list)


class MemoryBroker:
    messaging_system = "memory"  # OpenTelemetry's messaging.system (cloudq.interfaces.MessagingSystem)

    def __init__(self, max_body_bytes: int = MEMORY_MAX_BODY, max_deliveries: int = 0) -> None:
        self.limits = BrokerLimits(
            max_body_bytes=max_body_bytes,
            max_delay_s=None,
            max_batch=MEMORY_MAX_BATCH,
            max_lease_s=MAX_LEASE_S,
            max_wait_s=20.0,
        )
        self.max_deliveries = max_deliveries
        self._queues: dict[str, _Queue] = {}
        self._cond = threading.Condition()
        self._seq = itertools.count(1)

    @classmethod
    def from_url(cls, url: str, settings: Settings) -> MemoryBroker:
        opts = read_options(url, settings.broker_options, OPTION_PARSERS, OPTION_DEFAULTS, base_name="broker_options")
        return cls(
            max_body_bytes=opts["max_body_bytes"],
            max_deliveries=opts["max_deliveries"],
        )

    def _queue(self, name: str) -> _Queue:
        queue = self._queues.get(name)
        if queue is None:
            queue = self._queues[name] = _Queue()
        return queue

    def send(self, queue: str, messages: Sequence[OutgoingMessage]) -> list[str]:
        check_sizes(messages, self.limits.max_body_bytes)
        ids = []
        now = time.monotonic()
        with self._cond:
            q = self._queue(queue)
            for msg in messages:
                seq = next(self._seq)
                item = _Message(str(seq), msg.body, dict(msg.attributes), msg.ordering_key)
                if msg.delay_s > 0:
                    heapq.heappush(q.delayed, (now + msg.delay_s, seq, item))
                else:
                    q.ready.append(item)
                ids.append(item.id)
            self._cond.notify_all()
        return ids

    def _promote(self, name: str, q: _Queue, now: float) -> None:
        """Move due delayed messages and expired leases back to ready."""
        while q.delayed and q.delayed[0][0] <= now:
            q.ready.append(heapq.heappop(q.delayed)[2])
        while q.lease_heap and q.lease_heap[0][0] <= now:
            _, receipt = heapq.heappop(q.lease_heap)
            held = q.leased.get(receipt)
            if held is not None and held[1] <= now:
                del q.leased[receipt]
                q.ready.append(held[0])

    def _next_event(self, q: _Queue) -> float | None:
        times = [t for t in (q.delayed[0][0] if q.delayed else None, q.lease_heap[0][0] if q.lease_heap else None) if t]
        return min(times) if times else None

    def receive(self, queue: str, max_messages: int, lease_s: float, wait_s: float = 0.0) -> list[Delivery]:
        max_messages = max(1, min(max_messages, self.limits.max_batch))
        lease_s = min(lease_s, self.limits.max_lease_s)
        deadline = time.monotonic() + min(wait_s, self.limits.max_wait_s)
        with self._cond:
            q = self._queue(queue)
            while True:
                now = time.monotonic()
                self._promote(queue, q, now)
                if q.ready or now >= deadline:
                    break
                upcoming = self._next_event(q)
                self._cond.wait(min(deadline, upcoming or deadline) - now)
            out: list[Delivery] = []
            while q.ready and len(out) < max_messages:
                msg = q.ready.popleft()
                msg.deliveries += 1
                if self.max_deliveries and msg.deliveries > self.max_deliveries:
                    self._bury(q, queue, msg, max_deliveries_reason(self.max_deliveries))
                    continue
                receipt = next(self._seq)
                msg.receipt = receipt
                until = now + lease_s
                q.leased[receipt] = (msg, until)
                heapq.heappush(q.lease_heap, (until, receipt))
                out.append(Delivery(msg.body, receipt, msg.deliveries, queue, msg.id, msg.attributes, msg.ordering_key))
            return out

    def _take(self, q: _Queue, delivery: Delivery) -> _Message | None:
        held = q.leased.pop(delivery.receipt, None)
        return held[0] if held else None

    def ack(self, deliveries: Sequence[Delivery]) -> None:
        with self._cond:
            for d in deliveries:
                self._take(self._queue(d.queue), d)

    def nack(self, deliveries: Sequence[Delivery], delay_s: float = 0.0) -> None:
        now = time.monotonic()
        with self._cond:
            for d in deliveries:
                q = self._queue(d.queue)
                msg = self._take(q, d)
                if msg is None:
                    continue
                if delay_s > 0:
                    heapq.heappush(q.delayed, (now + delay_s, next(self._seq), msg))
                else:
                    q.ready.append(msg)
            self._cond.notify_all()

    def release(self, deliveries: Sequence[Delivery]) -> None:
        with self._cond:
            for d in deliveries:
                q = self._queue(d.queue)
                msg = self._take(q, d)
                if msg is not None:
                    msg.deliveries -= 1  # never started: does not count as a delivery
                    q.ready.appendleft(msg)
            self._cond.notify_all()

    def extend(self, deliveries: Sequence[Delivery], lease_s: float) -> None:
        until = time.monotonic() + min(lease_s, self.limits.max_lease_s)
        with self._cond:
            for d in deliveries:
                q = self._queue(d.queue)
                held = q.leased.get(d.receipt)
                if held is not None:
                    q.leased[d.receipt] = (held[0], until)
                    heapq.heappush(q.lease_heap, (until, d.receipt))

    def dead_letter(self, deliveries: Sequence[Delivery], reason: str) -> None:
        with self._cond:
            for d in deliveries:
                q = self._queue(d.queue)
                msg = self._take(q, d)
                if msg is not None:
                    self._bury(q, d.queue, msg, reason)

    @staticmethod
    def _bury(q: _Queue, queue: str, msg: _Message, reason: str) -> None:
        q.dead.append((DeadLetter(msg.body, reason, queue, msg.id, time.time()), msg))

    def dead_letters(self, queue: str, limit: int = 100) -> list[DeadLetter]:
        with self._cond:
            return [letter for letter, _ in self._queue(queue).dead[:limit]]

    def redrive(
        self,
        queue: str,
        ids: Collection[str] | None = None,
        *,
        rewrite: Callable[[bytes], bytes] | None = None,
        progress: Callable[[int], None] | None = None,
    ) -> int:
        """One step under the lock: a message is in the dead letters or on the queue, never both."""
        with self._cond:
            q = self._queue(queue)
            moved = [
                _Message(msg.id, rewrite(msg.body) if rewrite else msg.body, msg.attributes, msg.ordering_key)
                for letter, msg in q.dead
                if ids is None or letter.message_id in ids
            ]  # built before anything changes: a rewrite that raises moves nothing
            q.dead = [pair for pair in q.dead if ids is not None and pair[0].message_id not in ids]
            q.ready.extend(moved)
            self._cond.notify_all()
        if progress is not None and moved:
            progress(len(moved))
        return len(moved)

    def delete_dead_letters(self, queue: str, ids: Collection[str]) -> int:
        with self._cond:
            q = self._queue(queue)
            kept = [pair for pair in q.dead if pair[0].message_id not in ids]
            count, q.dead = len(q.dead) - len(kept), kept
            return count

    def stats(self, queue: str) -> QueueStats:
        with self._cond:
            q = self._queue(queue)
            self._promote(queue, q, time.monotonic())
            return QueueStats(queue, len(q.ready), len(q.leased), len(q.delayed), len(q.dead))

    def purge(self, queue: str) -> int:
        with self._cond:
            q = self._queue(queue)
            count = len(q.ready) + len(q.delayed) + len(q.leased)
            q.ready.clear()
            q.delayed.clear()
            q.leased.clear()  # acks and nacks of purged leases find nothing
            q.lease_heap.clear()
            return count

    def close(self) -> None:
        pass


class MemoryResultStore:
    """Result store in a dict; ``wait`` is pushed by a condition, not polled."""

    def __init__(self) -> None:
        self._records: dict[str, ResultRecord] = {}
        self._counters: dict[str, tuple[int, float | None]] = {}  # key -> (value, expires_at)
        self._updated: dict[str, float] = {}  # task id -> epoch seconds of its last write (TaskIndex)
        self._workers: dict[str, tuple[Heartbeat, float]] = {}  # worker id -> (last beat, expires_at)
        # ``set`` and ``get`` take the lock itself (a Condition's ``with`` is two Python calls) and
        # notify only when someone waits: they run for every task
        self._lock = threading.RLock()
        self._cond = threading.Condition(self._lock)
        self._waiting = 0  # threads in ``wait``

    @classmethod
    def from_url(cls, url: str, settings: Settings) -> MemoryResultStore:
        read_options(url, settings.results_options, OPTION_PARSERS, base_name="results_options")
        return cls()

    def _live(self, task_id: str, now: float) -> ResultRecord | None:
        record = self._records.get(task_id)
        if record is not None and not is_live(record, now):
            del self._records[task_id]
            return None
        return record

    def get(self, task_id: str) -> ResultRecord | None:
        with self._lock:
            record = self._live(task_id, time.time())
            return copy.copy(record) if record else None

    def get_many(self, task_ids: Sequence[str]) -> dict[str, ResultRecord]:
        now = time.time()
        with self._cond:
            found = {task_id: self._live(task_id, now) for task_id in task_ids}
            return {task_id: copy.copy(record) for task_id, record in found.items() if record is not None}

    def set(self, record: ResultRecord) -> bool:
        now = time.time()
        with self._lock:
            current = self._live(record.task_id, now)
            if current is not None and current.terminal:
                return False
            self._records[record.task_id] = record  # the caller hands over a fresh record
            self._updated[record.task_id] = now
            if self._waiting and record.terminal:
                self._cond.notify_all()
            return True

    def claim(self, task_id: str, owner: str, until: float, task_name: str = "") -> Claim:
        now = time.time()
        with self._cond:
            current = self._live(task_id, now)
            if claim_refused(current, owner, now):
                return Claim(False, copy.copy(current) if current else None)
            self._records[task_id] = claimed(current, task_id, owner, until, task_name, now)
            self._updated[task_id] = now
            return Claim(True, None)

    def wait(self, task_id: str, timeout: float | None) -> ResultRecord | None:
        deadline = None if timeout is None else time.monotonic() + timeout
        with self._cond:
            while True:
                record = self._live(task_id, time.time())
                if record is not None and record.terminal:
                    return copy.copy(record)
                remaining = None if deadline is None else deadline - time.monotonic()
                if remaining is not None and remaining <= 0:
                    return record
                self._waiting += 1
                try:
                    self._cond.wait(remaining)
                finally:
                    self._waiting -= 1

    def forget(self, task_id: str) -> None:
        with self._cond:
            self._records.pop(task_id, None)
            self._updated.pop(task_id, None)

    def increment(self, key: str, by: int = 1, expires_at: float | None = None) -> int:
        """Under the store's lock. The expiry is the one given when the counter was created."""
        counter_id(key, by)
        with self._cond:
            value, expiry = self._counters.get(key, (0, expires_at))
            if not counter_live(expiry, time.time()):
                value, expiry = 0, expires_at
            self._counters[key] = (value + by, expiry)
            return value + by

    def delete_counter(self, key: str) -> None:
        with self._cond:
            self._counters.pop(key, None)

    def recent(self, states: Sequence[str] = (), since: float | None = None, limit: int = 100) -> list[TaskSummary]:
        now = time.time()
        with self._cond:
            found = [
                TaskSummary(task_id, record.task_name, record.state, self._updated.get(task_id, 0.0))
                for task_id, record in self._records.items()
                if is_live(record, now) and (not states or record.state in states)
            ]
        found = [summary for summary in found if since is None or summary.updated_at >= since]
        found.sort(key=lambda summary: summary.updated_at, reverse=True)
        return found[:limit]

    def beat(self, heartbeat: Heartbeat, ttl_s: float) -> None:
        with self._cond:
            self._workers[heartbeat.worker_id] = (copy.deepcopy(heartbeat), heartbeat.seen_at + ttl_s)

    def alive(self) -> list[Heartbeat]:
        now = time.time()
        with self._cond:
            for worker_id in [w for w, (_, until) in self._workers.items() if until <= now]:
                del self._workers[worker_id]
            return [copy.deepcopy(beat) for beat, _ in self._workers.values()]

    def close(self) -> None:
        pass
