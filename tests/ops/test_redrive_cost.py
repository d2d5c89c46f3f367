"""What a redrive of 100 dead letters costs on SQS (and DynamoDB), counted at the moto server.

Printed figures (``-s``) are the README's; the asserts hold them to what batching allows:
one ReceiveMessage, SendMessageBatch and DeleteMessageBatch per 10 messages."""

from __future__ import annotations

from typing import Any

import pytest
from cloudq_aws.sqs import SQSBroker
from cloudq_aws.testing.server import MotoServer, RequestCounts

from cloudq import App
from cloudq import deadletters as dl
from cloudq.config import Settings
from cloudq.interfaces import Broker, OutgoingMessage, ResultRecord
from cloudq.testing import receive_until

pytestmark = [pytest.mark.aws, pytest.mark.timeout(180)]
TOTAL = 100


def bury(broker: Broker, queue: str, bodies: list[bytes]) -> None:
    broker.send(queue, [OutgoingMessage(b) for b in bodies])
    got = receive_until(broker, queue, len(bodies), lease_s=300, timeout=60)
    assert len(got) == len(bodies)
    broker.dead_letter(got, "ValueError: no")


def report(what: str, counts: RequestCounts) -> None:
    total = sum(counts.values())
    print(f"\n{what}: {total} requests, {total / TOTAL:.2f} per message: {dict(sorted(counts.items()))}")


def test_redrive_all_of_100(aws: MotoServer, prefix: str) -> None:
    broker = SQSBroker.from_url(f"sqs://?prefix={prefix}", Settings())
    bury(broker, "cost", [f"m{i}".encode() for i in range(TOTAL)])
    with aws.count_requests() as counts:
        assert broker.redrive("cost") == TOTAL
    report("redrive all", counts)
    # 10 receives with messages and the empty one that ends the scan; nothing left to show again
    assert counts.of("sqs") == {"ReceiveMessage": 11, "SendMessageBatch": 10, "DeleteMessageBatch": 10}
    broker.close()


def test_redrive_half_by_id_of_100(aws: MotoServer, prefix: str) -> None:
    broker = SQSBroker.from_url(f"sqs://?prefix={prefix}", Settings())
    bury(broker, "cost", [f"m{i}".encode() for i in range(TOTAL)])
    wanted = [d.message_id for d in broker.dead_letters("cost", 1000)][::2]
    with aws.count_requests() as counts:
        assert broker.redrive("cost", wanted) == TOTAL // 2
    report("redrive 50 of 100 by id", counts)
    sqs = counts.of("sqs")
    assert sqs["ReceiveMessage"] == 11 and sqs["ChangeMessageVisibilityBatch"] == 5  # the 50 others shown again
    assert sqs["SendMessageBatch"] == sqs["DeleteMessageBatch"] == 10  # one per received batch with a chosen one
    broker.close()


def test_the_commands_redrive_of_100_failed_tasks_with_dynamodb(aws: MotoServer, prefix: str) -> None:
    """``cloudq dead-letters redrive --all``: list, read the records, forget the failures, move."""
    app = App("cost", broker=f"sqs://?prefix={prefix}&wait=1", results=f"dynamodb://{prefix}results")

    @app.task(name="fails")
    def fails(n: int) -> None:
        raise ValueError(n)

    handles = [app.send_task("fails", [i]) for i in range(TOTAL)]
    got = receive_until(app.broker, "default", TOTAL, lease_s=300, timeout=60)
    app.broker.dead_letter(got, "ValueError: n")
    for h in handles:
        app.results.set(ResultRecord(h.id, "FAILURE", "fails", error_type="ValueError"))
    with aws.count_requests() as counts:
        letters = dl.select(app, "default", dl.Selection())
        assert dl.redrive(app, "default", letters) == TOTAL
    report("cloudq dead-letters redrive --all (SQS + DynamoDB)", counts)
    sqs: dict[str, Any] = counts.of("sqs")
    assert sqs["ReceiveMessage"] == 22 and sqs["ChangeMessageVisibilityBatch"] == 10  # the listing, then the move
    dynamodb = counts.of("dynamodb")
    assert dynamodb.pop("DeleteItem") == TOTAL  # a failure forgotten per task
    assert dynamodb == {"BatchGetItem": 1}  # the records' states, 100 per request (ManyReader)
    assert all(h.status == "PENDING" for h in handles)
    app.close()
