"""The Lambda SQS handler against real queues on a moto server.

Each test sends real messages, receives them as the Lambda service's poller would, builds the
event exactly as Lambda formats SQS records, invokes the handler, and checks both the partial
batch response and what is left on the queues afterwards.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import boto3
import pytest
from cloudq_aws.lambda_.handler import LambdaHandler, make_handler
from cloudq_aws.lambda_.records import InvalidEvent
from cloudq_aws.testing import FakeLambdaContext, MotoServer, SQSPoller

from cloudq import App, Reject
from cloudq.envelope import build
from cloudq.errors import ConfigurationError

pytestmark = [pytest.mark.aws, pytest.mark.timeout(60)]


def make_app(prefix: str, results: str = "memory://", bucket: str | None = None, **config: Any) -> App:
    url = f"sqs://?prefix={prefix}&wait=0" + (f"&bucket={bucket}" if bucket else "")
    return App("lambda-test", broker=url, results=results, retry_jitter=False, **config)


def poller_for(app: App, sqs: Any, queue: str = "default") -> SQSPoller:
    return SQSPoller(sqs, app.broker.queue(queue).url)  # type: ignore[attr-defined]


def test_event_records_carry_every_field_lambda_sends(sqs: Any, prefix: str) -> None:
    app = make_app(prefix)

    @app.task()
    def add(a: int, b: int) -> int:
        return a + b

    add.delay(1, 2)
    poller = poller_for(app, sqs)
    [record] = poller.event(poller.receive_all(1))["Records"]
    assert set(record) >= {
        "messageId",
        "receiptHandle",
        "body",
        "attributes",
        "messageAttributes",
        "md5OfBody",
        "eventSource",
        "eventSourceARN",
        "awsRegion",
    }
    assert set(record["attributes"]) == {
        "ApproximateReceiveCount",
        "SentTimestamp",
        "SenderId",
        "ApproximateFirstReceiveTimestamp",
    }
    assert record["messageAttributes"]["task"]["stringValue"] == add.name
    assert record["eventSourceARN"].endswith(f":{prefix}default")


def test_successes_are_reported_done_and_results_stored(sqs: Any, prefix: str) -> None:
    app = make_app(prefix, results=f"dynamodb://{prefix}results")

    @app.task()
    def add(a: int, b: int) -> int:
        return a + b

    handler = make_handler(app)
    results = add.send_each([(1, 2), (3, 4), (5, 6)])
    poller = poller_for(app, sqs)
    invocation = poller.invoke(handler, poller.receive_all(3))
    assert invocation.response == {"batchItemFailures": []}
    assert [r.get(timeout=5) for r in results] == [3, 7, 11]
    assert poller.counts() == (0, 0)  # the service deleted them all


def test_a_cold_instance_builds_one_dynamodb_client_for_its_revoke_check_and_its_writes(sqs: Any, prefix: str) -> None:
    """A second boto3 client of one service costs a cold start as much as the first (its operation
    models are built again): the revoke check reads through the client the result writes use."""
    producer = make_app(prefix, results=f"dynamodb://{prefix}results")
    app = make_app(prefix, results=f"dynamodb://{prefix}results")

    def add(a: int, b: int) -> int:
        return a + b

    sent = producer.task(name="t.add")(add)
    app.task(name="t.add")(add)
    results = sent.send_each([(1, 2), (3, 4)])
    producer.results.get_many([r.id for r in results])  # type: ignore[attr-defined]  # builds the table
    poller = poller_for(producer, sqs)
    invocation = poller.invoke(make_handler(app), poller.receive_all(2))
    assert invocation.response == {"batchItemFailures": []}
    assert app.results.clients.built() == ["dynamodb"]  # type: ignore[attr-defined]
    assert [r.get(timeout=5) for r in results] == [3, 7]


def test_retries_get_their_backoff_as_visibility_in_one_batch_call(aws: MotoServer, sqs: Any, prefix: str) -> None:
    app = make_app(prefix)

    @app.task(max_retries=2, retry_backoff=3, autoretry_for=(ValueError,))
    def flaky(n: int) -> int:
        raise ValueError(f"boom {n}")

    results = flaky.send_each(range(3))
    handler = make_handler(app)
    poller = poller_for(app, sqs)
    messages = poller.receive_all(3)
    with aws.count_requests() as requests:
        invocation = poller.invoke(handler, messages)
    assert sorted(invocation.failed) == sorted(invocation.ids)
    assert requests["sqs:ChangeMessageVisibilityBatch"] == 1
    assert "sqs:ChangeMessageVisibility" not in requests
    assert [r.status for r in results] == ["RETRY"] * 3
    assert poller.receive(10, wait_s=0) == []  # hidden for the 3 s backoff, not the 30 s lease
    back = poller.receive_all(3, wait_s=5)
    assert sorted(m["MessageId"] for m in back) == sorted(invocation.ids)
    assert {m["Attributes"]["ApproximateReceiveCount"] for m in back} == {"2"}


def test_dead_letters_move_with_their_reason_and_are_reported_done(sqs: Any, prefix: str) -> None:
    app = make_app(prefix)

    @app.task(max_retries=0)
    def broken(n: int) -> None:
        raise ValueError(f"no good {n}")

    @app.task()
    def refuse() -> None:
        raise Reject("not for us")

    failing, refused = broken.delay(7), refuse.delay()
    poller = poller_for(app, sqs)
    invocation = poller.invoke(make_handler(app), poller.receive_all(2))
    assert invocation.failed == []
    assert poller.counts() == (0, 0)
    reasons = sorted(letter.reason for letter in app.broker.dead_letters("default"))
    assert reasons[0].startswith("Reject: not for us")
    assert reasons[1].startswith("ValueError: no good 7")
    assert failing.status == refused.status == "FAILURE"


def test_deadline_leaves_unstarted_records_visible_at_once(aws: MotoServer, sqs: Any, prefix: str) -> None:
    app = make_app(prefix)
    context = FakeLambdaContext(remaining_ms=5_000)
    ran: list[int] = []

    @app.task(time_limit=1, autoretry_for=(ValueError,), retry_backoff=30)
    def step(n: int) -> int:
        context.spend(1.5)  # each run takes 1.5 s of the invocation
        ran.append(n)
        if len(ran) == 1:
            raise ValueError("first one fails")
        return n

    step.send_each(range(4))
    poller = poller_for(app, sqs)
    messages = poller.receive_all(4)
    with aws.count_requests() as requests:
        invocation = poller.invoke(make_handler(app, safety_margin_s=1.0), messages, context)
    # needs time_limit 1 s + margin 1 s: runs at 5 s, 3.5 s and 2 s left, not at 0.5 s
    assert len(ran) == 3
    assert invocation.failed == [invocation.ids[0], invocation.ids[3]]
    assert requests["sqs:ChangeMessageVisibilityBatch"] == 1  # the retry and the unstarted record together
    [again] = poller.receive(10, wait_s=0)  # the unstarted one is back at once; the retry waits 30 s
    assert again["MessageId"] == invocation.ids[3]
    assert again["Attributes"]["ApproximateReceiveCount"] == "2"


def test_tasks_without_time_limit_are_estimated_from_their_longest_run(sqs: Any, prefix: str) -> None:
    app = make_app(prefix)
    context = FakeLambdaContext(remaining_ms=60_000)

    @app.task()
    def slowish(n: int) -> int:
        time.sleep(0.3)
        return n

    slowish.send_each(range(2))
    poller = poller_for(app, sqs)
    handler = make_handler(app, safety_margin_s=0.0, task_estimate_s=0.1)
    first = poller.invoke(handler, poller.receive_all(1), context)
    assert first.failed == []
    context.remaining_ms = 200  # more than the 0.1 s estimate, less than the 0.3 s it took
    second = poller.invoke(handler, poller.receive_all(1), context)
    assert second.failed == second.ids


def test_fifo_group_after_a_failure_waits_while_other_groups_go_on(sqs: Any, prefix: str) -> None:
    app = make_app(prefix, default_queue="jobs.fifo")
    ran: list[str] = []

    @app.task(autoretry_for=(ValueError,), retry_backoff=1)
    def step(group: str, n: int) -> None:
        ran.append(f"{group}{n}")
        if ran.count("a0") == 1 and f"{group}{n}" == "a0":
            raise ValueError("a0 fails once")

    for n in range(3):
        for group in "ab":
            step.apply_async((group, n), ordering_key=group)
    handler = make_handler(app)
    poller = poller_for(app, sqs, "jobs.fifo")
    messages = poller.receive_all(6)
    bodies = {m["MessageId"]: json.loads(m["Body"])["args"] for m in messages}
    invocation = poller.invoke(handler, messages)
    assert ran == ["a0", "b0", "b1", "b2"]
    assert sorted("".join(map(str, bodies[i])) for i in invocation.failed) == ["a0", "a1", "a2"]
    assert poller.receive(10, wait_s=0) == []  # a1, a2 stay behind a0, hidden for its backoff
    again = poller.receive_all(3, wait_s=5)
    assert ["".join(map(str, json.loads(m["Body"])["args"])) for m in again] == ["a0", "a1", "a2"]
    assert poller.invoke(handler, again).failed == []
    assert ran[4:] == ["a0", "a1", "a2"]
    assert poller.counts() == (0, 0)


def test_claim_check_body_is_read_from_s3_and_deleted_after_success(sqs: Any, prefix: str, bucket: str) -> None:
    sqs.create_queue(QueueName=f"{prefix}default", Attributes={"MaximumMessageSize": "1024"})
    app = make_app(prefix, bucket=bucket)

    @app.task()
    def size(text: str) -> int:
        return len(text)

    result, lost = size.delay("x" * 5000), size.delay("y" * 5000)
    poller = poller_for(app, sqs)
    messages = poller.receive_all(2)
    pointers = {m["MessageId"]: json.loads(m["Body"])["cloudq_claim_check"] for m in messages}
    s3 = boto3.client("s3")
    lost_id = next(i for i, p in pointers.items() if b"yyy" in _payload(s3, p))
    s3.delete_object(Bucket=pointers[lost_id]["bucket"], Key=pointers[lost_id]["key"])
    invocation = poller.invoke(make_handler(app), messages)
    assert invocation.failed == []
    assert result.get(timeout=5) == 5000
    assert lost.status == "PENDING"  # never ran
    for pointer in pointers.values():
        assert s3.list_objects_v2(Bucket=pointer["bucket"], Prefix=pointer["key"]).get("KeyCount") == 0
    [letter] = app.broker.dead_letters("default")
    assert letter.reason.startswith("ClaimCheckMissing")
    assert poller.counts() == (0, 0)


def _payload(s3: Any, pointer: dict[str, Any]) -> bytes:
    body: bytes = s3.get_object(Bucket=pointer["bucket"], Key=pointer["key"])["Body"].read()
    return body


def test_malformed_body_is_dead_lettered_and_never_run(sqs: Any, prefix: str) -> None:
    app = make_app(prefix)
    ran: list[int] = []

    @app.task()
    def noop(n: int) -> None:
        ran.append(n)

    poller = poller_for(app, sqs)
    sqs.send_message(
        QueueUrl=poller.queue_url,
        MessageBody="this is not json",
        MessageAttributes={"raw": {"DataType": "Binary", "BinaryValue": b"\x00\x01\xff"}},
    )
    invocation = poller.invoke(make_handler(app), poller.receive_all(1))
    assert invocation.failed == []
    assert ran == []
    [letter] = app.broker.dead_letters("default")
    assert letter.body == b"this is not json"
    assert letter.reason.startswith("MalformedMessage: body is not JSON")


def test_unreadable_record_is_reported_failed_and_the_rest_runs(sqs: Any, prefix: str) -> None:
    app = make_app(prefix)

    @app.task()
    def add(a: int, b: int) -> int:
        return a + b

    result = add.delay(2, 2)
    poller = poller_for(app, sqs)
    event = poller.event(poller.receive_all(1))
    event["Records"].append({**event["Records"][0], "messageId": "broken", "receiptHandle": None})
    response = make_handler(app)(event, FakeLambdaContext())
    assert response == {"batchItemFailures": [{"itemIdentifier": "broken"}]}
    assert result.get(timeout=5) == 4


@pytest.mark.parametrize(
    "event",
    [{"detail-type": "Scheduled Event"}, {"Records": "nope"}, {"Records": [{"body": "{}"}]}, ["Records"]],
)
def test_events_that_are_not_sqs_batches_raise(aws: MotoServer, prefix: str, event: Any) -> None:
    handler = make_handler(make_app(prefix))
    with pytest.raises(InvalidEvent):
        handler(event, FakeLambdaContext())


def test_duplicate_delivery_of_an_idempotent_task_runs_it_once(sqs: Any, prefix: str) -> None:
    app = make_app(prefix)
    calls: list[str] = []

    @app.task(idempotent=True)
    def charge(order: str) -> str:
        calls.append(order)
        return f"charged {order}"

    result = charge.delay("o-1")
    poller = poller_for(app, sqs)
    poller.visibility_s = 0  # delivered again at once: two copies of one message in hand
    first, second = poller.receive_all(1), poller.receive_all(1)
    assert first[0]["MessageId"] == second[0]["MessageId"]
    handler = make_handler(app)
    assert poller.invoke(handler, first).failed == []
    assert poller.invoke(handler, second).failed == []
    assert calls == ["o-1"]
    assert result.get(timeout=5) == "charged o-1"


def test_requeue_sends_the_message_on_and_reports_done(sqs: Any, prefix: str) -> None:
    app = make_app(prefix)

    @app.task()
    def later() -> None:
        raise AssertionError("must not run before its eta")

    poller = poller_for(app, sqs)
    body = build("t-eta", later.name, [], {}, sent_at=time.time(), eta=time.time() + 3600)
    sqs.send_message(QueueUrl=poller.queue_url, MessageBody=body.decode())  # no SQS delay: arrives early
    invocation = poller.invoke(make_handler(app), poller.receive_all(1))
    assert invocation.failed == []
    attrs = sqs.get_queue_attributes(QueueUrl=poller.queue_url, AttributeNames=["All"])["Attributes"]
    assert attrs["ApproximateNumberOfMessagesDelayed"] == "1"  # sent on with the longest SQS delay
    assert attrs["ApproximateNumberOfMessages"] == "0"


def test_result_store_down_gives_the_record_back_after_a_backoff(sqs: Any, prefix: str) -> None:
    app = make_app(prefix, results=f"dynamodb://{prefix}missing?create_missing=false")

    @app.task()
    def add(a: int, b: int) -> int:
        return a + b

    add.delay(1, 1)
    poller = poller_for(app, sqs)
    invocation = poller.invoke(make_handler(app), poller.receive_all(1))
    assert invocation.failed == invocation.ids
    assert poller.receive(10, wait_s=0) == []  # back after the give-back delay, not at once
    assert [m["MessageId"] for m in poller.receive_all(1, wait_s=5)] == invocation.ids


def test_threads_run_groups_in_parallel_and_keep_each_group_in_order(sqs: Any, prefix: str) -> None:
    app = make_app(prefix, default_queue="jobs.fifo")
    both_started = threading.Barrier(2, timeout=10)
    ran: dict[str, list[int]] = {"a": [], "b": []}

    @app.task()
    def step(group: str, n: int) -> None:
        if n == 0:
            both_started.wait()  # passes only if the two groups run at the same time
        ran[group].append(n)

    for n in range(4):
        for group in "ab":
            step.apply_async((group, n), ordering_key=group)
    poller = poller_for(app, sqs, "jobs.fifo")
    handler = make_handler(app, concurrency=4)
    assert poller.invoke(handler, poller.receive_all(8)).failed == []
    assert ran == {"a": [0, 1, 2, 3], "b": [0, 1, 2, 3]}


def test_clients_are_made_once_and_reused_across_invocations(sqs: Any, prefix: str) -> None:
    app = make_app(prefix)

    @app.task()
    def noop(n: int) -> None:
        return None

    handler = make_handler(app)
    poller = poller_for(app, sqs)
    clients = []
    for n in range(2):
        noop.delay(n)
        assert poller.invoke(handler, poller.receive_all(1)).failed == []
        clients.append(app.broker.clients.get("sqs"))  # type: ignore[attr-defined]
    assert clients[0] is clients[1]


def test_importing_and_building_the_handler_makes_no_client() -> None:
    code = (
        "import sys\n"
        "from cloudq import App\n"
        "from cloudq_aws.lambda_.handler import make_handler\n"
        "app = App('cold', broker='sqs://', results='dynamodb://cold-results')\n"
        "handler = make_handler(app)\n"
        "print(sorted(m for m in ('boto3', 'botocore', 'aiobotocore') if m in sys.modules))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=True)
    assert out.stdout.strip() == "[]"


def test_handler_refuses_a_broker_that_is_not_sqs() -> None:
    with pytest.raises(ConfigurationError, match="sqs://"):
        make_handler(App("x", broker="memory://", results="memory://"))
    with pytest.raises(ConfigurationError, match="concurrency"):
        LambdaHandler(App("y", broker="sqs://", results="memory://"), concurrency=0)


@pytest.mark.parametrize("value", ["many", "0", "2000"])
def test_entry_point_refuses_a_bad_concurrency_variable_in_one_line(tmp_path: Path, value: str) -> None:
    (tmp_path / "entry_app.py").write_text(
        "from cloudq import App\napp = App('e', broker='sqs://', results='memory://')\n"
    )
    env = {
        **os.environ,
        "CLOUDQ_APP": "entry_app:app",
        "CLOUDQ_LAMBDA_CONCURRENCY": value,
        "PYTHONPATH": os.pathsep.join([str(tmp_path), *sys.path]),
    }
    out = subprocess.run(
        [sys.executable, "-c", "import cloudq_aws.lambda_entry"], capture_output=True, text=True, timeout=60, env=env
    )
    assert out.returncode != 0
    assert "ConfigurationError: option 'CLOUDQ_LAMBDA_CONCURRENCY' must be" in out.stderr
    assert "ValueError" not in out.stderr


def test_poison_records_are_dead_lettered_and_the_rest_of_the_batch_runs(sqs: Any, prefix: str) -> None:
    app = make_app(prefix)

    @app.task()
    def add(a: int, b: int) -> int:
        return a + b

    poller = poller_for(app, sqs)
    first = add.delay(1, 1)
    sqs.send_message(QueueUrl=poller.queue_url, MessageBody="[" * 100_000 + "]" * 100_000)
    middle = add.delay(2, 2)
    sqs.send_message(
        QueueUrl=poller.queue_url, MessageBody=f'{{"v": 1, "id": "far", "task": "{add.name}", "eta": 1e999}}'
    )
    last = add.delay(3, 3)
    invocation = poller.invoke(make_handler(app), poller.receive_all(5))
    assert invocation.failed == []
    assert poller.counts() == (0, 0)
    assert [r.get(timeout=5) for r in (first, middle, last)] == [2, 4, 6]
    reasons = sorted(letter.reason for letter in app.broker.dead_letters("default"))
    assert reasons[0].startswith("MalformedMessage: body is nested too deeply")
    assert reasons[1].startswith("MalformedMessage: invalid envelope: eta")


def test_rate_limit_applies_per_function_instance_and_records_wait_leased(sqs: Any, prefix: str) -> None:
    """rate_limit="1/m": the second and third records of one invocation wait for their tokens (a
    clock the test owns), then run; none is failed back to the queue or retried."""
    from cloudq.runtime.ratelimit import RateLimits
    from cloudq.testing.clock import FakeClock

    app = make_app(prefix)

    @app.task(rate_limit="1/m")
    def limited(i: int) -> int:
        return i

    handler = make_handler(app)
    clock = FakeClock()
    handler.rate_limits = RateLimits(app, clock, clock.sleep)
    results = limited.send_each([(1,), (2,), (3,)])
    poller = poller_for(app, sqs)
    invocation = poller.invoke(handler, poller.receive_all(3))
    assert invocation.response == {"batchItemFailures": []}
    assert [r.get(timeout=5) for r in results] == [1, 2, 3]
    assert clock.slept == [pytest.approx(60.0)] * 2
    assert poller.counts() == (0, 0)


def test_a_record_whose_token_is_past_the_invocation_is_sent_again_delayed(
    aws: MotoServer, sqs: Any, prefix: str
) -> None:
    """30 s left and a token every 60 s: the later records are re-sent with a 60 s delay in one
    batch call and reported done; their envelope is unchanged, so no delivery is spent."""
    from cloudq.runtime.ratelimit import RateLimits
    from cloudq.testing.clock import FakeClock

    app = make_app(prefix)

    @app.task(rate_limit="1/m", time_limit=1)
    def limited(i: int) -> int:
        return i

    handler = make_handler(app, safety_margin_s=1.0)
    clock = FakeClock()
    handler.rate_limits = RateLimits(app, clock, clock.sleep)
    results = limited.send_each([(1,), (2,), (3,)])
    poller = poller_for(app, sqs)
    messages = poller.receive_all(3)
    with aws.count_requests() as requests:
        invocation = poller.invoke(handler, messages, FakeLambdaContext(remaining_ms=30_000))
    assert invocation.response == {"batchItemFailures": []}
    assert results[0].get(timeout=5) == 1 and not results[1].ready() and not results[2].ready()
    assert clock.slept == []  # nothing waited past what the invocation had
    assert requests["sqs:SendMessageBatch"] == 1 and "sqs:ChangeMessageVisibilityBatch" not in requests
    assert app.broker.stats("default").delayed == 2


def test_a_cold_instance_asks_sqs_nothing_until_a_record_needs_its_queue(
    aws: MotoServer, sqs: Any, prefix: str
) -> None:
    producer = make_app(prefix)

    @producer.task(name="cold.work", max_retries=2, retry_backoff=3, autoretry_for=(ValueError,))
    def work(n: int) -> int:
        if n < 0:
            raise ValueError("negative")
        return n

    poller = poller_for(producer, sqs)
    cold = make_app(prefix)  # a new function instance: its broker has looked nothing up
    cold.task(name="cold.work", max_retries=2, retry_backoff=3, autoretry_for=(ValueError,))(work.fn)
    handler = make_handler(cold)
    work.send_each([(1,), (2,)])
    messages = poller.receive_all(2)
    with aws.count_requests() as requests:
        assert poller.invoke(handler, messages).failed == []
    # all done: only the service's own delete (SQSPoller plays it); no lookup, so no SQS client
    assert [k for k in requests if k.startswith("sqs:")] == ["sqs:DeleteMessageBatch"]

    work.send_each([(3,), (-1,)])
    messages = poller.receive_all(2)
    with aws.count_requests() as requests:
        invocation = poller.invoke(handler, messages)
    assert len(invocation.failed) == 1  # the retry, hidden for its backoff through the looked-up queue
    assert requests["sqs:GetQueueUrl"] == 1 and requests["sqs:ChangeMessageVisibilityBatch"] == 1
    assert poller.receive(10, wait_s=0) == []
    [back] = poller.receive_all(1, wait_s=5)
    assert back["MessageId"] == invocation.failed[0]
