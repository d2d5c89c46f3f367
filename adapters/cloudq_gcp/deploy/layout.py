"""Per queue, what ``cloudq deploy`` makes of the app's settings on Pub/Sub: resource names, ack
deadline, delivery attempts, push endpoint (checks.py judges it, specs.py writes it down)."""

from __future__ import annotations

import math
import re
from dataclasses import dataclass

from cloudq.backends.urls import url_options
from cloudq.deploy import AppModel, QueueSpec

from ..options import MAX_DELIVERY_ATTEMPTS, MIN_DELIVERY_ATTEMPTS, PubSubOptions
from ..pubsub_admin import QueuePaths, queue_paths

PUSH_DEADLINE_MARGIN_S = 10  # over a task's time_limit: the handler answers after the task ends
RECEIVE_HEADROOM = 3  # as on SQS: attempts spent without running (given back) + one to record a lost worker
_LABEL = re.compile(r"[^a-z0-9_-]")


def label_value(text: str) -> str:
    return _LABEL.sub("-", text.lower())[:63]


@dataclass(frozen=True, slots=True)
class QueueLayout:
    spec: QueueSpec
    paths: QueuePaths
    ordered: bool
    ack_deadline: int
    max_delivery_attempts: int  # 0: no dead-letter policy (attempts counted in the message)
    push_endpoint: str | None
    service_account: str | None


def _explicit_attempts(model: AppModel) -> int | None:
    raw = url_options(model.broker_url, model.settings.broker_options).get("max_delivery_attempts")
    return int(float(raw)) if raw is not None else None


def layout(model: AppModel, options: PubSubOptions) -> list[QueueLayout]:
    app_attempts = _explicit_attempts(model)
    out = []
    for spec in model.queues:
        o = spec.options
        push = spec.runtime == "push"
        if o.visibility_timeout is not None:
            deadline = math.ceil(o.visibility_timeout)
        elif push and o.timeout is not None:
            deadline = math.ceil(o.timeout)
        elif push and spec.time_limit is not None:
            deadline = max(options.ack_deadline, math.ceil(spec.time_limit) + PUSH_DEADLINE_MARGIN_S)
        else:
            deadline = options.ack_deadline
        if o.max_deliveries is not None:
            attempts = o.max_deliveries
        elif app_attempts is not None:
            attempts = app_attempts
        elif spec.max_retries + 1 > MAX_DELIVERY_ATTEMPTS:
            attempts = spec.max_retries + 1  # refused by the checks, with what to change
        else:
            # Pub/Sub's floor is 5; the executor dead-letters exhausted retries itself before that
            attempts = min(max(spec.max_retries + 1 + RECEIVE_HEADROOM, MIN_DELIVERY_ATTEMPTS), MAX_DELIVERY_ATTEMPTS)
        out.append(
            QueueLayout(
                spec=spec,
                paths=queue_paths(options, spec.name),
                ordered=options.is_ordered(spec.name),
                ack_deadline=deadline,
                max_delivery_attempts=attempts,
                push_endpoint=o.push_endpoint if push else None,
                service_account=o.service_account if push else None,
            )
        )
    return out
