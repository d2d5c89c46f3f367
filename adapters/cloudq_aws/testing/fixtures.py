"""Fixtures for AWS tests: one moto server process per test session.

The server runs on a free 127.0.0.1 port and is stopped by its pid at the end. The standard AWS
variables point every boto3 client at it for the session (restored afterwards); each test gets
its own name prefix so queues, tables and objects never collide between tests.

A pytest plugin shared by every AWS test folder (tests/aws, tests/lambda_, tests/celery_compat): each folder's conftest
calls ``register(config)``, so the session's single moto server serves them all.
"""

from __future__ import annotations

import itertools
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from .server import MotoServer

_ids = itertools.count(1)
_SESSION_PREFIX = uuid.uuid4().hex[:6]


@pytest.fixture(scope="session")
def moto_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[MotoServer]:
    server = MotoServer(workdir=tmp_path_factory.mktemp("moto"))
    server.start()
    patch = pytest.MonkeyPatch()
    for name in ("AWS_PROFILE", "AWS_SESSION_TOKEN", "AWS_SECURITY_TOKEN", "AWS_DEFAULT_PROFILE"):
        patch.delenv(name, raising=False)
    for name, value in server.environment().items():
        patch.setenv(name, value)
    try:
        yield server
    finally:
        patch.undo()
        server.stop()


@pytest.fixture
def aws(moto_server: MotoServer, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> MotoServer:
    """The moto server and a scratch working directory (tests/conftest.py clears CLOUDQ_*)."""
    monkeypatch.chdir(tmp_path)
    return moto_server


@pytest.fixture
def prefix(aws: MotoServer) -> str:
    """A name prefix no other test uses (valid for SQS queues, DynamoDB tables and S3 keys)."""
    return f"t{_SESSION_PREFIX}-{next(_ids)}-"


@pytest.fixture
def bucket(aws: MotoServer) -> str:
    """A fresh S3 bucket name (created on first use by the adapters)."""
    return f"cloudq-test-{_SESSION_PREFIX}-{next(_ids)}"


@pytest.fixture
def sqs(aws: MotoServer) -> Iterator[Any]:
    """A plain boto3 SQS client on the moto server (for what the Lambda service itself does: SQSPoller)."""
    import boto3  # type: ignore[import-untyped]

    client = boto3.client("sqs")
    yield client
    client.close()


def register(config: pytest.Config) -> None:
    """Make these fixtures visible to the calling conftest's tests, once per session."""
    module = sys.modules[__name__]
    if not config.pluginmanager.is_registered(module):
        config.pluginmanager.register(module, "cloudq-aws-fixtures")
