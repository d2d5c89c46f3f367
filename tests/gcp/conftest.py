"""Fixtures for the Google Cloud adapters: the session's emulators and per-test names
(cloudq_gcp.testing.fixtures, shared with tests/push)."""

import pytest
from cloudq_gcp.testing import fixtures as gcp_fixtures

PROJECT = gcp_fixtures.PROJECT  # test modules import it from here


def pytest_configure(config: pytest.Config) -> None:
    gcp_fixtures.register(config)
