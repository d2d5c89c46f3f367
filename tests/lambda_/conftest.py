"""Fixtures for the Lambda handler tests: the session's moto server (cloudq_aws.testing.fixtures,
shared with tests/aws) and an SQS client on it."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from cloudq_aws.testing import MotoServer, fixtures


def pytest_configure(config: pytest.Config) -> None:
    fixtures.register(config)


@pytest.fixture
def sqs(aws: MotoServer) -> Iterator[Any]:
    """A plain boto3 SQS client on the moto server (for what the Lambda service itself does)."""
    import boto3

    client = boto3.client("sqs")
    yield client
    client.close()
