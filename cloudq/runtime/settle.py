"""Outcomes -> the groups of broker calls that apply them, written once for every runtime.

The executor decides what happens to each message (an Outcome); every runtime then applies the
same partition: the worker's acker as batched broker calls, the Lambda handler as batched calls
plus ``batchItemFailures``, the push handler as one HTTP answer per message.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field

from ..interfaces import Delivery, OutgoingMessage
from .executor import Ack, DeadLetter, Outcome, Requeue, RetryIn


@dataclass(slots=True)
class Settlement:
    """What to do with a batch of settled deliveries, in the order a runtime must apply it:
    ``sends`` first (a re-sent copy must exist before its original is acked; on failure keep
    the original), then ``acks`` (plus the originals of the sends that worked), ``nacks``, ``dead``.
    Each group keeps the deliveries' order."""

    acks: list[Delivery] = field(default_factory=list)  # done: delete
    nacks: dict[float, list[Delivery]] = field(default_factory=dict)  # give back after delay_s, by delay
    sends: dict[str, list[tuple[Delivery, OutgoingMessage]]] = field(default_factory=dict)  # re-send, by queue
    dead: dict[str, list[Delivery]] = field(default_factory=dict)  # dead-letter, by reason

    def __len__(self) -> int:
        groups = (self.nacks, self.sends, self.dead)
        return len(self.acks) + sum(len(group) for kind in groups for group in kind.values())


def settle(outcomes: Iterable[tuple[Delivery, Outcome]]) -> Settlement:
    """Partition ``(delivery, outcome)`` pairs; a requeue re-sends to the delivery's own queue."""
    result = Settlement()
    for delivery, outcome in outcomes:
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
