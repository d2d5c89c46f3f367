"""The push app as Cloud Run runs it: cloudq's wheel (not the checkout) with its gcp extra and gunicorn
in a fresh venv, the example's main.py copied as the image copies it, and the image's CMD run by
``sh -c`` with its ENV, against Google's Pub/Sub and Firestore emulators. Messages are published with
the normal API, pulled back off the emulator's subscription and posted to gunicorn as Pub/Sub push
bodies; the test checks each HTTP answer and the results in Firestore.
"""

from __future__ import annotations

import importlib.util
import os
import subprocess
import sys
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
from cloudq_gcp.pubsub_admin import queue_paths
from cloudq_gcp.testing import free_port
from push_helpers import post, push_body, wait_for
from shipping_helpers import ROOT, build_context, clean_environment, copy_step, stages

pytestmark = [
    pytest.mark.slow,
    pytest.mark.gcp,
    pytest.mark.timeout(400),
    pytest.mark.usefixtures("pubsub_emulator", "firestore_emulator"),
]


@pytest.fixture
def urls(project: str, unique: str) -> dict[str, str]:
    return {
        "CLOUDQ_BROKER": f"pubsub://{project}?prefix=ship{unique}-",
        "CLOUDQ_RESULTS": f"firestore://ship{unique}-results",
    }


@pytest.fixture
def service(image_venv: Path, urls: dict[str, str], tmp_path: Path) -> Iterator[str]:
    """The image's final stage, run here: its COPY into WORKDIR, its ENV, its CMD under sh -c."""
    final = stages()[-1]
    (workdir,) = final.all("WORKDIR")
    srv = tmp_path / workdir.lstrip("/")
    context = build_context(ROOT)
    for sources, dest in final.copies():
        copy_step(ROOT, context, sources, dest, srv)
    port = free_port()
    env = clean_environment(**{**final.env(), **urls, "HOST": "127.0.0.1", "PORT": str(port)})
    env["PATH"] = f"{image_venv}{os.pathsep}{env['PATH']}"
    (cmd,) = final.all("CMD")
    log = tmp_path / "gunicorn.log"
    with log.open("wb") as out:
        process = subprocess.Popen(["sh", "-c", cmd], cwd=srv, env=env, stdout=out, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}/"
    try:
        wait_for(lambda: process.poll() is not None or _answers(url), timeout=60, what="gunicorn to serve")
        assert process.poll() is None, f"gunicorn exited {process.returncode}:\n{log.read_text()[-4000:]}"
        yield url
    finally:
        process.terminate()
        try:
            process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=10)


def _answers(url: str) -> bool:
    try:
        urllib.request.urlopen(url, timeout=1).close()
    except urllib.error.HTTPError:
        return True
    except OSError:
        return False
    return True


@pytest.fixture
def example(urls: dict[str, str], monkeypatch: pytest.MonkeyPatch) -> Iterator[ModuleType]:
    """examples/cloud_run/main.py imported as ``main`` (its tasks are named main.*), as a producer does."""
    for name, value in urls.items():
        monkeypatch.setenv(name, value)
    spec = importlib.util.spec_from_file_location("main", ROOT / "examples" / "cloud_run" / "main.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    monkeypatch.setitem(sys.modules, "main", module)
    spec.loader.exec_module(module)
    yield module
    module.app.close()


def _pull_one(subscriber: Any, subscription: str) -> Any:
    def pull() -> Any:
        got = subscriber.pull(request={"subscription": subscription, "max_messages": 1}, timeout=5)
        return got.received_messages[0] if got.received_messages else None

    return wait_for(pull, timeout=20, what=f"a message on {subscription}")


def test_gunicorn_serves_pushes_from_the_wheel(service: str, example: ModuleType) -> None:
    from google.cloud import pubsub_v1  # type: ignore[import-untyped]

    app = example.app
    app.broker.stats("default")  # the queue's topic and subscriptions, as the first send makes them
    paths = queue_paths(app.broker.options, "default")
    subscriber = pubsub_v1.SubscriberClient()
    publisher = pubsub_v1.PublisherClient()

    def push_next() -> int:
        """Pull one message the way the push subscription would deliver it, post it, ack it on 2xx."""
        received = _pull_one(subscriber, paths.subscription)
        message = received.message
        body = push_body(
            message.data,
            paths.subscription,
            attributes=dict(message.attributes),
            attempt=received.delivery_attempt or 1,
            message_id=message.message_id,
        )
        status, _, _ = post(service, body)
        if 200 <= status < 300:
            subscriber.acknowledge(request={"subscription": paths.subscription, "ack_ids": [received.ack_id]})
        return status

    try:
        slug = example.slugify.delay("Crème brûlée, recipes!")
        assert push_next() == 200
        assert slug.get(timeout=20) == "creme-brulee-recipes"

        note = example.notify.delay(7, "your export is ready")
        assert push_next() == 200
        assert note.get(timeout=20) == "notified user 7: your export is ready"

        rejected = example.notify.delay(-1, "nobody home")
        assert push_next() == 200  # dead-lettered: acked
        assert wait_for(lambda: app.AsyncResult(rejected.id).status == "FAILURE", what="FAILURE in Firestore")

        later = example.slugify.apply_async(("not yet",), countdown=600)
        assert push_next() == 429  # not due: Pub/Sub redelivers later
        assert app.AsyncResult(later.id).status == "PENDING"

        publisher.publish(paths.topic, b"this is not a task").result(timeout=20)
        assert push_next() == 200  # malformed task body: dead-lettered with its reason, acked

        status, _, _ = post(service, b'{"not": "a push envelope"}')
        assert status == 400

        reasons = wait_for(lambda: [d.reason for d in app.broker.dead_letters("default")], what="dead letters")
        assert any("user -1 does not exist" in r for r in reasons), reasons
    finally:
        subscriber.close()
