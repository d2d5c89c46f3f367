"""cloudq's own failures on a message are bounded: given back with a backoff while the message
has deliveries left, then dead-lettered as InternalError with the traceback; never a loop."""

from __future__ import annotations

import json
from typing import Any

import pytest

from cloudq import App
from cloudq.envelope import Envelope, decode
from cloudq.errors import BackendUnavailable, ResultStoreError
from cloudq.interfaces import Delivery, ResultRecord
from cloudq.runtime.executor import OUTAGE_DELIVERIES, DeadLetter, Requeue, RetryIn


class Refusing:
    """A real memory result store that refuses every write, as a store refuses a value it cannot
    hold (Firestore and an out-of-range integer)."""

    def __init__(self, inner: Any) -> None:
        self.inner = inner
        self.refused = 0

    def set(self, record: ResultRecord) -> bool:
        self.refused += 1
        raise ResultStoreError(f"value out of range in record {record.task_id}")

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)


@pytest.fixture
def app() -> App:
    app = App("internal", broker="memory://", results="memory://")
    app._results = Refusing(app.results)  # type: ignore[assignment]
    return app


def _body(app: App, name: str, retries: int = 0) -> bytes:
    return Envelope(id="t1", task=name, args=[1], retries=retries).encode()


def test_internal_errors_are_given_back_until_the_tasks_deliveries_are_spent_then_dead_lettered(app, caplog):
    @app.task(max_retries=2)
    def double(x: int) -> int:
        return 2 * x

    body = _body(app, double.name)
    outcomes = [app.executor.execute(Delivery(body, None, count, "default")) for count in (1, 2, 3)]
    assert [type(o) for o in outcomes] == [RetryIn, RetryIn, DeadLetter]
    assert [o.delay_s for o in outcomes[:2]] == [1.0, 2.0]  # type: ignore[union-attr]
    reason = outcomes[2].reason  # type: ignore[union-attr]
    assert reason.startswith("InternalError: ResultStoreError: value out of range in record t1")
    assert "delivery 3 of 3" in reason and "Traceback (most recent call last)" in reason
    # the store refused the InternalError record too: logged, and dead-lettered anyway
    assert any("could not record the failure of task t1" in r.getMessage() for r in caplog.records)


def test_an_internal_error_on_an_unknown_task_is_bounded_by_the_apps_default():
    app = App("internal", broker="memory://", results="memory://", max_retries=1)
    body = _body(app, "gone")
    outcome = app.executor.internal_error(Delivery(body, None, 2, "default"), RuntimeError("boom"))
    assert isinstance(outcome, DeadLetter) and outcome.reason.startswith("InternalError: RuntimeError: boom")
    assert isinstance(app.executor.internal_error(Delivery(body, None, 1, "default"), RuntimeError("x")), RetryIn)
    record = app.results.get("t1")
    assert record is not None and record.error_type == "cloudq.errors.InternalError"


def test_bad_input_is_dead_lettered_even_when_the_store_refuses_its_failure_record(app):
    outcome = app.executor.execute(Delivery(_body(app, "no.such.task"), None, 1, "default"))
    assert isinstance(outcome, DeadLetter) and outcome.reason.startswith("UnknownTask")
    assert app.results.refused == 1


def test_without_delivery_counts_the_attempt_travels_in_the_envelope(app):
    """A delivery the broker did not count (delivery_count 0: a push without deliveryAttempt) is
    re-sent with its attempt in the envelope, so the bound holds there too."""

    @app.task(max_retries=1)
    def double(x: int) -> int:
        return 2 * x

    first = app.executor.execute(Delivery(_body(app, double.name), None, 0, "default"))
    assert isinstance(first, Requeue)
    again = decode(first.message.body)
    assert again.retries == 1 and first.message.delay_s == 1.0
    due_now = json.dumps({**json.loads(first.message.body), "eta": None}).encode()
    last = app.executor.execute(Delivery(due_now, None, 0, "default"))
    assert isinstance(last, DeadLetter) and last.reason.startswith("InternalError: ResultStoreError")


def test_an_outage_gets_more_deliveries_than_a_task_with_few_retries_before_it_is_dead_lettered():
    """An unreachable store is not the message's fault: a max_retries=0 task is given back through
    a short outage, and still dead-lettered (not looped) when the outage outlasts the budget."""
    app = App("outage", broker="memory://", results="memory://")

    @app.task(max_retries=0)
    def once(x: int) -> int:
        return x

    body = _body(app, once.name)
    down = BackendUnavailable("cannot reach dynamodb at http://127.0.0.1:1")
    outcomes = [app.executor.internal_error(Delivery(body, None, n, "default"), down) for n in range(1, 13)]
    assert all(isinstance(o, RetryIn) for o in outcomes[: OUTAGE_DELIVERIES - 1])
    assert [o.delay_s for o in outcomes[:7]] == [1.0, 2.0, 4.0, 8.0, 16.0, 32.0, 60.0]  # type: ignore[union-attr]
    last = outcomes[OUTAGE_DELIVERIES - 1]
    assert isinstance(last, DeadLetter) and last.reason.startswith("InternalError: BackendUnavailable")
    # any other internal error on the same task is bounded by the task's own deliveries
    assert isinstance(app.executor.internal_error(Delivery(body, None, 1, "default"), RuntimeError("x")), DeadLetter)
