"""The public async API on AWS: ``await task.delay_async()`` sends through aiobotocore and
``await result.get_async()`` reads DynamoDB without blocking the event loop."""

from __future__ import annotations

import asyncio

import pytest
from aws_apps import run_burst, sqs_app
from cloudq_aws.testing import MotoServer

pytestmark = [pytest.mark.aws, pytest.mark.timeout(60)]


def test_delay_async_and_get_async_use_the_native_async_clients(prefix: str, aws: MotoServer) -> None:
    app = sqs_app(prefix)

    @app.task(name="mul")
    def mul(a: int, b: int) -> int:
        return a * b

    app.broker.queue("default")  # resolve the queue and table before counting
    app.results.get("warm-up")

    async def produce() -> list[str]:
        try:
            return [(await mul.delay_async(i, 3)).id for i in range(3)]
        finally:
            await app.broker.aclose()

    with aws.count_requests() as calls:
        ids = asyncio.run(produce())
    assert calls.of("sqs") == {"SendMessage": 3}
    run_burst(app)

    async def consume() -> list[int]:
        try:
            return [await app.AsyncResult(task_id).get_async(timeout=10) for task_id in ids]
        finally:
            await app.results.aclose()

    with aws.count_requests() as calls:
        assert asyncio.run(consume()) == [0, 3, 6]
    assert calls.of("dynamodb") == {"GetItem": 3}
