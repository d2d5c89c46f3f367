"""Fixtures for the AWS adapters: the session's moto server and per-test names (aws_fixtures.py,
shared with tests/lambda_)."""

import aws_fixtures
import pytest


def pytest_configure(config: pytest.Config) -> None:
    aws_fixtures.register(config)
