"""One Pub/Sub push request -> one executor run -> one HTTP answer (the servers are in apps.py).

The push subscription is the queue's own subscription (``PREFIX + QUEUE``) switched to push, so it
keeps the dead-letter policy that makes Pub/Sub count deliveries. Each request runs through the
app's executor, as in the container worker, and its outcome goes through the core's ``settle``
partition, as in the worker's acker; the answer maps each group to HTTP:

* revoked (``app.control.revoke``): acked without running, 200. The check reads the message's
  result record first (``runtime/revocations.py``): one extra read per push request, since a
  push carries one message (``revoke_check = false`` turns it off);
* acks: 200. dead: published to the queue's dead-letter topic with the reason, then 200.
  sends (Requeue): published, then 200;
* nacks (RetryIn): 429 (Retry-After says the task's backoff; Pub/Sub redelivers after the
  subscription's retry policy backoff); the executor or Pub/Sub failing: 503;
* a body that is not a push envelope: 400 with the reason, logged, and nothing runs;
* with OIDC verification on, a request without a valid token for the audience and the push
  service account: 401 / 403, and nothing runs.

Messages delayed with ``cloudq-not-before`` are forwarded when due, else answered 429 until they
are (refreshed before the dead-letter policy could take them): the broker's own deferral plan
(deferral.py), carried out by ``PubSubBroker.delivery_from_push``.
"""

from __future__ import annotations

import json
import logging
import math
import os
import socket
from dataclasses import dataclass, field
from http import HTTPStatus
from typing import TYPE_CHECKING, Any

from cloudq.errors import ConfigurationError
from cloudq.interfaces import Delivery
from cloudq.runtime.executor import Outcome
from cloudq.runtime.lifecycle import Lifecycle
from cloudq.runtime.presence import InstancePresence, Tracker
from cloudq.runtime.ratelimit import RateLimits, later
from cloudq.runtime.requirements import BrokerRequirement
from cloudq.runtime.revocations import RevokeCheck
from cloudq.runtime.settle import send_followups, settle

from ..deferral import Plan, Step
from ..pubsub_admin import queue_paths
from .auth import GOOGLE_CERTS_URL, AuthFailed, AuthUnavailable, OIDCVerifier
from .envelope import MalformedPush, PushedMessage, from_mapping, parse

if TYPE_CHECKING:
    from cloudq.app import App

    from ..pubsub import PubSubBroker

log = logging.getLogger("cloudq.push")

MAX_PUSH_DEADLINE_S = 600  # Pub/Sub waits at most this long for a push endpoint's answer
RETRY_STATUS = 429  # a planned retry or a message not due yet: Pub/Sub redelivers it later
UNAVAILABLE_STATUS = 503  # cloudq could not run it now (executor or Pub/Sub failed)
NEEDS = BrokerRequirement(
    "the push handler", "serves Pub/Sub push subscriptions", "pubsub", "pubsub://PROJECT", "Pub/Sub"
)


@dataclass(frozen=True, slots=True)
class PushResponse:
    status: int
    body: dict[str, Any] = field(default_factory=dict)
    retry_after_s: float | None = None

    def payload(self) -> bytes:
        return json.dumps(self.body, separators=(",", ":")).encode()

    def headers(self, length: int) -> list[tuple[str, str]]:
        headers = [("Content-Type", "application/json"), ("Content-Length", str(length))]
        if self.retry_after_s is not None:
            headers.append(("Retry-After", str(max(0, math.ceil(self.retry_after_s)))))
        if self.status == HTTPStatus.METHOD_NOT_ALLOWED:
            headers.append(("Allow", "POST, GET, HEAD"))
        return headers

    def status_line(self) -> str:
        return f"{self.status} {HTTPStatus(self.status).phrase}"


def check_time_limits(app: App, deadline_s: float = MAX_PUSH_DEADLINE_S) -> None:
    """Refuse tasks whose time_limit the push deadline cannot hold (they belong on a container worker)."""
    too_long = sorted(
        f"{t.name} (time_limit={t.time_limit:g}s)"
        for t in app.tasks.values()
        if t.time_limit and t.time_limit > deadline_s
    )
    if too_long:
        raise ConfigurationError(
            f"Pub/Sub push waits at most {deadline_s:g}s for an answer, so these tasks cannot run behind a push "
            f"endpoint: {', '.join(too_long)}; lower their time_limit or run their queue with `cloudq worker`"
        )


class PushHandler:
    """Turns one push request into one executor run and an HTTP answer (thread-safe)."""

    def __init__(
        self,
        app: App,
        *,
        audience: str | None = None,
        service_account: str | None = None,
        certs_url: str = GOOGLE_CERTS_URL,
        queue: str | None = None,
    ) -> None:
        NEEDS.check_url(app)
        if service_account and not audience:
            raise ConfigurationError("service_account needs audience too: the push subscription's OIDC audience")
        check_time_limits(app)
        self.app = app
        self.executor = app.executor
        self.revocations = RevokeCheck(app)
        self.rate_limits = RateLimits(app)  # Celery's rate_limit, per function instance
        self.queue = queue
        self.verifier = OIDCVerifier(audience, service_account, certs_url) if audience else None
        self._checked_tasks = len(app.tasks)
        self._queues: dict[str, str | None] = {}  # subscription or topic -> queue
        self.tracker = Tracker()  # running now and outcome counts, for this instance's presence record
        node = f"push@{os.environ.get('K_SERVICE') or socket.gethostname()}"
        self.presence = InstancePresence(app, "push", node, 1, self.tracker)
        # worker_init + worker_ready at the ASGI lifespan startup or the first message, whichever
        # comes first; worker_shutdown at the ASGI lifespan shutdown (WSGI and CloudEvents give no hook)
        self.lifecycle = Lifecycle(self)

    def __repr__(self) -> str:
        return f"<PushHandler app={self.app.name} oidc={'on' if self.verifier else 'off'}>"

    # -- requests ---------------------------------------------------------------------------------

    def handle(self, body: bytes, authorization: str | None) -> PushResponse:
        """Answer one push request (the body as received, the Authorization header if any)."""
        if self.verifier is not None:
            try:
                self.verifier.check(authorization)
            except AuthFailed as exc:
                log.warning("refused a push request (%d): %s", exc.status, exc.reason)
                return PushResponse(exc.status, {"error": exc.reason})
            except AuthUnavailable as exc:
                log.warning("cannot verify push requests now: %s", exc)
                return PushResponse(UNAVAILABLE_STATUS, {"error": str(exc)})
        try:
            pushed = parse(body)
        except MalformedPush as exc:
            log.warning("rejected a malformed push request: %s", exc)
            return PushResponse(HTTPStatus.BAD_REQUEST, {"error": str(exc)})
        return self.handle_message(pushed, self._queue_of(pushed.subscription, "subscriptions"))

    def handle_message(self, pushed: PushedMessage, queue: str | None) -> PushResponse:
        """Run one pushed message of ``queue`` (None: not a queue of this app -> 400)."""
        self.lifecycle.start()
        message_id = pushed.message.message_id
        if queue is None:
            log.error("push of message %s from %r, which is not a queue of this app", message_id, pushed.subscription)
            return PushResponse(
                HTTPStatus.BAD_REQUEST,
                {"error": f"subscription {pushed.subscription!r} is not a queue of app {self.app.name!r}"},
            )
        if len(self.app.tasks) != self._checked_tasks:  # tasks defined after the app was built
            check_time_limits(self.app)
            self._checked_tasks = len(self.app.tasks)
        try:
            broker = self._broker()
            delivery = broker.delivery_from_push(queue, pushed)  # malformed: it says why, the executor dead-letters it
            if isinstance(delivery, Plan):
                return _deferred(delivery)
            revoked = self.revocations.revoked([delivery])  # before the rate limit: a revoked task takes no token
            if not revoked:
                pause = self.rate_limits.wait(delivery, self._rate_wait_s(broker, delivery))
                if pause:  # its token is further off than this request can wait: published again, delayed
                    return _answer(self.app, broker, delivery, later(delivery, pause, broker.limits.max_delay_s))
            outcome = self.tracker.run(lambda d: self.revocations.run(self.executor, d, revoked), delivery)
            self.presence.maybe_beat()  # at most once per presence_interval per instance
            return _answer(self.app, broker, delivery, outcome)
        except Exception as exc:  # the message stays with Pub/Sub: a duplicate later, never a loss
            log.warning("could not handle message %s of %s: %s: %s", message_id, queue, type(exc).__name__, exc)
            return PushResponse(UNAVAILABLE_STATUS, {"error": f"{type(exc).__name__}: {exc}"})

    def _rate_wait_s(self, broker: PubSubBroker, delivery: Delivery) -> float:
        """rate_limit, per instance: how long this request may wait for the task's token (Pub/Sub
        waits up to the ack deadline for the answer): half of it, less the task's time limit."""
        task = self.app.tasks.get(delivery.attributes.get("task", ""))
        limit = task.time_limit if task is not None and task.time_limit else 0.0
        return max(0.0, broker.options.ack_deadline / 2 - limit)

    def handle_cloud_event(self, event: Any) -> PushResponse:
        """A CloudEvent of an Eventarc Pub/Sub trigger: ``data`` is the push envelope, ``source``
        names the topic (``//pubsub.googleapis.com/projects/P/topics/T``)."""
        data = getattr(event, "data", None)
        try:
            if isinstance(data, bytes | str):
                pushed = parse(data)
            elif isinstance(data, dict):
                pushed = from_mapping(data)
            else:
                raise MalformedPush(f"CloudEvent data is {type(data).__name__}, not a Pub/Sub message")
        except MalformedPush as exc:
            log.warning("rejected a malformed CloudEvent: %s", exc)
            return PushResponse(HTTPStatus.BAD_REQUEST, {"error": str(exc)})
        source = str(_event_attribute(event, "source") or "")
        topic = source.removeprefix("//pubsub.googleapis.com/")
        return self.handle_message(pushed, self._queue_of(topic, "topics"))

    # -- helpers ----------------------------------------------------------------------------------

    def _broker(self) -> PubSubBroker:
        from ..pubsub import PubSubBroker

        return NEEDS.broker(self.app, PubSubBroker)

    def _queue_of(self, resource: str, kind: str) -> str | None:
        """The app's queue behind a subscription or topic path (``projects/P/{kind}/NAME``)."""
        if self.queue is not None:
            return self.queue
        if resource in self._queues:
            return self._queues[resource]
        options = self._broker().options
        attribute = "subscription" if kind == "subscriptions" else "topic"
        found = None
        for name in self.app.queues():
            if getattr(queue_paths(options, name), attribute) == resource:
                found = name
                break
        head = f"projects/{options.project}/{kind}/{options.prefix}"
        if found is None and resource.startswith(head) and len(resource) > len(head):
            name = resource[len(head) :]
            try:
                found = name if getattr(queue_paths(options, name), attribute) == resource else None
            except ConfigurationError:
                found = None
        self._queues[resource] = found
        return found


def _deferred(plan: Plan) -> PushResponse:
    """The answer for a delayed message: its copy was published (200), or it is not due yet (429)."""
    if plan.step is Step.FORWARD:
        return PushResponse(HTTPStatus.OK, {"outcome": "forwarded"})
    if plan.step is Step.REFRESH:
        return PushResponse(HTTPStatus.OK, {"outcome": "refreshed"})
    left = plan.remaining_s
    return PushResponse(RETRY_STATUS, {"outcome": "not due", "due_in_s": round(left, 3)}, left)


def _answer(app: App, broker: PubSubBroker, delivery: Delivery, outcome: Outcome) -> PushResponse:
    """Apply the one-message settlement (follow-ups and re-sends first, as the acker does) and
    answer for it; follow-ups that could not be sent get the message pushed again."""
    done = settle([(delivery, outcome)])
    if send_followups(done, app, broker.send):
        return PushResponse(UNAVAILABLE_STATUS, {"outcome": "retry", "reason": "follow-ups not sent"})
    for queue, pairs in done.sends.items():
        broker.send(queue, [message for _, message in pairs])
        broker.finish_pushed([d for d, _ in pairs])
    if done.acks:
        broker.finish_pushed(done.acks)
    for reason, deliveries in done.dead.items():
        broker.dead_letter_pushed(deliveries, reason)
        return PushResponse(HTTPStatus.OK, {"outcome": "dead-lettered", "reason": reason})
    for delay_s in done.nacks:
        return PushResponse(RETRY_STATUS, {"outcome": "retry", "delay_s": delay_s}, delay_s)
    return PushResponse(HTTPStatus.OK, {"outcome": getattr(outcome, "event", "succeeded")})


def _event_attribute(event: Any, name: str) -> Any:
    try:
        return event[name]  # cloudevents.http.CloudEvent
    except (KeyError, TypeError):
        return getattr(event, name, None)
