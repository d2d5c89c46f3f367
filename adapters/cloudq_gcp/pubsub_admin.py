"""Topics and subscriptions behind a cloudq queue, created on demand when allowed.

Queue ``q`` with prefix ``p`` is topic ``pq`` with pull subscription ``pq``, and dead-letter topic
``pq-dead`` with subscription ``pq-dead`` (which keeps what no one acknowledged, for inspection).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from cloudq.errors import ConfigurationError, QueueNotFound

from .errors import PUBSUB, translated
from .options import PubSubOptions, resource_name

if TYPE_CHECKING:
    from google.api_core.retry import Retry
    from google.cloud.pubsub_v1 import PublisherClient, SubscriberClient  # type: ignore[import-untyped]

    from .deadline import Deadline

DEAD_SUFFIX = "-dead"


@dataclass(frozen=True, slots=True)
class QueuePaths:
    topic: str
    subscription: str
    dead_topic: str
    dead_subscription: str


def queue_paths(options: PubSubOptions, queue: str) -> QueuePaths:
    base = resource_name(f"{options.prefix}{queue}", f"queue {queue!r} gives the Pub/Sub name")
    project = f"projects/{options.project}"
    dead = f"{base}{DEAD_SUFFIX}"
    return QueuePaths(
        topic=f"{project}/topics/{base}",
        subscription=f"{project}/subscriptions/{base}",
        dead_topic=f"{project}/topics/{dead}",
        dead_subscription=f"{project}/subscriptions/{dead}",
    )


def subscription_requests(
    paths: QueuePaths, *, ack_deadline: int, max_delivery_attempts: int, ordered: bool
) -> list[dict[str, Any]]:
    """CreateSubscription requests for a queue, dead-letter subscription first: what creation on
    first use and ``cloudq deploy`` both create (``max_delivery_attempts`` 0: no dead-letter policy)."""
    dead_letter = (
        {"dead_letter_policy": {"dead_letter_topic": paths.dead_topic, "max_delivery_attempts": max_delivery_attempts}}
        if max_delivery_attempts
        else {}
    )
    return [
        {
            "name": paths.dead_subscription,
            "topic": paths.dead_topic,
            "ack_deadline_seconds": ack_deadline,
            "expiration_policy": {},  # dead letters wait for inspection however long no one pulls
        },
        {
            "name": paths.subscription,
            "topic": paths.topic,
            "ack_deadline_seconds": ack_deadline,
            "enable_message_ordering": ordered,
            "expiration_policy": {},  # never expire for inactivity (the default is 31 days)
            **dead_letter,
        },
    ]


class QueueAdmin:
    """Makes sure a queue's resources exist and match what the broker relies on. With a
    ``deadline`` (a producer's first send) every request shares what is left of it."""

    def __init__(
        self,
        options: PubSubOptions,
        publisher: PublisherClient,
        subscriber: SubscriberClient,
        retry: Retry,
        deadline: Deadline | None = None,
    ) -> None:
        self.options = options
        self.publisher = publisher
        self.subscriber = subscriber
        self.retry = retry
        self.deadline = deadline

    def _call(self, method: Any, **request: Any) -> Any:
        if self.deadline is not None:
            return method(request=request, **self.deadline.request(self.retry, "preparing the queue"))
        return method(request=request, retry=self.retry, timeout=self.options.timeout)

    def ensure(self, queue: str) -> QueuePaths:
        paths = queue_paths(self.options, queue)
        with translated(PUBSUB, f"preparing queue {queue!r} ({paths.subscription})"):
            if self.options.create_missing:
                self._create(paths, self.options.is_ordered(queue))
            self._check(queue, paths)
        return paths

    def _create(self, paths: QueuePaths, ordered: bool) -> None:
        from google.api_core.exceptions import AlreadyExists

        opts = self.options
        for topic in (paths.topic, paths.dead_topic):
            try:
                self._call(self.publisher.create_topic, name=topic)
            except AlreadyExists:
                pass
        subscriptions = subscription_requests(
            paths, ack_deadline=opts.ack_deadline, max_delivery_attempts=opts.max_delivery_attempts, ordered=ordered
        )
        for subscription in subscriptions:
            try:
                self._call(self.subscriber.create_subscription, **subscription)
            except AlreadyExists:
                pass

    def _check(self, queue: str, paths: QueuePaths) -> None:
        """An existing subscription must have the dead-letter policy the delivery counts rely on."""
        from google.api_core.exceptions import NotFound

        try:
            found = self._call(self.subscriber.get_subscription, subscription=paths.subscription)
        except NotFound:
            raise QueueNotFound(
                f"Pub/Sub subscription {paths.subscription} for queue {queue!r} does not exist; "
                "create it with `cloudq deploy`, or allow ?create_missing=true"
            ) from None
        has_policy = bool(found.dead_letter_policy.dead_letter_topic)
        if self.options.max_delivery_attempts and not has_policy:
            raise ConfigurationError(
                f"Pub/Sub subscription {paths.subscription} has no dead-letter policy, so Pub/Sub does not count "
                "deliveries: add one (cloudq deploy does), or set ?max_delivery_attempts=0 to count attempts "
                "in the message instead"
            )
