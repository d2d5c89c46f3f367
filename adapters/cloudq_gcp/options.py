"""Options of the ``pubsub://`` and ``firestore://`` URLs, checked once with clear messages.

URL query parameters override ``settings.broker_options`` / ``settings.results_options``.
"""

from __future__ import annotations

import math
import os
import re
from dataclasses import dataclass
from fnmatch import fnmatchcase
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

from cloudq.backends.urls import Parser, as_bool, as_number, as_text, number_in, read_options
from cloudq.errors import ConfigurationError

if TYPE_CHECKING:
    from cloudq.config import Settings

# Pub/Sub service limits
MIN_ACK_DEADLINE_S = 10  # a subscription's ack deadline: 10-600 s
MAX_ACK_DEADLINE_S = 600  # also the most one modify_ack_deadline can set
MIN_DELIVERY_ATTEMPTS = 5  # a dead-letter policy's max_delivery_attempts: 5-100
MAX_DELIVERY_ATTEMPTS = 100
DEFAULT_TIMEOUT_S = 30.0  # per request, retries included
SEND_TIMEOUT_S = 10.0  # a producer's whole call (send, result read), retries and queue setup included
DEFAULT_PREFIX = "cloudq-"
# how a long-running worker receives (one-shot receives always pull). Sync is the default until
# streaming's release on shutdown is shown on Pub/Sub itself: the emulator keeps feeding a closed
# stream, so what a stopping worker gives back waits out the stream's ack deadline there
PULL_MODES = ("sync", "streaming")

PROJECT_ENV_VARS = ("GOOGLE_CLOUD_PROJECT", "GCLOUD_PROJECT", "CLOUDSDK_CORE_PROJECT")
_RESOURCE_NAME = re.compile(r"^[A-Za-z][A-Za-z0-9._~+%-]{2,254}$")  # topic / subscription ids


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


def _attempts(name: str, value: Any) -> int:
    attempts = int(as_number(name, value, 0, MAX_DELIVERY_ATTEMPTS))
    if attempts and attempts < MIN_DELIVERY_ATTEMPTS:
        raise ConfigurationError(
            f"option {name!r} must be {MIN_DELIVERY_ATTEMPTS}-{MAX_DELIVERY_ATTEMPTS} "
            f"(Pub/Sub's dead-letter policy range) or 0 for no dead-letter policy, got {value!r}"
        )
    return attempts


def _ack_deadline(name: str, value: Any) -> int:
    seconds = int(as_number(name, value, -math.inf, math.inf))
    if not MIN_ACK_DEADLINE_S <= seconds <= MAX_ACK_DEADLINE_S:
        raise ConfigurationError(f"option {name!r} must be {MIN_ACK_DEADLINE_S}-{MAX_ACK_DEADLINE_S} s, got {value!r}")
    return seconds


def _timeout(name: str, value: Any) -> float:
    timeout = as_number(name, value, 0, 3600)
    if timeout <= 0:
        raise ConfigurationError(f"option {name!r} must be > 0 seconds, got {value!r}")
    return timeout


def _pull_mode(name: str, value: Any) -> str:
    mode = str(value).strip().lower()
    if mode not in PULL_MODES:
        raise ConfigurationError(f"option {name!r} must be one of {', '.join(PULL_MODES)}, got {value!r}")
    return mode


def _names(name: str, value: Any) -> tuple[str, ...]:
    items = value if isinstance(value, (list, tuple)) else str(value).split(",")
    return tuple(str(item).strip() for item in items if str(item).strip())


_COMMON: dict[str, Parser] = {
    "project": as_text,
    "bucket": as_text,
    "timeout": _timeout,
    "send_timeout": number_in(1, 300),
}
PUBSUB_PARSERS: dict[str, Parser] = {
    **_COMMON,
    "prefix": lambda n, v: as_text(n, v) or "",
    "ack_deadline": _ack_deadline,
    "max_delivery_attempts": _attempts,
    "create_missing": as_bool,
    "ordered": _names,
    "pull": _pull_mode,
}
FIRESTORE_PARSERS: dict[str, Parser] = {**_COMMON, "database": as_text, "listen": as_bool, "create_missing": as_bool}


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
    send_timeout: float = SEND_TIMEOUT_S
    pull: str = PULL_MODES[0]  # a long-running worker's receives: "sync" Pull requests, or "streaming" pull

    def is_ordered(self, queue: str) -> bool:
        return any(fnmatchcase(queue, pattern) for pattern in self.ordered)

    @classmethod
    def from_url(cls, url: str, settings: Settings) -> PubSubOptions:
        defaults = {
            "prefix": DEFAULT_PREFIX,
            "ack_deadline": int(min(max(settings.visibility_timeout, MIN_ACK_DEADLINE_S), MAX_ACK_DEADLINE_S)),
            "max_delivery_attempts": MAX_DELIVERY_ATTEMPTS,
            "create_missing": settings.create_missing,
            "ordered": (),
            "timeout": DEFAULT_TIMEOUT_S,
            "send_timeout": SEND_TIMEOUT_S,
            "pull": PULL_MODES[0],
        }
        opts = read_options(url, settings.broker_options, PUBSUB_PARSERS, defaults, base_name="broker_options")
        return cls(
            project=project_id(urlsplit(url).netloc or opts.get("project"), "pubsub"),
            prefix=opts["prefix"],
            ack_deadline=opts["ack_deadline"],
            max_delivery_attempts=opts["max_delivery_attempts"],
            bucket=opts.get("bucket"),
            create_missing=opts["create_missing"],
            ordered=opts["ordered"],
            timeout=opts["timeout"],
            send_timeout=opts["send_timeout"],
            pull=opts["pull"],
        )


@dataclass(frozen=True, slots=True)
class FirestoreOptions:
    project: str
    collection: str
    bucket: str | None = None  # GCS bucket for results above the Firestore document limit
    database: str = "(default)"
    timeout: float = DEFAULT_TIMEOUT_S
    listen: bool = True  # wait with a snapshot listener; False polls
    send_timeout: float = SEND_TIMEOUT_S  # a result read's total deadline
    create_missing: bool = True  # the claim-check bucket (the collection needs no creating)

    @classmethod
    def from_url(cls, url: str, settings: Settings) -> FirestoreOptions:
        defaults = {
            "timeout": DEFAULT_TIMEOUT_S,
            "listen": True,
            "send_timeout": SEND_TIMEOUT_S,
            "create_missing": settings.create_missing,
        }
        opts = read_options(url, settings.results_options, FIRESTORE_PARSERS, defaults, base_name="results_options")
        parts = urlsplit(url)
        collection = (parts.netloc + parts.path).strip("/")
        if not collection or collection.count("/") % 2:
            raise ConfigurationError(
                f"firestore URL {url!r} needs a collection path: firestore://COLLECTION "
                "(or firestore://COLLECTION/DOC/SUBCOLLECTION)"
            )
        return cls(
            project=project_id(opts.get("project"), "firestore"),
            collection=collection,
            bucket=opts.get("bucket"),
            database=opts.get("database") or "(default)",
            timeout=opts["timeout"],
            listen=opts["listen"],
            send_timeout=opts["send_timeout"],
            create_missing=opts["create_missing"],
        )
