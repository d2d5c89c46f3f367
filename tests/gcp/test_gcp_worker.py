"""cloudq end to end on Pub/Sub + Firestore emulators: producer, Worker, results, dead letters."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator

import pytest
from gcp_apps import gcp_app, run_burst

from cloudq import App, states
from cloudq.envelope import Envelope
from cloudq.interfaces import OutgoingMessage

pytestmark = [pytest.mark.gcp, pytest.mark.timeout(120)]


@pytest.fixture
def app(pubsub_emulator, firestore_emulator, project: str, unique: str) -> Iterator[App]:
    application = gcp_app(project, unique)
    yield application
    application.close()


def test_tasks_run_and_results_land_in_firestore(app: App) -> None:
    @app.task()
    def add(a: int, b: int) -> int:
        return a + b

    handles = add.send_each([(i, i) for i in range(20)])
    worker = run_burst(app)
    assert [h.get(timeout=10) for h in handles] == [2 * i for i in range(20)]
    assert worker.counts["ack"] == 20


def test_a_task_longer_than_its_lease_runs_once(pubsub_emulator, firestore_emulator, project: str, unique: str) -> None:
    app = gcp_app(project, unique, visibility_timeout=2)
    runs: list[float] = []

    @app.task()
    def slow() -> str:
        runs.append(time.time())
        time.sleep(4.5)  # more than twice the 2 s ack deadline: only the heartbeat keeps it leased
        return "done"

    handle = slow.delay()
    worker = run_burst(app, lease_s=2)
    assert handle.get(timeout=10) == "done"
    assert len(runs) == 1
    assert worker.extended >= 2
    app.close()


def test_a_delayed_task_runs_once_not_early_and_spends_no_attempt(app: App) -> None:
    ran_at: list[float] = []

    @app.task()
    def stamp() -> str:
        ran_at.append(time.time())
        return "ok"

    eta = time.time() + 3
    handle = stamp.apply_async(eta=eta)
    run_burst(app)  # the burst worker waits for the delayed message it is holding
    assert handle.get(timeout=10) == "ok"
    assert len(ran_at) == 1 and ran_at[0] >= eta
    assert handle.record is not None and handle.record.attempts == 1


def test_retries_with_backoff_count_attempts_from_pubsub(app: App) -> None:
    @app.task(bind=True, max_retries=3, retry_backoff=1, retry_jitter=False, autoretry_for=(ConnectionError,))
    def flaky(self) -> int:
        if self.request.attempt < 3:
            raise ConnectionError("flaky network")
        return self.request.attempt

    handle = flaky.delay()
    worker = run_burst(app)
    assert handle.get(timeout=10) == 3
    assert worker.counts["nack"] == 2  # retried in place with modify_ack_deadline, not re-sent


def test_each_bad_input_is_dead_lettered_with_its_reason(app: App) -> None:
    @app.task()
    def add(a: int, b: int) -> int:
        return a + b

    good = Envelope(id="ok-1", task=add.name, args=[1, 2]).encode()
    bad = {
        b"{not json": "MalformedMessage: body is not JSON",
        b"[1, 2]": "MalformedMessage: body is JSON list",
        json.dumps({"v": 99, "id": "v99", "task": add.name}).encode(): "UnsupportedVersion",
        Envelope(id="unknown-1", task="nobody.defines.this").encode(): "UnknownTask",
        Envelope(id="args-1", task=add.name, args=["x", 2]).encode(): "InvalidArguments",
        Envelope(id="args-2", task=add.name, args=[1, 2, 3]).encode(): "InvalidArguments",
    }
    queue = app.queues()[0]
    app.broker.send(queue, [OutgoingMessage(body) for body in (*bad, good)])
    run_burst(app)
    assert app.AsyncResult("ok-1").get(timeout=10) == 3
    letters = {d.body: d.reason for d in app.broker.dead_letters(queue)}
    assert set(letters) == set(bad)
    for body, reason in bad.items():
        assert letters[body].startswith(reason), (body, letters[body])
    assert app.AsyncResult("unknown-1").status == states.FAILURE  # recorded against the task id
    assert app.AsyncResult("args-1").status == states.FAILURE
