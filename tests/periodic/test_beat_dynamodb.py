"""cloudq beat replicas against one DynamoDB results table on the moto server: every slot sent
exactly once, with the requests it costs counted at the server."""

from __future__ import annotations

from pathlib import Path

import pytest
from beat_helpers import Clock, drain, race, replicas
from cloudq_aws.testing.server import MotoServer

from cloudq import App
from cloudq.schedules import every, iso


def make_app(folder: Path, prefix: str) -> App:
    app = App("beatdynamo", broker=f"sqlite:///{folder / 'broker.db'}", results=f"dynamodb://{prefix}results")

    @app.periodic_task(every(1), args=(1,), name="tick")
    def tick(n: int) -> int:
        return n

    return app


@pytest.mark.parametrize("count", [2, 3])
def test_replicas_on_dynamodb_send_each_of_60_slots_exactly_once(
    aws: MotoServer, prefix: str, tmp_path: Path, count: int
) -> None:
    clock = Clock()
    start = clock.now
    beats = replicas(lambda: make_app(tmp_path, prefix), count, clock)
    with aws.count_requests() as requests:
        race(beats, clock, steps=60)
    assert drain(beats[0].app) == {f"tick@{iso(start + i)}": 1 for i in range(1, 61)}
    dynamo = requests.of("dynamodb")
    # per slot: one conditional claim per replica, then the winner's done mark and marker
    assert dynamo.get("UpdateItem", 0) == 60 * count
    assert dynamo.get("PutItem", 0) == 60 * 2
    assert dynamo.get("GetItem", 0) + dynamo.get("BatchGetItem", 0) == 0  # markers are read at start only
