"""Fixtures for the Google Cloud adapters: the session's emulators and per-test names
(gcp_fixtures.py, shared with tests/push)."""

import gcp_fixtures
import pytest

PROJECT = gcp_fixtures.PROJECT  # test modules import it from here


def pytest_configure(config: pytest.Config) -> None:
    gcp_fixtures.register(config)
