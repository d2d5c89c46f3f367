"""Worker presence: who is running, what, and how it went (``cloudq status``, ``cloudq inspect``).

Not the lease heartbeat (``heartbeat.py`` extends leases): every ``presence_interval`` seconds a
worker writes one small record to the result store (a ``HeartbeatStore``) that reads as absent
after ``PRESENCE_TTL_INTERVALS`` intervals, so a worker that dies drops out of the listing by
itself. The record is built from what the worker already holds (no broker or store read) and
written from a background thread, so task work never waits for it; a failed write is logged and
the next interval tries again. Lambda and push instances have no thread of their own: their
invocation path calls ``due()`` and writes at most once per interval (``Presence.maybe_beat``).
"""

from __future__ import annotations

import logging
import os
import threading
import time
import uuid
from collections import Counter
from collections.abc import Callable, Iterable, Mapping
from typing import TYPE_CHECKING, Any

from .. import __version__
from ..envelope import MAX_EPOCH_S
from ..envelope import peek as peek_fields
from ..interfaces import Delivery, Heartbeat, HeartbeatStore
from .consumer import peek
from .executor import Ack, DeadLetter, Outcome, Requeue, RetryIn
from .series import Rolling

if TYPE_CHECKING:
    from ..app import App
    from .inbox import Inbox
    from .worker import Worker

log = logging.getLogger("cloudq.presence")

PRESENCE_TTL_INTERVALS = 3  # a record outlives two missed writes
MAX_LISTED = 20  # tasks listed per record (active, reserved; the counts are exact): about 2 KB at most
COUNTED = ("succeeded", "failed", "retried")


# an Ack's event -> the state it finished in (an expired task counts as revoked, as Celery's
# task_revoked(expired=True)); duplicates and ETA hops are not runs
_ACK_STATES = {"succeeded": "succeeded", "retried": "retried", "revoked": "revoked", "expired": "revoked"}


def outcome_state(outcome: Outcome) -> str | None:
    """How a run finished: succeeded, failed (for good: dead-lettered), retried or revoked
    (None: not a run, e.g. a duplicate delivery, a deferred ETA hop, a rate-limit wait)."""
    if isinstance(outcome, Ack):
        return _ACK_STATES.get(outcome.event)
    if isinstance(outcome, RetryIn):
        return "retried"
    if isinstance(outcome, Requeue):
        return "retried" if outcome.event == "retried" else None
    if isinstance(outcome, DeadLetter):
        return "failed"
    return None


def outcome_kind(outcome: Outcome) -> str | None:
    """Which of the presence record's counts (``COUNTED``) an outcome adds to, if any."""
    if type(outcome) is Ack and outcome.event == "succeeded":  # nearly every run's: asked per task
        return "succeeded"
    state = outcome_state(outcome)
    return state if state in COUNTED else None


def describe(delivery: Delivery, started: float | None = None) -> dict[str, Any]:
    """One listed task: id, name, queue (and when it started), read from the body without
    validating it (a body that is not an envelope lists under its message id)."""
    task_id, name, _ = peek(delivery.body)
    entry: dict[str, Any] = {"id": task_id or delivery.message_id, "name": name, "queue": delivery.queue}
    if started is not None:
        entry["started"] = started
    return entry


WAIT_SAMPLE_S = 0.05  # queue wait is measured on at most one finished run per this many seconds


def queue_wait(delivery: Delivery, started: float) -> float | None:
    """Seconds the message waited for a worker: ``started`` minus the later of its ``sent_at``
    and ``eta``; None on a redelivery (its wait would count a backoff or a lost lease) or when
    the body tells no send time."""
    if delivery.delivery_count > 1:
        return None
    fields = peek_fields(delivery.body)
    # the body is not validated here: only a time an envelope could hold counts (a huge int, a
    # negative or far-future number would make the wait infinite or wrong)
    times: list[float] = []
    for t in (fields.get("sent_at"), fields.get("eta")):
        if isinstance(t, int | float) and not isinstance(t, bool) and 0 <= t <= MAX_EPOCH_S:  # NaN fails
            times.append(float(t))
    return max(started - max(times), 0.0) if times else None


class Tracker:
    """What runs now and how the finished ones went: the slots (or a Lambda/push invocation)
    run each delivery through ``run``. Thread-safe; costs a dict insert and delete per task,
    and for a finished run a bucket increment (``series``) and, sampled, a read of the body's send time."""

    def __init__(self, clock: Callable[[], float] = time.time) -> None:
        self._clock = clock
        self._lock = threading.Lock()
        self._running: dict[int, tuple[Delivery, float]] = {}
        self.counts: Counter[str] = Counter({kind: 0 for kind in COUNTED})
        self.series = Rolling(clock)  # the last hour per minute and queue, for the presence record
        # queue wait needs the body's send time (a parse of the body): sampled, at most one run per
        # WAIT_SAMPLE_S, so a busy runtime pays for ~20 parses a second, not one per task
        self._next_wait_sample = 0.0
        # called with (delivery, outcome, seconds) after each run, in the runtime's own process
        # (cloudq.observability.metrics); one that raises is logged, the task goes on
        self.observers: list[Callable[[Delivery, Outcome, float], None]] = []

    def run(self, call: Callable[[Delivery], Outcome], delivery: Delivery) -> Outcome:
        started = self.started(delivery)
        try:
            outcome = call(delivery)
        except BaseException:
            with self._lock:
                self._running.pop(id(delivery), None)
            raise
        self.ended(delivery, outcome, started)
        return outcome

    def started(self, delivery: Delivery) -> float:
        """``delivery`` runs from now (``run`` in two halves, for a run that no thread waits on)."""
        started = self._clock()
        with self._lock:
            self._running[id(delivery)] = (delivery, started)
        return started

    def ended(self, delivery: Delivery, outcome: Outcome, started: float) -> None:
        kind = outcome_kind(outcome)
        with self._lock:  # one lock and one clock read per run: this runs for every task
            self._running.pop(id(delivery), None)
            if kind is not None:
                self.counts[kind] += 1
        now = self._clock() if self.observers or kind is not None else started
        took = now - started
        if kind is not None:
            try:  # charts are never worth a slot: whatever the body holds, the run is settled
                wait = None
                if started >= self._next_wait_sample and delivery.delivery_count <= 1:
                    # the budget is of parses: a body that tells no send time uses it up too
                    self._next_wait_sample = started + WAIT_SAMPLE_S
                    wait = queue_wait(delivery, started)
                self.series.record(delivery.queue, kind, took, wait, now)
            except Exception:
                log.exception("could not record a run in the presence series; the task is settled as usual")
        for observe in self.observers:
            try:
                observe(delivery, outcome, took)
            except Exception:
                log.exception("outcome observer %r raised: the task goes on", observe)

    def snapshot(self) -> tuple[list[tuple[Delivery, float]], dict[str, int]]:
        with self._lock:
            return list(self._running.values()), dict(self.counts)


class Presence:
    """Writes one worker's record. ``info`` is what does not change (hostname, queues, pool...);
    ``reserved`` lists the held deliveries not running yet (the worker's prefetch buffer)."""

    def __init__(
        self,
        store: HeartbeatStore,
        worker_id: str,
        info: Mapping[str, Any],
        interval_s: float,
        tracker: Tracker,
        reserved: Callable[[], Iterable[Delivery]] = tuple,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.store = store
        self.worker_id = worker_id
        self.info = {"pid": os.getpid(), "version": __version__, **info, "started_at": clock()}
        self.interval_s = interval_s
        self.ttl_s = interval_s * PRESENCE_TTL_INTERVALS
        self.tracker = tracker
        self.written = 0  # records written: for tests and logs
        self._reserved = reserved
        self._clock = clock
        self._last: float | None = None
        self._beat_lock = threading.RLock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def heartbeat(self) -> Heartbeat:
        running, counts = self.tracker.snapshot()
        running_ids = {id(delivery) for delivery, _ in running}
        reserved = [d for d in self._reserved() if id(d) not in running_ids]
        info = {
            **self.info,
            "active": [describe(d, started) for d, started in sorted(running, key=lambda pair: pair[1])[:MAX_LISTED]],
            "active_count": len(running),
            "reserved": [describe(d) for d in reserved[:MAX_LISTED]],
            "reserved_count": len(reserved),
            "counts": counts,
        }
        series = self.tracker.series.encode()
        if series is not None:  # an idle worker's record stays as small as before
            info["series"] = series
        return Heartbeat(self.worker_id, self._clock(), info)

    def beat(self, ttl_s: float | None = None) -> bool:
        """Write the record now; False (logged) when the write failed."""
        with self._beat_lock:
            self._last = self._clock()
            try:
                self.store.beat(self.heartbeat(), self.ttl_s if ttl_s is None else ttl_s)
            except Exception as exc:
                log.warning(
                    "presence record of %s not written (next try in %gs): %s: %s",
                    self.worker_id,
                    self.interval_s,
                    type(exc).__name__,
                    exc,
                )
                return False
            self.written += 1
            return True

    def due(self) -> bool:
        last = self._last
        return last is None or self._clock() - last >= self.interval_s

    def maybe_beat(self) -> bool:
        """From an invocation path (Lambda, push): write when an interval has passed since the
        last write, else nothing; whether it wrote. Concurrent callers write once."""
        if not self.due():
            return False
        with self._beat_lock:
            return self.due() and self.beat()

    # -- the container worker's thread -----------------------------------------------------------

    def start(self) -> None:
        self._thread = threading.Thread(target=self._loop, name="cloudq-presence", daemon=True)
        self._thread.start()

    def _loop(self) -> None:
        self.beat()
        while not self._stop.wait(self.interval_s):
            self.beat()

    def stop(self) -> None:
        """Stop beating and write a record that expires at once: the worker leaves the listing
        now rather than a TTL later (if that write fails, the TTL still removes it)."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
            self._thread = None
        self.beat(ttl_s=0.0)


def presence_store(store: object, interval_s: float, where: str) -> HeartbeatStore | None:
    """The store to write presence to, or None (off, or the store cannot: said once in the log)."""
    if interval_s <= 0:
        return None
    if not isinstance(store, HeartbeatStore):
        log.info("%s: the result store %r keeps no worker presence; cloudq status will not list it", where, store)
        return None
    return store


def worker_presence(worker: Worker, inbox: Inbox) -> Presence | None:
    """The container worker's presence, or None when off or the store keeps none."""
    interval = worker.app.settings.presence_interval
    store = presence_store(worker.app.results, interval, "worker")
    if store is None:
        return None
    node = worker.app.executor.hostname  # Celery's node name (cloudq worker -n), as self.request.hostname
    info = {
        "hostname": node,
        "app": worker.app.name,
        "runtime": "worker",
        "queues": list(worker.queues),
        "pool": worker.pool,
        "concurrency": worker.concurrency,
        "prefetch": inbox.capacity,
    }

    def reserved() -> list[Delivery]:
        return [held.delivery for held in inbox.held()]

    return Presence(store, f"{node}.{os.getpid()}", info, interval, worker.tracker, reserved)


class InstancePresence:
    """The presence of one function instance (a Lambda execution environment, a push server
    process): made on first use, written from the invocation path at most once per interval.
    Listed while it handled something in the last ``PRESENCE_TTL_INTERVALS`` intervals."""

    def __init__(self, app: App, runtime: str, node: str, concurrency: int, tracker: Tracker) -> None:
        self.app = app
        self.runtime = runtime
        self.node = node
        self.concurrency = concurrency
        self.tracker = tracker
        self.presence: Presence | None = None
        self._off = False
        self._lock = threading.Lock()

    def maybe_beat(self) -> None:
        if self.presence is None and not self._off:
            with self._lock:
                if self.presence is None and not self._off:
                    self.presence = self._make()
                    self._off = self.presence is None
        if self.presence is not None:
            self.presence.maybe_beat()

    def _make(self) -> Presence | None:
        interval = self.app.settings.presence_interval
        try:
            store = presence_store(self.app.results, interval, self.runtime)
        except Exception as exc:  # the executor reports a store it cannot open; presence stays off
            log.warning("%s: no presence record: %s: %s", self.runtime, type(exc).__name__, exc)
            return None
        if store is None:
            return None
        info = {
            "hostname": self.node,
            "app": self.app.name,
            "runtime": self.runtime,
            "queues": self.app.queues(),
            "pool": "threads",
            "concurrency": self.concurrency,
        }
        return Presence(store, f"{self.node}.{uuid.uuid4().hex[:12]}", info, interval, self.tracker)
