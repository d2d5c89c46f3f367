"""Fixtures for the AWS adapters: the session's moto server and per-test names
(cloudq_aws.testing.fixtures, shared with tests/lambda_, tests/deploy and tests/faults)."""

from collections.abc import Iterator

import pytest
from aws_apps import sqs_app
from cloudq_aws.testing import fixtures

from cloudq import App


def pytest_configure(config: pytest.Config) -> None:
    fixtures.register(config)


@pytest.fixture
def app(prefix: str) -> Iterator[App]:
    """An app on this test's SQS queues and DynamoDB table (aws_apps.sqs_app)."""
    application = sqs_app(prefix)
    yield application
    application.close()
