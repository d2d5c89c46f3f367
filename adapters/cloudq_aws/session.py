"""AWS configuration and clients for one backend.

Region, credentials and endpoint come from the standard AWS environment (``AWS_ENDPOINT_URL``,
``AWS_PROFILE``, ...); cloudq's own options come from the URL query, ``*_options`` settings or
``CLOUDQ_*``. Nothing here touches the network or builds a client until first use, so importing
an adapter stays cheap (Lambda cold starts).
"""

from __future__ import annotations

import threading
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from cloudq.backends.urls import Parser, as_bool, as_text, integer_in

if TYPE_CHECKING:
    from .async_client import AsyncClients

DEFAULT_MAX_CONNECTIONS = 50
CONNECT_TIMEOUT_S = 5.0
READ_TIMEOUT_S = 65.0  # above SQS's 20 s long poll with room for slow responses


# options every AWS backend accepts
COMMON_PARSERS: dict[str, Parser] = {
    "region": as_text,
    "endpoint_url": as_text,
    "bucket": as_text,
    "create_missing": as_bool,
    "max_connections": integer_in(1, 1000),
}


@dataclass(frozen=True, slots=True)
class AWSConfig:
    """Where to connect; None means "ask the standard AWS environment"."""

    region: str | None = None
    endpoint_url: str | None = None
    max_connections: int = DEFAULT_MAX_CONNECTIONS

    @classmethod
    def from_options(cls, options: Mapping[str, Any]) -> AWSConfig:
        return cls(
            options.get("region"),
            options.get("endpoint_url"),
            options.get("max_connections") or DEFAULT_MAX_CONNECTIONS,
        )


class Clients:
    """One boto3 session per backend and one client per service, built on first use.

    boto3 sessions are not thread-safe but clients are: the session and clients are built under
    a lock, then shared by every thread.
    """

    def __init__(self, config: AWSConfig) -> None:
        self.config = config
        self._lock = threading.Lock()
        self._session: Any = None
        self._clients: dict[str, Any] = {}

    def get(self, service: str) -> Any:
        client = self._clients.get(service)
        if client is None:
            with self._lock:
                client = self._clients.get(service)
                if client is None:
                    client = self._clients[service] = self._build(service)
        return client

    def _build(self, service: str) -> Any:
        from .errors import translated

        with translated(f"{service}:client", service, self.config.endpoint_url):
            import boto3  # type: ignore[import-untyped]
            from botocore.config import Config  # type: ignore[import-untyped]

            if self._session is None:
                self._session = boto3.session.Session(region_name=self.config.region)
            config = Config(
                retries={"mode": "standard"},
                max_pool_connections=self.config.max_connections,
                connect_timeout=CONNECT_TIMEOUT_S,
                read_timeout=READ_TIMEOUT_S,
            )
            return self._session.client(service, endpoint_url=self.config.endpoint_url, config=config)

    def endpoint(self, service: str) -> str:
        """The endpoint a client for ``service`` talks to (for error messages)."""
        client = self._clients.get(service)
        if client is not None:
            return str(client.meta.endpoint_url)
        from .errors import configured_endpoint

        return configured_endpoint(service, self.config.endpoint_url) or f"the default {service} endpoint"

    @property
    def region(self) -> str:
        if self._session is not None and self._session.region_name:
            return str(self._session.region_name)
        return self.config.region or "the default region"

    def close(self) -> None:
        with self._lock:
            clients, self._clients = self._clients, {}
        for client in clients.values():
            close = getattr(client, "close", None)
            if close is not None:
                close()


class AWSBackend:
    """What the AWS backends share: sync clients, async clients made on the first async call
    (aiobotocore is imported only then), and closing both."""

    def __init__(self, config: AWSConfig | None) -> None:
        self.clients = Clients(config or AWSConfig())
        self._async_clients: AsyncClients | None = None

    @property
    def async_clients(self) -> AsyncClients:
        if self._async_clients is None:
            from .async_client import AsyncClients

            self._async_clients = AsyncClients(self.clients.config)
        return self._async_clients

    def close(self) -> None:
        self.clients.close()

    async def aclose(self) -> None:
        """Close the async clients of the running event loop."""
        if self._async_clients is not None:
            await self._async_clients.aclose()
