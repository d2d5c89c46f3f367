"""A TCP proxy that injects network faults between a client and a server, for fault tests.

``with FaultProxy("127.0.0.1", server_port) as proxy:`` point the client at ``proxy.port``; then
``proxy.stall()`` (connections are accepted and never answered, established ones stop moving: a
partition), ``proxy.refuse()`` (nothing listens: connection refused, established ones are reset) and
``proxy.restore()``. Provider-neutral, stdlib only. Every wait is bounded and the proxy shuts itself
down after ``lifetime`` seconds, so a test that forgets it never leaves a thread or socket behind.
"""

from __future__ import annotations

import contextlib
import select
import socket
import struct
import threading
import time
from types import TracebackType

_TICK = 0.05  # seconds between checks of the proxy's state in every loop
_CHUNK = 65536


class FaultProxy:
    """Forwards 127.0.0.1:``port`` to ``target_host:target_port`` until told to fail."""

    def __init__(self, target_host: str, target_port: int, *, lifetime: float = 600.0) -> None:
        self._target = (target_host, target_port)
        self._deadline = time.monotonic() + lifetime
        self._flowing = threading.Event()
        self._flowing.set()
        self._closed = threading.Event()
        self._lock = threading.Lock()
        self._sockets: set[socket.socket] = set()
        self._listener: socket.socket | None = None
        self._port = 0

    @property
    def port(self) -> int:
        """The local port clients connect to (stable across refuse/restore)."""
        return self._port

    def __enter__(self) -> FaultProxy:
        self._listen()
        threading.Thread(target=self._watchdog, name="faultproxy-watchdog", daemon=True).start()
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    def stall(self) -> None:
        """Black-hole traffic: new connections are accepted but get no answer; open ones freeze."""
        self._flowing.clear()
        self._listen()

    def refuse(self) -> None:
        """Stop listening (clients get ECONNREFUSED) and reset every open connection."""
        self._flowing.clear()
        with self._lock:
            listener, self._listener = self._listener, None
            sockets, self._sockets = self._sockets, set()
        if listener is not None:
            with contextlib.suppress(OSError):
                listener.shutdown(socket.SHUT_RDWR)  # stops listening now, even while accept() polls it
            listener.close()
        for sock in sockets:
            _reset(sock)

    def restore(self) -> None:
        """Forward normally again; frozen connections resume where they stopped."""
        self._listen()
        self._flowing.set()

    def close(self) -> None:
        """Stop everything; idempotent."""
        self._closed.set()
        self.refuse()
        self._flowing.set()  # wake the loops so they notice the close

    def _listen(self) -> None:
        with self._lock:
            if self._listener is not None or self._closed.is_set():
                return
            listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            listener.bind(("127.0.0.1", self._port))
            listener.listen(64)
            listener.settimeout(_TICK)
            self._port = listener.getsockname()[1]
            self._listener = listener
        threading.Thread(target=self._accept, args=(listener,), name="faultproxy-accept", daemon=True).start()

    def _accept(self, listener: socket.socket) -> None:
        while not self._closed.is_set() and self._listener is listener:
            try:
                client, _ = listener.accept()
            except TimeoutError:
                continue
            except OSError:  # closed by refuse()
                return
            if not self._track(client):
                return
            threading.Thread(target=self._serve, args=(client,), name="faultproxy-conn", daemon=True).start()

    def _serve(self, client: socket.socket) -> None:
        try:
            if not self._wait_flowing(client):
                return
            upstream = socket.create_connection(self._target, timeout=5.0)
            if not self._track(upstream):
                return
            self._pump(client, upstream)
        except OSError:
            pass
        finally:
            self._forget(client)

    def _pump(self, client: socket.socket, upstream: socket.socket) -> None:
        peer = {client: upstream, upstream: client}
        try:
            while not self._closed.is_set():
                if not self._flowing.is_set():  # stalled: read nothing, so nothing moves
                    if not self._wait_flowing(client):
                        return
                    continue
                readable, _, _ = select.select(list(peer), [], [], _TICK)
                for sock in readable:
                    data = sock.recv(_CHUNK)
                    if not data:
                        return
                    if not self._wait_flowing(client):
                        return
                    peer[sock].sendall(data)
        finally:
            self._forget(upstream)

    def _wait_flowing(self, client: socket.socket) -> bool:
        """Wait until traffic may move; False once the proxy or this connection is gone."""
        while not self._flowing.wait(_TICK):
            if self._closed.is_set() or client not in self._sockets:
                return False
        return not self._closed.is_set() and client in self._sockets

    def _track(self, sock: socket.socket) -> bool:
        with self._lock:
            if self._closed.is_set():
                sock.close()
                return False
            self._sockets.add(sock)
            return True

    def _forget(self, sock: socket.socket) -> None:
        with self._lock:
            self._sockets.discard(sock)
        sock.close()

    def _watchdog(self) -> None:
        while not self._closed.wait(min(1.0, max(0.0, self._deadline - time.monotonic()))):
            if time.monotonic() >= self._deadline:
                self.close()


def _reset(sock: socket.socket) -> None:
    """Close with RST rather than FIN, as a dropped link looks to the peer."""
    with contextlib.suppress(OSError):
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    sock.close()
