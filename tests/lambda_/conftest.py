"""Fixtures for the Lambda handler tests: the session's moto server (tests/aws/aws_fixtures.py,
shared with tests/aws) and an SQS client on it."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

_AWS_TESTS = str(Path(__file__).resolve().parents[1] / "aws")
if _AWS_TESTS not in sys.path:
    sys.path.insert(0, _AWS_TESTS)

import aws_fixtures  # noqa: E402
from cloudq_aws.testing import MotoServer  # noqa: E402


def pytest_configure(config: pytest.Config) -> None:
    aws_fixtures.register(config)


@pytest.fixture
def sqs(aws: MotoServer) -> Iterator[Any]:
    """A plain boto3 SQS client on the moto server (for what the Lambda service itself does)."""
    import boto3

    client = boto3.client("sqs")
    yield client
    client.close()
