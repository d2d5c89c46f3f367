"""The acker: outcomes become few, batched broker calls, without holding back the timed ones."""

from __future__ import annotations

import dataclasses
from collections import Counter
from collections.abc import Iterator
from typing import Any

import pytest
from worker_helpers import wait_for

from cloudq.backends.memory import MemoryBroker
from cloudq.errors import BackendUnavailable
from cloudq.interfaces import Delivery, OutgoingMessage
from cloudq.runtime.acker import Acker
from cloudq.runtime.executor import Ack, DeadLetter, Requeue, RetryIn

pytestmark = pytest.mark.timeout(30)
LONG = 60.0  # an ack linger no test waits for


class Counting:
    """A broker that counts calls and messages per method (and can fail one method)."""

    def __init__(self, inner: MemoryBroker, failing: str | None = None) -> None:
        self.inner, self.failing = inner, failing
        self.calls: Counter[str] = Counter()
        self.sizes: dict[str, list[int]] = {}

    def __getattr__(self, name: str) -> Any:
        attr = getattr(self.inner, name)
        if not callable(attr):
            return attr

        def call(*args: Any, **kwargs: Any) -> Any:
            self.calls[name] += 1
            batch = args[1] if name == "send" else args[0] if args else None
            if isinstance(batch, list):
                self.sizes.setdefault(name, []).append(len(batch))
            if name == self.failing:
                raise BackendUnavailable(f"{name} failed")
            return attr(*args, **kwargs)

        return call


@pytest.fixture
def leased() -> Iterator[tuple[Counting, list[Delivery]]]:
    inner = MemoryBroker()
    inner.send("q", [OutgoingMessage(b'{"n": %d}' % i) for i in range(5)])
    deliveries = inner.receive("q", 5, 60)
    yield Counting(inner), deliveries


def start(broker: Counting, interval: float = LONG) -> Acker:
    acker = Acker(broker, interval)  # type: ignore[arg-type]
    acker.start()
    return acker


def test_acks_wait_for_a_batch_and_go_out_in_one_call(leased):
    broker, deliveries = leased
    acker = start(broker)
    for d in deliveries:
        acker.put(d, Ack())
    assert broker.calls["ack"] == 0  # lingering for more
    acker.close()
    assert broker.calls["ack"] == 1 and broker.sizes["ack"] == [5]
    assert broker.stats("q").in_flight == 0


def test_a_full_batch_goes_out_without_waiting(leased):
    broker, deliveries = leased
    broker.inner.limits = dataclasses.replace(broker.inner.limits, max_batch=5)
    acker = start(broker)
    for d in deliveries:
        acker.put(d, Ack())
    wait_for(lambda: broker.calls["ack"] == 1, timeout=10)
    acker.close()
    assert broker.sizes["ack"] == [5]


def test_a_retry_is_not_held_back_by_the_ack_linger(leased):
    broker, deliveries = leased
    acker = start(broker)
    acker.put(deliveries[0], Ack())
    acker.put(deliveries[1], RetryIn(0.0))
    wait_for(lambda: broker.calls["nack"] == 1, timeout=10)  # long before the 60 s linger
    assert broker.calls["ack"] == 1  # the ack waiting with it went out in the same flush
    acker.close()


def test_a_chain_step_is_not_held_back_by_the_ack_linger(leased):
    """An ack carrying follow-ups (a chain's next step, a link) flushes at once: held for the ack
    linger, every step of a chain waited up to half a second on a busy worker."""
    from cloudq import App

    broker, deliveries = leased
    app = App("acker", broker="memory://", results="memory://")
    acker = Acker(broker, LONG, app=app)  # type: ignore[arg-type]
    acker.start()
    acker.put(deliveries[0], Ack())
    acker.put(deliveries[1], Ack(followups=(("next", OutgoingMessage(b'{"step": 2}')),)))
    wait_for(lambda: broker.calls["ack"] == 1, timeout=10)  # long before the 60 s linger
    assert broker.calls["send"] == 1 and broker.sizes["ack"] == [2]  # sent first, then both acked
    assert [d.body for d in broker.inner.receive("next", 10, 60)] == [b'{"step": 2}']
    acker.close()
    app.close()


def test_outcomes_are_grouped_by_kind_delay_and_reason(leased):
    broker, deliveries = leased
    acker = start(broker)
    a, b, c, d, e = deliveries
    for delivery, outcome in [
        (a, RetryIn(5.0)),
        (b, RetryIn(5.0)),
        (c, DeadLetter("bad")),
        (d, DeadLetter("bad")),
        (e, Requeue(OutgoingMessage(b"copy"))),
    ]:
        acker.put(delivery, outcome)
    acker.close()
    assert broker.calls == {"nack": 1, "dead_letter": 1, "send": 1, "ack": 1}
    assert acker.counts == {"nack": 2, "dead_letter": 2, "requeued": 1, "ack": 1}
    stats = broker.stats("q")
    assert (stats.ready, stats.delayed, stats.dead_lettered, stats.in_flight) == (1, 2, 2, 0)


def test_a_requeue_whose_send_fails_keeps_the_original(leased, caplog):
    inner_broker, deliveries = leased
    broker = Counting(inner_broker.inner, failing="send")
    acker = start(broker)
    acker.put(deliveries[0], Requeue(OutgoingMessage(b"copy")))
    acker.close()
    assert broker.calls["ack"] == 0  # never delete a message whose copy was not sent
    assert broker.stats("q").in_flight == 5  # still leased: it comes back after its lease
    assert any("send of 1 message(s) failed" in r.getMessage() for r in caplog.records)
