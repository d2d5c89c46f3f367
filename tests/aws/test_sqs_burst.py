"""``cloudq worker --burst`` on SQS (moto server) with DynamoDB results: the burst contract."""

from __future__ import annotations

import pytest

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
