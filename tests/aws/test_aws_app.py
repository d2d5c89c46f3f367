"""cloudq end to end on SQS + DynamoDB (+ S3) through a moto server: producer, Worker, results."""

from __future__ import annotations

import dataclasses
import json
import threading
import time

import pytest
from aws_apps import run_burst, sqs_app
from cloudq_aws.testing import MotoServer

from cloudq import App, states
from cloudq.envelope import Envelope
from cloudq.errors import MessageTooLarge, QueueNotFound
from cloudq.interfaces import OutgoingMessage
from cloudq.runtime.ratelimit import RateLimits
from cloudq.runtime.worker import Worker
from cloudq.testing.clock import FakeClock
from cloudq.testing.waiting import wait_for

pytestmark = [pytest.mark.aws, pytest.mark.timeout(120)]


def test_batch_sent_tasks_run_with_batched_calls_and_one_write_each(app: App, aws: MotoServer) -> None:
    @app.task()
    def add(a: int, b: int) -> int:
        return a + b

    app.broker.queue("default")  # create the queue before counting
    app.results.get("warm-up")  # and the table
    with aws.count_requests() as sent:
        handles = add.send_each([(i, i) for i in range(25)])
    assert sent.of("sqs") == {"SendMessageBatch": 3}
    with aws.count_requests() as worked:
        worker = run_burst(app)
    assert [h.get(timeout=5) for h in handles] == [2 * i for i in range(25)]
    calls = worked.of("sqs")
    assert calls.get("DeleteMessageBatch", 0) < 25 / 2, calls  # acks go out in batches
    assert "DeleteMessage" not in calls and "ChangeMessageVisibility" not in calls
    # one conditional write per result, and the worker's presence record at start and at stop; the
    # revoke check reads each received batch (10, 10, 5) in one BatchGetItem, plus one per revoke poll
    # if the burst outlived its interval
    assert worked.of("dynamodb") == {"PutItem": 25 + 2, "BatchGetItem": 3 + worker.revoke_polls}


def test_single_delay_is_one_send_message(app: App, aws: MotoServer) -> None:
    @app.task()
    def noop() -> None:
        return None

    app.broker.queue("default")
    with aws.count_requests() as calls:
        noop.delay()
    assert calls.of("sqs") == {"SendMessage": 1}


def test_a_task_longer_than_its_lease_runs_once(prefix: str, aws: MotoServer) -> None:
    app = sqs_app(prefix, visibility_timeout=2)
    runs: list[float] = []

    @app.task()
    def slow() -> str:
        runs.append(time.time())
        time.sleep(4.5)  # more than twice the 2 s lease: only the heartbeat keeps it leased
        return "done"

    handle = slow.delay()
    with aws.count_requests() as calls:
        worker = run_burst(app, lease_s=2)
    assert handle.get(timeout=5) == "done"
    assert len(runs) == 1
    assert worker.extended >= 2
    assert calls.of("sqs").get("ChangeMessageVisibilityBatch", 0) >= 2
    app.close()


def test_an_eta_beyond_the_sqs_delay_limit_runs_once_and_not_early(app: App, aws: MotoServer) -> None:
    # 20 minutes is more than SQS's 900 s delay: the message hops, re-enqueued by the executor.
    # Same path, shorter clock: pretend SQS's limit is 1 s and ask for 3.5 s.
    app.broker.limits = dataclasses.replace(app.broker.limits, max_delay_s=1.0)
    ran_at: list[float] = []

    @app.task()
    def stamp() -> str:
        ran_at.append(time.time())
        return "ok"

    app.broker.queue("default")
    app.results.get("warm-up")  # the table exists before the clock starts: the revoke check reads it
    eta = time.time() + 3.5
    with aws.count_requests() as calls:
        handle = stamp.apply_async(eta=eta)
        run_burst(app)
    assert handle.get(timeout=5) == "ok"
    assert len(ran_at) == 1 and ran_at[0] >= eta
    assert handle.record is not None and handle.record.attempts == 1  # hops spend no retry
    assert calls.of("sqs")["SendMessage"] >= 4  # the send and at least three hops


def test_twenty_minute_countdown_waits_as_a_delayed_message(app: App) -> None:
    @app.task()
    def later() -> None:
        return None

    handle = later.apply_async(countdown=1200)
    stats = app.broker.stats("default")
    assert (stats.ready, stats.delayed) == (0, 1)  # parked for SQS's maximum, 900 s
    assert handle.status == states.PENDING


def test_two_mebibyte_argument_travels_through_s3_and_is_deleted_after_success(
    prefix: str, bucket: str, aws: MotoServer
) -> None:
    app = sqs_app(prefix, broker_query=f"&bucket={bucket}")

    @app.task()
    def size(data: str) -> int:
        return len(data)

    payload = "z" * (2 * 1024 * 1024)
    handle = size.delay(payload)
    s3 = app.broker.clients.get("s3")
    assert s3.list_objects_v2(Bucket=bucket)["KeyCount"] == 1
    run_burst(app)
    assert handle.get(timeout=5) == len(payload)
    assert s3.list_objects_v2(Bucket=bucket)["KeyCount"] == 0
    app.close()


def test_oversize_argument_without_bucket_raises_before_sending(app: App, aws: MotoServer) -> None:
    @app.task()
    def size(data: str) -> int:
        return len(data)

    app.broker.queue("default")
    with aws.count_requests() as calls, pytest.raises(MessageTooLarge, match="1048576") as info:
        size.delay("z" * (2 * 1024 * 1024))
    assert "bucket" in str(info.value)
    assert calls.service("sqs") == 0
    assert app.broker.stats("default").ready == 0


def test_idempotent_task_delivered_twice_runs_once(app: App) -> None:
    runs: list[int] = []

    @app.task(idempotent=True)
    def charge(amount: int) -> int:
        runs.append(amount)
        return amount

    first = charge.apply_async((5,), task_id="charge-1")
    charge.apply_async((5,), task_id="charge-1")  # the same task delivered again
    run_burst(app, concurrency=1)
    assert first.get(timeout=5) == 5
    assert runs == [5]


def test_concurrent_result_writers_one_wins(app: App) -> None:
    from cloudq.interfaces import ResultRecord

    store = app.results
    store.get("warm-up")
    barrier = threading.Barrier(2)
    won: list[bool] = [False, False]

    def write(i: int) -> None:
        barrier.wait()
        won[i] = store.set(ResultRecord("race-1", states.SUCCESS, "t", result=i))

    threads = [threading.Thread(target=write, args=(i,)) for i in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(won) == [False, True]
    assert store.get("race-1").result == won.index(True)  # type: ignore[union-attr]


def test_bad_messages_are_dead_lettered_with_their_reason(app: App) -> None:
    @app.task(name="add")
    def add(a: int, b: int) -> int:
        return a + b

    bodies = {
        "MalformedMessage": b"{not json",
        "UnknownTask": Envelope(id="u-1", task="nope").encode(),
        "InvalidArguments": Envelope(id="i-1", task="add", args=["x", 1]).encode(),
        "UnsupportedVersion": json.dumps({"v": 99, "id": "v-1", "task": "add"}).encode(),
    }
    app.broker.send("default", [OutgoingMessage(body) for body in bodies.values()])
    good = add.delay(2, 3)  # the worker keeps going
    run_burst(app)
    assert good.get(timeout=5) == 5
    letters = app.broker.dead_letters("default")
    reasons = sorted(letter.reason.split(":")[0] for letter in letters)
    assert reasons == sorted(bodies)
    assert {letter.body for letter in letters} == set(bodies.values())
    # the reason is an SQS message attribute on the dead-letter queue
    sqs = app.broker.clients.get("sqs")
    url = app.broker.dead_letter_queue("default")
    raw = sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=10, MessageAttributeNames=["All"], VisibilityTimeout=0)
    assert all("cloudq-dead-letter-reason" in m["MessageAttributes"] for m in raw["Messages"])
    assert app.AsyncResult("i-1").status == states.FAILURE


def test_missing_queue_without_create_missing_fails_on_send(prefix: str) -> None:
    app = sqs_app(prefix, create_missing=False)

    @app.task()
    def noop() -> None:
        return None

    with pytest.raises(QueueNotFound, match="cloudq deploy"):
        noop.delay()
    app.close()


def test_a_released_message_keeps_its_retry_budget(app: App) -> None:
    # a worker that stops gives back prefetched messages it never started; on SQS the receive is
    # not undone, so release resends the message carrying its count: the task still runs
    ran: list[int] = []

    @app.task(max_retries=0)
    def once(n: int) -> int:
        ran.append(n)
        return n

    handle = once.delay(7)
    (prefetched,) = app.broker.receive("default", 10, 30, wait_s=1)
    app.broker.release([prefetched])
    run_burst(app)
    assert handle.get(timeout=5) == 7
    assert ran == [7]


def test_a_task_over_its_rate_waits_leased_and_runs_on_its_first_delivery(app: App, aws: MotoServer) -> None:
    @app.task(rate_limit="1/m")
    def limited(i: int) -> int:
        return i

    @app.task()
    def free(i: int) -> int:
        return i

    app.broker.queue("default")
    app.results.get("warm-up")
    held = [limited.delay(i) for i in range(3)]
    others = free.send_each([(i,) for i in range(5)])
    clock = FakeClock()
    worker = Worker(app, concurrency=2, lease_s=2.0, poll_wait_s=1.0)
    worker.rate_limits = RateLimits(app, clock)
    thread = threading.Thread(target=worker.run, daemon=True)
    with aws.count_requests() as calls:
        thread.start()
        wait_for(lambda: all(h.ready() for h in others) and held[0].ready(), timeout=30)
        assert not held[1].ready() and not held[2].ready()
        wait_for(lambda: worker.extended >= 4, timeout=30)  # held past their 2 s lease, extended
        clock.now += 60
        wait_for(lambda: held[1].ready(), timeout=30)
        clock.now += 60
        wait_for(lambda: held[2].ready(), timeout=30)
        worker.stop()
        thread.join(30)
    assert [h.get(timeout=5) for h in held] == [0, 1, 2]
    assert all(h.record is not None and h.record.attempts == 1 for h in held)  # SQS's receive count: 1
    sqs = calls.of("sqs")
    assert "SendMessage" not in sqs and "SendMessageBatch" not in sqs  # never requeued
    assert "ChangeMessageVisibility" not in sqs and sqs.get("ChangeMessageVisibilityBatch", 0) >= 2
    assert not worker.counts.get("nack") and not worker.counts.get("dead_letter")
