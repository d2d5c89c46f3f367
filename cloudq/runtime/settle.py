"""Outcomes -> the groups of broker calls that apply them, written once for every runtime.

The executor decides what happens to each message (an Outcome); every runtime then applies the
same partition: the worker's acker as batched broker calls, the Lambda handler as batched calls
plus ``batchItemFailures``, the push handler as one HTTP answer per message.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from ..interfaces import Delivery, OutgoingMessage
from .executor import Ack, DeadLetter, Outcome, Requeue, RetryIn

if TYPE_CHECKING:
    from ..app import App

log = logging.getLogger("cloudq.worker")


@dataclass(slots=True)
class Settlement:
    """What to do with a batch of settled deliveries, in the order a runtime must apply it:
    ``followups`` and ``sends`` first (what a message makes must exist before it is acked; on
    failure keep the original: ``send_followups``), then ``acks`` (plus the originals of the sends
    that worked), ``nacks``, ``dead``. Each group keeps the deliveries' order."""

    acks: list[Delivery] = field(default_factory=list)  # done: delete
    nacks: dict[float, list[Delivery]] = field(default_factory=dict)  # give back after delay_s, by delay
    sends: dict[str, list[tuple[Delivery, OutgoingMessage]]] = field(default_factory=dict)  # re-send, by queue
    dead: dict[str, list[Delivery]] = field(default_factory=dict)  # dead-letter, by reason
    # the next chain steps, links and errbacks of acked or dead-lettered deliveries, by queue
    followups: dict[str, list[tuple[Delivery, OutgoingMessage]]] = field(default_factory=dict)
    steps: dict[int, str] = field(default_factory=dict)  # id(delivery) -> task id to record as sent

    def drop(self, deliveries: Sequence[Delivery]) -> None:
        """Settle none of ``deliveries`` (their follow-ups could not be sent): they come back."""
        gone = {id(d) for d in deliveries}
        self.acks = [d for d in self.acks if id(d) not in gone]
        for reason, group in list(self.dead.items()):
            self.dead[reason] = [d for d in group if id(d) not in gone]
            if not self.dead[reason]:
                del self.dead[reason]

    def __len__(self) -> int:
        groups = (self.nacks, self.sends, self.dead)
        return len(self.acks) + sum(len(group) for kind in groups for group in kind.values())


def settle(outcomes: Iterable[tuple[Delivery, Outcome]]) -> Settlement:
    """Partition ``(delivery, outcome)`` pairs; a requeue re-sends to the delivery's own queue."""
    result = Settlement()
    seen: set[tuple[str, str]] = set()
    for delivery, outcome in outcomes:
        if isinstance(outcome, (Ack, DeadLetter)):
            for queue, message in outcome.followups:
                # two deliveries of one step in a batch make the same follow-ups (same task ids): send one
                if message.dedup_id is None or (queue, message.dedup_id) not in seen:
                    result.followups.setdefault(queue, []).append((delivery, message))
                    seen.add((queue, message.dedup_id or ""))
            if isinstance(outcome, Ack) and outcome.step and outcome.followups:
                result.steps[id(delivery)] = outcome.step
        if isinstance(outcome, Ack):
            result.acks.append(delivery)
        elif isinstance(outcome, RetryIn):
            result.nacks.setdefault(outcome.delay_s, []).append(delivery)
        elif isinstance(outcome, Requeue):
            result.sends.setdefault(delivery.queue, []).append((delivery, outcome.message))
        elif isinstance(outcome, DeadLetter):
            result.dead.setdefault(outcome.reason, []).append(delivery)
        else:
            raise TypeError(f"unknown outcome {outcome!r}")
    return result


def send_followups(
    plan: Settlement, app: App, send: Callable[[str, list[OutgoingMessage]], Any] | None = None
) -> list[Delivery]:
    """Send ``plan``'s follow-ups (one batched send per queue), record the steps that sent all of
    theirs, and take the deliveries whose follow-ups failed out of the plan (returned: they are
    left to come back, and their follow-ups are sent again with the same task ids). The one code
    path the worker, the Lambda handler and the push handler settle follow-ups with."""
    from ..canvas.followups import children_record, record_sent

    if not plan.followups:
        return []
    send = send or app.broker.send
    failed: dict[int, Delivery] = {}
    for queue, pairs in plan.followups.items():
        try:
            send(queue, [message for _, message in pairs])
        except Exception as exc:
            log.warning(
                "sending %d follow-up(s) to %s failed; their tasks' messages will be redelivered: %s: %s",
                len(pairs),
                queue,
                type(exc).__name__,
                exc,
            )
            failed.update((id(d), d) for d, _ in pairs)
    keep = app.settings.result_expires
    expires = time.time() + keep if keep else None
    sent: dict[int, tuple[str, list[str]]] = {}
    for pairs in plan.followups.values():
        for delivery, message in pairs:
            step = plan.steps.get(id(delivery))
            if step is not None and id(delivery) not in failed:
                sent.setdefault(id(delivery), (step, []))[1].append(message.dedup_id or "")
    try:
        record_sent(app.results, [children_record(step, ids, expires) for step, ids in sent.values()])
    except Exception as exc:  # the follow-ups went out: a redelivery might send them again
        log.warning("could not record %d step(s)' follow-ups as sent: %s: %s", len(sent), type(exc).__name__, exc)
    lost = list(failed.values())
    plan.drop(lost)
    return lost
