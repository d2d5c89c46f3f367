"""Async I/O for the AWS backends (aiobotocore): send messages and read results without blocking
the event loop.

The sync backends keep everything that is decided once or rarely (queue and table resolution,
creation on first use, S3 claim checks): those run in a worker thread the first time. What runs
per call (SendMessage/SendMessageBatch, GetItem) goes through aiobotocore clients, one set per
event loop, made on first use and closed by ``aclose()``.

``SQSBroker.send_async`` and ``DynamoDBResultStore.get_async`` are the hooks the core's
``Task.delay_async`` / ``App.send_many_async`` / ``AsyncResult.get_async`` call.
"""

from __future__ import annotations

import asyncio
import weakref
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from cloudq.errors import BrokerError

from .errors import translated
from .session import AWSConfig, send_timeouts

if TYPE_CHECKING:
    from cloudq.interfaces import OutgoingMessage, ResultRecord

    from .dynamodb import DynamoDBResultStore
    from .sqs import SQSBroker

LARGE_BODY_MARGIN = 4096  # bodies this close to the limit are prepared in a thread (they may go to S3)


class AsyncClients:
    """aiobotocore clients per event loop (an aiohttp session cannot cross loops)."""

    def __init__(self, config: AWSConfig) -> None:
        self.config = config
        self._loops: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, dict[str, tuple[Any, Any]]] = (
            weakref.WeakKeyDictionary()
        )
        self._locks: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, asyncio.Lock] = weakref.WeakKeyDictionary()

    async def get(self, service: str) -> Any:
        loop = asyncio.get_running_loop()
        clients = self._loops.setdefault(loop, {})
        found = clients.get(service)
        if found is not None:
            return found[0]
        async with self._locks.setdefault(loop, asyncio.Lock()):
            found = clients.get(service)
            if found is None:
                found = clients[service] = await self._open(service)
        return found[0]

    async def _open(self, service: str) -> tuple[Any, Any]:
        with translated(f"{service}:client", service, self.config.endpoint_url):
            from aiobotocore.config import AioConfig  # type: ignore[import-untyped]
            from aiobotocore.session import get_session  # type: ignore[import-untyped]

            connect, read, attempts = send_timeouts(self.config.send_timeout_s)  # only producers use these
            config = AioConfig(
                retries={"mode": "standard", "total_max_attempts": attempts},
                max_pool_connections=self.config.max_connections,
                connect_timeout=connect,
                read_timeout=read,
            )
            context = get_session().create_client(
                service, region_name=self.config.region, endpoint_url=self.config.endpoint_url, config=config
            )
            client = await context.__aenter__()
            return client, context

    async def aclose(self) -> None:
        """Close this event loop's clients."""
        clients = self._loops.pop(asyncio.get_running_loop(), {})
        for _, context in clients.values():
            await context.__aexit__(None, None, None)


async def send_async(broker: SQSBroker, queue: str, messages: Sequence[OutgoingMessage]) -> list[str]:
    """``broker.send`` without blocking the loop: one SendMessage, or SendMessageBatch by 10 and size."""
    from .sqs_messages import entry_batches

    if not messages:
        return []
    q = broker._queues.get(queue)
    if q is None:  # resolved (or created) once, in a thread
        q = await asyncio.to_thread(broker.queue, queue)
    if any(len(m.body) > q.max_bytes - LARGE_BODY_MARGIN for m in messages):
        entries = await asyncio.to_thread(broker.prepare, q, messages)
    else:
        entries = broker.prepare(q, messages)
    sqs = await broker.async_clients.get("sqs")
    endpoint = broker.clients.endpoint("sqs")
    if len(entries) == 1:
        with translated("sqs:SendMessage", q.sqs_name, endpoint):
            response = await sqs.send_message(QueueUrl=q.url, **entries[0].request())
        return [str(response["MessageId"])]
    ids: list[str] = []
    for chunk in entry_batches(entries, q.max_bytes):
        request = [{"Id": str(i), **e.request()} for i, e in enumerate(chunk)]
        with translated("sqs:SendMessageBatch", q.sqs_name, endpoint):
            response = await sqs.send_message_batch(QueueUrl=q.url, Entries=request)
        failed = response.get("Failed", [])
        if failed:
            problems = "; ".join(f"{f.get('Code')}: {f.get('Message', '')}" for f in failed[:3])
            raise BrokerError(
                f"sqs:SendMessageBatch on {q.sqs_name} failed for {len(failed)} of {len(chunk)} entries "
                f"({len(ids)} earlier messages were sent): {problems}"
            )
        by_id = {item["Id"]: str(item["MessageId"]) for item in response.get("Successful", [])}
        ids.extend(by_id[str(i)] for i in range(len(chunk)))
    return ids


async def get_async(store: DynamoDBResultStore, task_id: str) -> ResultRecord | None:
    """``store.get`` without blocking the loop (one strongly consistent GetItem)."""
    import time

    from . import resources as res
    from .dynamodb import RESULT_REF, from_item

    db = await store.async_clients.get("dynamodb")
    request = {"TableName": store.table, "Key": {res.RESULTS_KEY: {"S": task_id}}, "ConsistentRead": True}
    try:
        with translated("dynamodb:GetItem", store.table, store.clients.endpoint("dynamodb")):
            response = await db.get_item(**request)
    except Exception as exc:
        from cloudq_aws.errors import TableNotFound

        if not isinstance(exc, TableNotFound) or not store.create_missing:
            raise
        await asyncio.to_thread(store.get, task_id)  # creates the table
        return None
    item = store._live(response.get("Item"), time.time())
    if not item:
        return None
    if RESULT_REF in item:
        return await asyncio.to_thread(store._record, item)
    return from_item(item)
