"""Turns task outcomes into as few broker calls as possible.

Outcomes are collected and flushed in batches: when ``max_batch`` are waiting, else
``interval_s`` after the first one (a few milliseconds when one is a retry, requeue or dead
letter, or carries follow-ups such as a chain's next step: their timing matters), as soon as the worker runs out of messages, and always on
shutdown. The executor has written the result before the outcome arrives here, so waiting costs
no result latency, and a crash before the flush only causes a redelivery (at-least-once). The
default wait (half a second) is what fills SQS's 10-message delete batches at a few dozen tasks
per second; local brokers flush a full batch (1000) long before it, and fewer, larger batches
are cheaper for SQLite too.
"""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from ..interfaces import Broker, Delivery
from ..util.chunks import chunks
from .batching import Batcher
from .executor import Ack, Outcome
from .givebacks import GiveBacks
from .settle import send_followups, settle

if TYPE_CHECKING:
    from ..app import App

log = logging.getLogger("cloudq.worker")

ACK_INTERVAL_S = 0.5
TIMED_INTERVAL_S = 0.005  # retries, requeues and dead letters: their clocks start at the flush


class Acker:
    def __init__(
        self,
        broker: Broker,
        interval_s: float = ACK_INTERVAL_S,
        before_apply: Callable[[], None] | None = None,
        givebacks: GiveBacks | None = None,
        app: App | None = None,
    ) -> None:
        """``before_apply`` runs before each batch reaches the broker (the batched result writes);
        if it fails, the batch is not applied and its messages come back after their lease.
        ``givebacks`` records each retried or re-sent message and when it is due (burst mode);
        ``app`` records the follow-ups (chain steps, links) sent before their acks."""
        self.broker = broker
        self.app = app
        self.before_apply = before_apply
        self.givebacks = givebacks
        self.max_batch = max(1, broker.limits.max_batch)
        self.interval_s = interval_s
        self.counts: Counter[str] = Counter()  # outcomes applied, by kind: for logs and tests
        self._batcher: Batcher[tuple[Delivery, Outcome]] = Batcher(
            self._apply,
            max_batch=self.max_batch,
            window_s=interval_s,
            urgent_window_s=TIMED_INTERVAL_S,
            name="cloudq-acker",
        )

    def start(self) -> None:
        self._batcher.start()

    def put(self, delivery: Delivery, outcome: Outcome) -> None:
        # a nack's delay or a requeued ETA hop runs from the flush, and a chain's next step or a
        # link is sent by it: do not hold them back
        urgent = type(outcome) is not Ack or bool(outcome.followups)
        self._batcher.put((delivery, outcome), urgent=urgent)

    def unsettled(self) -> int:
        """Outcomes waiting for their flush (read without the lock: a hint)."""
        return self._batcher.pending()

    def flush(self) -> None:
        """Apply every outcome put so far; returns when they have reached the broker (or failed)."""
        self._batcher.flush()

    def close(self) -> None:
        self._batcher.close()

    def _apply(self, batch: list[tuple[Delivery, Outcome]]) -> None:
        if self.before_apply is not None and not self._call("result write", len(batch), self.before_apply)[0]:
            return
        settled = settle(batch)
        if settled.followups and self.app is not None:
            # sent first, through the broker this acker settles with; a failed send leaves its
            # tasks' messages to come back (their follow-ups then go again, with the same ids)
            send_followups(settled, self.app, lambda queue, messages: self.broker.send(queue, messages))
        acks = settled.acks
        for queue, pairs in settled.sends.items():
            for part in chunks(pairs, self.max_batch):
                # the copy must exist before the original goes: if sending fails, keep the original
                sent, ids = self._call("send", len(part), self.broker.send, queue, [message for _, message in part])
                if sent:
                    acks += [delivery for delivery, _ in part]
                    self.counts["requeued"] += len(part)
                    if self.givebacks is not None:
                        for message_id, (_, message) in zip(ids, part, strict=False):
                            self.givebacks.add([message_id], message.delay_s)
        self._each("ack", acks, self.broker.ack)
        for delay, group in settled.nacks.items():
            done = self._each("nack", group, self.broker.nack, delay)
            if self.givebacks is not None:
                self.givebacks.add([d.message_id for d in done], delay)
        for reason, group in settled.dead.items():
            self._each("dead_letter", group, self.broker.dead_letter, reason)

    def _each(
        self, what: str, deliveries: list[Delivery], call: Callable[..., object], *extra: object
    ) -> list[Delivery]:
        """Apply ``call`` in batches; the deliveries it was applied to."""
        done: list[Delivery] = []
        for part in chunks(deliveries, self.max_batch):
            if self._call(what, len(part), call, part, *extra)[0]:
                self.counts[what] += len(part)
                done += part
        return done

    def _call(self, what: str, count: int, fn: Callable[..., Any], *args: object) -> tuple[bool, Any]:
        """(whether it worked, what ``fn`` returned)."""
        try:
            return True, fn(*args)
        except Exception as exc:
            # the messages stay leased and come back after their lease: a duplicate, never a loss
            log.warning(
                "%s of %d message(s) failed; they will be redelivered: %s: %s", what, count, type(exc).__name__, exc
            )
            return False, None
