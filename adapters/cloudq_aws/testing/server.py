"""A moto server process for tests and benchmarks, with per-operation request counts.

``MotoServer().start()`` runs moto's server (moto[server] must be installed) in a separate
process on a free 127.0.0.1 port, and ``environment()`` gives the AWS variables that point boto3
at it. Request counts are kept by the server process itself, one per HTTP request received, so
they show what AWS would bill whichever client made the calls.

The process is moto's own WSGI app (``python -m cloudq_aws.testing.server HOST PORT``) behind a thin
layer that makes two operations atomic, as they are on AWS, because moto's threaded server runs
them without a lock:

- DynamoDB requests run one at a time: moto checks a ConditionExpression and then writes, so two
  concurrent conditional writes to one item could both succeed.
- SQS ReceiveMessage scans run one at a time: two concurrent receives could lease the same
  message. A long poll becomes repeated short scans until a message arrives or the wait ends
  (still one request for the client and in the counts).

Billed requests are counted beside them (``billed_requests()``, ``RequestCounts.billed``): SQS bills
each 64 KiB chunk of a request's payload as one request, where the payload is the messages a
SendMessage(Batch) carries or a ReceiveMessage returns (bodies and message attributes, counted as
SQS sizes messages); any other SQS request, and every request of other services, bills as one.

Everything else is moto unchanged.
"""

from __future__ import annotations

import base64
import io
import json
import os
import re
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request
from collections import Counter
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from cloudq.util.packing import billed_units as chunks_billed

from ..resources import SQS_BILLING_CHUNK_BYTES
from ..sqs_messages import attributes_size

COUNTS_PATH = "/_cloudq/requests"
BILLED_PATH = "/_cloudq/billed"
RESET_PATH = "/_cloudq/requests/reset"
LONG_POLL_STEP_S = 0.05
_SCOPE = re.compile(r"Credential=[^/]+/\d+/[^/]+/([^/]+)/aws4_request")
_ACTION = re.compile(rb"(?:^|&)Action=([A-Za-z]+)")
_TARGET_SERVICES = {"AmazonSQS": "sqs", "DynamoDB_20120810": "dynamodb"}


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket() as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])


def stop_process(process: subprocess.Popen[bytes], timeout: float = 10.0) -> None:
    """SIGTERM a process we started (by its pid), SIGKILL it if it is still there after ``timeout``."""
    if process.poll() is not None:
        return
    os.kill(process.pid, signal.SIGTERM)
    try:
        process.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.kill(process.pid, signal.SIGKILL)
        process.wait()


class OperationCounts(Counter[str]):
    """Counts keyed ``service:Operation`` (``s3:PUT`` for REST calls)."""

    def service(self, name: str) -> int:
        return sum(n for key, n in self.items() if key.startswith(f"{name}:"))

    def of(self, service: str) -> dict[str, int]:
        return {key.split(":", 1)[1]: n for key, n in sorted(self.items()) if key.startswith(f"{service}:")}


class RequestCounts(OperationCounts):
    """Requests the server received; ``billed`` holds the billed requests of the same keys
    (filled in by ``count_requests``)."""

    def __init__(self, *args: Any, **kwargs: int) -> None:
        super().__init__(*args, **kwargs)
        self.billed = OperationCounts()


class MotoServer:
    """One moto server process; stop() ends it by its pid."""

    def __init__(self, host: str = "127.0.0.1", port: int | None = None, workdir: Path | None = None) -> None:
        self.host = host
        self.port = port or free_port(host)
        self.workdir = Path(workdir or tempfile.mkdtemp(prefix="cloudq-moto-"))
        self.log = self.workdir / "moto.log"
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def endpoint(self) -> str:
        return f"http://{self.host}:{self.port}"

    def environment(self) -> dict[str, str]:
        """AWS variables for clients of this server (fake credentials, no shared config files)."""
        return {
            "AWS_ENDPOINT_URL": self.endpoint,
            "AWS_ACCESS_KEY_ID": "testing",
            "AWS_SECRET_ACCESS_KEY": "testing",
            "AWS_DEFAULT_REGION": "us-east-1",
            "AWS_REGION": "us-east-1",
            "AWS_EC2_METADATA_DISABLED": "true",
            "AWS_CONFIG_FILE": str(self.workdir / "no-config"),
            "AWS_SHARED_CREDENTIALS_FILE": str(self.workdir / "no-credentials"),
        }

    def start(self, timeout: float = 30.0) -> MotoServer:
        with open(self.log, "ab") as log:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "cloudq_aws.testing.server", self.host, str(self.port)],
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        deadline = time.monotonic() + timeout
        while not self._answers():
            if self.process.poll() is not None:
                raise RuntimeError(f"moto server exited with {self.process.returncode}: {self.log.read_text()[-2000:]}")
            if time.monotonic() > deadline:
                self.stop()
                raise RuntimeError(f"moto server did not answer on {self.endpoint} within {timeout}s")
            time.sleep(0.05)
        return self

    def _answers(self) -> bool:
        try:
            urllib.request.urlopen(f"{self.endpoint}{COUNTS_PATH}", timeout=1).close()
        except urllib.error.HTTPError:
            return True
        except OSError:
            return False
        return True

    def _post(self, path: str) -> bytes:
        request = urllib.request.Request(f"{self.endpoint}{path}", data=b"", method="POST")
        with urllib.request.urlopen(request, timeout=10) as response:
            body: bytes = response.read()
            return body

    def reset(self) -> None:
        """Forget every resource (all services)."""
        self._post("/moto-api/reset")

    def requests(self) -> RequestCounts:
        """Requests received since the server started (or the last reset of the counts)."""
        return RequestCounts(self._get_json(COUNTS_PATH))

    def billed_requests(self) -> OperationCounts:
        """Billed requests since the server started (or the last reset), by ``service:Operation``."""
        return OperationCounts(self._get_json(BILLED_PATH))

    def _get_json(self, path: str) -> dict[str, int]:
        with urllib.request.urlopen(f"{self.endpoint}{path}", timeout=10) as response:
            data: dict[str, int] = json.loads(response.read())
            return data

    @contextmanager
    def count_requests(self) -> Iterator[RequestCounts]:
        """Count the requests the server receives inside the block (filled in when it exits).
        Counts are server-wide: don't run other clients against the server meanwhile."""
        counts = RequestCounts()
        before, billed_before = self.requests(), self.billed_requests()
        try:
            yield counts
        finally:
            counts.update(_grown(before, self.requests()))
            counts.billed.update(_grown(billed_before, self.billed_requests()))

    def stop(self) -> None:
        process, self.process = self.process, None
        if process is not None:
            stop_process(process)

    def __enter__(self) -> MotoServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


def _grown(before: Counter[str], after: Counter[str]) -> dict[str, int]:
    return {k: n - before.get(k, 0) for k, n in after.items() if n > before.get(k, 0)}


# -- the server process ---------------------------------------------------------------------------

Environ = dict[str, Any]
StartResponse = Callable[..., Any]
WSGIApp = Callable[[Environ, StartResponse], Iterable[bytes]]


def _read_body(environ: Environ) -> bytes:
    length = int(environ.get("CONTENT_LENGTH") or 0)
    body: bytes = environ["wsgi.input"].read(length) if length else b""
    environ["wsgi.input"] = io.BytesIO(body)
    return body


def request_operation(environ: Environ) -> str:
    """``service:Operation`` of one incoming request (reads a form body only)."""
    target = str(environ.get("HTTP_X_AMZ_TARGET", ""))
    if target:
        prefix, _, op = target.partition(".")
        return f"{_TARGET_SERVICES.get(prefix, prefix.lower())}:{op}"
    found = _SCOPE.search(str(environ.get("HTTP_AUTHORIZATION", "")))
    service = found.group(1) if found else "unsigned"
    if str(environ.get("CONTENT_TYPE", "")).startswith("application/x-www-form-urlencoded"):
        action = _ACTION.search(_read_body(environ))
        if action:
            return f"{service}:{action.group(1).decode()}"
    return f"{service}:{environ.get('REQUEST_METHOD', '?')}"


def message_bytes(message: dict[str, Any]) -> int:
    """A message's size as SQS counts it (a binary attribute by its bytes, not its base64 text)."""
    attributes = {
        name: {**raw, "BinaryValue": base64.b64decode(raw["BinaryValue"])} if "BinaryValue" in raw else raw
        for name, raw in (message.get("MessageAttributes") or {}).items()
    }
    body = str(message.get("MessageBody", message.get("Body", "")))
    return len(body.encode()) + attributes_size(attributes)


def billed_units(op: str, request: bytes, response: bytes = b"") -> int:
    """Requests SQS bills for one call of ``op`` (JSON protocol): one per 64 KiB chunk of the
    messages sent or received, at least one. Anything else is one."""
    try:
        if op == "sqs:SendMessage":
            payload = message_bytes(json.loads(request))
        elif op == "sqs:SendMessageBatch":
            payload = sum(message_bytes(e) for e in json.loads(request).get("Entries", []))
        elif op == "sqs:ReceiveMessage":
            payload = sum(message_bytes(m) for m in json.loads(response or b"{}").get("Messages", []))
        else:
            return 1
    except (ValueError, AttributeError, TypeError):  # not JSON protocol (or an error reply): one request
        return 1
    return chunks_billed(payload, SQS_BILLING_CHUNK_BYTES)


class AtomicMoto:
    """WSGI layer over moto: counts requests and makes DynamoDB requests and SQS receive scans atomic."""

    def __init__(self, moto_app: WSGIApp) -> None:
        self.moto_app = moto_app
        self.counts: Counter[str] = Counter()
        self.billed: Counter[str] = Counter()
        self._counts_lock = threading.Lock()
        self._dynamodb = threading.Lock()
        self._receive = threading.Lock()

    def __call__(self, environ: Environ, start_response: StartResponse) -> Iterable[bytes]:
        path = environ.get("PATH_INFO", "")
        if path == COUNTS_PATH:
            with self._counts_lock:
                data = json.dumps(dict(self.counts)).encode()
            start_response("200 OK", [("Content-Type", "application/json"), ("Content-Length", str(len(data)))])
            return [data]
        if path == BILLED_PATH:
            with self._counts_lock:
                data = json.dumps(dict(self.billed)).encode()
            start_response("200 OK", [("Content-Type", "application/json"), ("Content-Length", str(len(data)))])
            return [data]
        if path == RESET_PATH:
            with self._counts_lock:
                self.counts.clear()
                self.billed.clear()
            start_response("200 OK", [("Content-Length", "0")])
            return [b""]
        op = request_operation(environ)
        with self._counts_lock:
            self.counts[op] += 1
        if op.startswith("dynamodb:"):
            self._bill(op, 1)
            with self._dynamodb:
                status, headers, data = self._call(environ, _read_body(environ))
            start_response(status, headers)
            return [data]
        if op == "sqs:ReceiveMessage" and str(environ.get("HTTP_X_AMZ_TARGET", "")):
            return self._receive_message(environ, start_response)
        json_sends = op in ("sqs:SendMessage", "sqs:SendMessageBatch") and environ.get("HTTP_X_AMZ_TARGET")
        self._bill(op, billed_units(op, _read_body(environ)) if json_sends else 1)
        return self.moto_app(environ, start_response)

    def _bill(self, op: str, units: int) -> None:
        with self._counts_lock:
            self.billed[op] += units

    def _call(self, environ: Environ, body: bytes) -> tuple[str, list[tuple[str, str]], bytes]:
        env = dict(environ)
        env["wsgi.input"] = io.BytesIO(body)
        env["CONTENT_LENGTH"] = str(len(body))
        captured: dict[str, Any] = {}

        def start(status: str, headers: list[tuple[str, str]], exc_info: Any = None) -> Callable[[bytes], None]:
            captured["status"], captured["headers"] = status, headers
            return lambda _: None

        chunks = self.moto_app(env, start)
        try:
            data = b"".join(chunks)
        finally:
            close = getattr(chunks, "close", None)
            if close is not None:
                close()
        return captured["status"], captured["headers"], data

    def _receive_message(self, environ: Environ, start_response: StartResponse) -> Iterable[bytes]:
        request = json.loads(_read_body(environ) or b"{}")
        wait = float(request.get("WaitTimeSeconds") or 0)
        request["WaitTimeSeconds"] = 0
        body = json.dumps(request).encode()
        deadline = time.monotonic() + wait
        while True:
            with self._receive:
                status, headers, data = self._call(environ, body)
            if (
                not status.startswith("200")
                or time.monotonic() >= deadline
                or json.loads(data or b"{}").get("Messages")
            ):
                break
            time.sleep(LONG_POLL_STEP_S)
        self._bill("sqs:ReceiveMessage", billed_units("sqs:ReceiveMessage", body, data))
        start_response(status, headers)
        return [data]


def serve(host: str, port: int) -> None:
    """Run moto's server behind AtomicMoto until SIGTERM."""
    from moto.moto_server.werkzeug_app import DomainDispatcherApplication, MotoRequestHandler, create_backend_app
    from werkzeug.serving import run_simple

    moto_app = DomainDispatcherApplication(create_backend_app)
    moto_app.debug = True  # type: ignore[attr-defined]
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    os.environ.setdefault("MOTO_PORT", str(port))
    run_simple(host, port, AtomicMoto(moto_app), threaded=True, request_handler=MotoRequestHandler)


if __name__ == "__main__":
    serve(sys.argv[1], int(sys.argv[2]))
