"""FaultProxy forwards, stalls, refuses and restores, against a tiny echo server."""

from __future__ import annotations

import contextlib
import socket
import threading
from collections.abc import Iterator

import pytest

from cloudq.testing.netfault import FaultProxy


@pytest.fixture
def echo_port() -> Iterator[int]:
    server = socket.create_server(("127.0.0.1", 0))
    server.settimeout(0.05)
    stop = threading.Event()

    def echo(conn: socket.socket) -> None:
        with conn, contextlib.suppress(ConnectionResetError):  # refuse() resets the proxy's side
            while data := conn.recv(4096):
                conn.sendall(data)

    def serve() -> None:
        while not stop.is_set():
            try:
                conn, _ = server.accept()
            except TimeoutError:
                continue
            threading.Thread(target=echo, args=(conn,), daemon=True).start()

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    yield server.getsockname()[1]
    stop.set()
    thread.join(5)
    server.close()


def roundtrip(port: int, payload: bytes = b"ping", timeout: float = 2.0) -> bytes:
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as sock:
        sock.sendall(payload)
        return sock.recv(4096)


def test_forwards_then_stalls_then_restores(echo_port: int) -> None:
    with FaultProxy("127.0.0.1", echo_port) as proxy:
        assert roundtrip(proxy.port) == b"ping"
        frozen = socket.create_connection(("127.0.0.1", proxy.port), timeout=0.3)
        proxy.stall()
        with pytest.raises(TimeoutError):  # accepted, never answered
            roundtrip(proxy.port, timeout=0.3)
        frozen.sendall(b"held")
        with pytest.raises(TimeoutError):
            frozen.recv(4096)
        proxy.restore()
        frozen.settimeout(2.0)
        assert frozen.recv(4096) == b"held"  # the partition healed: the held bytes arrive
        frozen.close()
        assert roundtrip(proxy.port) == b"ping"


def test_refuse_resets_and_restore_keeps_the_port(echo_port: int) -> None:
    with FaultProxy("127.0.0.1", echo_port) as proxy:
        port = proxy.port
        open_conn = socket.create_connection(("127.0.0.1", port), timeout=2.0)
        open_conn.sendall(b"x")
        assert open_conn.recv(10) == b"x"
        proxy.refuse()
        with pytest.raises(ConnectionRefusedError):
            socket.create_connection(("127.0.0.1", port), timeout=2.0)
        with pytest.raises((ConnectionResetError, BrokenPipeError)):
            open_conn.sendall(b"y")
            assert open_conn.recv(10) == b""  # a FIN instead of a reset would end up here
            raise AssertionError("connection survived refuse()")
        open_conn.close()
        proxy.restore()
        assert proxy.port == port
        assert roundtrip(port) == b"ping"


def test_stops_by_itself_after_its_lifetime(echo_port: int) -> None:
    proxy = FaultProxy("127.0.0.1", echo_port, lifetime=0.2)
    with proxy:
        port = proxy.port
        assert roundtrip(port) == b"ping"
        threading.Event().wait(1.5)
        with pytest.raises(ConnectionRefusedError):
            socket.create_connection(("127.0.0.1", port), timeout=2.0)
