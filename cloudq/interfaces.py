"""The contracts between the core and its backends.

Brokers move bytes and leases; they know nothing of tasks. Result stores keep one record
per task id with conditional writes. Both are protocols so adapters need not subclass.
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Mapping, Sequence
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
    # the fewest messages worth one receive call: a worker holds at least min(this, max_batch), so
    # receives on request-billed services (SQS: 10 per ReceiveMessage) do not come back partly empty
    min_receive_batch: int = 10


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
    acked within its lease is delivered again with ``delivery_count`` one higher. Every method
    taking deliveries accepts an empty sequence (a no-op, no request) and deliveries from several
    queues, and treats a stale receipt (its lease expired and the message was delivered again, or
    it was already settled) as a no-op where the service can tell (``BrokerContract``'s
    ``stale_receipts_ignored``). Delivery is at least once: a message may arrive twice.
    """

    limits: BrokerLimits

    def send(self, queue: str, messages: Sequence[OutgoingMessage]) -> list[str]:
        """Enqueue ``messages`` (any number: split into ``limits.max_batch`` calls) and return one
        distinct message id per message, in send order. A body above ``limits.max_body_bytes``
        raises MessageTooLarge before anything is sent; ``delay_s`` above ``limits.max_delay_s``
        is the caller's to split (the executor sends in hops)."""

    def receive(self, queue: str, max_messages: int, lease_s: float, wait_s: float = 0.0) -> list[Delivery]:
        """Lease up to ``max_messages`` ready messages for ``lease_s`` seconds. With none ready,
        wait up to ``wait_s`` (at most ``limits.max_wait_s`` server-side) for one to arrive before
        returning an empty list: a broker must not return at once while ``wait_s`` is left, or idle
        workers spin. A message the transport cannot decode comes back with ``malformed`` set;
        one bad message never fails the whole receive."""

    def ack(self, deliveries: Sequence[Delivery]) -> None:
        """Settle: the messages are done and never delivered again (their claim-check objects go
        too). A stale receipt is a no-op."""

    def nack(self, deliveries: Sequence[Delivery], delay_s: float = 0.0) -> None:
        """Give messages back; they become receivable after ``delay_s`` (at most
        ``limits.max_lease_s``) and their next delivery counts one higher."""

    def release(self, deliveries: Sequence[Delivery]) -> None:
        """Give back messages that were never started, at once and as if never received where
        possible (the unstarted receive does not spend a delivery)."""

    def extend(self, deliveries: Sequence[Delivery], lease_s: float) -> None:
        """Reset the lease of messages still being worked on to ``lease_s`` from now."""

    def dead_letter(self, deliveries: Sequence[Delivery], reason: str) -> None:
        """Move messages to the queue's dead-letter queue, keeping body and message id and
        recording ``reason``; they leave the queue."""

    def stats(self, queue: str) -> QueueStats:
        """Message counts by state. Cloud services count approximately (SQS) or not at all:
        a count the service cannot tell is ``UNKNOWN``, never a guess."""

    def purge(self, queue: str) -> int:
        """Drop every ready, delayed and in-flight message of ``queue``; returns how many, as
        exactly as ``stats`` counts them. Acks and nacks of purged leases change nothing."""

    def dead_letters(self, queue: str, limit: int = 100) -> list[DeadLetter]:
        """Up to ``limit`` dead letters of ``queue``, oldest first where the service orders them;
        reading them does not remove them."""

    def close(self) -> None:
        """Release connections and threads. Idempotent; the broker is not used afterwards."""


@dataclass(frozen=True, slots=True)
class DeadLetter:
    """One dead-lettered message. ``message_id`` is the id its first send got, kept by every
    copy, so it addresses the message in ``DeadLetterAdmin`` calls; ``dead_at`` is epoch seconds
    when it was dead-lettered (None where the service does not tell)."""

    body: bytes
    reason: str
    queue: str
    message_id: str = ""
    dead_at: float | None = None


LINEAGE_IDS = ("parent_id", "root_id", "group_id")  # a record's links to other tasks' records
LINEAGE_FIELDS = ("sent_at", *LINEAGE_IDS)  # what the executor copies from the envelope to each record


@dataclass(slots=True)
class ResultRecord:
    """What the result store keeps per task id. ``result`` is already JSON-compatible.

    ``args``/``kwargs``/``queue``/``worker`` are Celery's extended results (the ``result_extended``
    setting; None when it is off): the call as sent (JSON), the queue it was delivered from and the
    worker's hostname. A store keeps them like the result, offloading large ``args``/``kwargs``.

    ``sent_at``/``parent_id``/``root_id``/``group_id`` are the envelope's lineage, kept on every
    record the executor writes for the task it runs whatever ``result_extended`` says (Celery keeps
    ``parent_id`` and ``group_id`` in every result too): when it was first sent, the task that sent
    it, the first of that line of senders, and the group (or chord header) it belongs to. They cost
    no request: they ride in the result write the executor makes anyway."""

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
    args: list[Any] | None = None
    kwargs: dict[str, Any] | None = None
    queue: str | None = None
    worker: str | None = None
    sent_at: float | None = None
    parent_id: str | None = None
    root_id: str | None = None
    group_id: str | None = None

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
    """One record per task id, with conditional writes so no read precedes a write and a terminal
    record (SUCCESS/FAILURE) is never overwritten. Records past ``expires_at`` read as absent."""

    def get(self, task_id: str) -> ResultRecord | None:
        """The record, or None when absent or expired (strongly consistent)."""

    def set(self, record: ResultRecord) -> bool:
        """Write unless a terminal record exists. Returns whether it was written."""

    def claim(self, task_id: str, owner: str, until: float, task_name: str = "") -> Claim:
        """Claim a task for running: succeeds unless it is terminal or claimed by someone
        else until a time still in the future."""

    def forget(self, task_id: str) -> None:
        """Delete the record (and any offloaded result); absent is not an error."""

    def close(self) -> None:
        """Release connections and threads. Idempotent."""


# Optional capabilities. The core checks them with isinstance and falls back when a backend
# lacks one, so an adapter implements only what its service does natively.


@runtime_checkable
class MessagingSystem(Protocol):
    """A broker naming its service as OpenTelemetry's ``messaging.system`` (``aws_sqs``,
    ``gcp_pubsub``...) for the spans of ``cloudq.observability.tracing``; others are named by
    their class."""

    messaging_system: str


@runtime_checkable
class AsyncSender(Protocol):
    """A broker that sends from an event loop without blocking it (SQS via aiobotocore); others
    are sent from a worker thread. Same contract as ``Broker.send``."""

    async def send_async(self, queue: str, messages: Sequence[OutgoingMessage]) -> list[str]: ...


@runtime_checkable
class AsyncResultReader(Protocol):
    """A result store read natively from an event loop (DynamoDB via aiobotocore); others are
    read from a worker thread. Same contract as ``ResultStore.get``."""

    async def get_async(self, task_id: str) -> ResultRecord | None: ...


@runtime_checkable
class ResultWaiter(Protocol):
    """A result store that is told when a record changes (Firestore listeners, the memory store's
    condition), so ``AsyncResult.get`` waits without polling."""

    def wait(self, task_id: str, timeout: float | None) -> ResultRecord | None:
        """Block until the record is terminal or ``timeout`` seconds pass (None: forever);
        returns the record as it then is (None when absent)."""


class ResultWriter(Protocol):
    """What the executor writes results through: a ResultStore, or the worker's batch of writes
    (``runtime/result_batch.py``). Same contract as ``ResultStore.set``."""

    def set(self, record: ResultRecord) -> bool: ...


@runtime_checkable
class ManyWriter(Protocol):
    """A result store that writes many records in one transaction (SQLite): the worker then
    batches its result writes (``runtime/result_batch.py``)."""

    def set_many(self, records: Sequence[ResultRecord]) -> None:
        """``set`` for each record, all or nothing: on failure none is written and it raises."""


@runtime_checkable
class ManyReader(Protocol):
    """A result store that reads many records in one request (DynamoDB BatchGetItem, Firestore
    ``get_all``, one SQL query): group results, revocation checks and chord bodies read through it.
    Without it the core calls ``get`` once per id."""

    def get_many(self, task_ids: Sequence[str]) -> dict[str, ResultRecord]:
        """The records of ``task_ids`` that exist and have not expired, keyed by id (absent ids are
        left out); any number of ids (split into the service's batch size), strongly consistent."""


@runtime_checkable
class RuntimeReader(Protocol):
    """A ManyReader whose producers' reads go through a client of their own (DynamoDB: short
    timeouts and a total deadline, for callers who wait): ``get_many_in_runtime`` is the same read
    made by a runtime for itself (the revoke check, a redelivered step's follow-ups) through the
    client its result writes use, so a cold Lambda instance builds one client, not two."""

    def get_many_in_runtime(self, task_ids: Sequence[str]) -> dict[str, ResultRecord]:
        """``get_many(task_ids)``, through the runtime's client."""


class MessageStream(Protocol):
    """Messages a broker keeps flowing to one long-running consumer (``StreamingReceiver.stream``).
    Deliveries from it are settled, extended and released through the broker as usual."""

    def receive(self, queue: str, max_messages: int, lease_s: float, wait_s: float = 0.0) -> list[Delivery]:
        """``Broker.receive`` from what the stream already holds: up to ``max_messages`` of
        ``queue``, waiting up to ``wait_s`` for one. It may return empty before ``wait_s`` when
        a message of another of the stream's queues arrives (the caller then asks that one)."""

    def finished(self, deliveries: Sequence[Delivery]) -> None:
        """Their tasks are done and their outcomes go to the broker within the ack interval: they
        stop counting against the stream's limit (as a worker's prefetch stops counting them) and
        their leases stop being extended. No request."""

    def close(self, timeout_s: float) -> list[Delivery]:
        """Stop the stream within ``timeout_s`` and return what it held but never handed out:
        the caller releases them (``Broker.release``). Idempotent."""


@runtime_checkable
class StreamingReceiver(Protocol):
    """A broker that can push messages to a long-running worker over one open stream instead of a
    request per receive (Pub/Sub streaming pull). The worker uses it outside burst mode; one-shot
    receivers (burst runs, the CLI, Lambda-like use) keep ``Broker.receive``."""

    def stream(
        self, queues: Sequence[str], max_held: int, lease_s: float, max_lease_s: float | None = None
    ) -> MessageStream | None:
        """Open a stream on ``queues`` that never holds more than ``max_held`` unsettled messages
        (buffered here, handed out, not yet settled), each leased ``lease_s`` and kept leased by the
        broker's client while held, for at most ``max_lease_s`` (None: while held). None when this
        broker is configured to pull synchronously."""


@runtime_checkable
class DeadLetterAdmin(Protocol):
    """A broker that puts dead letters back on their queue and deletes them by id (``cloudq
    dead-letters QUEUE redrive | purge``). Without it those commands say the broker cannot.

    Redriving never loses a message: each is copied to the queue first and removed from the
    dead letters only once the copy is stored, so a crash leaves it in the dead letters, on the
    queue, or (between the two steps) in both -- a duplicate, never a loss."""

    def redrive(
        self,
        queue: str,
        ids: Collection[str] | None = None,
        *,
        rewrite: Callable[[bytes], bytes] | None = None,
        progress: Callable[[int], None] | None = None,
    ) -> int:
        """Move the dead letters of ``queue`` whose ``message_id`` is in ``ids`` (all when None)
        back to ``queue``, as new deliveries: their delivery count starts over, the dead-letter
        reason is dropped, the message id is kept. ``rewrite`` maps each body before it is sent
        (the core resets the envelope's retries; bodies kept in object storage are moved as
        they are). ``progress`` is called with how many moved after each batch. Returns how
        many moved (copies of one id that were both dead-lettered count each)."""

    def delete_dead_letters(self, queue: str, ids: Collection[str]) -> int:
        """Delete the dead letters of ``queue`` whose ``message_id`` is in ``ids`` (and their
        claim-check objects); returns how many."""


# Declared for what comes (canvas, periodic tasks, operations): nothing implements them yet; the
# contracts are fixed here first so adapters grow them in one shape.


@dataclass(frozen=True, slots=True)
class TaskSummary:
    """One row of a task listing: enough to find a task, not its result."""

    task_id: str
    task_name: str
    state: str
    updated_at: float  # epoch seconds of the record's last write


@runtime_checkable
class TaskIndex(Protocol):
    """A result store that lists recent tasks (``cloudq inspect``, dashboards)."""

    def recent(self, states: Sequence[str] = (), since: float | None = None, limit: int = 100) -> list[TaskSummary]:
        """Up to ``limit`` tasks whose state is one of ``states`` (all when empty) written at or
        after ``since`` (epoch seconds), newest first. May lag writes by a few seconds (a
        secondary index); expired records are not listed."""


@runtime_checkable
class AtomicCounter(Protocol):
    """Counters for chords: the header's tasks each increment, the one that sees the total runs
    the body, so the body runs exactly once without a coordinator."""

    def increment(self, key: str, by: int = 1, expires_at: float | None = None) -> int:
        """Add ``by`` atomically (creating the counter at 0) and return the new value: two
        concurrent increments never return the same value. ``expires_at`` (epoch seconds) lets
        the store drop an abandoned counter: pass the same one to every increment of a counter
        (stores keep the one it was created with; Firestore the earliest given). Past it the
        counter is gone and the next increment starts again at 0. Counters never read as task
        records (``get`` of their key is None). At least once: an increment whose response is
        lost and that the SDK retries (DynamoDB, Firestore) counts twice, so exactly-once callers
        (chord bodies) must make each contribution idempotent themselves."""

    def delete_counter(self, key: str) -> None:
        """Remove the counter; absent is not an error."""


@dataclass(frozen=True, slots=True)
class Heartbeat:
    """A worker's presence record (``cloudq status``, ``cloudq inspect``). ``info`` is
    JSON-compatible: hostname, pid, queues, pool, concurrency, version, the tasks active and
    reserved now and the counts since start (``cloudq/runtime/presence.py`` builds it)."""

    worker_id: str
    seen_at: float  # epoch seconds
    info: Mapping[str, Any] = field(default_factory=dict)


@runtime_checkable
class HeartbeatStore(Protocol):
    """TTL'd worker presence records, kept apart from task records (``get`` never returns one):
    ``cloudq status`` and ``cloudq inspect`` list live workers. Listing is one request (a query
    on a small partition or collection), never a scan of the task records."""

    def beat(self, heartbeat: Heartbeat, ttl_s: float) -> None:
        """Write or refresh the record in one request; it reads as absent ``ttl_s`` seconds after
        ``heartbeat.seen_at`` (0: at once, how a stopping worker says it is gone)."""

    def alive(self) -> list[Heartbeat]:
        """Workers whose last beat has not expired, in any order."""
