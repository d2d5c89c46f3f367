"""Fixtures for the AWS adapters: the session's moto server and per-test names
(cloudq_aws.testing.fixtures, shared with tests/lambda_, tests/deploy and tests/faults)."""

import pytest
from cloudq_aws.testing import fixtures


def pytest_configure(config: pytest.Config) -> None:
    fixtures.register(config)
