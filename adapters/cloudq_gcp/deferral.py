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

``plan`` makes that decision for one message, for the pull broker and the push handler alike.

Anyone who can publish to the topic can set these attributes, so they are read strictly: a value
cloudq never writes raises ``BadAttribute`` with the reason, and the broker hands that one message
out as malformed (dead-lettered with the reason) instead of failing the pull for its batch.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from enum import Enum

from .options import MAX_ACK_DEADLINE_S

NOT_BEFORE = "cloudq-not-before"
PRIOR = "cloudq-prior"
REFRESH_AGE_S = 24 * 3600.0  # well inside the default 7-day message retention
LATEST_NOT_BEFORE = 253_402_300_799.0  # 9999-12-31T23:59:59Z, the last time a datetime can hold
MAX_PRIOR = 1_000_000  # far above any real count (every give-back is bounded), far below int64


class BadAttribute(ValueError):
    """A cloudq attribute holds a value no cloudq producer writes (forged or corrupt)."""


class Early(Enum):
    HIDE = "hide"  # keep the lease, ack deadline -> time left (<= 600 s)
    REFRESH = "refresh"  # publish a fresh copy with the same not-before, ack this one


def not_before(attributes: Mapping[str, str]) -> float | None:
    """The due time (epoch seconds), None without one; BadAttribute for anything but a finite time
    between 1970 and 9999 (``inf``/``nan`` would break the hiding arithmetic for good)."""
    raw = attributes.get(NOT_BEFORE)
    if raw is None:
        return None
    try:
        value = float(raw)
    except ValueError:
        raise BadAttribute(f"{NOT_BEFORE} {_shown(raw)} is not a number of epoch seconds") from None
    if not 0.0 <= value <= LATEST_NOT_BEFORE:  # also false for nan
        raise BadAttribute(f"{NOT_BEFORE} {_shown(raw)} is not a time between 1970 and 9999")
    return value


def prior(attributes: Mapping[str, str]) -> int:
    """Deliveries spent by earlier copies; BadAttribute unless a whole number 0..MAX_PRIOR."""
    raw = attributes.get(PRIOR)
    if raw is None:
        return 0
    if not (raw.isascii() and raw.isdigit()) or len(raw) > len(str(MAX_PRIOR)) or int(raw) > MAX_PRIOR:
        raise BadAttribute(f"{PRIOR} {_shown(raw)} is not a whole number of deliveries 0-{MAX_PRIOR}")
    return int(raw)


def timing(attributes: Mapping[str, str]) -> tuple[float | None, int] | str:
    """(not-before, prior) of a message, or why its attributes are malformed."""
    try:
        return not_before(attributes), prior(attributes)
    except BadAttribute as exc:
        return str(exc)


def _shown(raw: str, limit: int = 40) -> str:
    return repr(raw if len(raw) <= limit else f"{raw[:limit]}...")


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


class Step(Enum):
    RUN = "run"  # not delayed, or its attributes are malformed (the delivery says why)
    FORWARD = "forward"  # due: publish a copy without not-before (prior kept), settle this one
    HIDE = "hide"  # early: keep it away for ``hide_s`` (pull: ack deadline; push: 429 Retry-After)
    REFRESH = "refresh"  # early and near a limit: publish a copy with the same not-before, settle this one


@dataclass(frozen=True, slots=True)
class Plan:
    step: Step
    spent: int = 0  # deliveries earlier copies spent (what a copy carries on)
    due: float | None = None  # epoch seconds
    remaining_s: float = 0.0  # until due (HIDE, REFRESH)

    @property
    def hide_s(self) -> int:
        return hide_for(self.remaining_s)


def plan(attributes: Mapping[str, str], attempt: int, published_at: float, max_attempts: int, now: float) -> Plan:
    """What to do with a message just received (``attempt``: Pub/Sub's delivery_attempt,
    ``published_at``: its publish time, both epoch seconds like ``now``). A copy that would not
    fit is the caller's to check: a forward that does not fit runs as it is, a refresh is hidden."""
    found = timing(attributes)
    if isinstance(found, str):
        return Plan(Step.RUN)
    due, spent = found
    if due is None:
        return Plan(Step.RUN)
    if due <= now:
        return Plan(Step.FORWARD, spent, due)
    step = Step.HIDE if early(attempt, now - published_at, max_attempts) is Early.HIDE else Step.REFRESH
    return Plan(step, spent, due, due - now)
