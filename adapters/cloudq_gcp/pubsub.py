"""Google Cloud Pub/Sub broker: ``pubsub://PROJECT?prefix=myapp-``.

One topic and one pull subscription per cloudq queue (names: prefix + queue), plus a dead-letter
topic and subscription per queue (see pubsub_admin.py).

Receiving is a synchronous ``Pull`` with ``max_messages``, then ``ModifyAckDeadline`` to the lease
asked for (skipped when it equals the subscription's deadline). That is the Broker protocol's own
shape -- lease up to N for L seconds, from any thread, in any runtime (a worker, a CLI command, a
burst run) -- with no background threads and no messages leased beyond what the caller asked for.
``wait_s > 0`` lets the server hold the pull (up to that long) until messages arrive; ``wait_s = 0``
asks with ``return_immediately``. With ``?pull=streaming`` a long-running worker opens a streaming
pull instead (``StreamingReceiver.stream``, pubsub_streaming.py): messages flow without a request
per receive, and are settled through the same methods below.

Leases are ack deadlines (whole seconds, at most 600): ack = Acknowledge, nack(d <= 600 s) =
ModifyAckDeadline(d) (0 redelivers now), extend = ModifyAckDeadline(lease), each batched per call.
Delivery counts come from ``delivery_attempt``, which Pub/Sub fills only under a dead-letter
policy; with ``?max_delivery_attempts=0`` there is none, ``limits.counts_deliveries`` is False and
the core counts attempts in the envelope. Delays, releases and nacks beyond 600 s republish the
message carrying the deliveries it already spent (deferral.py explains delays without a
redelivery loop). A copy is only made while this broker's lease surely holds, so a stale receipt
never duplicates a message; otherwise the message simply comes back when its lease runs out.

Ordering keys work on queues listed in ``?ordered=`` (or ``*``): Pub/Sub then hands out the next
message of a key only after the previous one is acked (one pull may return several of a key, in
order). Messages above Pub/Sub's 10 MB go to a GCS bucket when ``?bucket=`` is set, else
``MessageTooLarge`` is raised before anything is published.

``stats`` is approximate: Pub/Sub reports backlog only through Cloud Monitoring (which the emulator
lacks), so ``ready`` is reported as 0 (unknown); ``in_flight`` counts what this broker object leased, and
``delayed`` what it hid or gave back with a delay until it delivers it again (so a burst worker waits
for its own delayed tasks and retries); ``dead_lettered`` reads the dead-letter subscription.
"""

from __future__ import annotations

import logging
import os
import threading
import time
import uuid
import warnings
from collections import defaultdict
from collections.abc import Callable, Collection, Iterable, Sequence
from dataclasses import replace
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, TypeVar

from cloudq.errors import BackendUnavailable, CloudqError, ConfigurationError, MessageTooLarge, QueueNotFound
from cloudq.interfaces import (
    UNKNOWN,
    BrokerLimits,
    DeadLetter,
    Delivery,
    MessageStream,
    OutgoingMessage,
    QueueStats,
)
from cloudq.periodic import fill_publish_minute
from cloudq.util.chunks import chunks

from . import deferral
from .deadline import Deadline
from .errors import PUBSUB, translated
from .gcs import GCS_MAX_OBJECT_BYTES, ClaimCheckMissing, GCSOffload
from .options import MAX_ACK_DEADLINE_S, PubSubOptions
from .pubsub_admin import QueueAdmin, QueuePaths
from .pubsub_messages import (
    CLAIM,
    CONTENT_TYPE,
    DEAD_QUEUE,
    DEAD_REASON,
    ENVELOPE_VERSION,
    INTERNAL_PREFIX,
    MESSAGE_ID,
    PUBSUB_MAX_BODY_BYTES,
    PUBSUB_MAX_REQUEST_BYTES,
    Outgoing,
    PubSubReceipt,
    Received,
    Streamed,
    clip,
    copy_attributes,
    dead_reason,
    public,
)

if TYPE_CHECKING:
    from google.api_core.retry import Retry
    from google.cloud.pubsub_v1 import PublisherClient, SubscriberClient  # type: ignore[import-untyped]
    from google.pubsub_v1 import ReceivedMessage

    from cloudq.config import Settings

log = logging.getLogger("cloudq.pubsub")
T = TypeVar("T")

MAX_BATCH = 1000  # messages per publish request / pull / acknowledge
MAX_WAIT_S = 20.0  # longest receive(wait_s)
MIN_PULL_WAIT_S = 1.0  # shortest deadline of a pull that may wait
HIDDEN_GRACE_S = 30.0  # how long past its due time a hidden message still counts as delayed here
HIDDEN_PRUNE_AT = 10_000  # entries before _hide prunes (a long-running worker never calls stats)
DEAD_SCAN_LEASE_S = 600  # dead letters a redrive or delete leaves are held this long, then given back
NATIVE_DEAD_PREFIX = "CloudPubSubDeadLetter"  # attributes Pub/Sub's dead-letter policy adds
UNREADABLE_RETRY_S = 10  # ack deadline for a message whose claim-check Cloud Storage failed to serve
PUBLISH_LATENCY_S = 0.005  # the publisher's batching window for publishes from other threads


def _seconds(value: float, low: int) -> int:
    """Whole seconds for an ack deadline: rounded up (never earlier than asked), within Pub/Sub's range."""
    return max(low, min(MAX_ACK_DEADLINE_S, int(-(-value // 1))))


def _emulator_channel(interceptors: Sequence[Any]) -> Any:
    """For the emulator: a channel that takes responses of any size (the client's own emulator
    channel keeps gRPC's 4 MiB default, so pulling larger messages would fail and lease them),
    with the given gRPC client interceptors. None when not on the emulator."""
    host = os.environ.get("PUBSUB_EMULATOR_HOST")
    if not host:
        return None  # the production channels already have no size limit
    import grpc  # type: ignore[import-untyped]

    unlimited = [("grpc.max_send_message_length", -1), ("grpc.max_receive_message_length", -1)]
    channel = grpc.insecure_channel(host, options=unlimited)
    return grpc.intercept_channel(channel, *interceptors) if interceptors else channel


class PubSubBroker:
    """``interceptors``: gRPC client interceptors for the emulator's channels (instrumentation, e.g.
    counting requests in benchmarks); ignored outside the emulator."""

    messaging_system = "gcp_pubsub"  # OpenTelemetry's messaging.system (cloudq.interfaces.MessagingSystem)

    def __init__(self, options: PubSubOptions, *, interceptors: Sequence[Any] = ()) -> None:
        from cloudq.envelope import CONTENT_TYPE as ENVELOPE_CONTENT_TYPE
        from cloudq.envelope import VERSION  # here, not at import: the envelope module loads pydantic

        self.options = options
        self.interceptors = tuple(interceptors)
        self._labels = {CONTENT_TYPE: ENVELOPE_CONTENT_TYPE, ENVELOPE_VERSION: str(VERSION)}
        self.offload = (
            GCSOffload(
                options.bucket, f"{options.prefix}messages/", options.project, create_missing=options.create_missing
            )
            if options.bucket
            else None
        )
        self.limits = BrokerLimits(
            max_body_bytes=GCS_MAX_OBJECT_BYTES if self.offload else PUBSUB_MAX_BODY_BYTES,
            max_delay_s=None,  # any delay: held by ack-deadline hops
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
        self._leased: set[tuple[str, str]] = set()  # (subscription, ack id) handed out, not settled here
        # (subscription, message id) -> when due (monotonic): messages this broker hid or gave back,
        # until it delivers them again; what ``stats().delayed`` counts
        self._hidden: dict[tuple[str, str], float] = {}

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
                    from google.pubsub_v1.services.publisher.transports import PublisherGrpcTransport
                    from google.pubsub_v1.services.subscriber.transports import SubscriberGrpcTransport

                    channel = _emulator_channel(self.interceptors)
                    self._publisher = pubsub_v1.PublisherClient(
                        **({"transport": PublisherGrpcTransport(channel=channel)} if channel else {}),
                        batch_settings=pubsub_v1.types.BatchSettings(
                            max_messages=MAX_BATCH,
                            max_bytes=PUBSUB_MAX_REQUEST_BYTES - 100_000,
                            max_latency=PUBLISH_LATENCY_S,
                        ),
                        publisher_options=pubsub_v1.types.PublisherOptions(
                            enable_message_ordering=bool(self.options.ordered), retry=self._retry, timeout=timeout
                        ),
                    )
                    self._subscriber = pubsub_v1.SubscriberClient(
                        **({"transport": SubscriberGrpcTransport(channel=channel)} if channel else {})
                    )
                    # return_immediately is deprecated for pulls meant to wait; ours (wait_s=0) are not
                    warnings.filterwarnings("ignore", "The return_immediately flag is deprecated", DeprecationWarning)
        return self._publisher, self._subscriber, self._retry

    def _paths(self, queue: str, deadline: Deadline | None = None) -> QueuePaths:
        paths = self._queues.get(queue)
        if paths is None:
            publisher, subscriber, retry = self._clients()
            paths = QueueAdmin(self.options, publisher, subscriber, retry, deadline).ensure(queue)
            self._queues[queue] = paths
        return paths

    def _on_queue(self, queue: str, call: Callable[[QueuePaths], T], deadline: Deadline | None = None) -> T:
        """``call`` with the queue's paths. When Pub/Sub no longer knows a cached topic or
        subscription (deleted, or an emulator restarted), forget the paths, ensure them again
        (``create_missing`` recreates them with their dead-letter policy, else QueueNotFound names
        ``cloudq deploy``) and call once more. ``deadline`` bounds the queue setup too."""
        try:
            return call(self._paths(queue, deadline))
        except QueueNotFound as exc:
            if self._queues.pop(queue, None) is None:
                raise  # not from a stale cache: ensure() itself found nothing
            log.warning("queue %r lost its Pub/Sub resources (%s); preparing it again", queue, exc)
            return call(self._paths(queue, deadline))

    def _call(self, method: str, action: str, **request: Any) -> Any:
        _, subscriber, retry = self._clients()
        with translated(PUBSUB, action):
            return getattr(subscriber, method)(request=request, retry=retry, timeout=self.options.timeout)

    # -- publishing -----------------------------------------------------------------------------

    def send(self, queue: str, messages: Sequence[OutgoingMessage]) -> list[str]:
        """Within one total deadline (``send_timeout``): offloads, the queue's setup on first use
        and every publish; past it BackendUnavailable names the endpoint."""
        if not messages:
            return []
        outs = [self._outgoing(queue, m) for m in messages]  # checks every size before anything is sent
        deadline = Deadline(self.options.send_timeout, PUBSUB)
        action = f"publishing to queue {queue!r}"
        for i, out in enumerate(outs):
            if self.offload is not None and out.too_big():
                ref = self.offload.put(out.data, self._labels[CONTENT_TYPE], timeout=deadline.left(action))
                outs[i] = Outgoing(b"", {**out.attributes, CLAIM: ref}, out.ordering_key)
        self._on_queue(queue, lambda paths: self._publish(paths.topic, outs, action, deadline), deadline)
        return [out.attributes[MESSAGE_ID] for out in outs]

    def _outgoing(self, queue: str, message: OutgoingMessage) -> Outgoing:
        if message.ordering_key and not self.options.is_ordered(queue):
            raise ConfigurationError(
                f"a message for queue {queue!r} has an ordering key, but the queue is not ordered: "
                "add it to the pubsub:// URL's ?ordered= list (or ?ordered=*)"
            )
        if any(key.startswith(INTERNAL_PREFIX) for key in message.attributes):
            raise ConfigurationError(f"message attributes starting with {INTERNAL_PREFIX!r} are reserved for cloudq")
        attributes = {
            **message.attributes,
            MESSAGE_ID: uuid.uuid4().hex,
            **self._labels,
        }
        if message.delay_s > 0:
            attributes[deferral.NOT_BEFORE] = f"{time.time() + message.delay_s:.6f}"
        out = Outgoing(message.body, attributes, message.ordering_key or "")
        if self.offload is None and out.too_big():
            raise MessageTooLarge(
                len(message.body),
                self.limits.max_body_bytes,
                "Pub/Sub takes 10 MB per message: set ?bucket=BUCKET on the pubsub:// URL to offload larger ones "
                "to Cloud Storage",
            )
        return out

    def _publish(self, topic: str, outs: Sequence[Outgoing], action: str, deadline: Deadline | None = None) -> None:
        """Publish all, then wait for all: the client packs them into as few requests as it can.
        With a ``deadline`` each publish request gets what is left of it as its timeout and retry
        budget (the client keeps ordered publishes retrying until they succeed: the wait on their
        futures still ends at the deadline)."""
        if not outs:
            return
        publisher, _, retry = self._clients()
        ordering = bool(self.options.ordered)  # the publisher only takes keys when ordering is on
        fixed = self.options.timeout + 10
        with translated(PUBSUB, action):
            request = deadline.request(retry, action) if deadline is not None else {}
            futures = [
                publisher.publish(
                    topic, o.data, ordering_key=o.ordering_key if ordering else "", **request, **o.attributes
                )
                for o in outs
            ]
            for out, future in zip(outs, futures, strict=True):
                try:
                    future.result(timeout=fixed if deadline is None else deadline.left(action))
                except TimeoutError:
                    if deadline is not None:
                        raise deadline.passed(action) from None
                    raise BackendUnavailable(
                        f"{PUBSUB.where()} did not confirm a publish within {fixed:.0f}s while {action}"
                    ) from None
                except Exception:
                    if out.ordering_key and ordering:  # a failed publish pauses its key until resumed
                        publisher.resume_publish(topic, out.ordering_key)
                    raise

    def _copy(self, delivery: Delivery, spent: int, not_before: float | None = None) -> Outgoing:
        """A fresh copy of a delivered message, carrying the deliveries it already spent."""
        receipt: PubSubReceipt = delivery.receipt
        attributes = copy_attributes({**delivery.attributes, **receipt.internal}, spent, not_before)
        data = b"" if receipt.claim else delivery.body
        return Outgoing(data, attributes, delivery.ordering_key or "")

    # -- receiving ------------------------------------------------------------------------------

    def receive(self, queue: str, max_messages: int, lease_s: float, wait_s: float = 0.0) -> list[Delivery]:
        return self._on_queue(queue, lambda paths: self._receive(queue, paths, max_messages, lease_s, wait_s))

    def _receive(
        self, queue: str, paths: QueuePaths, max_messages: int, lease_s: float, wait_s: float
    ) -> list[Delivery]:
        want = max(1, min(int(max_messages), MAX_BATCH))
        lease = _seconds(lease_s, 1)
        deadline = time.monotonic() + max(0.0, min(wait_s, MAX_WAIT_S))
        while True:
            started = time.monotonic()  # the lease runs from before the pull
            left = deadline - started
            received = self._pull(paths.subscription, want, max(0.0, left))
            deliveries = self._sort(queue, paths, received, started + lease)
            if deliveries or left <= 0 or time.monotonic() >= deadline:
                break
        if deliveries:
            if lease != self.options.ack_deadline:
                self._modack(paths.subscription, [d.receipt.ack_id for d in deliveries], lease)
            with self._lock:
                self._leased.update((paths.subscription, d.receipt.ack_id) for d in deliveries)
        return deliveries

    def _pull(self, subscription: str, want: int, wait_s: float) -> list[ReceivedMessage]:
        """One Pull. ``wait_s > 0`` lets the server hold it that long (it may answer empty sooner)."""
        from google.api_core.exceptions import DeadlineExceeded

        _, subscriber, retry = self._clients()
        request = {"subscription": subscription, "max_messages": want, "return_immediately": wait_s <= 0}
        timeout = max(wait_s, MIN_PULL_WAIT_S) if wait_s > 0 else self.options.timeout
        with translated(PUBSUB, f"pulling from {subscription}"):
            try:
                response = subscriber.pull(request=request, retry=retry, timeout=timeout)
            except DeadlineExceeded:  # the wait ran out with nothing to deliver
                return []
        return list(response.received_messages)

    def stream(
        self, queues: Sequence[str], max_held: int, lease_s: float, max_lease_s: float | None = None
    ) -> MessageStream | None:
        """Streaming pull on ``queues`` for a long-running worker (``StreamingReceiver``) with
        ``?pull=streaming``, else None. No request: each queue's stream opens on its first receive."""
        if self.options.pull != "streaming":
            return None
        from .pubsub_streaming import PubSubStream

        return PubSubStream(self, queues, max_held, lease_s, max_lease_s)

    def subscriber(self, queue: str, fresh: bool = False) -> tuple[SubscriberClient, str]:
        """The client and the queue's subscription, its resources set up on first use; ``fresh``:
        set up again (a stream lost it: ``create_missing`` recreates it, else QueueNotFound)."""
        if fresh:
            self._queues.pop(queue, None)
        subscription = self._paths(queue).subscription
        return self._clients()[1], subscription

    def streamed(self, queue: str, received: Sequence[Streamed], leased_until: float) -> list[Delivery]:
        """Messages that arrived over a stream of ``queue`` as deliveries, as ``receive`` makes them
        (the delayed ones hidden, forwarded or refreshed; those leave the client's management)."""
        paths = self._paths(queue)
        deliveries = self._sort(queue, paths, received, leased_until)
        with self._lock:
            self._leased.update((paths.subscription, d.receipt.ack_id) for d in deliveries)
        return deliveries

    def _sort(
        self, queue: str, paths: QueuePaths, received: Sequence[ReceivedMessage | Streamed], leased_until: float
    ) -> list[Delivery]:
        """Turn pulled messages into deliveries; hide, forward or refresh the delayed ones. One
        message's trouble stays its own: bad cloudq attributes make a malformed delivery, an
        unreadable claim-check gives that message back for later, and a failed hop leaves the
        delayed messages with Pub/Sub (they return when their deadline runs out). A streamed
        message that is not handed out leaves the client's lease management before its hop."""
        now = time.time()
        deliveries: list[Delivery] = []
        hide: dict[int, list[str]] = defaultdict(list)  # ack deadline -> ack ids
        again: list[Outgoing] = []  # republished, then ``settled`` acked
        settled: list[str] = []
        for item in received:
            attributes = dict(item.message.attributes)
            plan, copy = self._deferral(item, attributes, now)
            if plan.step is deferral.Step.RUN:
                try:
                    deliveries.append(self._delivery(queue, paths, item, attributes, leased_until))
                    continue
                except CloudqError as exc:  # e.g. Cloud Storage unreachable: this one comes back later
                    log.warning("giving back a message of %s for %ds: %s", queue, UNREADABLE_RETRY_S, exc)
                    hide[UNREADABLE_RETRY_S].append(item.ack_id)
            elif copy is not None:  # forward or refresh
                again.append(copy)
                settled.append(item.ack_id)
            else:
                hide[plan.hide_s].append(item.ack_id)
                self._hide(paths.subscription, attributes[MESSAGE_ID], plan.remaining_s)
            if isinstance(item, Streamed):
                item.drop()
        try:
            for seconds, ack_ids in hide.items():
                self._modack(paths.subscription, ack_ids, seconds)
            if again:
                self._publish(paths.topic, again, f"republishing delayed messages of queue {queue!r}")
                self._ack_ids(paths.subscription, settled)
        except CloudqError as exc:  # the deliveries still go out; the delayed ones come back
            log.warning("could not hide or forward delayed messages of %s (they come back later): %s", queue, exc)
        return deliveries

    def _deferral(
        self, item: ReceivedMessage | Received | Streamed, attributes: dict[str, str], now: float
    ) -> tuple[deferral.Plan, Outgoing | None]:
        """The deferral plan of a received message and, to forward or refresh it, the copy to
        publish. A copy another producer filled to the limit cannot be made: a due message then
        runs as it is, an early one is hidden."""
        message = item.message
        published = message.publish_time.timestamp()
        plan = deferral.plan(attributes, item.delivery_attempt, published, self.options.max_delivery_attempts, now)
        if plan.step is deferral.Step.RUN:
            return plan, None
        attributes.setdefault(MESSAGE_ID, message.message_id)
        if plan.step is deferral.Step.HIDE:
            return plan, None
        due = plan.due if plan.step is deferral.Step.REFRESH else None  # forwarded copies run at once
        copy = Outgoing(bytes(message.data), copy_attributes(attributes, plan.spent, due), message.ordering_key)
        if copy.fits():
            return plan, copy
        step = deferral.Step.RUN if plan.step is deferral.Step.FORWARD else deferral.Step.HIDE
        return replace(plan, step=step), None

    def _delivery(
        self,
        queue: str,
        paths: QueuePaths,
        item: ReceivedMessage | Received | Streamed,
        attributes: dict[str, str],
        leased_until: float,
    ) -> Delivery:
        """The delivery; ``malformed`` says why when its cloudq attributes cannot be read. Raises
        only when Cloud Storage fails (the message may be fine)."""
        message = item.message
        internal = {k: v for k, v in attributes.items() if k.startswith(INTERNAL_PREFIX)}
        internal.setdefault(MESSAGE_ID, message.message_id)  # published by something other than cloudq
        body = bytes(message.data)
        timing = deferral.timing(attributes)
        malformed, spent = (timing, 0) if isinstance(timing, str) else (None, timing[1])
        if malformed is None and CLAIM in internal:
            body, malformed = self._claimed(internal[CLAIM], body)
            if malformed:  # copies keep the message's own data; the reason names the pointer
                del internal[CLAIM]
        if malformed is None:  # a Cloud Scheduler job's run: its due minute comes from the publish time
            body = fill_publish_minute(body, message.publish_time.timestamp())
        attempt = item.delivery_attempt if item.delivery_attempt > 0 else 1
        with self._lock:
            self._hidden.pop((paths.subscription, internal[MESSAGE_ID]), None)
        return Delivery(
            body=body,
            receipt=PubSubReceipt(
                paths.subscription,
                item.ack_id,
                leased_until,
                internal,
                item.drop if isinstance(item, Streamed) else None,
            ),
            delivery_count=attempt + spent,
            queue=queue,
            message_id=internal[MESSAGE_ID],
            attributes=public(attributes),
            ordering_key=message.ordering_key or None,
            malformed=malformed,
        )

    def _claimed(self, ref: str, data: bytes) -> tuple[bytes, str | None]:
        """The body a claim-check points at, or the message's own data and why it cannot be read."""
        if self.offload is None:
            return data, f"{CLAIM} {ref[:200]!r} points to Cloud Storage, but this broker has no ?bucket= to read it"
        try:
            return self.offload.get(ref), None
        except ClaimCheckMissing as exc:  # gone, or outside this broker's bucket and prefix
            return data, f"{type(exc).__name__}: {exc}"

    def _hide(self, subscription: str, message_id: str, for_s: float) -> None:
        with self._lock:
            self._hidden[(subscription, message_id)] = time.monotonic() + for_s
            if len(self._hidden) > HIDDEN_PRUNE_AT:
                self._prune_hidden()

    def _prune_hidden(self) -> None:
        """Forget messages due a while ago and not seen again (another consumer has them). Holds the lock."""
        now = time.monotonic()
        for key in [k for k, due in self._hidden.items() if due + HIDDEN_GRACE_S <= now]:
            del self._hidden[key]

    # -- settling ---------------------------------------------------------------------------------

    @staticmethod
    def _by_subscription(deliveries: Iterable[Delivery]) -> dict[str, list[Delivery]]:
        groups: dict[str, list[Delivery]] = defaultdict(list)
        for delivery in deliveries:
            groups[delivery.receipt.subscription].append(delivery)
        return groups

    def _ack_ids(self, subscription: str, ack_ids: Sequence[str]) -> None:
        for chunk in chunks(ack_ids, MAX_BATCH):
            self._call(
                "acknowledge", f"acknowledging on {subscription}", subscription=subscription, ack_ids=list(chunk)
            )
        self._settled(subscription, ack_ids)

    def _modack(self, subscription: str, ack_ids: Sequence[str], seconds: int) -> None:
        for chunk in chunks(ack_ids, MAX_BATCH):
            self._call(
                "modify_ack_deadline",
                f"changing ack deadlines on {subscription}",
                subscription=subscription,
                ack_ids=list(chunk),
                ack_deadline_seconds=seconds,
            )

    def _settled(self, subscription: str, ack_ids: Iterable[str]) -> None:
        with self._lock:
            self._leased.difference_update((subscription, a) for a in ack_ids)

    @staticmethod
    def _unmanage(deliveries: Iterable[Delivery]) -> None:
        """Streamed deliveries settled here leave the client's lease management first, so it
        neither extends them past their settlement nor counts them against its flow control."""
        for delivery in deliveries:
            delivery.receipt.unmanage()

    def ack(self, deliveries: Sequence[Delivery]) -> None:
        self._unmanage(deliveries)
        for subscription, group in self._by_subscription(deliveries).items():
            self._ack_ids(subscription, [d.receipt.ack_id for d in group])
            for delivery in group:  # a stale receipt's body may belong to the current delivery
                if delivery.receipt.claim and delivery.receipt.current():
                    self._drop_claim(delivery.receipt.claim)

    def _drop_claim(self, ref: str) -> None:
        if self.offload is None:
            return  # a forged pointer: nothing of ours to delete
        try:
            self.offload.delete(ref)
        except Exception as exc:  # the message is settled; a leftover object only costs storage
            log.warning("could not delete claim-check object %s (a bucket lifecycle rule will): %s", ref, exc)

    def nack(self, deliveries: Sequence[Delivery], delay_s: float = 0.0) -> None:
        self._unmanage(deliveries)
        for delivery in deliveries:
            if delivery.receipt.current(0.0):
                self._hide(delivery.receipt.subscription, delivery.message_id, delay_s)
        if delay_s > MAX_ACK_DEADLINE_S:  # beyond one ack deadline: a delayed copy
            due = time.time() + delay_s
            self._replace(deliveries, lambda d: self._copy(d, d.delivery_count, due), MAX_ACK_DEADLINE_S, "postponing")
            return
        self._give_back(deliveries, _seconds(delay_s, 0))

    def _give_back(self, deliveries: Iterable[Delivery], seconds: int) -> None:
        for subscription, group in self._by_subscription(deliveries).items():
            ack_ids = [d.receipt.ack_id for d in group]
            self._modack(subscription, ack_ids, seconds)
            self._settled(subscription, ack_ids)

    def release(self, deliveries: Sequence[Delivery]) -> None:
        """Never started: a fresh copy that does not count this delivery. On ordered queues they go
        back with a zero deadline instead (a copy would lose its place), and that delivery counts."""
        self._unmanage(deliveries)
        ordered = [d for d in deliveries if self.options.is_ordered(d.queue)]
        self._give_back(ordered, 0)
        unordered = [d for d in deliveries if not self.options.is_ordered(d.queue)]
        self._replace(unordered, lambda d: self._copy(d, d.delivery_count - 1), 0, "releasing")

    def _replace(
        self, deliveries: Sequence[Delivery], copy: Callable[[Delivery], Outgoing], fallback_s: int, action: str
    ) -> None:
        """Publish a copy of each delivery whose lease surely holds, then ack it. The others may have
        been handed out again, or their copy would not fit: they get ``fallback_s`` as their
        deadline (ignored if stale)."""
        copies = {id(d): copy(d) for d in deliveries if d.receipt.current()}
        ready = [d for d in deliveries if id(d) in copies and copies[id(d)].fits()]  # too big: given back
        self._give_back([d for d in deliveries if all(d is not r for r in ready)], fallback_s)
        for _, group in self._by_subscription(ready).items():
            paths = self._paths(group[0].queue)
            outs = [copies[id(d)] for d in group]
            self._publish(paths.topic, outs, f"{action} messages of queue {group[0].queue!r}")
            self._ack_ids(paths.subscription, [d.receipt.ack_id for d in group])

    def extend(self, deliveries: Sequence[Delivery], lease_s: float) -> None:
        seconds = _seconds(lease_s, 1)
        until = time.monotonic() + seconds  # from before the request: errs on the early side
        for subscription, group in self._by_subscription(deliveries).items():
            self._modack(subscription, [d.receipt.ack_id for d in group], seconds)
            for delivery in group:
                if delivery.receipt.current(0.0):  # an expired lease may be someone else's now
                    delivery.receipt.leased_until = until

    def dead_letter(self, deliveries: Sequence[Delivery], reason: str) -> None:
        """Publish to the queue's dead-letter topic with the reason, then ack. A delivery whose lease
        may have run out is given back instead (it will be judged again when it returns)."""
        self._unmanage(deliveries)
        self._give_back([d for d in deliveries if not d.receipt.current()], 0)
        for _, group in self._by_subscription(d for d in deliveries if d.receipt.current()).items():
            queue = group[0].queue
            copies = [self._copy(d, d.delivery_count) for d in group]
            self._on_queue(queue, lambda paths: self._to_dead(paths, queue, copies, reason))  # noqa: B023
            self._ack_ids(group[0].receipt.subscription, [d.receipt.ack_id for d in group])

    def _to_dead(self, paths: QueuePaths, queue: str, outs: Sequence[Outgoing], reason: str) -> None:
        """Publish with the reason; the client packs them into requests by bytes and count. A body
        that no longer fits with the reason goes to Cloud Storage, or without a bucket is left out
        (the reason says so) rather than failing the dead-lettering of the whole batch."""
        marked = [self._dead_copy(o, queue, reason) for o in outs]
        self._publish(paths.dead_topic, marked, f"dead-lettering to {paths.dead_topic}")

    def _dead_copy(self, out: Outgoing, queue: str, reason: str) -> Outgoing:
        marked = Outgoing(out.data, {**out.attributes, DEAD_REASON: clip(reason), DEAD_QUEUE: queue})
        if marked.fits():
            return marked
        if self.offload is not None:
            ref = self.offload.put(out.data, self._labels[CONTENT_TYPE])
            return Outgoing(b"", {**marked.attributes, CLAIM: ref})
        note = f"; body of {len(out.data)} bytes not kept: too large for Pub/Sub with the reason (set ?bucket=)"
        log.warning("dead-lettering a message of %s without its body: %s%s", queue, reason, note)
        return Outgoing(b"", {**marked.attributes, DEAD_REASON: clip(f"{clip(reason, 700)}{note}")})

    # -- push: the HTTP answer settles a pushed message (push/handler.py) ---------------------------

    def delivery_from_push(self, queue: str, pushed: Received) -> Delivery | deferral.Plan:
        """A pushed message of ``queue`` as a Delivery leased for the ack deadline, or, for a delayed
        one, its deferral plan already carried out: FORWARD and REFRESH have published the copy (the
        push can be answered 200), HIDE leaves it with Pub/Sub (answered 429 until due). Raises
        when Pub/Sub or Cloud Storage fails (the push is answered 503 and comes back)."""
        paths = self._paths(queue)
        attributes = dict(pushed.message.attributes)
        plan, copy = self._deferral(pushed, attributes, time.time())
        if copy is not None:
            what = "forwarding a due" if plan.step is deferral.Step.FORWARD else "refreshing a delayed"
            self._publish(paths.topic, [copy], f"{what} message of {paths.topic}")
        if plan.step is not deferral.Step.RUN:
            return plan
        return self._delivery(queue, paths, pushed, attributes, time.monotonic() + self.options.ack_deadline)

    def finish_pushed(self, deliveries: Sequence[Delivery]) -> None:
        """Pushed messages about to be answered 200 (Pub/Sub's ack): their claim-check objects go."""
        for delivery in deliveries:
            if delivery.receipt.claim:
                self._drop_claim(delivery.receipt.claim)

    def dead_letter_pushed(self, deliveries: Sequence[Delivery], reason: str) -> None:
        """``dead_letter`` for pushed messages: published with the reason to their queue's dead-letter
        topic; the 200 answer then acks them (a push has no lease to give back)."""
        queues: dict[str, list[Delivery]] = defaultdict(list)
        for delivery in deliveries:
            queues[delivery.queue].append(delivery)
        for queue, group in queues.items():
            copies = [self._copy(d, d.delivery_count) for d in group]
            self._on_queue(queue, lambda paths: self._to_dead(paths, queue, copies, reason))  # noqa: B023

    # -- inspection -----------------------------------------------------------------------------

    def _peek_dead(self, paths: QueuePaths, limit: int) -> list[ReceivedMessage]:
        """Read up to ``limit`` dead letters, then give them all back at once (deadline 0)."""
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
            reason = dead_reason(attributes, paths.subscription)
            if CLAIM in attributes:
                body, unreadable = self._claimed(attributes[CLAIM], body)
                if unreadable:
                    reason = f"{reason}; body lost: {unreadable}"
            dead_at = item.message.publish_time.timestamp() if item.message.publish_time else None
            letters.append(DeadLetter(body, reason, queue, _dead_id(item), dead_at))
        return letters

    def _scan_dead(self, paths: QueuePaths, act: Callable[[list[ReceivedMessage]], list[str]]) -> None:
        """Pull the dead-letter subscription's messages (each once) and hand each batch to ``act``,
        which settles what it chose and returns the ack ids of the rest: those are held while the
        scan goes on and given back at the end. Ends when a pull brings nothing not seen yet."""
        seen: set[str] = set()
        held: list[str] = []
        try:
            while True:
                batch = self._pull(paths.dead_subscription, MAX_BATCH, MIN_PULL_WAIT_S)
                fresh = [m for m in batch if m.message.message_id not in seen]
                held += [m.ack_id for m in batch if m.message.message_id in seen]
                if not fresh:
                    break
                seen.update(m.message.message_id for m in fresh)
                left = act(fresh)
                if left:
                    self._modack(paths.dead_subscription, left, DEAD_SCAN_LEASE_S)
                    held += left
        finally:
            if held:
                self._modack(paths.dead_subscription, held, 0)

    def redrive(
        self,
        queue: str,
        ids: Collection[str] | None = None,
        *,
        rewrite: Callable[[bytes], bytes] | None = None,
        progress: Callable[[int], None] | None = None,
    ) -> int:
        """Republish dead letters to the queue's topic, and ack each on the dead-letter subscription
        only once its publish is confirmed: a crash between the two leaves a message in both.
        The copy drops the dead-letter reason and the deliveries spent (its count starts over)."""
        paths = self._paths(queue)
        moved = 0

        def move(batch: list[ReceivedMessage]) -> list[str]:
            nonlocal moved
            chosen = [m for m in batch if ids is None or _dead_id(m) in ids]
            outs = [_redriven(m, rewrite) for m in chosen]
            self._publish(paths.topic, outs, f"redriving dead letters to {paths.topic}")
            self._ack_ids(paths.dead_subscription, [m.ack_id for m in chosen])
            moved += len(chosen)
            if progress is not None and chosen:
                progress(len(chosen))
            return [m.ack_id for m in batch if m not in chosen]

        self._scan_dead(paths, move)
        return moved

    def delete_dead_letters(self, queue: str, ids: Collection[str]) -> int:
        """Ack the chosen dead letters, then delete their Cloud Storage payloads."""
        paths = self._paths(queue)
        deleted = 0

        def drop(batch: list[ReceivedMessage]) -> list[str]:
            nonlocal deleted
            chosen = [m for m in batch if _dead_id(m) in ids]
            self._ack_ids(paths.dead_subscription, [m.ack_id for m in chosen])
            for m in chosen:
                if CLAIM in m.message.attributes:
                    self._drop_claim(m.message.attributes[CLAIM])
            deleted += len(chosen)
            return [m.ack_id for m in batch if m not in chosen]

        self._scan_dead(paths, drop)
        return deleted

    def stats(self, queue: str) -> QueueStats:
        paths = self._paths(queue)
        with self._lock:
            self._prune_hidden()
            in_flight = sum(1 for sub, _ in self._leased if sub == paths.subscription)
            delayed = sum(1 for sub, _ in self._hidden if sub == paths.subscription)
        dead = len(self._peek_dead(paths, MAX_BATCH))
        return QueueStats(queue, ready=UNKNOWN, in_flight=in_flight, delayed=delayed, dead_lettered=dead)

    def purge(self, queue: str) -> int:
        """Ack what is receivable now (the count), then seek the subscription to now, which drops
        in-flight and hidden delayed messages too."""
        paths = self._paths(queue)
        count = 0
        while batch := self._pull(paths.subscription, MAX_BATCH, 0.0):
            self._ack_ids(paths.subscription, [m.ack_id for m in batch])
            for item in batch:
                if CLAIM in item.message.attributes:
                    self._drop_claim(item.message.attributes[CLAIM])
            count += len(batch)
        self._call("seek", f"purging {paths.subscription}", subscription=paths.subscription, time=datetime.now(UTC))
        with self._lock:
            self._leased = {k for k in self._leased if k[0] != paths.subscription}
            self._hidden = {k: v for k, v in self._hidden.items() if k[0] != paths.subscription}
        return count

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


def _dead_id(item: ReceivedMessage) -> str:
    """cloudq's id of a dead letter (kept from its first publish), else Pub/Sub's."""
    return str(item.message.attributes.get(MESSAGE_ID) or item.message.message_id)


def _redriven(item: ReceivedMessage, rewrite: Callable[[bytes], bytes] | None) -> Outgoing:
    """The copy of a dead letter for its queue: without the reason, the source queue, the
    deliveries spent and the dead-letter policy's attributes; with its first message id. ``rewrite``
    applies to bodies carried in the message (a claim-check pointer moves as it is)."""
    dropped = {DEAD_REASON, DEAD_QUEUE, deferral.PRIOR}
    attributes = {
        k: v for k, v in item.message.attributes.items() if k not in dropped and not k.startswith(NATIVE_DEAD_PREFIX)
    }
    attributes[MESSAGE_ID] = _dead_id(item)
    data = bytes(item.message.data)
    if rewrite is not None and CLAIM not in attributes:
        data = rewrite(data)
    return Outgoing(data, attributes)
