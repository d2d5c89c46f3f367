"""The push handler fires the same task hooks and signals as the worker and the Lambda handler
(cloudq.testing.HookScenario), over real HTTP against the emulator, and its cold start: worker_init
and worker_ready once per instance, worker_shutdown at the ASGI lifespan shutdown."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

import pytest
from cloudq_gcp.push import make_asgi_app, make_wsgi_app
from push_helpers import ensure_queue, make_app, post, push_body

from cloudq.testing import HookScenario, SignalRecorder

pytestmark = [pytest.mark.gcp, pytest.mark.timeout(60), pytest.mark.usefixtures("pubsub_emulator")]

LIFECYCLE = ("worker_init", "worker_ready", "worker_shutting_down", "worker_shutdown")


def test_push_requests_fire_the_same_hooks_and_one_cold_start(
    project: str, unique: str, wsgi_server: Callable[[Any], str]
) -> None:
    app = make_app(project, unique)
    scenario = HookScenario(app)
    paths = ensure_queue(app)
    application = make_wsgi_app(app)
    url = wsgi_server(application)
    outcomes = []
    with scenario.recorder as recorder:
        for number, (name, body) in enumerate(scenario.bodies.items()):
            status, answer, _ = post(url, push_body(body, paths.subscription, attempt=1, message_id=str(number)))
            outcomes.append((name, status, answer["outcome"]))
        flaky = scenario.bodies["hooks.flaky"]
        status, answer, _ = post(url, push_body(flaky, paths.subscription, attempt=2, message_id="9"))
    assert outcomes == [
        ("hooks.add", 200, "succeeded"),
        ("hooks.boom", 200, "dead-lettered"),
        ("hooks.flaky", 429, "retry"),
        ("hooks.late", 200, "expired"),
    ]
    assert (status, answer["outcome"]) == (200, "dead-lettered")
    assert scenario.trace() == scenario.expected()
    lifecycle = recorder.named(*LIFECYCLE)
    handler = application.handler
    assert [(name, arguments["sender"]) for name, arguments in lifecycle] == [
        ("worker_init", handler),
        ("worker_ready", handler),
    ]  # at the first request, before its task; WSGI gives no shutdown hook
    assert recorder.events.index(lifecycle[1]) < recorder.events.index(recorder.named("task_prerun")[0])


def test_asgi_lifespan_fires_the_cold_start_at_startup_and_worker_shutdown_at_shutdown(
    project: str, unique: str
) -> None:
    application = make_asgi_app(make_app(project, unique))
    sent: list[str] = []

    async def lifespan() -> None:
        events: asyncio.Queue[dict[str, str]] = asyncio.Queue()

        async def receive() -> dict[str, str]:
            return await events.get()

        async def send(message: dict[str, Any]) -> None:
            sent.append(message["type"])

        serving = asyncio.create_task(application({"type": "lifespan"}, receive, send))
        await events.put({"type": "lifespan.startup"})
        while not sent:
            await asyncio.sleep(0)
        names.append([name for name, _ in recorder.named(*LIFECYCLE)])
        await events.put({"type": "lifespan.shutdown"})
        await serving

    names: list[list[str]] = []
    with SignalRecorder(LIFECYCLE) as recorder:
        asyncio.run(lifespan())
    assert sent == ["lifespan.startup.complete", "lifespan.shutdown.complete"]
    assert names == [["worker_init", "worker_ready"]]  # fired before startup completed
    assert [(n, a["sender"]) for n, a in recorder.named()] == [
        ("worker_init", application.handler),
        ("worker_ready", application.handler),
        ("worker_shutdown", application.handler),
    ]
