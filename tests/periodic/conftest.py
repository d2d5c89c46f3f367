"""The periodic tests' services: the session's moto server (cloudq_aws.testing.fixtures) and
Google's emulators (cloudq_gcp.testing.fixtures)."""

from __future__ import annotations

import pytest
from cloudq_aws.testing import fixtures as aws_fixtures
from cloudq_gcp.testing import fixtures as gcp_fixtures


def pytest_configure(config: pytest.Config) -> None:
    aws_fixtures.register(config)
    gcp_fixtures.register(config)
