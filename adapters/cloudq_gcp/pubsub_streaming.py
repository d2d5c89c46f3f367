"""Streaming pull for a long-running worker: messages flow over one open stream per queue instead
of a ``Pull`` request per receive (``PubSubBroker.stream``, with ``?pull=streaming``).

Each queue's subscription gets ``SubscriberClient.subscribe()`` with ``FlowControl(max_messages=
max_held / queues)``: the client never hands out more than that many unsettled messages (buffered
here, running, or finished and waiting for their batched ack), and sends the limit to the server.
Its callback runs on the client's stream thread (an inline scheduler, no thread pool) and only
buffers; the worker's receives take from that buffer and the broker turns the messages into
deliveries as it does pulled ones, so deferral, claim checks, the revoke check, rate limits and
ordering keys see no difference.

Leases: the client modacks each message to ``lease_s`` when it arrives and again before 90% of it
has passed, as long as it holds it (at most ``max_lease_s``: the worker's bound from its tasks'
time limits). A finished task's message leaves the client's count at once (``finished``) while its
ack waits for the batch, so the limit counts what the worker's prefetch counts: buffered and running. The worker's heartbeat still extends its leases as on pull, so a running task stays
leased after the stream closes at shutdown. Settling (ack, nack, release, dead letter) goes through
the broker's batched requests after ``Message.drop()`` takes the message out of the client's
management (no request); the client hands out the next message of an ordering key only then.

At least once: delivery counts are ``delivery_attempt`` as on pull; a message whose lease lapsed
while the stream reconnected can arrive again. Closing returns the buffered messages to the caller
for release (a fresh copy: no delivery spent); the client nacks the ones it held back beyond the
flow control (each spends a delivery).

The emulator differs from Pub/Sub in two ways (why streaming is not the default yet): it ignores
the flow control the client sends (``max_outstanding_messages``), so the client leases the whole
backlog and holds the overflow back; and it keeps feeding a closed stream up to that stream's
limit, so messages given back or published right after a worker stops wait out the stream's ack
deadline (``lease_s``) before another consumer gets them.
"""

from __future__ import annotations

import logging
import math
import queue as queues_module
import threading
import time
from collections import deque
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

from cloudq.interfaces import Delivery

from .errors import PUBSUB, translated
from .options import MAX_ACK_DEADLINE_S, MIN_ACK_DEADLINE_S
from .pubsub_messages import Streamed

if TYPE_CHECKING:
    from google.cloud.pubsub_v1.subscriber.message import Message  # type: ignore[import-untyped]

    from .pubsub import PubSubBroker

log = logging.getLogger("cloudq.pubsub")

ARRIVAL_MARGIN_S = 1.0  # the client's arrival modack went out just before its callback: err early
UNBOUNDED_LEASE_S = 365 * 24 * 3600.0  # no time limit: the client keeps a held message leased
MAX_HELD_BYTES = 1 << 30  # flow control by count; bytes only bound a pathological buffer


def _inline_scheduler() -> Any:
    """A scheduler that runs the callback on the client's stream thread: our callback is a deque
    append, so a thread pool would only add a hop. Its queue carries the messages' ack/drop
    requests to the client's dispatcher."""
    from google.cloud.pubsub_v1.subscriber.scheduler import Scheduler  # type: ignore[import-untyped]

    class Inline(Scheduler):  # type: ignore[misc]
        def __init__(self) -> None:
            self._requests: queues_module.Queue[Any] = queues_module.Queue()

        @property
        def queue(self) -> queues_module.Queue[Any]:
            return self._requests

        def schedule(self, callback: Callable[..., Any], *args: Any, **kwargs: Any) -> None:
            callback(*args, **kwargs)

        def shutdown(self, await_msg_callbacks: bool = False) -> list[Any]:
            return []  # nothing is ever pending

    return Inline()


class PubSubStream:
    """The worker's ``MessageStream`` on Pub/Sub: one streaming pull per queue, one buffer."""

    def __init__(
        self,
        broker: PubSubBroker,
        queues: Sequence[str],
        max_held: int,
        lease_s: float,
        max_lease_s: float | None = None,
    ) -> None:
        from google.cloud.pubsub_v1.types import FlowControl  # type: ignore[import-untyped]

        self._broker = broker
        self._queues = list(queues)
        # the client's lease extensions take 10-600 s: a shorter worker lease is kept longer
        self.lease_s = max(MIN_ACK_DEADLINE_S, min(MAX_ACK_DEADLINE_S, math.ceil(lease_s)))
        self.flow_control = FlowControl(
            max_messages=max(1, max_held // max(1, len(self._queues))),
            max_bytes=MAX_HELD_BYTES,
            max_lease_duration=max_lease_s or UNBOUNDED_LEASE_S,
            min_duration_per_lease_extension=self.lease_s,
            max_duration_per_lease_extension=self.lease_s,
        )
        self._cond = threading.Condition()
        self._buffered: dict[str, deque[tuple[float, Message]]] = {queue: deque() for queue in self._queues}
        self._arrivals = 0  # wakes a receive waiting on another queue
        self._closed = False
        self._futures: dict[str, Any] = {}  # queue -> the client's StreamingPullFuture
        self._subscriptions: dict[str, str] = {}

    def _ensure(self, queue: str) -> None:
        """Open the queue's stream on its first receive, and again once the client gave up on it
        (the subscription gone, say after an emulator restart: its resources are set up afresh),
        raising that error once so the worker logs it and backs off. A failure to set up or open
        is raised as well: the next receive tries again, as a failed Pull would be."""
        future = self._futures.get(queue)
        if future is not None and not future.done():
            return
        error = future.exception() if future is not None else None
        subscriber, subscription = self._broker.subscriber(queue, fresh=future is not None)
        self._subscriptions[queue] = subscription
        with translated(PUBSUB, f"opening a streaming pull on {subscription}"):
            self._futures[queue] = subscriber.subscribe(
                subscription,
                lambda message: self._arrive(queue, message),
                flow_control=self.flow_control,
                scheduler=_inline_scheduler(),
                await_callbacks_on_shutdown=True,
            )
        if error is not None:
            with translated(PUBSUB, f"streaming from {subscription}"):
                raise error

    def _arrive(self, queue: str, message: Message) -> None:
        """The client's callback, on its stream thread: buffer, wake a receive."""
        with self._cond:
            if not self._closed:
                self._buffered[queue].append((time.monotonic(), message))
                self._arrivals += 1
                self._cond.notify_all()
                return
        message.nack()  # arrived while closing: straight back

    def receive(self, queue: str, max_messages: int, lease_s: float, wait_s: float = 0.0) -> list[Delivery]:
        if not self._closed:
            self._ensure(queue)
        end = time.monotonic() + max(0.0, wait_s)
        with self._cond:
            buffered = self._buffered[queue]
            seen = self._arrivals
            while not buffered and not self._closed and self._arrivals == seen:
                left = end - time.monotonic()
                if left <= 0:
                    break
                self._cond.wait(left)
            taken = [buffered.popleft() for _ in range(min(max(1, max_messages), len(buffered)))]
        return self._deliveries(queue, taken) if taken else []

    def _deliveries(self, queue: str, taken: list[tuple[float, Message]]) -> list[Delivery]:
        """Buffered messages as the broker's deliveries, leased from the earliest arrival."""
        items = [Streamed(m.ack_id, m.delivery_attempt or 0, m, m.drop) for _, m in taken]
        return self._broker.streamed(queue, items, taken[0][0] + self.lease_s - ARRIVAL_MARGIN_S)

    def finished(self, deliveries: Sequence[Delivery]) -> None:
        """Out of the client's flow control and lease management: it streams the next ones while
        these wait for their batched ack (well inside their lease, as on pull)."""
        for delivery in deliveries:
            delivery.receipt.unmanage()

    def held(self) -> int:
        """Messages buffered here and not yet handed out (for tests and logs)."""
        with self._cond:
            return sum(len(b) for b in self._buffered.values())

    def close(self, timeout_s: float) -> list[Delivery]:
        with self._cond:
            if self._closed:
                return []
            self._closed = True
            left = {queue: list(buffered) for queue, buffered in self._buffered.items() if buffered}
            for buffered in self._buffered.values():
                buffered.clear()
            self._cond.notify_all()
        end = time.monotonic() + timeout_s
        for future in self._futures.values():
            future.cancel()  # the client nacks what it held back, stops extending, closes the stream
        for queue, future in self._futures.items():
            try:
                future.result(timeout=max(0.0, end - time.monotonic()))
            except TimeoutError:
                log.warning(
                    "the streaming pull of %s did not close within %.0fs", self._subscriptions[queue], timeout_s
                )
            except Exception as exc:  # it had failed already: nothing more to stop
                log.debug("streaming pull of %s ended with %s: %s", queue, type(exc).__name__, exc)
        unstarted: list[Delivery] = []
        for queue, taken in left.items():
            unstarted += self._deliveries(queue, taken)
        return unstarted
