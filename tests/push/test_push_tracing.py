"""The push handler runs a task in the span ``process {queue}``, child of the producer's ``send``
span carried in the message's ``traceparent`` header, over real HTTP against the emulator."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from cloudq_gcp.push import make_wsgi_app
from push_helpers import ensure_queue, make_app, post, push_body

from cloudq.testing.spans import memory_spans, one_send_and_run

pytestmark = [pytest.mark.gcp, pytest.mark.timeout(60), pytest.mark.usefixtures("pubsub_emulator")]


def test_a_pushed_task_runs_in_the_producers_trace(
    project: str, unique: str, wsgi_server: Callable[[Any], str]
) -> None:
    spans = memory_spans()
    app = make_app(project, unique)

    @app.task()
    def add(a: int, b: int) -> int:
        return a + b

    paths = ensure_queue(app)
    [(queue, message)] = app.messages_for([add.s(2, 2)])  # encoded (and traced) as a send would
    url = wsgi_server(make_wsgi_app(app))
    status, answer, _ = post(url, push_body(message.body, paths.subscription, attempt=1, message_id="77"))
    assert (status, answer["outcome"]) == (200, "succeeded")
    _, run = one_send_and_run(spans, "gcp_pubsub")
    assert run.attributes is not None
    assert (run.name, run.attributes["messaging.message.id"]) == (f"process {queue}", "77")
    spans.clear()
