"""``cloudq worker --burst`` on SQS (moto server) with DynamoDB results: the burst contract."""

from __future__ import annotations

import logging
import threading
import time

import pytest

from cloudq import App
from cloudq.runtime.worker import Worker
from cloudq.testing import BurstContract
from cloudq.testing.burst_contract import closed_port

pytestmark = [pytest.mark.aws, pytest.mark.slow]


class TestSQSBurst(BurstContract):
    @pytest.fixture
    def burst_env(self, prefix: str) -> dict[str, str]:
        return {"CLOUDQ_BROKER": f"sqs://?prefix={prefix}&wait=1", "CLOUDQ_RESULTS": f"dynamodb://{prefix}results"}

    @pytest.fixture
    def unreachable_env(self, prefix: str) -> tuple[dict[str, str], str]:
        endpoint = f"http://127.0.0.1:{closed_port()}"
        env = {
            "CLOUDQ_BROKER": f"sqs://?prefix={prefix}&wait=1",
            "CLOUDQ_RESULTS": f"dynamodb://{prefix}results",
            "AWS_ENDPOINT_URL": endpoint,
        }
        return env, endpoint


def test_a_long_running_worker_keeps_retrying_an_unreachable_sqs_logging_the_endpoint(
    prefix: str, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    endpoint = f"http://127.0.0.1:{closed_port()}"
    monkeypatch.setenv("AWS_ENDPOINT_URL", endpoint)
    app = App("unreachable", broker=f"sqs://?prefix={prefix}&wait=1", results="memory://")

    @app.task()
    def noop() -> None: ...

    caplog.set_level(logging.ERROR, logger="cloudq.worker")
    worker = Worker(app, concurrency=1, unreachable_timeout_s=0.0)  # not burst: the timeout does not apply
    codes: list[int] = []
    thread = threading.Thread(target=lambda: codes.append(worker.run()), daemon=True)
    thread.start()

    def failures() -> list[str]:
        return [r.getMessage() for r in caplog.records if r.getMessage().startswith("receive failed")]

    try:
        deadline = time.monotonic() + 60
        while len(failures()) < 3 and thread.is_alive() and time.monotonic() < deadline:
            time.sleep(0.05)
        assert thread.is_alive(), "the worker gave up"
        assert len(failures()) >= 3
    finally:
        worker.stop()
        thread.join(30)
        app.close()
    assert codes == [0]
    assert all(endpoint in line for line in failures()), failures()
    assert not [r for r in caplog.records if "giving up" in r.getMessage()]
