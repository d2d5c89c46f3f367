"""The rolling series a presence record carries (``cloudq/runtime/series.py``): per-minute figures
with an injected clock, the minute rollover and the hour's end, the block folding that keeps the
record small, merging across workers, quantile estimates, bounded size; and the Tracker filling it
(queue wait from the envelope's send time, first deliveries only)."""

from __future__ import annotations

import json
import random

import pytest

from cloudq.interfaces import Delivery
from cloudq.runtime import series as ts
from cloudq.runtime.executor import Ack, DeadLetter, RetryIn
from cloudq.runtime.presence import Presence, Tracker

T0 = 1_800_000_000.0  # a minute boundary (30 000 000 minutes)


class Clock:
    def __init__(self, now: float = T0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def decoded(rolling: ts.Rolling) -> ts.Series:
    found = ts.decode(json.loads(json.dumps(rolling.encode())))  # through JSON, as a store keeps it
    assert found is not None
    return found


def test_runs_count_in_the_minute_they_finish_and_roll_over() -> None:
    clock = Clock(T0 + 5)
    rolling = ts.Rolling(clock)
    rolling.record("default", "succeeded", 0.02, 1.5)
    rolling.record("default", "failed", 0.5, None)
    clock.now = T0 + 59.9
    rolling.record("default", "retried", 2.0, 0.1)
    clock.now = T0 + 60  # the next minute
    rolling.record("default", "succeeded", 0.04, None)
    rolling.record("low", "succeeded", 7.0, None)
    found = decoded(rolling)
    first, second = found.queues["default"][30_000_000], found.queues["default"][30_000_001]
    assert (first.succeeded, first.failed, first.retried, first.run.count, first.wait.count) == (1, 1, 1, 3, 2)
    assert (first.run.sum_ms, first.run.max_ms, first.wait.sum_ms, first.wait.max_ms) == (2520, 2000, 1600, 1500)
    assert (second.succeeded, second.run.count, second.wait.count) == (1, 1, 0)
    assert found.queues["low"][30_000_001].run.max_ms == 7000
    assert rolling.encode() == rolling.encode(), "encoding changes nothing"


def test_minutes_older_than_the_hour_are_dropped_and_an_idle_worker_carries_none() -> None:
    clock = Clock()
    rolling = ts.Rolling(clock)
    assert rolling.encode() is None
    rolling.record("default", "succeeded", 0.1, None)
    clock.now = T0 + 59 * 60  # the 60th minute: the first is still in the window
    assert sum(m.finished for m in decoded(rolling).queues["default"].values()) == 1
    clock.now = T0 + 60 * 60
    assert rolling.encode() is None, "an hour later the minute is gone"


def test_older_minutes_travel_in_blocks_and_the_last_ones_one_by_one() -> None:
    clock = Clock()
    rolling = ts.Rolling(clock)
    for minute in range(60):
        clock.now = T0 + minute * 60 + 1
        for _ in range(minute + 1):  # minute m finishes m+1 runs
            rolling.record("default", "succeeded", 0.1, None)
    found = decoded(rolling)
    now = 30_000_059
    assert found.fine == ts.fine_from(now) and now - found.fine + 1 >= ts.FINE_MIN
    starts = sorted(found.queues["default"])
    fine = [s for s in starts if s >= found.fine]
    assert fine == list(range(found.fine, now + 1)), "the last minutes one by one"
    blocks = [s for s in starts if s < found.fine]
    assert all(s % ts.BLOCK_MIN == 0 for s in blocks) and len(blocks) == (found.fine - 30_000_000) // ts.BLOCK_MIN
    assert found.queues["default"][30_000_000].succeeded == sum(range(1, 6)), "a block adds up its minutes"
    assert sum(m.finished for m in found.queues["default"].values()) == sum(range(1, 61)), "nothing lost"
    assert found.span(blocks[0]) == ts.BLOCK_MIN and found.span(now) == 1


def test_workers_merge_by_adding_buckets_and_taking_the_larger_max() -> None:
    a_clock, b_clock = Clock(T0 + 13 * 60), Clock(T0 + 13 * 60)
    a, b = ts.Rolling(a_clock), ts.Rolling(b_clock)
    a.record("default", "succeeded", 0.03, 0.5)  # both ran in minute 13
    b.record("default", "succeeded", 4.0, 0.5)
    a.record("default", "failed", 0.3, None)
    b.record("low", "retried", 1.0, None)
    b_clock.now = T0 + 40 * 60  # b wrote later: its minute 13 travels in the 10-15 block
    a_series, b_series = decoded(a), decoded(b)
    assert 30_000_013 in a_series.queues["default"] and 30_000_010 in b_series.queues["default"]
    merged = ts.merge([a_series, b_series])
    assert merged is not None and merged.fine == b_series.fine > a_series.fine
    block = merged.queues["default"][30_000_010]  # a's minute folded to match b's block
    assert list(merged.queues["default"]) == [30_000_010] and merged.span(30_000_010) == ts.BLOCK_MIN
    assert (block.succeeded, block.failed, block.run.count, block.run.max_ms, block.run.sum_ms) == (2, 1, 3, 4000, 4330)
    assert (block.wait.count, block.wait.sum_ms) == (2, 1000)
    assert sum(m.retried for m in merged.total().values()) == 1
    assert a_series.queues["default"][30_000_013].run.count == 2, "merging changed no input"
    assert ts.merge([]) is None


def test_quantiles_are_estimated_within_their_bucket_and_never_past_the_max() -> None:
    latency = ts.Latency()
    values = [0.001 * i for i in range(1, 1001)]  # 1 ms .. 1 s, uniform
    for v in values:
        latency.add(v)
    p50, p95 = latency.quantile(0.5), latency.quantile(0.95)
    assert p50 is not None and p95 is not None
    assert 0.2 <= p50 <= 1.0 and abs(p50 - 0.5) < 0.05  # the (0.2, 1] bucket, interpolated
    assert abs(p95 - 0.95) < 0.02 and p95 <= latency.max_ms / 1000
    one = ts.Latency()
    one.add(400.0)  # past the last bound (300 s): the open bucket ends at the max
    assert one.quantile(0.95) == 395.0 and one.quantile(1.0) == 400.0 and ts.Latency().quantile(0.5) is None


def test_the_record_stays_small_and_bounded_at_an_hour_of_three_busy_queues() -> None:
    clock = Clock()
    rolling = ts.Rolling(clock)
    spread = random.Random(7)
    for minute in range(120):  # two hours: the first is dropped
        clock.now = T0 + minute * 60
        for queue in ("default", "emails", "reports"):
            for _ in range(200):
                outcome = spread.choice(("succeeded",) * 8 + ("failed", "retried"))
                rolling.record(queue, outcome, spread.lognormvariate(-2, 1.5), spread.lognormvariate(0, 2))
    encoded = json.dumps(rolling.encode(), separators=(",", ":"))
    found = decoded(rolling)
    assert all(len(minutes) <= ts.FINE_MIN + 4 + ts.WINDOW_MIN // ts.BLOCK_MIN for minutes in found.queues.values())
    assert len(encoded) < 8_000, len(encoded)  # about 2 KB a busy queue (DynamoDB's item limit: 400 KB)
    print(f"\nseries of 3 busy queues x 60 minutes: {len(encoded)} bytes of JSON")


def test_runs_from_more_queues_than_the_cap_add_up_under_other() -> None:
    rolling = ts.Rolling(Clock())
    for i in range(ts.MAX_QUEUES + 5):
        rolling.record(f"q{i}", "succeeded", 0.1, None)
    found = decoded(rolling)
    assert len(found.queues) == ts.MAX_QUEUES + 1
    assert sum(m.succeeded for m in found.queues[ts.OTHER].values()) == 5


def test_a_malformed_or_foreign_series_reads_as_none() -> None:
    for value in (
        None,
        "x",
        {"v": 2, "at": 1, "fine": 0, "q": {}},
        {"v": 1},
        {"v": 1, "at": 5, "fine": 1, "q": {"d": [[0]]}},
    ):
        assert ts.decode(value) is None


def delivery(body: dict[str, object], count: int = 1, queue: str = "default") -> Delivery:
    return Delivery(json.dumps({"v": 1, "id": "t", "task": "n", **body}).encode(), "r", count, queue)


def test_the_tracker_records_run_time_and_the_wait_of_first_deliveries() -> None:
    clock = Clock(T0 + 10)
    tracker = Tracker(clock)

    def run_for(seconds: float, outcome: object) -> object:
        def call(_: Delivery) -> object:
            clock.now += seconds
            return outcome

        return call

    tracker.run(run_for(0.25, Ack()), delivery({"sent_at": T0 + 7}))  # waited 3 s
    tracker.run(run_for(1.0, RetryIn(5.0)), delivery({"sent_at": T0, "eta": T0 + 9}))  # eta passed 1.25 s ago
    tracker.run(run_for(2.0, DeadLetter("x")), delivery({"sent_at": T0}, count=2))  # a redelivery: no wait
    tracker.run(run_for(0.5, Ack("duplicate")), delivery({"sent_at": T0}))  # not a run: not counted
    tracker.run(run_for(0.1, Ack()), delivery({"sent_at": T0 + 3600}))  # a producer clock ahead: 0 s
    found = decoded(tracker.series).queues["default"][30_000_000]
    assert (found.succeeded, found.retried, found.failed) == (2, 1, 1)
    assert (found.run.count, found.run.sum_ms, found.run.max_ms) == (4, 3350, 2000)
    assert (found.wait.count, found.wait.sum_ms, found.wait.max_ms) == (3, 3000 + 1250, 3000)


def test_the_tracker_samples_the_wait_of_a_busy_runtime_at_most_every_50_ms() -> None:
    """Reading a body's send time is a parse of the body: a runtime running thousands of tasks a
    second samples it, and the run counts stay exact."""
    clock = Clock(T0 + 10)
    tracker = Tracker(clock)
    for _ in range(100):  # 100 runs of 1 ms: 0.1 s
        clock.now += 0.001
        tracker.run(lambda d: Ack(), delivery({"sent_at": T0 + 9}))
    found = decoded(tracker.series).queues["default"][30_000_000]
    assert found.succeeded == found.run.count == 100
    assert found.wait.count == 2  # at T0 + 10.001 and the first run 50 ms later


def test_bodies_without_a_send_time_use_up_the_wait_sampling_budget_too(monkeypatch: pytest.MonkeyPatch) -> None:
    """The budget is of body parses: a runtime whose bodies tell no send time (a foreign producer's,
    dead-lettered unread) parses at most one per 50 ms, not one per run; redeliveries parse none."""
    from cloudq.runtime import presence

    parsed: list[bytes] = []
    real = presence.peek_fields

    def counting(body: bytes) -> dict[str, object]:
        parsed.append(body)
        return real(body)

    monkeypatch.setattr(presence, "peek_fields", counting)
    clock = Clock(T0 + 10)
    tracker = Tracker(clock)
    for i in range(100):  # 100 runs of 1 ms, every tenth a redelivery
        clock.now += 0.001
        tracker.run(lambda d: DeadLetter("x"), delivery({}, count=2 if i % 10 == 5 else 1))
    clock.now += 0.05
    tracker.run(lambda d: Ack(), delivery({"sent_at": T0 + 9}))
    found = decoded(tracker.series).queues["default"][30_000_000]
    assert (found.failed, found.succeeded, found.wait.count) == (100, 1, 1)
    assert len(parsed) == 3  # at T0 + 10.001, 50 ms later, and the last run's


@pytest.mark.parametrize(
    "times",
    [{"sent_at": -1e308}, {"sent_at": 10**400}, {"eta": 1e308}, {"sent_at": True}, {"sent_at": "1"}, {"eta": -5}],
    ids=str,
)
def test_a_body_with_an_impossible_send_time_is_counted_without_a_wait(times: dict[str, object]) -> None:
    """The body is not validated when its wait is read: a time no envelope could hold is ignored,
    and the run still counts (a huge number used to make the slot raise and stop)."""
    clock = Clock(T0 + 10)
    tracker = Tracker(clock)
    tracker.run(
        lambda d: Ack(), Delivery(json.dumps({"v": 1, "id": "t", "task": "n", **times}).encode(), "r", 1, "default")
    )
    found = decoded(tracker.series).queues["default"][30_000_000]
    assert (found.succeeded, found.wait.count) == (1, 0)


def test_a_latency_is_capped_and_nan_reads_as_zero() -> None:
    latency = ts.Latency()
    for seconds in (float("inf"), float("nan"), 1e300, -3.0):
        latency.add(seconds)
    assert latency.count == 4 and latency.max_ms == round(ts.MAX_SECONDS * 1000)


def test_the_presence_record_carries_the_series_only_once_something_ran() -> None:
    from cloudq.backends.memory import MemoryResultStore

    store, tracker = MemoryResultStore(), Tracker()
    presence = Presence(store, "w1", {}, 30, tracker)
    presence.beat()
    assert "series" not in store.alive()[0].info
    tracker.run(lambda d: Ack(), delivery({"sent_at": 1.0}))
    presence.beat()
    found = ts.decode(store.alive()[0].info["series"])
    assert found is not None and sum(m.succeeded for m in found.total().values()) == 1
