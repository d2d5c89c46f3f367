"""The periodic tests' services: the session's moto server (cloudq_aws.testing.fixtures)."""

from __future__ import annotations

import pytest
from cloudq_aws.testing import fixtures as aws_fixtures


def pytest_configure(config: pytest.Config) -> None:
    aws_fixtures.register(config)
