"""Pub/Sub push for Cloud Run and Cloud Functions: a WSGI app, an ASGI app and a CloudEvents function.

    from cloudq_gcp.push_handler import make_wsgi_app    # or make_asgi_app, make_cloud_event_function
    application = make_wsgi_app(app, audience="https://tasks-xyz.run.app/", service_account="push@p.iam...")

The push subscription is the queue's own subscription (``PREFIX + QUEUE``) switched to push, so it
keeps the dead-letter policy that makes Pub/Sub count deliveries. Each request runs through the
app's executor, as in the container worker; the answer only translates the outcome:

* Ack: 200. DeadLetter(reason): published to the queue's dead-letter topic with the reason, then 200.
  Requeue(message): published, then 200;
* RetryIn: 429 (Retry-After says the task's backoff; Pub/Sub redelivers after the subscription's
  retry policy backoff); the executor or Pub/Sub failing: 503;
* a body that is not a push envelope: 400 with the reason, logged, and nothing runs;
* with OIDC verification on, a request without a valid token for the audience and the push
  service account: 401 / 403, and nothing runs.

Messages delayed with ``cloudq-not-before`` are forwarded when due, else answered 429 until they
are (refreshed before the dead-letter policy could take them), as the pull broker does (deferral.py).
No web framework: the WSGI and ASGI apps are the few lines the protocols need.
"""

from __future__ import annotations

import asyncio
import json
import logging
import math
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from http import HTTPStatus
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

from cloudq.errors import ConfigurationError
from cloudq.interfaces import Delivery
from cloudq.runtime.executor import Ack, DeadLetter, Outcome, Requeue, RetryIn

from . import deferral
from .pubsub_admin import QueuePaths, queue_paths
from .pubsub_messages import MESSAGE_ID, Outgoing, copy_attributes
from .push_auth import GOOGLE_CERTS_URL, AuthFailed, AuthUnavailable, OIDCVerifier
from .push_envelope import MalformedPush, PushedMessage, from_mapping, parse

if TYPE_CHECKING:
    from concurrent.futures import ThreadPoolExecutor

    from cloudq.app import App

    from .pubsub import PubSubBroker

log = logging.getLogger("cloudq.push")

MAX_PUSH_DEADLINE_S = 600  # Pub/Sub waits at most this long for a push endpoint's answer
MAX_BODY_BYTES = 16 * 1024 * 1024  # a 10 MB message in base64 (x 4/3) plus the envelope
RETRY_STATUS = 429  # a planned retry or a message not due yet: Pub/Sub redelivers it later
UNAVAILABLE_STATUS = 503  # cloudq could not run it now (executor or Pub/Sub failed)
DEFAULT_THREADS = 8  # ASGI: requests run in this many threads (task code blocks)


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
        scheme = urlsplit(app.broker_url).scheme
        if scheme != "pubsub":
            raise ConfigurationError(
                f"the push handler serves Pub/Sub push subscriptions, but app {app.name!r} uses a {scheme}:// "
                "broker: configure broker='pubsub://PROJECT' (or CLOUDQ_BROKER)"
            )
        if service_account and not audience:
            raise ConfigurationError("service_account needs audience too: the push subscription's OIDC audience")
        check_time_limits(app)
        self.app = app
        self.executor = app.executor
        self.queue = queue
        self.verifier = OIDCVerifier(audience, service_account, certs_url) if audience else None
        self._checked_tasks = len(app.tasks)
        self._queues: dict[str, str | None] = {}  # subscription or topic -> queue

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
            paths = broker._paths(queue)
            attributes = dict(pushed.message.attributes)
            timing = deferral.timing(attributes)  # malformed: the delivery says why, the executor dead-letters it
            if not isinstance(timing, str) and timing[0] is not None:
                return self._delayed(broker, paths, pushed, attributes, timing[0])
            leased_until = time.monotonic() + broker.options.ack_deadline
            delivery = broker._delivery(queue, paths, pushed, attributes, leased_until)  # type: ignore[arg-type]
            outcome = self.executor.execute(delivery)
            return self._answer(broker, paths, delivery, outcome)
        except Exception as exc:  # the message stays with Pub/Sub: a duplicate later, never a loss
            log.warning("could not handle message %s of %s: %s: %s", message_id, queue, type(exc).__name__, exc)
            return PushResponse(UNAVAILABLE_STATUS, {"error": f"{type(exc).__name__}: {exc}"})

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
        from .pubsub import PubSubBroker

        broker = self.app.broker
        if not isinstance(broker, PubSubBroker):
            raise ConfigurationError(f"the push handler needs the Pub/Sub broker, app {self.app.name!r} has {broker!r}")
        return broker

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

    def _delayed(
        self, broker: PubSubBroker, paths: QueuePaths, pushed: PushedMessage, attributes: dict[str, str], due: float
    ) -> PushResponse:
        """A message sent with a delay: forwarded when due, else left with Pub/Sub until it is."""
        message = pushed.message
        attributes.setdefault(MESSAGE_ID, message.message_id)
        spent = deferral.prior(attributes)
        now = time.time()
        if due <= now:  # the copy that runs starts from Pub/Sub's first attempt
            copy = Outgoing(message.data, copy_attributes(attributes, spent), message.ordering_key)
            broker._publish(paths.topic, [copy], f"forwarding a due message of {paths.topic}")
            return PushResponse(HTTPStatus.OK, {"outcome": "forwarded"})
        age = now - message.publish_time.timestamp()
        limit = broker.options.max_delivery_attempts
        if deferral.early(pushed.delivery_attempt, age, limit) is deferral.Early.HIDE:
            return PushResponse(RETRY_STATUS, {"outcome": "not due", "due_in_s": round(due - now, 3)}, due - now)
        copy = Outgoing(message.data, copy_attributes(attributes, spent, due), message.ordering_key)
        broker._publish(paths.topic, [copy], f"refreshing a delayed message of {paths.topic}")
        return PushResponse(HTTPStatus.OK, {"outcome": "refreshed"})

    def _answer(self, broker: PubSubBroker, paths: QueuePaths, delivery: Delivery, outcome: Outcome) -> PushResponse:
        claim = delivery.receipt.claim
        if isinstance(outcome, Ack):
            if claim:
                broker._drop_claim(claim)
            return PushResponse(HTTPStatus.OK, {"outcome": outcome.event})
        if isinstance(outcome, RetryIn):
            return PushResponse(RETRY_STATUS, {"outcome": "retry", "delay_s": outcome.delay_s}, outcome.delay_s)
        if isinstance(outcome, Requeue):
            broker.send(delivery.queue, [outcome.message])
            if claim:
                broker._drop_claim(claim)
            return PushResponse(HTTPStatus.OK, {"outcome": outcome.event})
        if isinstance(outcome, DeadLetter):
            copy = broker._copy(delivery, delivery.delivery_count)
            broker._to_dead(paths, delivery.queue, [copy], outcome.reason)
            return PushResponse(HTTPStatus.OK, {"outcome": "dead-lettered", "reason": outcome.reason})
        raise TypeError(f"unknown outcome {outcome!r}")


def _event_attribute(event: Any, name: str) -> Any:
    try:
        return event[name]  # cloudevents.http.CloudEvent
    except (KeyError, TypeError):
        return getattr(event, name, None)


def _preflight(method: str) -> PushResponse | None:
    """Answers for everything but a POST: health probes get 200, other methods 405."""
    if method == "POST":
        return None
    if method in ("GET", "HEAD"):
        return PushResponse(HTTPStatus.OK, {"status": "ok"})
    return PushResponse(HTTPStatus.METHOD_NOT_ALLOWED, {"error": f"{method} is not allowed; Pub/Sub pushes with POST"})


def _too_large(size: int, limit: int) -> PushResponse:
    return PushResponse(HTTPStatus.REQUEST_ENTITY_TOO_LARGE, {"error": f"body of {size} bytes exceeds {limit} bytes"})


class PushWSGI:
    """The WSGI app (gunicorn, waitress, wsgiref ...)."""

    def __init__(self, handler: PushHandler, max_body_bytes: int = MAX_BODY_BYTES) -> None:
        self.handler = handler
        self.max_body_bytes = max_body_bytes

    def __call__(self, environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        response = _preflight(str(environ.get("REQUEST_METHOD", "GET")).upper()) or self._post(environ)
        payload = response.payload()
        start_response(response.status_line(), response.headers(len(payload)))
        return [] if environ.get("REQUEST_METHOD") == "HEAD" else [payload]

    def _post(self, environ: dict[str, Any]) -> PushResponse:
        try:
            size = int(environ.get("CONTENT_LENGTH") or "")
        except ValueError:
            return PushResponse(HTTPStatus.LENGTH_REQUIRED, {"error": "Content-Length is required"})
        if size > self.max_body_bytes:
            return _too_large(size, self.max_body_bytes)
        body = environ["wsgi.input"].read(size) if size > 0 else b""
        return self.handler.handle(body, environ.get("HTTP_AUTHORIZATION"))


class PushASGI:
    """The ASGI app (uvicorn, hypercorn ...). Requests run in a thread pool: task code blocks."""

    def __init__(self, handler: PushHandler, threads: int = DEFAULT_THREADS, max_body_bytes: int = MAX_BODY_BYTES):
        if threads < 1:
            raise ConfigurationError(f"threads must be >= 1, got {threads}")
        self.handler = handler
        self.threads = threads
        self.max_body_bytes = max_body_bytes
        self._pool: ThreadPoolExecutor | None = None

    async def __call__(self, scope: dict[str, Any], receive: Callable[..., Any], send: Callable[..., Any]) -> None:
        if scope["type"] == "lifespan":
            await self._lifespan(receive, send)
            return
        if scope["type"] != "http":
            return
        method = str(scope.get("method", "GET")).upper()
        response = _preflight(method)
        if response is None:
            body = await self._body(receive)
            if isinstance(body, PushResponse):
                response = body
            else:
                headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope.get("headers", [])}
                loop = asyncio.get_running_loop()
                response = await loop.run_in_executor(
                    self._threads(), self.handler.handle, body, headers.get("authorization")
                )
        payload = response.payload()
        raw = [(k.lower().encode("latin-1"), v.encode("latin-1")) for k, v in response.headers(len(payload))]
        await send({"type": "http.response.start", "status": response.status, "headers": raw})
        await send({"type": "http.response.body", "body": b"" if method == "HEAD" else payload})

    async def _body(self, receive: Callable[..., Any]) -> bytes | PushResponse:
        chunks: list[bytes] = []
        size = 0
        while True:
            event = await receive()
            if event["type"] == "http.disconnect":
                return PushResponse(HTTPStatus.BAD_REQUEST, {"error": "client disconnected"})
            chunk = event.get("body", b"")
            size += len(chunk)
            if size > self.max_body_bytes:
                return _too_large(size, self.max_body_bytes)
            chunks.append(chunk)
            if not event.get("more_body", False):
                return b"".join(chunks)

    async def _lifespan(self, receive: Callable[..., Any], send: Callable[..., Any]) -> None:
        while True:
            event = await receive()
            if event["type"] == "lifespan.startup":
                await send({"type": "lifespan.startup.complete"})
            elif event["type"] == "lifespan.shutdown":
                if self._pool is not None:
                    self._pool.shutdown(wait=True)
                    self._pool = None
                await send({"type": "lifespan.shutdown.complete"})
                return

    def _threads(self) -> ThreadPoolExecutor:
        if self._pool is None:
            from concurrent.futures import ThreadPoolExecutor

            self._pool = ThreadPoolExecutor(self.threads, thread_name_prefix="cloudq-push")
        return self._pool


class PushRetry(Exception):
    """Raised by the CloudEvents function so the trigger redelivers the event (enable retries)."""


def make_wsgi_app(
    app: App,
    *,
    audience: str | None = None,
    service_account: str | None = None,
    certs_url: str = GOOGLE_CERTS_URL,
    queue: str | None = None,
    max_body_bytes: int = MAX_BODY_BYTES,
) -> PushWSGI:
    """A WSGI app for a Pub/Sub push subscription. OIDC verification is on when ``audience`` is
    given (``service_account``: the email the subscription signs its tokens as)."""
    handler = PushHandler(app, audience=audience, service_account=service_account, certs_url=certs_url, queue=queue)
    return PushWSGI(handler, max_body_bytes)


def make_asgi_app(
    app: App,
    *,
    audience: str | None = None,
    service_account: str | None = None,
    certs_url: str = GOOGLE_CERTS_URL,
    queue: str | None = None,
    threads: int = DEFAULT_THREADS,
    max_body_bytes: int = MAX_BODY_BYTES,
) -> PushASGI:
    """An ASGI app for a Pub/Sub push subscription (options as ``make_wsgi_app``; ``threads``
    requests run at once)."""
    handler = PushHandler(app, audience=audience, service_account=service_account, certs_url=certs_url, queue=queue)
    return PushASGI(handler, threads, max_body_bytes)


def make_cloud_event_function(app: App, *, queue: str | None = None) -> Callable[[Any], None]:
    """A function for ``@functions_framework.cloud_event`` (Cloud Functions 2nd gen, Eventarc Pub/Sub
    trigger): returns when the message is done, raises PushRetry (or MalformedPush) to have it
    redelivered -- enable retries on the trigger, with a dead-letter topic on its subscription."""
    handler = PushHandler(app, queue=queue)

    def cloudq_cloud_event(event: Any) -> None:
        response = handler.handle_cloud_event(event)
        if response.status == HTTPStatus.BAD_REQUEST:
            raise MalformedPush(str(response.body.get("error")))
        if response.status >= 300:
            raise PushRetry(json.dumps(response.body))

    cloudq_cloud_event.handler = handler  # type: ignore[attr-defined]
    return cloudq_cloud_event
