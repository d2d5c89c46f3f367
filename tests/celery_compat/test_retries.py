"""Celery's retry semantics (docs: Tasks → Retrying, Automatic retry for known exceptions).

A task retries only when asked; ``autoretry_for``/``retry_kwargs``/``retry_backoff``/
``default_retry_delay`` mean what they mean in Celery; ``self.retry()`` raises; a lost worker's
redelivery is not a retry."""

from __future__ import annotations

from typing import Any

import pytest

from cloudq import App, MaxRetriesExceededError, states
from cloudq.retry import FOREVER_LOST_DELIVERIES, RetryPolicy
from cloudq.runtime.executor import Ack, DeadLetter, Requeue, RetryIn

from .conftest import drain


def test_a_task_that_raises_fails_at_once_without_retries(app: App) -> None:
    runs: list[int] = []

    @app.task()
    def charge(amount: int) -> None:  # side effects never written to be repeated
        runs.append(amount)
        raise ConnectionError("payment gateway down")

    result = charge.delay(10)
    outcomes = drain(app, wait_delays=True)
    assert runs == [10]
    assert [type(o) for o in outcomes] == [DeadLetter]
    with pytest.raises(ConnectionError):
        result.get(timeout=1)
    assert result.state == states.FAILURE


def test_autoretry_for_with_retry_kwargs_fails_with_the_original_exception(app: App) -> None:
    runs: list[int] = []

    @app.task(autoretry_for=(ConnectionError,), retry_kwargs={"max_retries": 5, "countdown": 2})
    def refresh_timeline(user: str) -> None:
        runs.append(1)
        raise ConnectionError(f"twitter down for {user}")

    result = refresh_timeline.delay("ann")
    outcomes = drain(app, wait_delays=True)
    assert outcomes[:5] == [RetryIn(2.0)] * 5  # retry_kwargs' countdown (retry_backoff is off)
    assert isinstance(outcomes[5], DeadLetter) and len(outcomes) == 6
    assert len(runs) == 6  # the first run + max_retries=5
    with pytest.raises(ConnectionError, match="twitter down for ann"):
        result.get(timeout=1)


def test_autoretry_without_countdown_waits_default_retry_delay(app: App) -> None:
    @app.task(autoretry_for=(KeyError,))
    def lookup() -> None:
        raise KeyError("k")

    @app.task(autoretry_for=(KeyError,), default_retry_delay=30)
    def lookup_soon() -> None:
        raise KeyError("k")

    assert lookup.retry_policy.default_delay == 180  # Celery's default_retry_delay
    lookup.delay()
    lookup_soon.delay()
    assert sorted(o.delay_s for o in drain(app, limit=2) if isinstance(o, RetryIn)) == [30.0, 180.0]


def test_retry_backoff_is_exponential_capped_and_jittered() -> None:
    assert RetryPolicy().next_delay(1, ValueError()) is None  # nothing retries unless listed
    assert RetryPolicy(retry_on=(OSError,)).next_delay(1, OSError()) == 180.0  # backoff off: default delay
    policy = RetryPolicy(retry_on=(OSError,), backoff=True, backoff_max=600, jitter=False, max_retries=20)
    assert [policy.next_delay(n, OSError()) for n in (1, 2, 3, 4)] == [1.0, 2.0, 4.0, 8.0]
    assert policy.next_delay(15, OSError()) == 600.0  # retry_backoff_max
    factor = RetryPolicy(retry_on=(OSError,), backoff=5, jitter=False, max_retries=20)
    assert [factor.next_delay(n, OSError()) for n in (1, 2, 3)] == [5.0, 10.0, 20.0]
    jittered = RetryPolicy(retry_on=(OSError,), backoff=5, jitter=True, max_retries=20)
    assert jittered.next_delay(3, OSError(), rand=lambda: 0.5) == 10.0  # full jitter: uniform in [0, 20]


def test_dont_autoretry_for_and_unlisted_exceptions_fail_at_once(app: App) -> None:
    @app.task(autoretry_for=(Exception,), dont_autoretry_for=(ValueError,))
    def parse() -> None:
        raise ValueError("bad input")

    parse.delay()
    (outcome,) = drain(app)
    assert isinstance(outcome, DeadLetter) and "not retryable" in outcome.reason


def test_app_wide_retry_on_setting_retries_every_task(make_app: Any) -> None:
    app = make_app(retry_on=["ConnectionError"], retry_backoff=0)
    alias = make_app(autoretry_for=[TimeoutError])
    calls: list[int] = []

    @app.task(max_retries=2)
    def flaky() -> None:
        calls.append(1)
        raise ConnectionError("down")

    @alias.task()
    def slow() -> None:
        raise TimeoutError

    flaky.delay()
    drain(app, wait_delays=True)
    assert len(calls) == 3
    assert slow.retry_policy.retry_on == (TimeoutError,)


def test_self_retry_raises_so_the_code_after_it_never_runs(app: App) -> None:
    after: list[int] = []

    @app.task(bind=True, max_retries=1)
    def send_mail(self: Any) -> str:
        self.retry(countdown=0)  # no `raise`: Celery's retry raises by itself
        after.append(1)
        return "sent"

    result = send_mail.delay()
    outcomes = drain(app, wait_delays=True)
    assert after == []
    assert isinstance(outcomes[-1], DeadLetter)
    with pytest.raises(MaxRetriesExceededError):  # no exc= given: Celery's MaxRetriesExceededError
        result.get(timeout=1)


def test_raise_self_retry_with_exc_fails_with_that_exception_when_retries_run_out(app: App) -> None:
    runs: list[int] = []

    @app.task(bind=True, default_retry_delay=30 * 60)
    def add(self: Any, x: int, y: int) -> int:
        runs.append(self.request.retries)
        try:
            raise OSError("smtp down")
        except OSError as exc:
            raise self.retry(exc=exc, countdown=0, max_retries=2) from exc

    result = add.delay(2, 2)
    drain(app, wait_delays=True)
    assert runs == [0, 1, 2]
    with pytest.raises(OSError, match="smtp down"):
        result.get(timeout=1)


def test_retry_without_countdown_waits_default_retry_delay(app: App) -> None:
    @app.task(bind=True, default_retry_delay=30 * 60)
    def later(self: Any) -> None:
        raise self.retry()

    later.delay()
    (outcome,) = drain(app, limit=1)
    delay = outcome.delay_s if isinstance(outcome, RetryIn) else outcome.message.delay_s  # type: ignore[union-attr]
    assert delay == 1800.0


def test_retry_with_new_args_kwargs_and_eta(app: App) -> None:
    seen: list[tuple[int, str]] = []

    @app.task(bind=True, max_retries=3)
    def count(self: Any, n: int, tag: str = "first") -> int:
        seen.append((n, tag))
        if n < 2:
            raise self.retry(args=(n + 1,), kwargs={"tag": "again"}, countdown=0)
        return n

    result = count.delay(0)
    drain(app, wait_delays=True)
    assert seen == [(0, "first"), (1, "again"), (2, "again")]
    assert result.get(timeout=1) == 2


def test_retry_to_another_queue(app: App) -> None:
    @app.task(bind=True, max_retries=1)
    def move(self: Any) -> str:
        if self.request.queue != "slow":
            raise self.retry(queue="slow", countdown=0)
        return "ran on slow"

    result = move.delay()
    (outcome,) = drain(app)
    assert outcome == Ack("retried")
    drain(app, queue="slow")
    assert result.get(timeout=1) == "ran on slow"


def test_retry_throw_false_retries_after_the_task_returns(app: App) -> None:
    runs: list[int] = []

    kinds: list[str] = []

    @app.task(bind=True, max_retries=1)
    def poll(self: Any) -> str:
        runs.append(self.request.retries)
        if self.request.retries == 0:
            returned = self.retry(countdown=0, throw=False)
            kinds.append(type(returned).__name__)
        return "done"

    result = poll.delay()
    drain(app, wait_delays=True)
    assert runs == [0, 1] and kinds == ["Retry"]
    assert result.get(timeout=1) == "done"


def test_max_retries_none_retries_forever(app: App) -> None:
    runs: list[int] = []

    @app.task(bind=True, max_retries=None)
    def stubborn(self: Any) -> int:
        runs.append(1)
        if len(runs) < 15:  # more than the default 3 and the lost-delivery bound
            raise self.retry(countdown=0)
        return len(runs)

    assert stubborn.retry_policy.max_retries is None
    result = stubborn.delay()
    outcomes = drain(app, wait_delays=True)
    assert result.get(timeout=1) == 15
    assert all(isinstance(o, Requeue) for o in outcomes[:-1])  # each retry a new message


def test_a_lost_worker_is_redelivered_within_max_retries_whatever_retry_on_says(app: App) -> None:
    runs: list[int] = []

    @app.task(max_retries=2)
    def crashy() -> None:
        runs.append(1)

    result = crashy.delay()
    # three deliveries whose worker died (the lease expired, no outcome): the fourth is dead-lettered
    for _ in range(3):
        (delivery,) = app.broker.receive("default", 1, 30.0)
        app.broker.nack([delivery], 0.0)
    (delivery,) = app.broker.receive("default", 1, 30.0)
    outcome = app.executor.execute(delivery)
    assert isinstance(outcome, DeadLetter) and outcome.reason.startswith("WorkerLost")
    assert runs == []
    assert result.record is not None and result.record.error_type == "cloudq.errors.WorkerLost"


def test_a_lost_process_runs_again_without_autoretry(app: App) -> None:
    @app.task(max_retries=1, retry_on=(ValueError,))
    def job() -> None:
        pass

    job.delay()
    (delivery,) = app.broker.receive("default", 1, 30.0)
    again = app.executor.lost(delivery, "child process died")  # not in retry_on (empty), still run again
    assert isinstance(again, (RetryIn, Requeue))
    app.broker.nack([delivery], 0.0)
    (delivery,) = app.broker.receive("default", 1, 30.0)
    final = app.executor.lost(delivery, "child process died")
    assert isinstance(final, DeadLetter) and "WorkerLost" in final.reason


def test_forever_tasks_are_still_bounded_when_their_worker_keeps_dying(app: App) -> None:
    @app.task(max_retries=None)
    def crashy() -> None:
        pass

    def delivered(times: int) -> Any:
        crashy.delay()
        for _ in range(times - 1):  # each delivery's worker died: the lease expires, no outcome
            (delivery,) = app.broker.receive("default", 1, 30.0)
            app.broker.nack([delivery], 0.0)
        (delivery,) = app.broker.receive("default", 1, 30.0)
        outcome = app.executor.execute(delivery)
        app.broker.ack([delivery])
        return outcome

    assert delivered(5) == Ack()  # beyond the default 3 retries: max_retries=None is not 3
    outcome = delivered(FOREVER_LOST_DELIVERIES + 1)
    assert isinstance(outcome, DeadLetter) and outcome.reason.startswith("WorkerLost")
