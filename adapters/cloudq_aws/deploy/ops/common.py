"""What every resource kind's operations share: the kinds, the not-found codes, tag handling and
the wait for IAM propagation."""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

from cloudq.deploy import Resource
from cloudq.deploy.base import owner_of

from ...errors import error_code
from ...session import Clients
from ..layout import TAG_SEPARATOR

log = logging.getLogger("cloudq.deploy")
T = TypeVar("T")

QUEUE = "sqs.queue"
TABLE = "dynamodb.table"
BUCKET = "s3.bucket"
ROLE = "iam.role"
LOG_GROUP = "logs.group"
FUNCTION = "lambda.function"
MAPPING = "lambda.mapping"
SCHEDULE_GROUP = "scheduler.group"
SCHEDULE = "scheduler.schedule"
# creation order; deletes go backwards. A function's log group comes first, so Lambda never makes
# one itself (without retention) on the first invocation; schedules come after the queues and the
# role they send with.
KIND_ORDER = (BUCKET, QUEUE, TABLE, ROLE, LOG_GROUP, FUNCTION, MAPPING, SCHEDULE_GROUP, SCHEDULE)

PROPAGATION_ATTEMPTS = 12  # a new IAM role takes seconds to be usable by Lambda
PROPAGATION_DELAY_S = 5.0
_MISSING = {
    "AWS.SimpleQueueService.NonExistentQueue",
    "QueueDoesNotExist",
    "ResourceNotFoundException",
    "NoSuchEntity",
    "NoSuchBucket",
    "404",
    "NotFound",
    "NoSuchTagSet",
    "NoSuchTagSetError",
}


def missing(call: Callable[[], T]) -> T | None:
    """The call's result, or None when AWS says the thing does not exist."""
    try:
        return call()
    except Exception as exc:
        if error_code(exc) in _MISSING:
            return None
        raise


def owner(tags: Mapping[str, str]) -> tuple[str, str] | None:
    return owner_of(tags, TAG_SEPARATOR)


def tag_pairs(tags: Mapping[str, str]) -> list[dict[str, str]]:
    return [{"Key": k, "Value": v} for k, v in sorted(tags.items())]


def from_tag_pairs(pairs: list[dict[str, str]] | None) -> dict[str, str]:
    return {p["Key"]: p["Value"] for p in pairs or []}


def live_resource(
    kind: str, name: str, spec: dict[str, Any], desired: Resource | None, tags: dict[str, str]
) -> Resource:
    """A live resource: tags limited to the keys the desired one sets (other tags are the user's)."""
    wanted = desired.spec.get("tags", {}) if desired else tags
    spec["tags"] = {k: v for k, v in tags.items() if k in wanted}
    return Resource(kind, name, spec, desired.create_only if desired else frozenset(), owner(tags))


def pick(spec: Mapping[str, Any], keys: Sequence[str]) -> dict[str, Any]:
    """The settings of a spec that an API call takes, in the call's own key names."""
    return {k: spec[k] for k in keys}


def mine(tags: Mapping[str, str], app: str, stage: str) -> bool:
    return owner(tags) == (app, stage)


def wait_for_propagation(what: str, call: Callable[[], T]) -> T:
    """Retry a call AWS refuses until a just-made role or policy has propagated."""
    for attempt in range(1, PROPAGATION_ATTEMPTS + 1):
        try:
            return call()
        except Exception as exc:
            if error_code(exc) != "InvalidParameterValueException" or attempt == PROPAGATION_ATTEMPTS:
                raise
            log.info("%s: waiting for IAM to propagate (%s)", what, exc)
            time.sleep(PROPAGATION_DELAY_S)
    raise AssertionError("unreachable")


@dataclass
class AWSOps:
    """The clients every kind's operations call through."""

    clients: Clients

    def client(self, service: str) -> Any:
        return self.clients.get(service)


def document(value: Any) -> Any:
    """A policy document in the plan's form (a dict), in whichever form IAM returned it: decoded by
    boto3, JSON text, URL-encoded JSON, or the Python literal moto's CloudFormation stores. Text in
    none of these forms is returned as it is: the plan then shows it replaced by the wanted document."""
    if not isinstance(value, str):
        return value
    import ast
    from urllib.parse import unquote

    for text in dict.fromkeys((value, unquote(value))):
        try:
            return json.loads(text)
        except ValueError:
            pass
        try:
            parsed = ast.literal_eval(text)
        except (ValueError, SyntaxError, MemoryError, RecursionError):
            continue
        if isinstance(parsed, dict):
            return parsed
    return value
