"""Celery's rate_limit: the syntax, the token bucket (an injected clock, never wall time) and the
worker holding a message over its rate in its buffer while other tasks run."""

from __future__ import annotations

import pytest
from worker_helpers import Running, wait_for

from cloudq import states
from cloudq.errors import ConfigurationError
from cloudq.interfaces import Delivery
from cloudq.runtime.inbox import Held, Inbox
from cloudq.runtime.ratelimit import RateLimits, TokenBucket, later
from cloudq.runtime.worker import Worker
from cloudq.testing.clock import FakeClock
from cloudq.util.rates import parse_rate

pytestmark = pytest.mark.timeout(60)


@pytest.mark.parametrize(
    ("value", "per_second"),
    [("10/s", 10.0), ("100/m", 100 / 60), ("1000/h", 1000 / 3600), ("5", 5.0), (2, 2.0), (0.5, 0.5), ("3 / m", 0.05)],
)
def test_celery_rate_syntax(value, per_second):
    assert parse_rate(value, "t") == pytest.approx(per_second)


@pytest.mark.parametrize("value", [None, 0, "0", "0/m"])
def test_no_rate_or_zero_means_no_limit_as_in_celery(value):
    assert parse_rate(value, "t") is None


@pytest.mark.parametrize("value", ["10/d", "ten/s", "-1/s", "", True, [1], "inf", "nan/s"])
def test_a_bad_rate_is_one_precise_error(value):
    with pytest.raises(ConfigurationError, match=r"^t: rate_limit must be like '10/s'") as caught:
        parse_rate(value, "t")
    assert "\n" not in str(caught.value)


def test_the_bucket_holds_one_token_refilled_at_the_rate():
    clock = FakeClock()
    bucket = TokenBucket(2.0, clock)  # one every 0.5 s, no burst after an idle spell
    assert bucket.take() == 0.0
    assert bucket.take() == pytest.approx(0.5)
    clock.now += 0.2
    assert bucket.take() == pytest.approx(0.3)
    clock.now += 0.3
    assert bucket.take() == 0.0
    clock.now += 3600
    assert bucket.take() == 0.0
    assert bucket.take() == pytest.approx(0.5)


def test_declaration_validates_and_the_default_setting_applies(make_app):
    app = make_app(default_rate_limit="60/m")

    @app.task()
    def plain() -> None: ...

    @app.task(rate_limit="10/s")
    def fast() -> None: ...

    @app.task(rate_limit=0)
    def free() -> None: ...

    assert (plain.rate_limit, fast.rate_limit, free.rate_limit) == ("60/m", "10/s", None)  # as Celery shows them
    assert plain.rate_per_s == pytest.approx(1.0) and fast.rate_per_s == 10.0 and free.rate_per_s is None
    with pytest.raises(ConfigurationError, match=r"^task .*bad: rate_limit must be like"):

        @app.task(rate_limit="10/day")
        def bad() -> None: ...


def test_a_bad_default_rate_names_the_setting(make_app):
    with pytest.raises(ConfigurationError, match="invalid setting 'default_rate_limit'.*'often'"):
        make_app(default_rate_limit="often").settings


def test_buckets_are_per_task_name_and_shared_by_every_caller(make_app):
    app = make_app()

    @app.task(rate_limit="1/m")
    def slow() -> None: ...

    @app.task()
    def other() -> None: ...

    clock = FakeClock()
    limits = RateLimits(app, clock, clock.sleep)
    first, second = slow.delay(), slow.delay()
    free = other.delay()
    deliveries = {d.message_id: d for d in app.broker.receive(app.queues()[0], 10, 60)}
    by_id = {h.id: d for h in (first, second, free) for d in deliveries.values() if h.id.encode() in d.body}
    assert limits.delay(by_id[first.id]) == 0.0
    assert limits.delay(by_id[second.id]) == pytest.approx(60.0)
    assert limits.delay(by_id[free.id]) == 0.0  # another task's messages are never held back
    assert limits.delay(Delivery(b"not json", None, 1, "default")) == 0.0  # the executor dead-letters it
    limits.wait(by_id[second.id])  # the Lambda / push handlers: wait in place
    assert clock.slept == [pytest.approx(60.0)] and limits.waited == 1


def test_the_worker_holds_a_message_over_its_rate_while_other_tasks_run(make_app):
    """1/m with a clock that only the test moves: the second and third runs wait for it, leased and
    never retried, while unlimited tasks behind them run."""
    app = make_app()
    ran: list[str] = []

    @app.task(rate_limit="1/m")
    def limited(i: int) -> int:
        ran.append(f"limited {i}")
        return i

    @app.task()
    def free(i: int) -> int:
        ran.append(f"free {i}")
        return i

    held = [limited.delay(i) for i in range(3)]
    others = [free.delay(i) for i in range(3)]
    clock = FakeClock()
    worker = Worker(app, concurrency=2, poll_wait_s=0.05)
    worker.rate_limits = RateLimits(app, clock)
    with Running(worker):
        wait_for(lambda: all(h.ready() for h in others) and held[0].ready())
        assert [h.get(timeout=1) for h in others] == [0, 1, 2]
        assert sorted(r for r in ran if r.startswith("limited")) == ["limited 0"]
        assert worker.holding == 2  # still leased by this worker, not given back
        clock.now += 60
        wait_for(lambda: held[1].ready())
        assert not held[2].ready()
        clock.now += 60
        wait_for(lambda: held[2].ready())
    assert [h.get(timeout=1) for h in held] == [0, 1, 2]
    assert all(h.record is not None and h.record.attempts == 1 and h.state == states.SUCCESS for h in held)
    assert worker.counts.get("ack") == 6 and not worker.counts.get("nack") and not worker.counts.get("dead_letter")


def test_a_message_sent_again_for_its_token_keeps_its_envelope():
    """Where a runtime cannot hold a message until its token (a Lambda invocation), it is sent
    again unchanged: the envelope's attempt count is the same, so no delivery is spent."""
    delivery = Delivery(b'{"id": "t1", "task": "x", "retries": 2}', None, 3, "default", "m1", {"task": "x"}, None)
    outcome = later(delivery, 3600.0, 900.0)
    assert outcome.message.body == delivery.body and outcome.message.attributes == {"task": "x"}
    assert outcome.message.delay_s == 900.0  # the broker's limit: it waits again when it comes back
    assert outcome.event == "rate-limited"
    assert later(delivery, 5.0, None).message.delay_s == 5.0


class OneBatch:
    """A consumer that leases one prepared batch, then nothing: the inbox's only collaborator."""

    def __init__(self, batch: list[Delivery]) -> None:
        self.batch = batch

    def fetch(self, want: int, idle: bool, max_wait_s: float | None = None) -> list[Held]:
        batch, self.batch = self.batch, []
        return [Held(delivery, float("inf")) for delivery in batch]


def test_a_held_back_message_keeps_its_ordering_key_in_order():
    """A rate-limited message of key k holds back the later message of k, not other keys' work."""

    def delivery(name: str, key: str | None) -> Delivery:
        return Delivery(b"{}", None, 1, "q", name, {"task": name}, key)

    first, second, other = delivery("limited", "k"), delivery("free", "k"), delivery("free-too", None)
    inbox = Inbox(10, OneBatch([first, second, other]), lambda _: None, gate=lambda d: 5.0 if d is first else 0.0)
    taken = inbox.take()
    assert taken is not None and taken.delivery is other
    assert {h.delivery.message_id for h in inbox.held()} == {"limited", "free", "free-too"}
