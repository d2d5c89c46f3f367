"""The role's results actions are exactly the requests the DynamoDB result store makes: every
method a runtime may call, counted at the moto server, is granted, and nothing else is."""

from __future__ import annotations

import time

import pytest
from cloudq_aws.deploy.iam import INDEX_ACTIONS, RESULT_ACTIONS
from cloudq_aws.dynamodb import DynamoDBResultStore
from cloudq_aws.testing import MotoServer

from cloudq import states
from cloudq.config import Settings
from cloudq.interfaces import Heartbeat, ResultRecord

pytestmark = [pytest.mark.aws]


def test_results_actions_are_the_requests_the_store_makes(prefix: str, aws: MotoServer) -> None:
    store = DynamoDBResultStore.from_url(f"dynamodb://{prefix}results", Settings())
    store.get("warm-up")  # creates the table (deployed runtimes never do)
    with aws.count_requests() as calls:
        store.set(ResultRecord("a", states.SUCCESS, "t", result=1, expires_at=time.time() - 1))
        store.claim("a", "w", time.time() + 60)  # over an expired record: UpdateItem, then PutItem
        store.get("a")
        store.get_many(["a", "b"])
        store.increment("chord", expires_at=time.time() + 60)
        store.delete_counter("chord")
        store.forget("a")
        store.beat(Heartbeat("w", time.time(), {}), 60)
    with aws.count_requests() as listings:
        store.alive()
        store.recent([states.FAILURE])
    store.close()
    assert {f"dynamodb:{action}" for action in calls.of("dynamodb")} == set(RESULT_ACTIONS)
    # listing is the only thing done on the index (granted on the index's ARN alone)
    assert {f"dynamodb:{action}" for action in listings.of("dynamodb")} == set(INDEX_ACTIONS)
