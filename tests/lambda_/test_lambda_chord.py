"""A chord through the Lambda SQS handler with real messages on moto: the header batch invoked
twice (a duplicate delivery), then the body the last header task sent, exactly once."""

from __future__ import annotations

from typing import Any

import pytest
from cloudq_aws.lambda_.handler import make_handler
from cloudq_aws.testing import SQSPoller

from cloudq import App, chord

pytestmark = [pytest.mark.aws, pytest.mark.timeout(90)]


def test_a_chord_runs_through_the_lambda_handler(sqs: Any, prefix: str) -> None:
    app = App("lambda-chord", broker=f"sqs://?prefix={prefix}&wait=0", results=f"dynamodb://{prefix}results")
    runs: list[int] = []

    @app.task()
    def add(a: int, b: int) -> int:
        return a + b

    @app.task()
    def tsum(numbers: list[int]) -> int:
        runs.append(sum(numbers))
        return sum(numbers)

    handler = make_handler(app)
    result = chord(add.s(i, i) for i in range(6))(tsum.s())
    poller = SQSPoller(sqs, app.broker.queue("default").url)  # type: ignore[attr-defined]
    received = poller.receive_all(7)
    header = [m for m in received if m["MessageAttributes"]["task"]["StringValue"] == add.name]
    assert len(header) == 6
    handler(poller.event(header), None)  # a first invocation whose deletes were lost
    others = [m for m in received if m not in header]  # chord_unlock on a store without counters
    assert poller.invoke(handler, header).response == {"batchItemFailures": []}
    if others:
        poller.invoke(handler, others)
    for _ in range(5):  # the body (and, on a store without counters, chord_unlock polls)
        if runs:
            break
        messages = poller.receive_all(10, wait_s=2)
        if messages:
            poller.invoke(handler, messages)
    assert result.get(timeout=10) == 30
    assert runs == [30]
    app.close()
