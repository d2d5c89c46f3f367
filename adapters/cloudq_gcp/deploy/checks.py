"""What ``cloudq deploy`` refuses on Pub/Sub, each problem saying what to change where."""

from __future__ import annotations

from urllib.parse import urlsplit

from cloudq.deploy.checks import time_limit_problems
from cloudq.deploy.settings import queue_table

from ..options import MAX_ACK_DEADLINE_S, MAX_DELIVERY_ATTEMPTS, MIN_ACK_DEADLINE_S, MIN_DELIVERY_ATTEMPTS
from ..push.handler import MAX_PUSH_DEADLINE_S
from .layout import QueueLayout


def queue_problems(q: QueueLayout) -> list[str]:
    name, o = q.spec.name, q.spec.options
    where = queue_table(name)
    out: list[str] = []
    if q.spec.runtime == "lambda":
        out.append(f'queue {name!r}: runtime \'lambda\' is for AWS; on Pub/Sub use "push" or "container" in {where}')
    if not MIN_ACK_DEADLINE_S <= q.ack_deadline <= MAX_ACK_DEADLINE_S:
        out.append(
            f"queue {name!r}: ack deadline {q.ack_deadline} s is outside Pub/Sub's {MIN_ACK_DEADLINE_S}-"
            f"{MAX_ACK_DEADLINE_S} s: change visibility_timeout (or timeout) in {where}"
        )
    if q.max_delivery_attempts and not MIN_DELIVERY_ATTEMPTS <= q.max_delivery_attempts <= MAX_DELIVERY_ATTEMPTS:
        if o.max_deliveries is not None:
            fix = f"set max_deliveries to {MIN_DELIVERY_ATTEMPTS}-{MAX_DELIVERY_ATTEMPTS} in {where}"
        else:
            fix = (
                f"lower the max_retries of its tasks to {MAX_DELIVERY_ATTEMPTS - 1} or less, or count attempts in "
                "the message instead with the broker option max_delivery_attempts=0"
            )
        out.append(
            f"queue {name!r}: {q.max_delivery_attempts} delivery attempts is outside the {MIN_DELIVERY_ATTEMPTS}-"
            f"{MAX_DELIVERY_ATTEMPTS} a Pub/Sub dead-letter policy allows: {fix}"
        )
    if q.spec.runtime != "push":
        return out
    out.extend(time_limit_problems(q.spec, "Pub/Sub push", MAX_PUSH_DEADLINE_S, q.ack_deadline))
    endpoint = q.push_endpoint or ""
    parts = urlsplit(endpoint)
    local = parts.hostname in {"localhost", "127.0.0.1"}
    if not endpoint or parts.scheme not in {"https", "http"} or (parts.scheme == "http" and not local):
        out.append(
            f'queue {name!r} runs on push and needs push_endpoint = "https://..." (the service\'s URL, e.g. from '
            f"`gcloud run services describe SERVICE --format='value(status.url)'`) in {where}"
        )
    return out
