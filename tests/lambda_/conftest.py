"""Fixtures for the Lambda handler tests: the session's moto server and an SQS client on it
(cloudq_aws.testing.fixtures, shared with tests/aws)."""

from __future__ import annotations

import pytest
from cloudq_aws.testing import fixtures


def pytest_configure(config: pytest.Config) -> None:
    fixtures.register(config)
