"""Revoke on SQS + DynamoDB through the moto server: revoked queued tasks never run, in the worker
and in the Lambda handler, and the check costs one BatchGetItem per received batch (0.1 request
per task at SQS's 10 messages per receive), counted at the server."""

from __future__ import annotations

from typing import Any

import pytest
from aws_apps import run_burst, sqs_app
from cloudq_aws.lambda_.handler import make_handler
from cloudq_aws.testing import MotoServer, SQSPoller

from cloudq import signals, states
from cloudq.errors import TaskRevokedError

pytestmark = [pytest.mark.aws, pytest.mark.timeout(120)]


def test_revoked_queued_tasks_never_run_and_the_check_is_one_batch_read_per_receive(
    prefix: str, aws: MotoServer
) -> None:
    app = sqs_app(prefix, presence_interval=0)  # the worker's presence records would be counted too

    @app.task()
    def add(a: int, b: int) -> int:
        return a + b

    app.broker.queue("default")
    app.results.get("warm-up")
    handles = add.send_each([(i, i) for i in range(30)])
    doomed = handles[::3]
    with aws.count_requests() as revoking:
        report = app.control.revoke([h.id for h in doomed])
    assert report.revoked == tuple(h.id for h in doomed)
    assert revoking.of("dynamodb") == {"PutItem": 10}  # one conditional write per id, no read
    with aws.count_requests() as worked:
        worker = run_burst(app, concurrency=1)
    assert all(h.state == states.REVOKED for h in doomed)
    with pytest.raises(TaskRevokedError):
        doomed[0].get(timeout=5)
    kept = [h for h in handles if h not in doomed]
    assert [h.get(timeout=5) for h in kept] == [2 * i for i in range(30) if i % 3]
    reads = worked.of("dynamodb")
    # 30 messages arrive in 3 receives of 10: one BatchGetItem each (plus the revoke polls, if the
    # burst outlived the 5 s poll interval); one PutItem per task that ran
    assert reads == {"BatchGetItem": 3 + worker.revoke_polls, "PutItem": 20}
    assert worker.counts["ack"] == 30
    app.close()


def test_the_lambda_handler_skips_revoked_records_with_one_batch_read(aws: MotoServer, sqs: Any, prefix: str) -> None:
    app = sqs_app(prefix, broker_query="&wait=0", presence_interval=0)  # count the check alone
    ran: list[int] = []
    fired: list[dict[str, Any]] = []

    @app.task()
    def work(n: int) -> int:
        ran.append(n)
        return n

    def receiver(sender: Any = None, **kwargs: Any) -> None:
        fired.append(kwargs)

    handles = work.send_each(range(10))
    handles[3].revoke()
    handler = make_handler(app)
    poller = SQSPoller(sqs, app.broker.queue("default").url)  # type: ignore[attr-defined]
    messages = poller.receive_all(10)
    signals.task_revoked.connect(receiver)
    try:
        with aws.count_requests() as requests:
            invocation = poller.invoke(handler, messages)
    finally:
        signals.task_revoked.disconnect(receiver)
        app.close()
    assert invocation.response == {"batchItemFailures": []}  # the revoked one is reported done
    assert sorted(ran) == [n for n in range(10) if n != 3]
    assert requests.of("dynamodb") == {"BatchGetItem": 1, "PutItem": 9}  # 0.1 read per task
    [revoked] = fired
    assert revoked["request"].id == handles[3].id and revoked["terminated"] is False
    assert poller.counts() == (0, 0)
