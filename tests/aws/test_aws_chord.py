"""The canvas on SQS + DynamoDB through the moto server (the canvas contract), and what a
chord costs per header task, counted at the server."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from aws_apps import run_burst, sqs_app
from cloudq_aws.testing import MotoServer

from cloudq import App, chord, group
from cloudq.testing import CanvasContract
from cloudq.testing.chord_contract import ADD, TOTAL

pytestmark = [pytest.mark.aws, pytest.mark.timeout(180)]

NOT_BILLED_HERE = ("ReceiveMessage", "GetItem", "BatchGetItem", "GetQueueAttributes", "GetQueueUrl")


class TestCanvasOnSQSAndDynamoDB(CanvasContract):
    @pytest.fixture
    def chord_app(self, prefix: str) -> Iterator[App]:
        application = sqs_app(prefix)
        yield application
        application.close()

    def test_chord_overhead_per_header_task_at_the_server(self, app: App, aws: MotoServer) -> None:
        """The same 50 tasks as a group and as a chord: the difference is what the chord costs
        (the polls of .get() and the worker's idle receives left out)."""
        add, total = app.tasks[ADD], app.tasks[TOTAL]
        app.broker.queue("default")  # created before anything is counted
        n = 50
        with aws.count_requests() as as_group:
            handle = group(add.s(i, 1) for i in range(n)).apply_async()
            run_burst(app)
            assert handle.get(timeout=30) == [i + 1 for i in range(n)]
        with aws.count_requests() as as_chord:
            result = chord([add.s(i, 1) for i in range(n)], total.s()).apply_async()
            run_burst(app)
            assert result.get(timeout=30) == sum(i + 1 for i in range(n))

        def billed(counts: object) -> int:
            return sum(
                k
                for service in ("sqs", "dynamodb")
                for op, k in counts.of(service).items()  # type: ignore[attr-defined]
                if op not in NOT_BILLED_HERE
            )

        extra = billed(as_chord) - billed(as_group)
        print(f"chord of {n}: group {dict(as_group)} chord {dict(as_chord)}: {extra / n:.2f} extra per header task")
        assert extra / n <= 1.2, (dict(as_group), dict(as_chord))
        assert as_chord.of("dynamodb").get("UpdateItem", 0) == n + 1  # one ADD per header task, the body's claim
