"""What a provider runtime needs of the app it serves, checked once for every runtime.

The Lambda handler reads SQS events and the push handler serves Pub/Sub push subscriptions: each
works only with its own provider's broker. Both refuse a wrong app the same way, when built (from
the broker URL, before any client exists) and when they first reach the broker (its class).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, TypeVar
from urllib.parse import urlsplit

from ..errors import ConfigurationError

if TYPE_CHECKING:
    from ..app import App

B = TypeVar("B")


@dataclass(frozen=True, slots=True)
class BrokerRequirement:
    """The broker a runtime works with, and how its errors name it."""

    runtime: str  # "the Lambda handler"
    serves: str  # "reads SQS events": what the runtime is for
    scheme: str  # "sqs": the broker URL scheme it needs
    example: str  # "sqs://": the broker setting to suggest
    service: str  # "SQS": the broker's name in messages

    def check_url(self, app: App) -> None:
        """Refuse an app whose broker URL has another scheme (no client is created)."""
        scheme = urlsplit(app.broker_url).scheme
        if scheme != self.scheme:
            raise ConfigurationError(
                f"{self.runtime} {self.serves}, but app {app.name!r} uses a {scheme}:// broker: "
                f"configure broker='{self.example}' (or CLOUDQ_BROKER={self.example})"
            )

    def broker(self, app: App, kind: type[B]) -> B:
        """The app's broker, which must be a ``kind`` (a plugin may serve the scheme with another class)."""
        broker = app.broker
        if not isinstance(broker, kind):
            raise ConfigurationError(f"{self.runtime} needs the {self.service} broker, app {app.name!r} has {broker!r}")
        return broker
