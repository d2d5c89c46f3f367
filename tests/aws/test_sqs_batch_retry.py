"""SendMessageBatch entries SQS failed on its side are sent once more, by ``send`` and ``send_async``
alike (one BatchCall); an entry the sender got wrong is not retried and raises the same error."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any

import pytest
from cloudq_aws.sqs import SQSBroker
from cloudq_aws.testing import MotoServer

from cloudq.config import Settings
from cloudq.errors import BrokerError
from cloudq.interfaces import OutgoingMessage

pytestmark = [pytest.mark.aws, pytest.mark.timeout(60)]

MESSAGES = [OutgoingMessage(f"m{i}".encode()) for i in range(3)]
Response = dict[str, Any]


def failing_last(sender_fault: bool) -> Callable[[Response, dict[str, Any]], Response]:
    """A response in which the last entry failed (it was never sent)."""

    def respond(response: Response, request: dict[str, Any]) -> Response:
        last = request["Entries"][-1]["Id"]
        failed = {"Id": last, "SenderFault": sender_fault, "Code": "InternalError", "Message": "try again"}
        return {"Successful": response.get("Successful", []), "Failed": [failed]}

    return respond


def first_call_fails_last_entry(
    send: Callable[..., Any], calls: list[int], sender_fault: bool = False
) -> Callable[..., Response]:
    respond = failing_last(sender_fault)

    def call(**request: Any) -> Response:
        calls.append(len(request["Entries"]))
        if len(calls) > 1:
            return dict(send(**request))
        return respond(send(**{**request, "Entries": request["Entries"][:-1]}), request)

    return call


def async_first_call_fails_last_entry(
    send: Callable[..., Awaitable[Any]], calls: list[int], sender_fault: bool = False
) -> Callable[..., Awaitable[Response]]:
    respond = failing_last(sender_fault)

    async def call(**request: Any) -> Response:
        calls.append(len(request["Entries"]))
        if len(calls) > 1:
            return dict(await send(**request))
        return respond(await send(**{**request, "Entries": request["Entries"][:-1]}), request)

    return call


def bodies(broker: SQSBroker, queue: str, expected: int) -> list[bytes]:
    found: list[bytes] = []
    for _ in range(20):
        found += [d.body for d in broker.receive(queue, 10, 30, wait_s=1)]
        if len(found) >= expected:
            break
    return sorted(found)


def send_async(broker: SQSBroker, calls: list[int], sender_fault: bool = False) -> list[str]:
    async def produce() -> list[str]:
        try:
            client = await broker.async_clients.get("sqs")
            client.send_message_batch = async_first_call_fails_last_entry(
                client.send_message_batch, calls, sender_fault
            )
            return await broker.send_async("q", MESSAGES)
        finally:
            await broker.aclose()

    return asyncio.run(produce())


def broker_failing_once(
    prefix: str, monkeypatch: pytest.MonkeyPatch, calls: list[int], sender_fault: bool
) -> SQSBroker:
    """A broker whose (sync) SendMessageBatch fails its first call's last entry."""
    broker = SQSBroker.from_url(f"sqs://?prefix={prefix}", Settings())
    broker.queue("q")
    client = broker.clients.get("sqs", producer=True)
    patched = first_call_fails_last_entry(client.send_message_batch, calls, sender_fault)
    monkeypatch.setattr(client, "send_message_batch", patched)
    return broker


def test_server_side_entry_failures_are_retried_by_send_and_send_async(
    prefix: str, aws: MotoServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    sync_calls: list[int] = []
    broker = broker_failing_once(prefix, monkeypatch, sync_calls, sender_fault=False)
    assert len(set(broker.send("q", MESSAGES))) == 3
    async_calls: list[int] = []
    assert len(set(send_async(broker, async_calls))) == 3
    assert sync_calls == async_calls == [3, 1]  # the failed entry alone, once
    assert bodies(broker, "q", 6) == [b"m0", b"m0", b"m1", b"m1", b"m2", b"m2"]
    broker.close()


def test_sender_fault_entries_are_not_retried_and_raise_the_same_error(
    prefix: str, aws: MotoServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    sync_calls: list[int] = []
    broker = broker_failing_once(prefix, monkeypatch, sync_calls, sender_fault=True)
    expected = "sqs:SendMessageBatch on .*q failed for 1 of 3 entries: InternalError: try again"
    with pytest.raises(BrokerError, match=expected):
        broker.send("q", MESSAGES)
    async_calls: list[int] = []
    with pytest.raises(BrokerError, match=expected):
        send_async(broker, async_calls, sender_fault=True)
    assert sync_calls == async_calls == [3]
    broker.close()
