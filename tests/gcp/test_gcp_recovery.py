"""A running worker survives a restart of its Pub/Sub emulator (which forgets every topic and
subscription) and recreates its queue by itself: nothing sent after the restart is lost."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from cloudq_gcp.pubsub import PubSubBroker
from cloudq_gcp.pubsub_admin import queue_paths
from cloudq_gcp.testing import Emulator, EmulatorMissing, start

from cloudq import App
from cloudq.runtime.worker import Worker

pytestmark = [pytest.mark.gcp, pytest.mark.timeout(180)]

TASKS = 5


@pytest.fixture
def own_emulator(gcloud_sdk: Path | None, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Emulator]:
    """A Pub/Sub emulator for this test alone (it gets restarted), on its own port."""
    try:
        emulator = start("pubsub", tmp_path, gcloud_sdk)
    except EmulatorMissing as exc:
        pytest.skip(str(exc))
    monkeypatch.setenv(emulator.env_var, emulator.env_value)
    monkeypatch.setenv("GOOGLE_CLOUD_PROJECT", "cloudq-test")
    yield emulator
    emulator.stop()  # a no-op once the test stopped it


def apps(tmp_path: Path, unique: str) -> tuple[App, App]:
    """The worker's app (create_missing on) and a producer that may not create anything."""
    broker = f"pubsub://cloudq-test?prefix=r{unique}-&ack_deadline=10"
    results = f"sqlite:///{tmp_path}/results.db"
    return (
        App("recovery", broker=broker, results=results, retry_backoff=0),
        App("recovery", broker=broker, results=results, create_missing=False),
    )


def subscription_exists(broker: PubSubBroker, queue: str) -> bool:
    from google.api_core.exceptions import NotFound
    from google.cloud import pubsub_v1

    subscriber = pubsub_v1.SubscriberClient()
    try:
        subscriber.get_subscription(subscription=queue_paths(broker.options, queue).subscription, timeout=5)
        return True
    except NotFound:
        return False
    finally:
        subscriber.close()


def test_a_worker_recreates_its_lost_subscription_after_an_emulator_restart(
    own_emulator: Emulator, gcloud_sdk: Path | None, tmp_path: Path, unique: str
) -> None:
    worker_app, producer = apps(tmp_path, unique)
    for app in (worker_app, producer):

        @app.task(name="double")
        def double(n: int) -> int:
            return 2 * n

    queue = worker_app.queues()[0]
    worker = Worker(worker_app, concurrency=2, poll_wait_s=0.5)
    thread = threading.Thread(target=worker.run, daemon=True)
    thread.start()
    try:
        handles = [worker_app.tasks["double"].delay(i) for i in range(TASKS)]
        assert [h.get(timeout=20) for h in handles] == [2 * i for i in range(TASKS)]

        port = int(own_emulator.host.rsplit(":", 1)[1])
        own_emulator.stop()
        restarted = start("pubsub", tmp_path, gcloud_sdk, port=port)  # same address, no topics at all
        try:
            broker = worker_app.broker
            assert isinstance(broker, PubSubBroker)
            deadline = time.monotonic() + 30
            while not subscription_exists(broker, queue):  # only the worker may recreate it
                assert time.monotonic() < deadline, "the worker did not recreate its subscription within 30 s"
                assert thread.is_alive(), "the worker died"
                time.sleep(0.2)
            after = [producer.tasks["double"].delay(100 + i) for i in range(TASKS)]
            assert [h.get(timeout=30) for h in after] == [2 * (100 + i) for i in range(TASKS)]
        finally:
            worker.stop()
            thread.join(30)
            restarted.stop()
    finally:
        worker_app.close()
        producer.close()
