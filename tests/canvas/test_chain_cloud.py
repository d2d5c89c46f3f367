"""The same chain on SQS + DynamoDB (moto server) through the Lambda handler: the same results as
on a worker, and the requests each step costs, counted at the server."""

from __future__ import annotations

from typing import Any

import pytest

pytest.importorskip("cloudq_aws")

from canvas_tasks import register
from cloudq_aws.lambda_.handler import make_handler
from cloudq_aws.testing import MotoServer, SQSPoller

from cloudq import App, chain
from cloudq.testing.workers import run_burst

pytestmark = [pytest.mark.aws, pytest.mark.timeout(120)]


def _workflow(app: App) -> chain:
    add = app.tasks["canvas.add"]
    workflow = add.s(2, 2) | add.s(4) | add.s(8)
    workflow.link_error(app.tasks["canvas.failed_id"].s())
    return workflow  # type: ignore[return-value]


def _values(result: Any) -> list[Any]:
    values = []
    while result is not None:
        values.append(result.get(timeout=10))
        result = result.parent
    return values


def test_a_chain_on_lambda_gives_what_it_gives_on_a_worker_at_three_writes_and_one_send_per_step(
    prefix: str, sqs: Any, aws: MotoServer
) -> None:
    local = App("canvas-local", broker="memory://", results="memory://")
    register(local)
    expected = _workflow(local).apply_async()
    run_burst(local, timeout=30)

    # presence off: the instance's presence record (one PutItem per 30 s) is not a step's cost
    results = f"dynamodb://{prefix}results"
    app = App("canvas-lambda", broker=f"sqs://?prefix={prefix}&wait=0", results=results, presence_interval=0)
    register(app)
    handler = make_handler(app)
    app.results.get("warm-up")  # creates the table, so the counts below are a step's own
    result = _workflow(app).apply_async()
    poller = SQSPoller(sqs, app.broker.queue("default").url)  # type: ignore[attr-defined]
    steps = []
    for _ in range(3):  # one invocation per step: each step's outcome sends the next one
        messages = poller.receive_all(1)
        assert len(messages) == 1
        with aws.count_requests() as calls:
            invocation = poller.invoke(handler, messages)
        assert invocation.failed == []
        steps.append(calls)
    assert not poller.receive(10, wait_s=0)  # the chain ended: nothing more was sent
    assert _values(result) == _values(expected) == [16, 8, 4]
    # per step, counted at the server: the revoke check's read of the batch (one record here), the
    # conditional result write, the next step's send, the record that it was sent, and the poller's
    # delete (the Lambda service's, as with any task)
    for calls in steps[:-1]:
        assert calls.of("dynamodb") == {"BatchGetItem": 1, "PutItem": 2}, calls
        assert calls.of("sqs") == {"SendMessage": 1, "DeleteMessageBatch": 1}, calls
    assert steps[-1].of("dynamodb") == {"BatchGetItem": 1, "PutItem": 1}
    assert steps[-1].of("sqs") == {"DeleteMessageBatch": 1}
    local.close()
    app.close()


def test_a_step_redelivered_to_lambda_does_not_send_its_successor_twice(prefix: str, sqs: Any) -> None:
    app = App("canvas-lambda", broker=f"sqs://?prefix={prefix}&wait=0", results=f"dynamodb://{prefix}results")
    register(app)
    handler = make_handler(app)
    result = _workflow(app).apply_async()
    poller = SQSPoller(sqs, app.broker.queue("default").url)  # type: ignore[attr-defined]
    first = poller.receive_all(1)
    handler(poller.event(first), None)  # ran and settled, but the Lambda service never deleted it
    sqs.change_message_visibility(
        QueueUrl=poller.queue_url, ReceiptHandle=first[0]["ReceiptHandle"], VisibilityTimeout=0
    )
    received = poller.receive_all(2)
    assert sorted(m["Body"] == first[0]["Body"] for m in received) == [False, True]  # the copy + step 2
    poller.invoke(handler, received)
    poller.invoke(handler, poller.receive_all(1))  # step 3: the only message left
    assert not poller.receive(10, wait_s=0)
    assert _values(result) == [16, 8, 4]
    app.close()
