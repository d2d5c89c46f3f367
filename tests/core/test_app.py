"""App, Task and AsyncResult behaviour through the real executor (eager mode and direct deliveries)."""

from __future__ import annotations

import dataclasses
import json
import time
from datetime import UTC, datetime, timedelta

import pytest
from pydantic import BaseModel

from cloudq import App, AsyncResult, InvalidArguments, ResultTimeout, TaskFailed, states
from cloudq.envelope import Envelope
from cloudq.errors import ConfigurationError, InvalidOptions, NotSerializable, UnknownTask, WorkerLost
from cloudq.interfaces import Delivery
from cloudq.runtime.executor import Ack, DeadLetter, Requeue, RetryIn


class Point(BaseModel):
    x: int
    y: int


@dataclasses.dataclass
class Box:
    w: float


class CustomError(Exception):
    pass


def deliver(app: App, queue: str = "default", lease: float = 30) -> tuple[Delivery, object]:
    (delivery,) = app.broker.receive(queue, 1, lease)
    return delivery, app.executor.execute(delivery)


def test_calling_a_task_runs_it_locally(app):
    @app.task()
    def add(a: int, b: int) -> int:
        return a + b

    assert add(1, 2) == 3
    assert app.broker.stats("default").ready == 0


def test_delay_validates_before_sending(app):
    @app.task()
    def add(a: int, b: int) -> int:
        return a + b

    with pytest.raises(InvalidArguments, match="argument a: Input should be a valid integer"):
        add.delay("x", 1)
    with pytest.raises(InvalidArguments, match="missing a required argument: 'b'"):
        add.delay(1)
    with pytest.raises(InvalidArguments, match="unexpected keyword argument 'c'"):
        add.delay(1, 2, c=3)
    assert app.broker.stats("default").ready == 0


def test_send_many_sends_nothing_when_one_call_is_invalid(app):
    @app.task()
    def add(a: int, b: int) -> int:
        return a + b

    with pytest.raises(InvalidArguments):
        app.send_many([add.s(1, 2), add.s("bad", 2)])
    assert app.broker.stats("default").ready == 0


def test_success_result_and_states(app):
    @app.task()
    def add(a: int, b: int) -> int:
        return a + b

    result = add.delay(1, "2")  # lax validation coerces "2" -> 2 on the producer side
    assert result.status == states.PENDING and not result.ready()
    _, outcome = deliver(app)
    assert outcome == Ack()
    assert result.get(timeout=1) == 3
    assert result.status == states.SUCCESS and result.successful() and result.ready()
    assert AsyncResult(result.id, app=app).result == 3


def test_models_and_dataclasses_round_trip_as_arguments_and_results(app):
    seen = {}

    @app.task()
    def move(p: Point, box: Box, *rest: int, scale: float = 1.0, **extra: str) -> Point:
        seen.update(p=p, box=box, rest=rest, scale=scale, extra=extra)
        return Point(x=p.x + 1, y=p.y)

    result = move.delay(Point(x=1, y=2), Box(w=2), 3, 4, scale=2, tag="t")
    deliver(app)
    assert seen == {"p": Point(x=1, y=2), "box": Box(w=2.0), "rest": (3, 4), "scale": 2.0, "extra": {"tag": "t"}}
    assert result.get(timeout=1) == {"x": 2, "y": 2}


def test_builtin_exceptions_are_raised_as_themselves(app):
    @app.task(max_retries=0)
    def fail() -> None:
        raise ValueError("bad value")

    result = fail.delay()
    _, outcome = deliver(app)
    assert isinstance(outcome, DeadLetter) and "ValueError: bad value" in outcome.reason
    with pytest.raises(ValueError, match="bad value"):
        result.get(timeout=1)
    assert result.status == states.FAILURE and result.failed()
    assert "raise ValueError" in result.traceback


def test_custom_exceptions_of_loaded_modules_keep_remote_details(app):
    @app.task(max_retries=0)
    def fail() -> None:
        raise CustomError("nope")

    result = fail.delay()
    deliver(app)
    with pytest.raises(CustomError) as raised:  # its module is loaded: rebuilt as itself (Celery)
        result.get(timeout=1)
    info = raised.value.__cause__
    assert isinstance(info, TaskFailed)
    assert info.exc_type.endswith("test_app.CustomError")
    assert info.message == "nope"
    assert "CustomError" in info.remote_traceback
    assert isinstance(result.result, CustomError)


def test_get_times_out_with_result_timeout(app):
    @app.task()
    def noop() -> None:
        pass

    with pytest.raises(ResultTimeout, match="still PENDING"):
        noop.delay().get(timeout=0.05)


def test_retry_then_dead_letter_after_max_retries(app):
    calls = []

    @app.task(max_retries=2, autoretry_for=(ConnectionError,))
    def flaky() -> None:
        calls.append(1)
        raise ConnectionError("down")

    result = flaky.delay()
    outcomes = []
    for _ in range(3):
        delivery, outcome = deliver(app)
        outcomes.append(outcome)
        if isinstance(outcome, RetryIn):
            assert result.status == states.RETRY
            app.broker.nack([delivery], outcome.delay_s)
        elif isinstance(outcome, DeadLetter):
            app.broker.dead_letter([delivery], outcome.reason)
    assert [type(o) for o in outcomes] == [RetryIn, RetryIn, DeadLetter]
    assert "retries exhausted after attempt 3" in outcomes[-1].reason
    assert len(calls) == 3
    with pytest.raises(ConnectionError):
        result.get(timeout=1)
    (dead,) = app.broker.dead_letters("default")
    assert json.loads(dead.body)["id"] == result.id


def test_retry_on_limits_which_exceptions_retry(app):
    @app.task(max_retries=5, retry_on=ConnectionError)
    def typo() -> None:
        raise TypeError("bug")

    typo.delay()
    _, outcome = deliver(app)
    assert isinstance(outcome, DeadLetter) and "not retryable" in outcome.reason


def test_explicit_retry_with_countdown_and_request_context(app):
    attempts = []

    @app.task(bind=True, max_retries=3)
    def poll(self, n: int) -> int:
        attempts.append(self.request.attempt)
        if self.request.attempt < 2:
            raise self.retry(countdown=0.01)
        return n

    result = poll.delay(5)
    delivery, outcome = deliver(app)
    assert outcome == RetryIn(0.01)
    app.broker.nack([delivery], outcome.delay_s)
    time.sleep(0.02)
    deliver(app)
    assert result.get(timeout=1) == 5 and attempts == [1, 2]


def test_redelivery_beyond_the_last_attempt_is_dead_lettered_as_worker_lost(app):
    @app.task(max_retries=0)
    def crashy() -> None:
        pass

    result = crashy.delay()
    app.broker.receive("default", 1, 0.01)  # leased, never acked
    time.sleep(0.02)  # lease expires: as if the worker died mid-task
    _, outcome = deliver(app)
    assert isinstance(outcome, DeadLetter) and outcome.reason.startswith("WorkerLost")
    with pytest.raises(WorkerLost, match="never acknowledged"):
        result.get(timeout=1)


def test_expired_tasks_are_not_run_and_recorded(app):
    ran = []

    @app.task()
    def late() -> None:
        ran.append(1)

    result = late.apply_async(expires=datetime.now(UTC) - timedelta(seconds=1))
    _, outcome = deliver(app)
    assert outcome == Ack("expired") and ran == []
    assert result.status == states.REVOKED  # as in Celery
    assert result.record.error_type == "cloudq.errors.TaskRevokedError"


def test_eta_in_the_future_is_deferred_without_spending_an_attempt(app):
    @app.task(max_retries=0)
    def later() -> int:
        return 1

    result = later.apply_async(countdown=60)
    assert app.broker.stats("default").delayed == 1
    # a broker that delivered early (or a hop of a long delay) sends it on for the rest
    body = json.loads(app.broker._queues["default"].delayed[0][2].body)
    env = Envelope(**body)
    outcome = app.executor.execute(Delivery(env.encode(), None, 1, "default"))
    assert isinstance(outcome, Requeue) and 59 < outcome.message.delay_s <= 60
    assert json.loads(outcome.message.body)["retries"] == 0
    assert result.status == states.PENDING


def test_ignore_result_writes_nothing(app):
    @app.task(ignore_result=True)
    def fire() -> int:
        return 1

    result = fire.delay()
    deliver(app)
    assert app.results.get(result.id) is None


def test_result_expiry_reads_as_absent(monkeypatch, tmp_path):
    monkeypatch.chdir(tmp_path)
    app = App("x", broker="memory://", results="memory://", result_expires=0.05)

    @app.task()
    def one() -> int:
        return 1

    result = one.delay()
    deliver(app)
    assert result.get(timeout=1) == 1
    time.sleep(0.1)
    assert AsyncResult(result.id, app=app).status == states.PENDING


def test_non_json_result_fails_clearly(app):
    @app.task()
    def bad() -> object:
        return object()

    result = bad.delay()
    _, outcome = deliver(app)
    assert isinstance(outcome, DeadLetter) and "NotSerializable" in outcome.reason
    with pytest.raises(NotSerializable, match="result of .*bad is not JSON-serialisable"):
        result.get(timeout=1)


def test_unknown_task_in_a_message_is_dead_lettered_and_recorded(app):
    body = Envelope(id="t-unknown", task="nobody.here").encode()
    outcome = app.executor.execute(Delivery(body, None, 1, "default"))
    assert isinstance(outcome, DeadLetter)
    assert outcome.reason.startswith("UnknownTask: unknown task 'nobody.here': the module defining it")
    with pytest.raises(UnknownTask):
        AsyncResult("t-unknown", app=app).get(timeout=1)


def test_a_message_its_transport_could_not_decode_is_dead_lettered_without_running(app):
    ran = []

    @app.task()
    def act() -> None:
        ran.append(1)

    body = Envelope(id="t-forged", task=act.name).encode()
    delivery = Delivery(body, None, 1, "default", malformed="attribute 'cloudq-encoding' is base64 but the body is not")
    outcome = app.executor.execute(delivery)
    assert outcome == DeadLetter("MalformedMessage: attribute 'cloudq-encoding' is base64 but the body is not")
    assert ran == []


def test_invalid_arguments_in_a_message_are_dead_lettered(app):
    @app.task()
    def add(a: int, b: int) -> int:
        return a + b

    body = Envelope(id="t-bad", task=add.name, args=["x", 1]).encode()
    outcome = app.executor.execute(Delivery(body, None, 1, "default"))
    assert isinstance(outcome, DeadLetter) and outcome.reason.startswith("InvalidArguments")
    with pytest.raises(InvalidArguments):
        AsyncResult("t-bad", app=app).get(timeout=1)


def test_signed_app_rejects_unsigned_messages_without_running_them(monkeypatch, tmp_path):
    monkeypatch.chdir(tmp_path)
    app = App("x", broker="memory://", results="memory://", signing_key="k1")
    ran = []

    @app.task()
    def act() -> None:
        ran.append(1)

    unsigned = Envelope(id="t", task=act.name).encode()
    outcome = app.executor.execute(Delivery(unsigned, None, 1, "default"))
    assert isinstance(outcome, DeadLetter) and outcome.reason.startswith("SignatureInvalid")
    act.delay()
    deliver(app)
    assert ran == [1]


def test_time_limit_in_threads_raises_time_limit_exceeded(app):
    @app.task(time_limit=0.05, max_retries=0)
    def spin() -> None:
        end = time.monotonic() + 5
        while time.monotonic() < end:
            pass

    result = spin.delay()
    _, outcome = deliver(app)
    assert isinstance(outcome, DeadLetter) and "TimeLimitExceeded" in outcome.reason
    assert result.record.error_type == "cloudq.errors.TimeLimitExceeded"


def test_idempotent_task_runs_once_for_duplicate_deliveries(app):
    runs = []

    @app.task(idempotent=True)
    def charge(order: str) -> str:
        runs.append(order)
        return "ok"

    result = charge.apply_async(("o-1",), task_id="order-o-1")
    charge.apply_async(("o-1",), task_id="order-o-1")  # a duplicate send
    deliver(app)
    _, second = deliver(app)
    assert runs == ["o-1"] and second == Ack("duplicate")
    assert result.get(timeout=1) == "ok"


def test_duplicate_task_names_are_refused(app):
    @app.task(name="same")
    def one() -> None:
        pass

    with pytest.raises(ConfigurationError, match="already registered"):

        @app.task(name="same")
        def two() -> None:
            pass


def test_eager_mode_runs_through_the_executor_with_retries(eager_app):
    attempts = []

    @eager_app.task(max_retries=2, autoretry_for=(ConnectionError,))
    def flaky(n: int) -> int:
        attempts.append(n)
        if len(attempts) < 2:
            raise ConnectionError("once")
        return n * 2

    assert flaky.delay(4).get(timeout=1) == 8
    assert attempts == [4, 4]
    with pytest.raises(InvalidArguments):
        flaky.delay("x")


def test_async_def_tasks_run(app):
    @app.task()
    async def double(n: int) -> int:
        return n * 2

    result = double.delay(3)
    deliver(app)
    assert result.get(timeout=1) == 6


def test_routing_sends_to_the_routed_queue(monkeypatch, tmp_path):
    monkeypatch.chdir(tmp_path)
    app = App("x", broker="memory://", results="memory://", routes={"mail.*": "mail"})

    @app.task(name="mail.send")
    def send() -> None:
        pass

    @app.task(name="img.resize", queue="images")
    def resize() -> None:
        pass

    send.delay()
    resize.delay()
    resize.apply_async(queue="urgent")
    assert [app.broker.stats(q).ready for q in ("mail", "images", "urgent", "default")] == [1, 1, 1, 0]
    assert app.queues() == ["default", "images", "mail"]


def test_a_result_too_large_for_the_store_fails_the_task_instead_of_looping(app, monkeypatch):
    from cloudq.errors import ResultTooLarge

    original = app.results.set

    def limited(record):
        if record.state == states.SUCCESS and len(str(record.result)) > 1000:
            raise ResultTooLarge(f"result of {len(str(record.result))} bytes exceeds the store's 1000")
        return original(record)

    monkeypatch.setattr(app.results, "set", limited)

    @app.task()
    def big() -> str:
        return "x" * 5000

    result = big.delay()
    _, outcome = deliver(app)
    assert isinstance(outcome, DeadLetter) and outcome.reason.startswith("ResultTooLarge")
    with pytest.raises(ResultTooLarge, match="exceeds the store"):
        result.get(timeout=1)


def test_a_store_refusing_the_extended_call_gets_the_record_without_it(monkeypatch, tmp_path):
    """result_extended: a store that cannot hold the arguments (ResultTooLarge) gets the record
    with its result and lineage but without the call (the executor sets these on its own record)."""
    from cloudq.errors import ResultTooLarge

    monkeypatch.chdir(tmp_path)
    app = App("test", broker="memory://", results="memory://", result_extended=True)
    original, tried = app.results.set, []

    def limited(record):
        tried.append((record.args, record.queue))
        if record.args is not None:
            raise ResultTooLarge("arguments exceed the store's limit")
        return original(record)

    monkeypatch.setattr(app.results, "set", limited)

    @app.task()
    def echo(text: str) -> str:
        return text

    result = echo.apply_async(("x" * 50,), root_id="r-1", parent_id="p-1")
    _, outcome = deliver(app)
    assert isinstance(outcome, Ack)
    record = result.record
    assert record is not None and record.result == "x" * 50
    assert (record.args, record.kwargs, record.queue, record.worker) == (None, None, None, None)
    assert (record.root_id, record.parent_id, record.started_at is not None) == ("r-1", "p-1", True)
    assert tried == [(["x" * 50], "default"), (None, None)]
    app.close()


def test_delay_async_and_get_async_on_a_backend_without_native_async(app):
    import asyncio

    @app.task()
    def add(a: int, b: int) -> int:
        return a + b

    async def produce():
        return await add.delay_async(2, 3)

    result = asyncio.run(produce())
    with pytest.raises(InvalidArguments):
        asyncio.run(add.delay_async("x", 1))
    deliver(app)
    assert asyncio.run(result.get_async(timeout=1)) == 5
    with pytest.raises(ResultTimeout):
        asyncio.run(add.delay_async(1, 1)).get(timeout=0.01)


@pytest.mark.parametrize(
    "options",
    [
        {"eta": 1e999},
        {"eta": float("nan")},
        {"countdown": float("nan")},
        {"countdown": float("inf")},
        {"countdown": 1e300},
        {"expires": float("inf")},
        {"expires": 253402300800.0},
    ],
)
def test_send_refuses_times_no_worker_could_read(options):
    app = App("t", broker="memory://", results="memory://")

    @app.task()
    def noop() -> None:
        pass

    with pytest.raises(InvalidOptions, match=next(iter(options))):
        noop.apply_async(**options)
    assert app.broker.stats(app.queues()[0]).ready == 0  # nothing was sent
