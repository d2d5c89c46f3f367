"""Delayed delivery and exact delivery counts on Pub/Sub, which has neither natively.

A message sent with a delay carries ``cloudq-not-before`` (epoch seconds). A receiver that pulls it
early *hides* it: it keeps the lease and sets the ack deadline to the time left (at most 600 s per
hop), so nobody sees it until then and nothing polls. Each hop is a redelivery to Pub/Sub, so it
raises ``delivery_attempt``; two rules keep that from costing the task anything:

* when it falls due, the message is *forwarded*: published again without ``cloudq-not-before``
  and the delayed copy acked, so the copy that runs starts from Pub/Sub's first attempt;
* a copy close to the dead-letter policy's limit (or older than ``REFRESH_AGE_S``, below the
  subscription's retention) is *refreshed*: published again with the same ``not-before``.

Republishing (forward, refresh, release, nack beyond 600 s) keeps the deliveries already spent in
``cloudq-prior``, so ``delivery_count = delivery_attempt + prior`` stays exact across copies.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from enum import Enum

from .options import MAX_ACK_DEADLINE_S

NOT_BEFORE = "cloudq-not-before"
PRIOR = "cloudq-prior"
REFRESH_AGE_S = 24 * 3600.0  # well inside the default 7-day message retention


class Early(Enum):
    HIDE = "hide"  # keep the lease, ack deadline -> time left (<= 600 s)
    REFRESH = "refresh"  # publish a fresh copy with the same not-before, ack this one


def not_before(attributes: Mapping[str, str]) -> float | None:
    raw = attributes.get(NOT_BEFORE)
    try:
        return float(raw) if raw is not None else None
    except ValueError:
        return None


def prior(attributes: Mapping[str, str]) -> int:
    try:
        return max(0, int(attributes.get(PRIOR, 0)))
    except ValueError:
        return 0


def hide_for(remaining_s: float) -> int:
    """The ack deadline that hides a message for ``remaining_s``: rounded up, so never early."""
    return max(1, min(MAX_ACK_DEADLINE_S, math.ceil(remaining_s)))


def early(attempt: int, age_s: float, max_attempts: int) -> Early:
    """What to do with a copy pulled before its time.

    ``attempt`` is Pub/Sub's delivery_attempt (0 without a dead-letter policy). Hiding it once more
    must not let the dead-letter policy take it on its next return.
    """
    if max_attempts and attempt + 1 >= max_attempts:
        return Early.REFRESH
    if age_s >= REFRESH_AGE_S:
        return Early.REFRESH
    return Early.HIDE
