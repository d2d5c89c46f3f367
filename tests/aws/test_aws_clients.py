"""The boto3 clients cloudq builds: botocore's per-request parameter validation off and a
User-Agent built once (adapters/cloudq_aws/session.py, lean_client_options), both for CPU."""

from __future__ import annotations

import pytest
from cloudq_aws.dynamodb import DynamoDBResultStore
from cloudq_aws.sqs import SQSBroker
from cloudq_aws.testing import MotoServer

from cloudq.config import Settings
from cloudq.interfaces import OutgoingMessage

pytestmark = [pytest.mark.aws, pytest.mark.timeout(60)]


def test_clients_send_a_fixed_user_agent_naming_cloudq(
    prefix: str, aws: MotoServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("AWS_SDK_UA_APP_ID", "shop")
    broker = SQSBroker.from_url(f"sqs://?prefix={prefix}", Settings())
    store = DynamoDBResultStore.from_url(f"dynamodb://{prefix}results", Settings())
    try:
        for client in (
            broker.clients.get("sqs"),
            broker.clients.get("sqs", producer=True),
            store.clients.get("dynamodb"),
        ):
            agent = client.meta.config.user_agent
            assert agent.startswith("Botocore/") and " lib/cloudq#" in agent and " app/shop" in agent
        broker.send("q", [OutgoingMessage(b"a"), OutgoingMessage(b"b")])
        assert len(broker.receive("q", 10, 30, wait_s=1)) >= 1
    finally:
        broker.close()
        store.close()


def test_parameters_are_checked_by_the_service_not_by_botocore_before_sending(prefix: str, aws: MotoServer) -> None:
    broker = SQSBroker.from_url(f"sqs://?prefix={prefix}", Settings())
    try:
        q = broker.queue("q")
        with aws.count_requests() as counts, pytest.raises(Exception) as raised:
            broker.clients.get("sqs").receive_message(QueueUrl=q.url, MaxNumberOfMessages="ten")
        # botocore's validation would have raised ParamValidationError without a request
        assert type(raised.value).__name__ != "ParamValidationError"
        assert counts.of("sqs").get("ReceiveMessage", 0) >= 1
    finally:
        broker.close()
