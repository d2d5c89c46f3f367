"""Subscriptions in the plan's normal form, and the two translations to and from it: from a
CreateSubscription request (what the deploy wants) or a live subscription (what there is), and
back to an API request (what ``apply`` sends). Topics carry only their labels."""

from __future__ import annotations

import math
from collections.abc import Mapping
from datetime import timedelta
from typing import Any

from cloudq.deploy import Resource

from .layout import QueueLayout

TOPIC = "pubsub.topic"
SUBSCRIPTION = "pubsub.subscription"
KIND_ORDER = (TOPIC, SUBSCRIPTION)
MAX_RETRY_BACKOFF_S = 600
UPDATABLE = (
    "ack_deadline_seconds",
    "dead_letter_policy",
    "retry_policy",
    "push_config",
    "labels",
    "expiration_policy",
)


def short(path: str) -> str:
    return path.rsplit("/", 1)[-1]


def subscription_spec(request: Mapping[str, Any], labels: dict[str, str], q: QueueLayout | None) -> dict[str, Any]:
    """A CreateSubscription request in the plan's normal form, plus what only a deploy adds."""
    policy = request.get("dead_letter_policy")
    spec: dict[str, Any] = {
        "topic": short(request["topic"]),
        "ack_deadline_seconds": request["ack_deadline_seconds"],
        "enable_message_ordering": bool(request.get("enable_message_ordering", False)),
        "dead_letter_policy": (
            {
                "dead_letter_topic": short(policy["dead_letter_topic"]),
                "max_delivery_attempts": policy["max_delivery_attempts"],
            }
            if policy
            else None
        ),
        "retry_policy": None,
        "push_endpoint": None,
        "push_service_account": None,
        "expires": "never" if request.get("expiration_policy") == {} else "default",
        "labels": labels,
    }
    if q is not None and q.push_endpoint:
        spec["push_endpoint"] = q.push_endpoint
        spec["push_service_account"] = q.service_account
        low = min(max(q.spec.min_backoff, 0), MAX_RETRY_BACKOFF_S)
        high = min(max(q.spec.max_backoff, low), MAX_RETRY_BACKOFF_S)
        spec["retry_policy"] = {"minimum_backoff_s": math.ceil(low), "maximum_backoff_s": math.ceil(high)}
    return spec


def read_subscription(found: Any) -> dict[str, Any]:
    """A live subscription (the API's object) in the plan's normal form."""
    policy = found.dead_letter_policy
    retry = found.retry_policy if "retry_policy" in found else None
    push = found.push_config
    expiration = found.expiration_policy if "expiration_policy" in found else None
    return {
        "topic": short(found.topic),
        "ack_deadline_seconds": found.ack_deadline_seconds,
        "enable_message_ordering": bool(found.enable_message_ordering),
        "dead_letter_policy": (
            {
                "dead_letter_topic": short(policy.dead_letter_topic),
                "max_delivery_attempts": policy.max_delivery_attempts,
            }
            if policy.dead_letter_topic
            else None
        ),
        "retry_policy": (
            {
                "minimum_backoff_s": int(_seconds(retry.minimum_backoff)),
                "maximum_backoff_s": int(_seconds(retry.maximum_backoff)),
            }
            if retry is not None
            else None
        ),
        "push_endpoint": push.push_endpoint or None,
        "push_service_account": push.oidc_token.service_account_email or None if push.push_endpoint else None,
        "expires": "never" if expiration is not None and not _seconds(expiration.ttl) else "default",
        "labels": dict(found.labels),
    }


def _seconds(value: Any) -> float:
    if value is None:
        return 0.0
    if isinstance(value, timedelta):
        return value.total_seconds()
    return float(getattr(value, "seconds", 0) or 0)


def subscription_request(r: Resource, project: str) -> dict[str, Any]:
    """The CreateSubscription / UpdateSubscription body of a subscription in normal form."""
    s = r.spec
    request: dict[str, Any] = {
        "name": f"projects/{project}/subscriptions/{r.name}",
        "topic": f"projects/{project}/topics/{s['topic']}",
        "ack_deadline_seconds": s["ack_deadline_seconds"],
        "enable_message_ordering": s["enable_message_ordering"],
        "labels": s["labels"],
        "expiration_policy": {} if s["expires"] == "never" else None,
        "dead_letter_policy": None,
        "retry_policy": None,
        "push_config": {},
    }
    policy = s["dead_letter_policy"]
    if policy:
        request["dead_letter_policy"] = {
            "dead_letter_topic": f"projects/{project}/topics/{policy['dead_letter_topic']}",
            "max_delivery_attempts": policy["max_delivery_attempts"],
        }
    retry = s["retry_policy"]
    if retry:
        request["retry_policy"] = {
            "minimum_backoff": timedelta(seconds=retry["minimum_backoff_s"]),
            "maximum_backoff": timedelta(seconds=retry["maximum_backoff_s"]),
        }
    if s["push_endpoint"]:
        push: dict[str, Any] = {"push_endpoint": s["push_endpoint"]}
        if s["push_service_account"]:
            push["oidc_token"] = {
                "service_account_email": s["push_service_account"],
                "audience": s["push_endpoint"],
            }
        request["push_config"] = push
    return {k: v for k, v in request.items() if v is not None}


def changed_fields(changes: Mapping[str, Any]) -> list[str]:
    """The update mask for the plan's changes (normal-form names -> API field names)."""
    renamed = {
        "push_endpoint": "push_config",
        "push_service_account": "push_config",
        "expires": "expiration_policy",
    }
    return sorted({renamed.get(k, k) for k in changes} & set(UPDATABLE))
