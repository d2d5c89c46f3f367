"""Options of the ``pubsub://`` and ``firestore://`` URLs, checked once with clear messages.

URL query parameters override ``settings.broker_options`` / ``settings.results_options``.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from fnmatch import fnmatchcase
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

from cloudq.backends.urls import as_bool, number, url_options
from cloudq.errors import ConfigurationError

if TYPE_CHECKING:
    from cloudq.config import Settings

# Pub/Sub service limits
MIN_ACK_DEADLINE_S = 10  # a subscription's ack deadline: 10-600 s
MAX_ACK_DEADLINE_S = 600  # also the most one modify_ack_deadline can set
MIN_DELIVERY_ATTEMPTS = 5  # a dead-letter policy's max_delivery_attempts: 5-100
MAX_DELIVERY_ATTEMPTS = 100
DEFAULT_TIMEOUT_S = 30.0  # per request, retries included
DEFAULT_PREFIX = "cloudq-"

PROJECT_ENV_VARS = ("GOOGLE_CLOUD_PROJECT", "GCLOUD_PROJECT", "CLOUDSDK_CORE_PROJECT")
_RESOURCE_NAME = re.compile(r"^[A-Za-z][A-Za-z0-9._~+%-]{2,254}$")  # topic / subscription ids


def flag(options: dict[str, Any], name: str, default: bool) -> bool:
    return as_bool(name, options.get(name, default))


def project_id(explicit: str | None, scheme: str) -> str:
    """The Google Cloud project: from the URL or options, else the standard environment variables."""
    if explicit:
        return explicit
    for var in PROJECT_ENV_VARS:
        if os.environ.get(var):
            return os.environ[var]
    where = "write pubsub://PROJECT, add ?project=PROJECT" if scheme == "pubsub" else "add ?project=PROJECT"
    raise ConfigurationError(f"{scheme}:// needs a Google Cloud project: {where} or set {PROJECT_ENV_VARS[0]}")


def resource_name(name: str, what: str) -> str:
    """Check a topic or subscription id against Pub/Sub's naming rules."""
    if not _RESOURCE_NAME.match(name) or name.lower().startswith("goog"):
        raise ConfigurationError(
            f"{what} {name!r} is not a valid Pub/Sub name: 3-255 characters, starting with a letter, "
            "of letters, digits and - _ . ~ + %, not starting with 'goog' (set ?prefix= to change the prefix)"
        )
    return name


@dataclass(frozen=True, slots=True)
class PubSubOptions:
    project: str
    prefix: str = DEFAULT_PREFIX
    ack_deadline: int = 60  # the subscriptions' default lease, seconds
    max_delivery_attempts: int = MAX_DELIVERY_ATTEMPTS  # 0: no dead-letter policy
    bucket: str | None = None  # GCS bucket for messages above the Pub/Sub size limit
    create_missing: bool = True
    ordered: tuple[str, ...] = ()  # queue names or globs ("orders-*", "*") delivered in ordering-key order
    timeout: float = DEFAULT_TIMEOUT_S

    def is_ordered(self, queue: str) -> bool:
        return any(fnmatchcase(queue, pattern) for pattern in self.ordered)

    @classmethod
    def from_url(cls, url: str, settings: Settings) -> PubSubOptions:
        opts = url_options(url, settings.broker_options)
        ack_deadline = int(number(opts, "ack_deadline", min(max(settings.visibility_timeout, 10), 600)))
        if not MIN_ACK_DEADLINE_S <= ack_deadline <= MAX_ACK_DEADLINE_S:
            raise ConfigurationError(
                f"option 'ack_deadline' must be {MIN_ACK_DEADLINE_S}-{MAX_ACK_DEADLINE_S} s, got {ack_deadline}"
            )
        attempts = int(number(opts, "max_delivery_attempts", MAX_DELIVERY_ATTEMPTS))
        if attempts and not MIN_DELIVERY_ATTEMPTS <= attempts <= MAX_DELIVERY_ATTEMPTS:
            raise ConfigurationError(
                f"option 'max_delivery_attempts' must be {MIN_DELIVERY_ATTEMPTS}-{MAX_DELIVERY_ATTEMPTS} "
                f"(Pub/Sub's dead-letter policy range) or 0 for no dead-letter policy, got {attempts}"
            )
        timeout = number(opts, "timeout", DEFAULT_TIMEOUT_S)
        if timeout <= 0:
            raise ConfigurationError(f"option 'timeout' must be > 0 seconds, got {timeout}")
        return cls(
            project=project_id(urlsplit(url).netloc or opts.get("project"), "pubsub"),
            prefix=str(opts.get("prefix", DEFAULT_PREFIX)),
            ack_deadline=ack_deadline,
            max_delivery_attempts=attempts,
            bucket=opts.get("bucket") or None,
            create_missing=flag(opts, "create_missing", settings.create_missing),
            ordered=tuple(q.strip() for q in str(opts.get("ordered", "")).split(",") if q.strip()),
            timeout=timeout,
        )


@dataclass(frozen=True, slots=True)
class FirestoreOptions:
    project: str
    collection: str
    bucket: str | None = None  # GCS bucket for results above the Firestore document limit
    database: str = "(default)"
    timeout: float = DEFAULT_TIMEOUT_S
    listen: bool = True  # wait with a snapshot listener; False polls

    @classmethod
    def from_url(cls, url: str, settings: Settings) -> FirestoreOptions:
        opts = url_options(url, settings.results_options)
        parts = urlsplit(url)
        collection = (parts.netloc + parts.path).strip("/")
        if not collection or collection.count("/") % 2:
            raise ConfigurationError(
                f"firestore URL {url!r} needs a collection path: firestore://COLLECTION "
                "(or firestore://COLLECTION/DOC/SUBCOLLECTION)"
            )
        timeout = number(opts, "timeout", DEFAULT_TIMEOUT_S)
        if timeout <= 0:
            raise ConfigurationError(f"option 'timeout' must be > 0 seconds, got {timeout}")
        return cls(
            project=project_id(opts.get("project"), "firestore"),
            collection=collection,
            bucket=opts.get("bucket") or None,
            database=str(opts.get("database", "(default)")),
            timeout=timeout,
            listen=flag(opts, "listen", True),
        )
