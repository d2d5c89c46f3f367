"""The aiobotocore path: send_async batches like send, results are read without blocking the loop."""

from __future__ import annotations

import asyncio

import pytest
from aws_apps import run_burst, sqs_app
from cloudq_aws.testing import MotoServer

from cloudq.envelope import Envelope
from cloudq.errors import ResultTimeout
from cloudq.interfaces import OutgoingMessage

pytestmark = [pytest.mark.aws, pytest.mark.timeout(60)]


def envelope(task_id: str, task: str, *args: object) -> OutgoingMessage:
    return OutgoingMessage(Envelope(id=task_id, task=task, args=list(args)).encode(), dedup_id=task_id)


def test_send_async_batches_and_results_come_back_async(prefix: str, aws: MotoServer) -> None:
    app = sqs_app(prefix)

    @app.task(name="add")
    def add(a: int, b: int) -> int:
        return a + b

    @app.task(name="fail", max_retries=0)
    def fail() -> None:
        raise KeyError("missing")

    broker, store = app.broker, app.results
    broker.queue("default")
    store.get("warm-up")

    async def produce() -> list[str]:
        try:
            many = await broker.send_async("default", [envelope(f"a{i}", "add", i, 1) for i in range(12)])
            one = await broker.send_async("default", [envelope("f1", "fail")])
            return [*many, *one]
        finally:
            await broker.aclose()

    with aws.count_requests() as calls:
        ids = asyncio.run(produce())
    assert len(set(ids)) == 13
    assert calls.of("sqs") == {"SendMessageBatch": 2, "SendMessage": 1}
    run_burst(app)

    async def consume() -> list[int]:
        try:
            values = [await app.AsyncResult(f"a{i}").get_async(timeout=5) for i in range(12)]
            with pytest.raises(KeyError, match="missing"):
                await app.AsyncResult("f1").get_async(timeout=5)
            with pytest.raises(ResultTimeout):
                await app.AsyncResult("never-sent").get_async(timeout=0.3)
            record = await store.get_async("a3")
            assert record is not None and record.result == 4
            return values
        finally:
            await store.aclose()

    with aws.count_requests() as reads:
        assert asyncio.run(consume()) == [i + 1 for i in range(12)]
    assert set(reads.of("dynamodb")) == {"GetItem"}
    app.close()


def test_get_async_on_a_missing_table_creates_it(prefix: str) -> None:
    app = sqs_app(prefix)

    async def read() -> object:
        try:
            return await app.results.get_async("nothing")
        finally:
            await app.results.aclose()

    assert asyncio.run(read()) is None
    assert app.results.clients.get("dynamodb").describe_table(TableName=f"{prefix}results")
    app.close()
