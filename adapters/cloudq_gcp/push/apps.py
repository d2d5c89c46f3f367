"""The servers in front of a PushHandler: a WSGI app, an ASGI app and a CloudEvents function.

    from cloudq_gcp.push import make_wsgi_app    # or make_asgi_app, make_cloud_event_function
    application = make_wsgi_app(app, audience="https://tasks-xyz.run.app/", service_account="push@p.iam...")

No web framework: the WSGI and ASGI apps are the few lines the protocols need.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable, Iterable
from http import HTTPStatus
from typing import TYPE_CHECKING, Any

from cloudq.errors import ConfigurationError

from .auth import GOOGLE_CERTS_URL
from .envelope import MalformedPush
from .handler import PushHandler, PushResponse

if TYPE_CHECKING:
    from concurrent.futures import ThreadPoolExecutor

    from cloudq.app import App

MAX_BODY_BYTES = 16 * 1024 * 1024  # a 10 MB message in base64 (x 4/3) plus the envelope
DEFAULT_THREADS = 8  # ASGI: requests run in this many threads (task code blocks)


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
                self.handler.lifecycle.start()  # worker_init + worker_ready
                await send({"type": "lifespan.startup.complete"})
            elif event["type"] == "lifespan.shutdown":
                if self._pool is not None:
                    self._pool.shutdown(wait=True)
                    self._pool = None
                self.handler.lifecycle.shutdown()  # after the running requests finished
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
