"""Google Cloud Pub/Sub broker: ``pubsub://PROJECT?prefix=myapp-``.

One topic and one pull subscription per cloudq queue (names: prefix + queue), plus a dead-letter
topic and subscription per queue (see pubsub_admin.py).

Receiving is a synchronous ``Pull`` with ``max_messages``, then ``ModifyAckDeadline`` to the lease
asked for (skipped when it equals the subscription's deadline). That is the Broker protocol's own
shape -- lease up to N for L seconds, from any thread, in any runtime (a worker, a CLI command, a
burst run) -- with no background threads and no messages leased ahead of what the caller wanted.
Streaming pull with ``FlowControl(max_messages=prefetch)`` would save the pull round trip under
constant load, but leases messages into a client-side buffer the caller does not see; it can come
later as a worker-specific consumer. A waiting pull (``wait_s > 0``) lets the server hold the call
until messages arrive (it answers empty after about a second on the emulator, then we ask again
until ``wait_s``); ``wait_s = 0`` asks with ``return_immediately``.

Leases are ack deadlines: ack = Acknowledge, nack(d <= 600 s) = ModifyAckDeadline(d) (d = 0
redelivers now), extend = ModifyAckDeadline(lease), each batched per call. Delivery counts come
from ``delivery_attempt``, which Pub/Sub fills only under a dead-letter policy; with
``?max_delivery_attempts=0`` there is none and ``limits.counts_deliveries`` is False, so the core
counts attempts in the envelope. Delays, releases and nacks beyond 600 s republish the message
with the deliveries already spent (deferral.py explains how delays avoid a redelivery loop).

Messages above Pub/Sub's 10 MB go to a GCS bucket when ``?bucket=`` is set (the message carries
``cloudq-claim``), else ``MessageTooLarge`` is raised before anything is published.

``stats`` is approximate: Pub/Sub reports backlog only through Cloud Monitoring (which the emulator
lacks), so ``ready`` is -1 (unknown), ``in_flight`` and ``delayed`` count what this broker object
leased or is hiding, and ``dead_lettered`` counts the dead-letter subscription by reading it.
"""

from __future__ import annotations

import logging
import threading
import time
import warnings
from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from cloudq.envelope import CONTENT_TYPE, VERSION
from cloudq.errors import BackendUnavailable, ConfigurationError, MessageTooLarge
from cloudq.interfaces import BrokerLimits, DeadLetter, Delivery, OutgoingMessage, QueueStats

from . import deferral
from .errors import PUBSUB, translated
from .gcs_offload import GCS_MAX_OBJECT_BYTES, ClaimCheckMissing, GCSOffload
from .options import MAX_ACK_DEADLINE_S, PubSubOptions
from .pubsub_admin import QueueAdmin, QueuePaths

if TYPE_CHECKING:
    from google.api_core.retry import Retry
    from google.cloud.pubsub_v1 import PublisherClient, SubscriberClient  # type: ignore[import-untyped]
    from google.pubsub_v1 import ReceivedMessage

    from cloudq.config import Settings

log = logging.getLogger("cloudq.pubsub")

PUBSUB_MAX_REQUEST_BYTES = 10_000_000  # a publish request: data + attributes + ordering key
ATTRIBUTE_RESERVE_BYTES = 64 * 1024  # room left for our attributes
PUBSUB_MAX_BODY_BYTES = PUBSUB_MAX_REQUEST_BYTES - ATTRIBUTE_RESERVE_BYTES
PUBSUB_MAX_ATTRIBUTE_VALUE_BYTES = 1024
MAX_BATCH = 1000  # messages per publish request / pull / acknowledge
MAX_WAIT_S = 20.0  # longest receive(wait_s); each pull the server holds is shorter
MIN_PULL_WAIT_S = 1.0  # shortest deadline of a waiting pull
PUBLISH_LATENCY_S = 0.005  # the publisher's batching window for calls from other threads

CLAIM = "cloudq-claim"
ORIGIN = "cloudq-origin-id"  # the first copy's message id, kept across republishing
DEAD_REASON = "cloudq-dead-reason"
DEAD_QUEUE = "cloudq-dead-queue"
INTERNAL = frozenset({deferral.NOT_BEFORE, deferral.PRIOR, CLAIM, ORIGIN, DEAD_REASON, DEAD_QUEUE})
NATIVE_DEAD_COUNT = "CloudPubSubDeadLetterSourceDeliveryCount"  # set by Pub/Sub's dead-letter policy


@dataclass(frozen=True, slots=True)
class PubSubReceipt:
    subscription: str
    ack_id: str
    claim: str | None = None  # gs:// reference of an offloaded body


@dataclass(frozen=True, slots=True)
class _Out:
    """One message ready to publish."""

    data: bytes
    attributes: dict[str, str]
    ordering_key: str = ""


@dataclass(slots=True)
class _Sorted:
    """What one pull turned into."""

    deliveries: list[Delivery] = field(default_factory=list)
    hide: dict[int, list[str]] = field(default_factory=lambda: defaultdict(list))  # deadline -> ack ids
    again: list[_Out] = field(default_factory=list)  # republish, then ack ``settled``
    settled: list[str] = field(default_factory=list)
    lost: list[tuple[_Out, str, str]] = field(default_factory=list)  # (message, ack id, reason)


def _clip(text: str, limit: int = PUBSUB_MAX_ATTRIBUTE_VALUE_BYTES) -> str:
    return text.encode()[:limit].decode(errors="ignore")


def _too_big(out: _Out) -> bool:
    size = len(out.data) + len(out.ordering_key) + sum(len(k) + len(v.encode()) for k, v in out.attributes.items())
    return len(out.data) > PUBSUB_MAX_BODY_BYTES or size > PUBSUB_MAX_REQUEST_BYTES - 1024


def _chunks(items: Sequence[str], size: int = MAX_BATCH) -> Iterable[Sequence[str]]:
    return (items[i : i + size] for i in range(0, len(items), size))


class PubSubBroker:
    def __init__(self, options: PubSubOptions) -> None:
        self.options = options
        self.offload = (
            GCSOffload(options.bucket, f"{options.prefix}messages/", options.project) if options.bucket else None
        )
        self.limits = BrokerLimits(
            max_body_bytes=GCS_MAX_OBJECT_BYTES if self.offload else PUBSUB_MAX_BODY_BYTES,
            max_delay_s=None,  # any delay: held here by ack-deadline hops
            max_batch=MAX_BATCH,
            max_lease_s=float(MAX_ACK_DEADLINE_S),
            max_wait_s=MAX_WAIT_S,
            native_dead_letter=True,
            counts_deliveries=options.max_delivery_attempts > 0,
            ordering=bool(options.ordered),
        )
        self._lock = threading.Lock()
        self._publisher: PublisherClient | None = None
        self._subscriber: SubscriberClient | None = None
        self._retry: Retry | None = None
        self._queues: dict[str, QueuePaths] = {}
        self._leased: set[tuple[str, str]] = set()  # (subscription, ack id) handed out, not settled
        self._hidden: dict[tuple[str, str], float] = {}  # (subscription, message id) -> due, monotonic

    @classmethod
    def from_url(cls, url: str, settings: Settings) -> PubSubBroker:
        return cls(PubSubOptions.from_url(url, settings))

    def __repr__(self) -> str:
        return f"<PubSubBroker project={self.options.project} prefix={self.options.prefix!r}>"

    # -- clients, made on first use (none at import) -----------------------------------------------

    def _clients(self) -> tuple[PublisherClient, SubscriberClient, Retry]:
        if self._publisher is None or self._subscriber is None or self._retry is None:
            with self._lock, translated(PUBSUB, "creating the Pub/Sub clients"):
                if self._publisher is None or self._subscriber is None or self._retry is None:
                    from google.api_core import retry
                    from google.cloud import pubsub_v1  # type: ignore[import-untyped]

                    timeout = self.options.timeout
                    self._retry = retry.Retry(
                        predicate=retry.if_transient_error, initial=0.1, maximum=2.0, timeout=timeout
                    )
                    self._publisher = pubsub_v1.PublisherClient(
                        batch_settings=pubsub_v1.types.BatchSettings(
                            max_messages=MAX_BATCH,
                            max_bytes=PUBSUB_MAX_REQUEST_BYTES - 100_000,
                            max_latency=PUBLISH_LATENCY_S,
                        ),
                        publisher_options=pubsub_v1.types.PublisherOptions(
                            enable_message_ordering=bool(self.options.ordered), retry=self._retry, timeout=timeout
                        ),
                    )
                    self._subscriber = pubsub_v1.SubscriberClient()
                    # return_immediately is deprecated for pulls meant to wait; ours (wait_s=0) are not
                    warnings.filterwarnings("ignore", "The return_immediately flag is deprecated", DeprecationWarning)
        return self._publisher, self._subscriber, self._retry

    def _paths(self, queue: str) -> QueuePaths:
        paths = self._queues.get(queue)
        if paths is None:
            publisher, subscriber, retry = self._clients()
            paths = QueueAdmin(self.options, publisher, subscriber, retry).ensure(queue)
            self._queues[queue] = paths
        return paths

    def _sub_call(self, method: str, **request: Any) -> Any:
        _, subscriber, retry = self._clients()
        return getattr(subscriber, method)(request=request, retry=retry, timeout=self.options.timeout)

    # -- publishing -----------------------------------------------------------------------------

    def send(self, queue: str, messages: Sequence[OutgoingMessage]) -> list[str]:
        paths = self._paths(queue)
        outs = [self._outgoing(queue, m) for m in messages]  # checks every size before anything is sent
        for i, out in enumerate(outs):
            if self.offload is not None and _too_big(out):
                ref = self.offload.put(out.data, CONTENT_TYPE)
                outs[i] = _Out(b"", {**out.attributes, CLAIM: ref}, out.ordering_key)
        return self._publish(paths.topic, outs, f"publishing to queue {queue!r}")

    def _outgoing(self, queue: str, message: OutgoingMessage) -> _Out:
        if message.ordering_key and not self.options.is_ordered(queue):
            raise ConfigurationError(
                f"a message for queue {queue!r} has an ordering key, but the queue is not ordered: "
                f"add it to the pubsub:// URL's ?ordered= list (or ?ordered=*)"
            )
        attributes = {"content-type": CONTENT_TYPE, "envelope-version": str(VERSION), **message.attributes}
        if message.delay_s > 0:
            attributes[deferral.NOT_BEFORE] = f"{time.time() + message.delay_s:.6f}"
        out = _Out(message.body, attributes, message.ordering_key or "")
        if self.offload is None and _too_big(out):
            raise MessageTooLarge(
                len(message.body),
                PUBSUB_MAX_BODY_BYTES,
                "Pub/Sub takes 10 MB per message; set ?bucket=BUCKET on the pubsub:// URL to offload larger ones to Cloud Storage",
            )
        return out

    def _publish(self, topic: str, outs: Sequence[_Out], action: str) -> list[str]:
        """Publish all, then wait for all: the client packs them into as few requests as it can."""
        if not outs:
            return []
        publisher, _, _ = self._clients()
        with translated(PUBSUB, action):
            ordering = bool(self.options.ordered)  # a key is only kept on ordered queues' messages anyway
            futures = [
                publisher.publish(topic, o.data, ordering_key=o.ordering_key if ordering else "", **o.attributes)
                for o in outs
            ]
            ids: list[str] = []
            for out, future in zip(outs, futures, strict=True):
                try:
                    ids.append(future.result(timeout=self.options.timeout + 10))
                except TimeoutError:
                    raise BackendUnavailable(
                        f"{PUBSUB.where()} did not confirm a publish within {self.options.timeout + 10:.0f}s while {action}"
                    ) from None
                except Exception:
                    if out.ordering_key and ordering:  # a failed publish pauses its key until resumed
                        publisher.resume_publish(topic, out.ordering_key)
                    raise
        return ids

    def _again(self, delivery: Delivery, spent: int, not_before: float | None = None) -> _Out:
        """A fresh copy of a delivered message, carrying the deliveries already spent."""
        receipt: PubSubReceipt = delivery.receipt
        attributes = {**delivery.attributes, deferral.PRIOR: str(spent), ORIGIN: delivery.message_id}
        if not_before is not None:
            attributes[deferral.NOT_BEFORE] = f"{not_before:.6f}"
        if receipt.claim:
            return _Out(b"", {**attributes, CLAIM: receipt.claim}, delivery.ordering_key or "")
        return _Out(delivery.body, attributes, delivery.ordering_key or "")

    # -- receiving ------------------------------------------------------------------------------

    def receive(self, queue: str, max_messages: int, lease_s: float, wait_s: float = 0.0) -> list[Delivery]:
        paths = self._paths(queue)
        want = max(1, min(int(max_messages), MAX_BATCH))
        deadline = time.monotonic() + max(0.0, min(wait_s, MAX_WAIT_S))
        while True:
            left = deadline - time.monotonic()
            received = self._pull(paths.subscription, want, max(0.0, left))
            deliveries = self._settle_pulled(queue, paths, received)
            if deliveries or left <= 0 or time.monotonic() >= deadline:
                break
        if deliveries:
            lease = max(1, min(MAX_ACK_DEADLINE_S, int(-(-lease_s // 1))))
            if lease != self.options.ack_deadline:
                self._modack(paths.subscription, [d.receipt.ack_id for d in deliveries], lease)
            with self._lock:
                self._leased.update((paths.subscription, d.receipt.ack_id) for d in deliveries)
        return deliveries

    def _pull(self, subscription: str, want: int, wait_s: float) -> list[ReceivedMessage]:
        """One Pull. ``wait_s > 0`` lets the server hold it up to that long (an empty answer or our
        deadline ends it); 0 asks with return_immediately."""
        from google.api_core.exceptions import DeadlineExceeded

        _, subscriber, retry = self._clients()
        request = {"subscription": subscription, "max_messages": want, "return_immediately": wait_s <= 0}
        with translated(PUBSUB, f"pulling from {subscription}"):
            try:
                response = subscriber.pull(
                    request=request,
                    retry=retry,
                    timeout=max(wait_s, MIN_PULL_WAIT_S) if wait_s > 0 else self.options.timeout,
                )
            except DeadlineExceeded:  # the wait ran out with nothing to deliver
                return []
        return list(response.received_messages)

    def _settle_pulled(self, queue: str, paths: QueuePaths, received: Sequence[ReceivedMessage]) -> list[Delivery]:
        """Turn pulled messages into deliveries; hide, forward or refresh the delayed ones."""
        now = time.time()
        sorted_ = _Sorted()
        for item in received:
            message = item.message
            attributes = dict(message.attributes)
            due = deferral.not_before(attributes)
            if due is None:
                self._deliver(queue, paths, item, attributes, sorted_)
                continue
            attributes.setdefault(ORIGIN, message.message_id)
            if due <= now:  # forward: the copy that runs starts from Pub/Sub's first attempt
                attributes.pop(deferral.NOT_BEFORE)
                sorted_.again.append(_Out(bytes(message.data), attributes, message.ordering_key))
                sorted_.settled.append(item.ack_id)
                continue
            age = now - message.publish_time.timestamp()
            action = deferral.early(item.delivery_attempt, age, self.options.max_delivery_attempts)
            if action is deferral.Early.HIDE:
                sorted_.hide[deferral.hide_for(due - now)].append(item.ack_id)
                with self._lock:
                    self._hidden[(paths.subscription, message.message_id)] = time.monotonic() + (due - now)
            else:
                sorted_.again.append(_Out(bytes(message.data), attributes, message.ordering_key))
                sorted_.settled.append(item.ack_id)
        self._apply(queue, paths, sorted_)
        return sorted_.deliveries

    def _deliver(
        self, queue: str, paths: QueuePaths, item: ReceivedMessage, attributes: dict[str, str], sorted_: _Sorted
    ) -> None:
        message = item.message
        claim = attributes.get(CLAIM)
        body = bytes(message.data)
        if claim:
            try:
                body = self._offload().get(claim)
            except ClaimCheckMissing as exc:
                sorted_.lost.append((_Out(body, attributes), item.ack_id, f"ClaimCheckMissing: {exc}"))
                return
        attempt = item.delivery_attempt if item.delivery_attempt > 0 else 1
        sorted_.deliveries.append(
            Delivery(
                body=body,
                receipt=PubSubReceipt(paths.subscription, item.ack_id, claim),
                delivery_count=attempt + deferral.prior(attributes),
                queue=queue,
                message_id=attributes.get(ORIGIN, message.message_id),
                attributes={k: v for k, v in attributes.items() if k not in INTERNAL},
                ordering_key=message.ordering_key or None,
            )
        )

    def _apply(self, queue: str, paths: QueuePaths, sorted_: _Sorted) -> None:
        for seconds, ack_ids in sorted_.hide.items():
            self._modack(paths.subscription, ack_ids, seconds)
        if sorted_.again:
            self._publish(paths.topic, sorted_.again, f"republishing delayed messages of queue {queue!r}")
            self._ack_ids(paths.subscription, sorted_.settled)
        for out, ack_id, reason in sorted_.lost:
            log.warning("dead-lettering a message of %s: %s", queue, reason)
            dead = _Out(out.data, {**out.attributes, DEAD_REASON: _clip(reason), DEAD_QUEUE: queue})
            self._publish(paths.dead_topic, [dead], f"dead-lettering to {paths.dead_topic}")
            self._ack_ids(paths.subscription, [ack_id])

    def _offload(self) -> GCSOffload:
        if self.offload is None:
            raise ConfigurationError(
                "a message was offloaded to Cloud Storage but this broker has no ?bucket= to read it from"
            )
        return self.offload

    # -- settling ---------------------------------------------------------------------------------

    def _by_subscription(self, deliveries: Sequence[Delivery]) -> dict[str, list[Delivery]]:
        groups: dict[str, list[Delivery]] = defaultdict(list)
        for delivery in deliveries:
            groups[delivery.receipt.subscription].append(delivery)
        return groups

    def _forget(self, subscription: str, ack_ids: Iterable[str]) -> None:
        with self._lock:
            self._leased.difference_update((subscription, a) for a in ack_ids)

    def _ack_ids(self, subscription: str, ack_ids: Sequence[str]) -> None:
        for chunk in _chunks(ack_ids):
            with translated(PUBSUB, f"acknowledging {len(chunk)} message(s) on {subscription}"):
                self._sub_call("acknowledge", subscription=subscription, ack_ids=list(chunk))
        self._forget(subscription, ack_ids)

    def _modack(self, subscription: str, ack_ids: Sequence[str], seconds: int) -> None:
        for chunk in _chunks(ack_ids):
            with translated(PUBSUB, f"changing the ack deadline of {len(chunk)} message(s) on {subscription}"):
                self._sub_call(
                    "modify_ack_deadline", subscription=subscription, ack_ids=list(chunk), ack_deadline_seconds=seconds
                )

    def ack(self, deliveries: Sequence[Delivery]) -> None:
        for subscription, group in self._by_subscription(deliveries).items():
            self._ack_ids(subscription, [d.receipt.ack_id for d in group])
            for delivery in group:
                if delivery.receipt.claim:
                    self._drop_claim(delivery.receipt.claim)

    def _drop_claim(self, ref: str) -> None:
        try:
            self._offload().delete(ref)
        except Exception as exc:  # the message is settled; a leftover object only costs storage
            log.warning("could not delete claim-check object %s (a bucket lifecycle rule will): %s", ref, exc)

    def nack(self, deliveries: Sequence[Delivery], delay_s: float = 0.0) -> None:
        if delay_s > MAX_ACK_DEADLINE_S:  # beyond one ack deadline: a delayed copy
            due = time.time() + delay_s
            self._replace(deliveries, lambda d: self._again(d, d.delivery_count, due), "postponing")
            return
        seconds = max(0, int(-(-delay_s // 1)))  # rounded up: never earlier than asked
        for subscription, group in self._by_subscription(deliveries).items():
            ack_ids = [d.receipt.ack_id for d in group]
            self._modack(subscription, ack_ids, seconds)
            self._forget(subscription, ack_ids)

    def release(self, deliveries: Sequence[Delivery]) -> None:
        """Never started: a fresh copy that does not count this delivery. On ordered queues they go
        back with a zero deadline instead (a copy would lose its place); that delivery counts."""
        ordered = [d for d in deliveries if self.options.is_ordered(d.queue)]
        if ordered:
            self.nack(ordered, 0.0)
        unordered = [d for d in deliveries if not self.options.is_ordered(d.queue)]
        self._replace(unordered, lambda d: self._again(d, max(0, d.delivery_count - 1)), "releasing")

    def _replace(self, deliveries: Sequence[Delivery], copy: Any, action: str) -> None:
        """Publish a copy of each delivery to its queue, then ack the delivered ones."""
        for _, group in self._by_subscription(deliveries).items():
            paths = self._paths(group[0].queue)
            self._publish(paths.topic, [copy(d) for d in group], f"{action} messages of queue {group[0].queue!r}")
            self._ack_ids(paths.subscription, [d.receipt.ack_id for d in group])

    def extend(self, deliveries: Sequence[Delivery], lease_s: float) -> None:
        seconds = max(1, min(MAX_ACK_DEADLINE_S, int(-(-lease_s // 1))))
        for subscription, group in self._by_subscription(deliveries).items():
            self._modack(subscription, [d.receipt.ack_id for d in group], seconds)

    def dead_letter(self, deliveries: Sequence[Delivery], reason: str) -> None:
        for _, group in self._by_subscription(deliveries).items():
            queue = group[0].queue
            paths = self._paths(queue)
            outs = []
            for delivery in group:
                out = self._again(delivery, delivery.delivery_count)
                attributes = {**out.attributes, DEAD_REASON: _clip(reason), DEAD_QUEUE: queue}
                outs.append(_Out(out.data, attributes))
            self._publish(paths.dead_topic, outs, f"dead-lettering to {paths.dead_topic}")
            self._ack_ids(paths.subscription, [d.receipt.ack_id for d in group])

    # -- inspection -----------------------------------------------------------------------------

    def _peek_dead(self, paths: QueuePaths, limit: int) -> list[ReceivedMessage]:
        """Read up to ``limit`` dead letters, then give them back at once (deadline 0)."""
        seen: list[ReceivedMessage] = []
        try:
            while len(seen) < limit:
                batch = self._pull(paths.dead_subscription, min(MAX_BATCH, limit - len(seen)), 0.0)
                if not batch:
                    break
                seen += batch
        finally:
            if seen:
                self._modack(paths.dead_subscription, [m.ack_id for m in seen], 0)
        return seen

    def dead_letters(self, queue: str, limit: int = 100) -> list[DeadLetter]:
        paths = self._paths(queue)
        letters = []
        for item in self._peek_dead(paths, limit):
            attributes = dict(item.message.attributes)
            body = bytes(item.message.data)
            reason = attributes.get(DEAD_REASON) or (
                f"MaxDeliveryAttempts: delivered {attributes.get(NATIVE_DEAD_COUNT, '?')} times without an ack "
                f"(dead-letter policy of {paths.subscription})"
            )
            if attributes.get(CLAIM):
                try:
                    body = self._offload().get(attributes[CLAIM])
                except ClaimCheckMissing as exc:
                    reason = f"{reason}; body lost: {exc}"
            letters.append(DeadLetter(body, reason, queue, attributes.get(ORIGIN, item.message.message_id)))
        return letters

    def stats(self, queue: str) -> QueueStats:
        paths = self._paths(queue)
        now = time.monotonic()
        with self._lock:
            for key in [k for k, due in self._hidden.items() if due <= now]:
                del self._hidden[key]
            in_flight = sum(1 for sub, _ in self._leased if sub == paths.subscription)
            delayed = sum(1 for sub, _ in self._hidden if sub == paths.subscription)
        dead = len(self._peek_dead(paths, MAX_BATCH))
        return QueueStats(queue, ready=-1, in_flight=in_flight, delayed=delayed, dead_lettered=dead)

    def purge(self, queue: str) -> int:
        """Ack everything receivable now (delayed messages hidden by a receiver are not: they come
        back when due)."""
        paths = self._paths(queue)
        count = 0
        while True:
            batch = self._pull(paths.subscription, MAX_BATCH, 0.0)
            if not batch:
                return count
            self._ack_ids(paths.subscription, [m.ack_id for m in batch])
            for item in batch:
                claim = item.message.attributes.get(CLAIM)
                if claim:
                    self._drop_claim(claim)
            count += len(batch)

    def close(self) -> None:
        publisher, subscriber = self._publisher, self._subscriber
        self._publisher = self._subscriber = None
        self._queues.clear()
        if publisher is not None:
            publisher.stop()
        if subscriber is not None:
            subscriber.close()
        if self.offload is not None:
            self.offload.close()
