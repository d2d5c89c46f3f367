"""Pub/Sub push end to end: the emulator pushes to the app served by a real server on a loopback port.

The queue's own subscription (with its dead-letter policy) is switched to push, tasks are sent
with the normal API, and the tests check results, retries and dead letters. The emulator re-pushes
a refused message about a second later; unlike Pub/Sub it leaves ``deliveryAttempt`` out of push
bodies (tests/push/test_push_requests.py covers counting with direct requests).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import Any

import pytest
from cloudq_gcp.push import make_asgi_app, make_wsgi_app
from push_helpers import make_app, push_to, wait_for

from cloudq import Reject
from cloudq.interfaces import OutgoingMessage

pytestmark = [pytest.mark.gcp, pytest.mark.timeout(60), pytest.mark.usefixtures("pubsub_emulator")]


def test_wsgi_app_runs_pushed_tasks_and_stores_results(
    project: str, unique: str, wsgi_server: Callable[[Any], str]
) -> None:
    app = make_app(project, unique)

    @app.task()
    def add(a: int, b: int) -> int:
        return a + b

    push_to(app, wsgi_server(make_wsgi_app(app)) + "/")
    results = add.send_each([(1, 2), (3, 4), (5, 6)])
    assert [r.get(timeout=20) for r in results] == [3, 7, 11]


def test_asgi_app_under_uvicorn_runs_pushed_tasks(project: str, unique: str, asgi_server: Callable[[Any], str]) -> None:
    app = make_app(project, unique)
    threads: set[str] = set()

    @app.task()
    def mul(a: int, b: int) -> int:
        threads.add(threading.current_thread().name)
        return a * b

    push_to(app, asgi_server(make_asgi_app(app, threads=2)) + "/push")
    results = mul.send_each([(2, 3), (4, 5)])
    assert [r.get(timeout=20) for r in results] == [6, 20]
    assert all(name.startswith("cloudq-push") for name in threads)  # off the event loop


def test_retry_answers_non_2xx_and_the_redelivery_succeeds(
    project: str, unique: str, wsgi_server: Callable[[Any], str]
) -> None:
    app = make_app(project, unique)
    calls: list[int] = []

    @app.task(max_retries=3, retry_backoff=0.1, autoretry_for=(ConnectionError,))
    def flaky(n: int) -> int:
        calls.append(n)
        if len(calls) == 1:
            raise ConnectionError("first call fails")
        return n * 10

    push_to(app, wsgi_server(make_wsgi_app(app)) + "/")
    result = flaky.delay(4)
    assert result.get(timeout=20) == 40
    assert calls == [4, 4]
    assert app.broker.dead_letters("default") == []


def test_dead_letters_go_to_the_dead_letter_topic_with_their_reason(
    project: str, unique: str, wsgi_server: Callable[[Any], str]
) -> None:
    app = make_app(project, unique)
    runs: list[str] = []

    @app.task()
    def refuse(order: str) -> None:
        runs.append(order)
        raise Reject(f"order {order} is cancelled")

    push_to(app, wsgi_server(make_wsgi_app(app)) + "/")
    refused = refuse.delay("o-7")
    app.broker.send("default", [OutgoingMessage(b"this is not an envelope")])
    letters = wait_for(lambda: len(app.broker.dead_letters("default")) == 2 and app.broker.dead_letters("default"))
    reasons = sorted(letter.reason for letter in letters)
    assert reasons[0].startswith("MalformedMessage: body is not JSON")
    assert reasons[1].startswith("Reject: order o-7 is cancelled")
    assert refused.status == "FAILURE"
    assert runs == ["o-7"]  # answered 2xx: never pushed again


def test_delayed_task_is_held_back_until_due_then_runs(
    project: str, unique: str, wsgi_server: Callable[[Any], str]
) -> None:
    app = make_app(project, unique)
    ran_at: list[float] = []

    @app.task()
    def later() -> str:
        ran_at.append(time.time())
        return "done"

    push_to(app, wsgi_server(make_wsgi_app(app)) + "/")
    sent = time.time()
    result = later.apply_async(countdown=2)
    assert result.get(timeout=20) == "done"
    assert len(ran_at) == 1 and ran_at[0] >= sent + 2  # not before its eta
