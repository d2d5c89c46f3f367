"""Fixtures for the push handler tests: the session's Pub/Sub emulator (cloudq_gcp.testing.fixtures,
shared with tests/gcp) and real HTTP servers on loopback ports for the apps under test."""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from socketserver import ThreadingMixIn
from typing import Any
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer, make_server

import pytest
from cloudq_gcp.testing import fixtures as gcp_fixtures


def pytest_configure(config: pytest.Config) -> None:
    gcp_fixtures.register(config)


class _ThreadingWSGIServer(ThreadingMixIn, WSGIServer):
    daemon_threads = True


class _QuietHandler(WSGIRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:
        pass


def serve_wsgi(app: Callable[..., Any]) -> tuple[str, Callable[[], None]]:
    """Serve a WSGI app on a free loopback port in a thread: (base URL, stop)."""
    server = make_server("127.0.0.1", 0, app, server_class=_ThreadingWSGIServer, handler_class=_QuietHandler)
    thread = threading.Thread(target=server.serve_forever, name="wsgi-test-server", daemon=True)
    thread.start()

    def stop() -> None:
        server.shutdown()
        server.server_close()
        thread.join(10)

    return f"http://127.0.0.1:{server.server_port}", stop


def serve_asgi(app: Any) -> tuple[str, Callable[[], None]]:
    """Serve an ASGI app with uvicorn on a free loopback port in a thread: (base URL, stop)."""
    import socket

    import uvicorn

    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    config = uvicorn.Config(app, lifespan="on", log_level="warning", access_log=False)
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, name="uvicorn-test-server", daemon=True)
    thread.start()
    ready = threading.Event()
    for _ in range(200):
        if server.started:
            ready.set()
            break
        threading.Event().wait(0.05)
    if not ready.is_set():
        raise RuntimeError("uvicorn did not start within 10 s")

    def stop() -> None:
        server.should_exit = True
        thread.join(10)
        sock.close()

    return f"http://127.0.0.1:{sock.getsockname()[1]}", stop


def _serving(serve: Callable[[Any], tuple[str, Callable[[], None]]]) -> Iterator[Callable[[Any], str]]:
    stops: list[Callable[[], None]] = []

    def start(app: Any) -> str:
        url, stop = serve(app)
        stops.append(stop)
        return url

    yield start
    for stop in stops:
        stop()


@pytest.fixture
def wsgi_server() -> Iterator[Callable[[Any], str]]:
    """``url = wsgi_server(app)``: the WSGI app served until the test ends."""
    yield from _serving(serve_wsgi)


@pytest.fixture
def asgi_server() -> Iterator[Callable[[Any], str]]:
    """``url = asgi_server(app)``: the ASGI app served by uvicorn until the test ends."""
    yield from _serving(serve_asgi)
