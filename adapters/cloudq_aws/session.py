"""AWS configuration and clients for one backend: boto3 clients for threads, aiobotocore clients
per event loop for producers that run in one (``send_async``, ``get_async``).

Region, credentials and endpoint come from the standard AWS environment (``AWS_ENDPOINT_URL``,
``AWS_PROFILE``, ...); cloudq's own options come from the URL query, ``*_options`` settings or
``CLOUDQ_*``. Nothing here touches the network or builds a client until first use, so importing
an adapter stays cheap (Lambda cold starts).
"""

from __future__ import annotations

import os
import threading
import weakref
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from cloudq.backends.urls import Parser, as_bool, as_text, integer_in, number_in

if TYPE_CHECKING:
    import asyncio  # imported by the first async call, not by the backends' import

DEFAULT_MAX_CONNECTIONS = 50  # botocore's pool is never made smaller than its default
CONNECT_TIMEOUT_S = 5.0
READ_TIMEOUT_S = 65.0  # above SQS's 20 s long poll with room for slow responses
SEND_TIMEOUT_S = 10.0  # a producer's whole call (sends, result reads), retries included
SEND_CONNECT_TIMEOUT_S = 2.0
RETRY_PAUSE_S = 1.0  # the most botocore's standard mode sleeps before its first retry


# options every AWS backend accepts
COMMON_PARSERS: dict[str, Parser] = {
    "region": as_text,
    "endpoint_url": as_text,
    "bucket": as_text,
    "create_missing": as_bool,
    "max_connections": integer_in(1, 1000),
    "send_timeout": number_in(1, 300),
}


@dataclass(frozen=True, slots=True)
class AWSConfig:
    """Where to connect; None means "ask the standard AWS environment"."""

    region: str | None = None
    endpoint_url: str | None = None
    max_connections: int = DEFAULT_MAX_CONNECTIONS
    send_timeout_s: float = SEND_TIMEOUT_S

    @classmethod
    def from_options(cls, options: Mapping[str, Any], concurrency: int | None = None) -> AWSConfig:
        """``concurrency`` (the worker's, from settings) sizes the connection pool: every task
        thread and the receiving slot may hold a connection at once."""
        return cls(
            options.get("region"),
            options.get("endpoint_url"),
            options.get("max_connections") or pool_size(concurrency),
            options.get("send_timeout") or SEND_TIMEOUT_S,
        )


def lean_client_options(sdk: str) -> dict[str, Any]:
    """Client options that cut botocore's CPU per request by about a fifth (profiled on the
    worker's PutItem / ReceiveMessage path), changing nothing AWS sees but the User-Agent:

    - ``parameter_validation=False``: botocore walks every request's parameters against the
      model before sending (a ninth of a call's CPU). cloudq builds every request itself, and the
      limits that matter (sizes, counts, names) are checked before a call with cloudq's own
      errors; anything else wrong is still refused by the service, with its own message.
    - a User-Agent built once: botocore rebuilds its ``ua/2.1`` string (about 30 sanitised
      components) twice per request, a seventh of a call's CPU. This one keeps the SDK and
      Python versions (botocore appends its own) and names cloudq (and ``AWS_SDK_UA_APP_ID``); it drops botocore's
      per-request feature markers, which only feed AWS's SDK metrics.
    """
    import platform

    from cloudq import __version__

    agent = f"{sdk} ua/2.1 lang/python#{platform.python_version()}"
    agent += f" lib/cloudq#{__version__}"
    app_id = os.environ.get("AWS_SDK_UA_APP_ID")
    if app_id:
        agent += f" app/{app_id}"
    return {"parameter_validation": False, "user_agent": agent}


def pool_size(concurrency: int | None) -> int:
    """Connections for ``concurrency`` task slots: one each, plus receives, acks and heartbeats."""
    return max(DEFAULT_MAX_CONNECTIONS, (concurrency or os.cpu_count() or 1) + 10)


def send_timeouts(total_s: float) -> tuple[float, float, int]:
    """(connect, read, attempts) whose worst case, retry pause included, stays within ``total_s``:
    a producer facing a partition gets BackendUnavailable inside its deadline."""
    attempts = 2 if total_s >= 4 * SEND_CONNECT_TIMEOUT_S else 1
    connect = min(SEND_CONNECT_TIMEOUT_S, total_s / 4)
    read = (total_s - attempts * connect - (attempts - 1) * RETRY_PAUSE_S) / attempts
    return connect, read, attempts


class Clients:
    """One botocore session per backend and one client per service, built on first use.

    boto3 sessions are not thread-safe but clients are: the session and clients are built under
    a lock, then shared by every thread.
    """

    def __init__(self, config: AWSConfig) -> None:
        self.config = config
        self._lock = threading.Lock()
        self._session: Any = None
        self._clients: dict[str, Any] = {}

    def get(self, service: str, *, producer: bool = False) -> Any:
        """The client for ``service``; ``producer=True``: the one with short timeouts and a total
        deadline (``send_timeout``) for calls a caller waits on, never for long polls."""
        key = f"{service}:send" if producer else service
        client = self._clients.get(key)
        if client is None:
            with self._lock:
                client = self._clients.get(key)
                if client is None:
                    client = self._clients[key] = self._build(service, producer)
        return client

    def _build(self, service: str, producer: bool = False) -> Any:
        from .errors import translated

        with translated(f"{service}:client", service, self.config.endpoint_url):
            # botocore's own session, not boto3's: boto3 adds resources and S3's transfer manager
            # (s3transfer, a tenth of a second of a cold start), which cloudq's calls never use
            import botocore  # type: ignore[import-untyped]
            import botocore.session  # type: ignore[import-untyped]
            from botocore.config import Config  # type: ignore[import-untyped]

            if self._session is None:
                self._session = botocore.session.get_session()
                if self.config.region:
                    self._session.set_config_variable("region", self.config.region)
            if producer:
                connect, read, attempts = send_timeouts(self.config.send_timeout_s)
                retries = {"mode": "standard", "total_max_attempts": attempts}
            else:
                connect, read, retries = CONNECT_TIMEOUT_S, READ_TIMEOUT_S, {"mode": "standard"}
            config = Config(
                retries=retries,
                max_pool_connections=self.config.max_connections,
                connect_timeout=connect,
                read_timeout=read,
                **lean_client_options(f"Botocore/{botocore.__version__}"),
            )
            return self._session.create_client(service, endpoint_url=self.config.endpoint_url, config=config)

    def built(self) -> list[str]:
        """The clients built so far, as ``service`` or ``service:send`` (the producer's): each costs
        tens of milliseconds of a cold start, so tests keep count."""
        return list(self._clients)

    def endpoint(self, service: str) -> str:
        """The endpoint a client for ``service`` talks to (for error messages)."""
        client = self._clients.get(service)
        if client is not None:
            return str(client.meta.endpoint_url)
        from .errors import configured_endpoint

        return configured_endpoint(service, self.config.endpoint_url) or f"the default {service} endpoint"

    @property
    def region(self) -> str:
        region = self._session.get_config_variable("region") if self._session is not None else None
        if region:
            return str(region)
        return self.config.region or "the default region"

    def close(self) -> None:
        with self._lock:
            clients, self._clients = self._clients, {}
        for client in clients.values():
            close = getattr(client, "close", None)
            if close is not None:
                close()


class AsyncClients:
    """aiobotocore clients per event loop (an aiohttp session cannot cross loops)."""

    def __init__(self, config: AWSConfig) -> None:
        self.config = config
        self._loops: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, dict[str, tuple[Any, Any]]] = (
            weakref.WeakKeyDictionary()
        )
        self._locks: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, asyncio.Lock] = weakref.WeakKeyDictionary()

    async def get(self, service: str) -> Any:
        import asyncio

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
        from .errors import translated

        with translated(f"{service}:client", service, self.config.endpoint_url):
            import aiobotocore  # type: ignore[import-untyped]
            from aiobotocore.config import AioConfig  # type: ignore[import-untyped]
            from aiobotocore.session import get_session  # type: ignore[import-untyped]

            connect, read, attempts = send_timeouts(self.config.send_timeout_s)  # only producers use these
            config = AioConfig(
                retries={"mode": "standard", "total_max_attempts": attempts},
                max_pool_connections=self.config.max_connections,
                connect_timeout=connect,
                read_timeout=read,
                **lean_client_options(f"aiobotocore/{aiobotocore.__version__}"),
            )
            context = get_session().create_client(
                service, region_name=self.config.region, endpoint_url=self.config.endpoint_url, config=config
            )
            client = await context.__aenter__()
            return client, context

    async def aclose(self) -> None:
        """Close this event loop's clients."""
        import asyncio

        clients = self._loops.pop(asyncio.get_running_loop(), {})
        for _, context in clients.values():
            await context.__aexit__(None, None, None)


class AWSBackend:
    """What the AWS backends share: sync clients, async clients made on the first async call
    (aiobotocore is imported only then), and closing both."""

    def __init__(self, config: AWSConfig | None) -> None:
        self.clients = Clients(config or AWSConfig())
        self._async_clients: AsyncClients | None = None

    @property
    def async_clients(self) -> AsyncClients:
        if self._async_clients is None:
            self._async_clients = AsyncClients(self.clients.config)
        return self._async_clients

    def close(self) -> None:
        self.clients.close()

    async def aclose(self) -> None:
        """Close the async clients of the running event loop."""
        if self._async_clients is not None:
            await self._async_clients.aclose()
