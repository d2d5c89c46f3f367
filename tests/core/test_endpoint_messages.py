"""A backend that cannot be reached is named by the endpoint actually used, with where it came from."""

from __future__ import annotations

import socket

import pytest

from cloudq.config import Settings
from cloudq.errors import BackendUnavailable
from cloudq.interfaces import OutgoingMessage
from cloudq.registry import open_broker, open_results

pytest.importorskip("boto3")


@pytest.fixture
def closed_port() -> int:
    """A port on 127.0.0.1 that nothing listens on."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.fixture(autouse=True)
def _aws_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for name, value in {
        "AWS_ACCESS_KEY_ID": "x",
        "AWS_SECRET_ACCESS_KEY": "x",
        "AWS_DEFAULT_REGION": "us-east-1",
    }.items():
        monkeypatch.setenv(name, value)
    for name in ("AWS_ENDPOINT_URL", "AWS_ENDPOINT_URL_SQS", "AWS_ENDPOINT_URL_DYNAMODB", "AWS_PROFILE"):
        monkeypatch.delenv(name, raising=False)


def _send(url: str) -> None:
    broker = open_broker(url, Settings())
    try:
        broker.send("default", [OutgoingMessage(b"{}")])
    finally:
        broker.close()


def _get(url: str) -> None:
    store = open_results(url, Settings())
    try:
        store.get("t1")
    finally:
        store.close()


@pytest.mark.parametrize(
    ("call", "url", "variable", "what"),
    [
        (_send, "sqs://", "AWS_ENDPOINT_URL", "sqs:GetQueueUrl on default"),
        (_send, "sqs://", "AWS_ENDPOINT_URL_SQS", "sqs:GetQueueUrl on default"),
        (_get, "dynamodb://results", "AWS_ENDPOINT_URL", "dynamodb:GetItem on results"),
        (_get, "dynamodb://results", "AWS_ENDPOINT_URL_DYNAMODB", "dynamodb:GetItem on results"),
    ],
)
def test_an_unreachable_endpoint_from_the_environment_is_named(monkeypatch, closed_port, call, url, variable, what):
    endpoint = f"http://127.0.0.1:{closed_port}"
    monkeypatch.setenv(variable, endpoint)
    with pytest.raises(BackendUnavailable) as caught:
        call(url)
    message = str(caught.value)
    assert message.startswith(f"cannot reach {endpoint} ({variable}) for {what}: ")
    assert "default" not in message.partition(" for ")[0]
    assert message.endswith("is the service running there? (endpoint_url option / AWS_ENDPOINT_URL)")
