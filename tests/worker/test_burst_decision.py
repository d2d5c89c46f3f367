"""Burst mode's exit decision (cloudq.runtime.burst) on the in-process broker, with a fake clock."""

from __future__ import annotations

from cloudq.backends.memory import MemoryBroker
from cloudq.interfaces import OutgoingMessage
from cloudq.runtime.burst import Burst
from cloudq.runtime.givebacks import GiveBacks


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def burst(broker: MemoryBroker, clock: Clock, max_wait_s: float = 60.0) -> tuple[Burst, GiveBacks]:
    givebacks = GiveBacks(slack_s=5.0, clock=clock)
    return Burst(broker, ["q"], givebacks, max_wait_s, settle=lambda: None, clock=clock), givebacks


def test_a_retry_counted_as_in_flight_keeps_burst_waiting_until_it_is_due() -> None:
    broker, clock = MemoryBroker(), Clock()
    check, givebacks = burst(broker, clock)
    [delivery] = (broker.send("q", [OutgoingMessage(b"x")]), broker.receive("q", 1, 600.0))[1]
    givebacks.add([delivery.message_id], 30.0)  # leased, as SQS reports a visibility-change retry
    assert broker.stats("q").delayed == 0
    assert not check.drained()
    clock.now += 34.0  # due, and inside the slack: still expected
    assert not check.drained()
    check.received([delivery])  # it came back: nothing is expected any more
    assert check.drained()


def test_work_due_beyond_max_wait_does_not_keep_burst_alive_and_is_reported() -> None:
    broker, clock = MemoryBroker(), Clock()
    check, givebacks = burst(broker, clock, max_wait_s=10.0)
    givebacks.add(["far"], 86400.0)
    assert check.drained()
    assert "1 delayed message(s): 1 due at " in check.summary


def test_delayed_work_of_unknown_due_time_is_waited_for_at_most_max_wait_from_going_idle() -> None:
    broker, clock = MemoryBroker(), Clock()
    broker.send("q", [OutgoingMessage(b"x", delay_s=86400.0)])
    check, _ = burst(broker, clock, max_wait_s=10.0)
    assert not check.drained()
    clock.now += 9.0
    assert not check.drained()
    check.received([])  # work arrived: the bound starts again at the next idle check
    clock.now += 9.0
    assert not check.drained()  # idle again from here
    clock.now += 9.0
    assert not check.drained()
    clock.now += 1.0
    assert check.drained()
    assert "1 at a time the broker does not report" in check.summary
