"""The dashboard's Starlette app factory (``cloudq dashboard`` serves it with uvicorn; it can be
mounted in any ASGI server too)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

from starlette.applications import Starlette
from starlette.datastructures import MutableHeaders
from starlette.exceptions import HTTPException
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import PlainTextResponse, Response
from starlette.routing import Route
from starlette.templating import Jinja2Templates
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from . import views
from .auth import Guard
from .data import Backends
from .state import Dashboard

if TYPE_CHECKING:
    from ..app import App

CACHE_S = 5.0  # seconds a backend read is reused by every page and tab
TEMPLATES = Path(__file__).parent / "templates"
# pages carry no script at all, load nothing from elsewhere and post only to themselves
HEADERS = {
    "content-security-policy": "default-src 'none'; style-src 'unsafe-inline'; img-src 'self'; "
    "form-action 'self'; frame-ancestors 'none'; base-uri 'none'",
    "x-frame-options": "DENY",
    "x-content-type-options": "nosniff",
    "referrer-policy": "no-referrer",
    "cache-control": "no-store",
}


def routes() -> list[Route]:
    return [
        Route("/", views.home),
        Route("/queues", views.queues),
        Route("/queues/{queue}/dead-letters", views.dead_letters),
        Route("/queues/{queue}/dead-letters/redrive", views.redrive, methods=["POST"]),
        Route("/queues/{queue}/dead-letters/purge", views.purge, methods=["POST"]),
        Route("/tasks", views.tasks),
        Route("/tasks/{task_id}", views.task),
        Route("/tasks/{task_id}/revoke", views.revoke, methods=["POST"]),
        Route("/workers", views.workers),
        Route("/login", views.login_form),
        Route("/login", views.login, methods=["POST"]),
        Route("/logout", views.logout, methods=["POST"]),
    ]


async def _http_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, HTTPException)
    return PlainTextResponse(f"{exc.status_code}: {exc.detail}\n", status_code=exc.status_code)


def create_app(
    app: App,
    token: str | None = None,
    read_only: bool = False,
    cache_s: float = CACHE_S,
    clock: Callable[[], float] | None = None,
) -> Starlette:
    """The dashboard of ``app``. Without ``token`` (or with ``read_only``) it only shows: no
    buttons, every POST 403. ``clock`` (monotonic seconds) drives the read cache in tests."""
    web = Starlette(
        routes=routes(), exception_handlers={HTTPException: _http_error}, middleware=[Middleware(SecureHeaders)]
    )
    web.state.dashboard = Dashboard(
        app, Backends(app, cache_s, clock), Guard(token, read_only), Jinja2Templates(directory=str(TEMPLATES))
    )
    return web


class SecureHeaders:
    """ASGI middleware: ``HEADERS`` on every response."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        async def with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = MutableHeaders(scope=message)
                for name, value in HEADERS.items():
                    headers[name] = value
            await send(message)

        await self.app(scope, receive, with_headers if scope["type"] == "http" else send)
