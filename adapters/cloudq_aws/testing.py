"""A moto server process for tests and benchmarks, with per-operation request counts.

``MotoServer().start()`` runs moto's server (moto[server] must be installed) in a separate process
on a free 127.0.0.1 port, and ``environment()`` gives the AWS variables that point boto3 at it.
Request counts come from the server itself (moto's request recorder), so they show what AWS
would bill, whichever client made the calls.

One difference from ``moto_server`` on purpose: moto evaluates a DynamoDB ConditionExpression
and then writes without a lock, so two concurrent conditional writes to one item can both
succeed on its threaded server, where DynamoDB would refuse one. The process started here is
moto's own WSGI app behind one lock for DynamoDB requests (``python -m cloudq_aws.testing``),
so concurrent conditional writes behave as on AWS and race tests test cloudq, not moto.
"""

from __future__ import annotations

import json
import os
import re
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

_SCOPE = re.compile(r"Credential=[^/]+/\d+/[^/]+/([^/]+)/aws4_request")
_TARGET_SERVICES = {"AmazonSQS": "sqs", "DynamoDB_20120810": "dynamodb"}


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket() as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])


class RequestCounts(Counter[str]):
    """Requests the server received, keyed ``service:Operation`` (``s3:PUT`` for REST calls)."""

    def service(self, name: str) -> int:
        return sum(n for key, n in self.items() if key.startswith(f"{name}:"))

    def of(self, service: str) -> dict[str, int]:
        return {key.split(":", 1)[1]: n for key, n in sorted(self.items()) if key.startswith(f"{service}:")}


def operation(entry: dict[str, object]) -> str:
    """``service:Operation`` of one recorded request."""
    headers = {str(k).lower(): str(v) for k, v in dict(entry.get("headers") or {}).items()}  # type: ignore[call-overload]
    target = headers.get("x-amz-target", "")
    if target:
        prefix, _, op = target.partition(".")
        return f"{_TARGET_SERVICES.get(prefix, prefix.lower())}:{op}"
    found = _SCOPE.search(headers.get("authorization", ""))
    service = found.group(1) if found else "unknown"
    body = entry.get("body")
    if isinstance(body, str) and "Action=" in body and not entry.get("body_encoded"):
        action = re.search(r"(?:^|&)Action=([A-Za-z]+)", body)
        if action:
            return f"{service}:{action.group(1)}"
    return f"{service}:{entry.get('method', '?')}"


class MotoServer:
    """One moto server process; stop() ends it by its pid."""

    def __init__(self, host: str = "127.0.0.1", port: int | None = None, workdir: Path | None = None) -> None:
        self.host = host
        self.port = port or free_port(host)
        self.workdir = Path(workdir or tempfile.mkdtemp(prefix="cloudq-moto-"))
        self.recording = self.workdir / "requests.jsonl"
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
        env = {**os.environ, "MOTO_RECORDER_FILEPATH": str(self.recording)}
        with open(self.log, "ab") as log:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "cloudq_aws.testing", self.host, str(self.port)],
                stdout=log,
                stderr=subprocess.STDOUT,
                env=env,
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
            urllib.request.urlopen(f"{self.endpoint}/moto-api/data.json", timeout=1).close()
        except urllib.error.HTTPError:
            return True
        except OSError:
            return False
        return True

    def _post(self, path: str) -> None:
        request = urllib.request.Request(f"{self.endpoint}{path}", data=b"", method="POST")
        urllib.request.urlopen(request, timeout=10).close()

    def reset(self) -> None:
        """Forget every resource (all services)."""
        self._post("/moto-api/reset")

    @contextmanager
    def count_requests(self) -> Iterator[RequestCounts]:
        """Count the requests the server receives inside the block (filled in when it exits)."""
        counts = RequestCounts()
        self._post("/moto-api/recorder/reset-recording")
        self._post("/moto-api/recorder/start-recording")
        try:
            yield counts
        finally:
            self._post("/moto-api/recorder/stop-recording")
            with open(self.recording) as lines:
                for line in lines:
                    if line.strip():
                        counts[operation(json.loads(line))] += 1

    def stop(self) -> None:
        process, self.process = self.process, None
        if process is None or process.poll() is not None:
            return
        os.kill(process.pid, signal.SIGTERM)
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            os.kill(process.pid, signal.SIGKILL)
            process.wait()

    def __enter__(self) -> MotoServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


def serve(host: str, port: int) -> None:
    """Run moto's server with DynamoDB requests serialized (see the module docstring)."""
    import threading
    from typing import Any

    from moto.moto_server.werkzeug_app import DomainDispatcherApplication, MotoRequestHandler, create_backend_app
    from werkzeug.serving import run_simple

    moto_app = DomainDispatcherApplication(create_backend_app)
    moto_app.debug = True  # type: ignore[attr-defined]
    dynamodb = threading.Lock()

    def app(environ: dict[str, Any], start_response: Any) -> Any:
        if environ.get("HTTP_X_AMZ_TARGET", "").startswith("DynamoDB_"):
            with dynamodb:
                return list(moto_app(environ, start_response))
        return moto_app(environ, start_response)

    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    os.environ.setdefault("MOTO_PORT", str(port))
    run_simple(host, port, app, threaded=True, request_handler=MotoRequestHandler)


if __name__ == "__main__":
    serve(sys.argv[1], int(sys.argv[2]))
