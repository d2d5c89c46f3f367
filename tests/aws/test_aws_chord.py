"""chord on SQS + DynamoDB through the moto server: the body runs exactly once with every header
task delivered twice, and what a chord costs per header task, counted at the server."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from aws_apps import run_burst, sqs_app
from cloudq_aws.testing import MotoServer

from cloudq import App, chord, group
from cloudq.interfaces import AtomicCounter

pytestmark = [pytest.mark.aws, pytest.mark.timeout(180)]

BODY_RUNS: list[int] = []


@pytest.fixture
def app(prefix: str) -> Iterator[App]:
    application = sqs_app(prefix)

    @application.task(name="c.add")
    def add(x: int, y: int) -> int:
        return x + y

    @application.task(name="c.tsum")
    def tsum(numbers: list[int]) -> int:
        BODY_RUNS.append(sum(numbers))
        return sum(numbers)

    BODY_RUNS.clear()
    application.broker.queue("default")  # created before anything is counted
    application.results.get("warm-up")
    yield application
    application.close()


def _run_each_twice(app: App) -> int:
    """Deliver every header message twice (as SQS may) before deleting it."""
    count = 0
    while deliveries := app.broker.receive("default", 10, lease_s=60):
        for delivery in deliveries:
            if delivery.attributes.get("task") != "c.add":
                app.broker.nack([delivery])  # the body or a chord_unlock: the worker runs it
                continue
            app.executor.execute(delivery)
            app.executor.execute(delivery)
            app.broker.ack([delivery])
            count += 1
        if count >= 20:
            break
    return count


def test_the_body_runs_once_when_every_header_task_is_delivered_twice(app: App) -> None:
    add, tsum = app.tasks["c.add"], app.tasks["c.tsum"]
    result = chord(add.s(i, i) for i in range(20))(tsum.s())
    assert _run_each_twice(app) == 20
    run_burst(app)
    assert result.get(timeout=30) == 380
    assert BODY_RUNS == [380]


def test_chord_overhead_per_header_task_at_the_server(app: App, aws: MotoServer) -> None:
    """The same 50 tasks as a group and as a chord: the difference is what the chord costs."""
    if not isinstance(app.results, AtomicCounter):
        pytest.skip("DynamoDB has no counter in this build: chords are polled by chord_unlock")
    add, tsum = app.tasks["c.add"], app.tasks["c.tsum"]
    n = 50
    with aws.count_requests() as as_group:
        handle = group(add.s(i, 1) for i in range(n)).apply_async()
        run_burst(app)
        assert handle.get(timeout=30) == [i + 1 for i in range(n)]
    with aws.count_requests() as as_chord:
        result = chord([add.s(i, 1) for i in range(n)], tsum.s()).apply_async()
        run_burst(app)
        assert result.get(timeout=30) == sum(i + 1 for i in range(n))

    # what the producer and the worker sent, leaving out the polls of .get() and the idle receives
    def billed(counts: object) -> int:
        total = 0
        for service in ("sqs", "dynamodb"):
            for op, k in counts.of(service).items():  # type: ignore[attr-defined]
                if op not in ("ReceiveMessage", "GetItem", "BatchGetItem", "GetQueueAttributes"):
                    total += k
        return total

    extra = billed(as_chord) - billed(as_group)
    print(
        f"chord of {n}: group {dict(as_group)} chord {dict(as_chord)}: {extra / n:.2f} extra requests per header task"
    )
    assert extra / n <= 1.2, (dict(as_group), dict(as_chord))
    assert as_chord.of("dynamodb").get("UpdateItem", 0) == n + 1  # one ADD per header task, the body's claim
