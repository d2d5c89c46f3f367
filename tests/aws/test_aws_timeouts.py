"""Producer deadlines and connection pools on AWS (issue 10, defects 5 and 7): ``.delay()`` and a
result read through a stalled network raise BackendUnavailable within ``send_timeout``, and the
pool is sized from the worker concurrency."""

from __future__ import annotations

import threading
import time
from typing import Any
from urllib.parse import urlsplit

import pytest
from cloudq_aws.session import DEFAULT_MAX_CONNECTIONS, send_timeouts
from cloudq_aws.testing import MotoServer

from cloudq import App
from cloudq.errors import BackendUnavailable
from cloudq.testing.netfault import FaultProxy

pytestmark = [pytest.mark.aws, pytest.mark.timeout(60)]

SEND_TIMEOUT_S = 2.0
SLACK_S = 1.5  # scheduling on a shared CI machine


def bounded(call: Any, limit: float) -> tuple[BaseException | None, float]:
    """Run ``call`` in a thread; (what it raised, seconds it took), failing if it outlives ``limit``."""
    outcome: dict[str, Any] = {}

    def run() -> None:
        started = time.monotonic()
        try:
            call()
        except BaseException as exc:
            outcome["error"] = exc
        outcome["took"] = time.monotonic() - started

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    thread.join(limit)
    assert not thread.is_alive(), f"still blocked after {limit}s"
    return outcome.get("error"), outcome["took"]


def test_delay_and_result_reads_fail_within_send_timeout_in_a_partition(aws: MotoServer, prefix: str) -> None:
    target = urlsplit(aws.endpoint)
    with FaultProxy(target.hostname or "127.0.0.1", target.port or 80) as proxy:
        endpoint = f"http://127.0.0.1:{proxy.port}"
        options = f"endpoint_url={endpoint}&send_timeout={SEND_TIMEOUT_S}"
        app = App("timeouts", broker=f"sqs://?prefix={prefix}&{options}", results=f"dynamodb://{prefix}r?{options}")

        @app.task()
        def noop() -> None:
            return None

        sent = noop.delay()  # queue and table resolved while the network works
        assert sent.status == "PENDING"
        proxy.stall()
        for call in (noop.delay, lambda: noop.send_each([(), ()]), lambda: sent.status):
            error, took = bounded(call, SEND_TIMEOUT_S + 10)
            assert isinstance(error, BackendUnavailable), error
            assert endpoint in str(error)
            assert took <= SEND_TIMEOUT_S + SLACK_S, f"took {took:.1f}s for a {SEND_TIMEOUT_S}s deadline"
        proxy.restore()
        assert noop.delay().status == "PENDING"  # and works again at once


@pytest.mark.parametrize("total", [1.0, 2.0, 10.0, 60.0])
def test_send_timeouts_stay_inside_the_deadline(total: float) -> None:
    connect, read, attempts = send_timeouts(total)
    assert connect > 0 and read > 0
    assert attempts * (connect + read) + (attempts - 1) * 1.0 <= total + 1e-9


def test_connection_pool_is_sized_from_the_worker_concurrency(aws: MotoServer, prefix: str) -> None:
    app = App("pool", broker=f"sqs://?prefix={prefix}", results=f"dynamodb://{prefix}r", concurrency=60)
    for backend, service in ((app.broker, "sqs"), (app.results, "dynamodb")):
        client = backend.clients.get(service)  # type: ignore[attr-defined]
        assert client.meta.config.max_pool_connections >= 60 + 1 > DEFAULT_MAX_CONNECTIONS
    small = App("pool2", broker=f"sqs://?prefix={prefix}", concurrency=2)
    assert small.broker.clients.get("sqs").meta.config.max_pool_connections == DEFAULT_MAX_CONNECTIONS  # type: ignore[attr-defined]
