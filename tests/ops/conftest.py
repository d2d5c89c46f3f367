"""tests/ops runs on every backend: the moto server and Google's emulators come from the adapters'
shared fixtures (started only when a test asks for them)."""

import pytest
from cloudq_aws.testing import fixtures as aws_fixtures
from cloudq_gcp.testing import fixtures as gcp_fixtures


def pytest_configure(config: pytest.Config) -> None:
    aws_fixtures.register(config)
    gcp_fixtures.register(config)
