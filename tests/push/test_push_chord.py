"""A chord through the Pub/Sub push endpoint: the emulator pushes every header task and the
body to a real server; the body runs once with the header's results in order."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from cloudq_gcp.push import make_wsgi_app
from push_helpers import make_app, push_to

from cloudq import chord

pytestmark = [pytest.mark.gcp, pytest.mark.timeout(90), pytest.mark.usefixtures("pubsub_emulator")]


def test_a_chord_runs_behind_the_push_endpoint(project: str, unique: str, wsgi_server: Callable[[Any], str]) -> None:
    app = make_app(project, unique)
    runs: list[list[int]] = []

    @app.task()
    def add(a: int, b: int) -> int:
        return a + b

    @app.task()
    def collect(numbers: list[int]) -> list[int]:
        runs.append(numbers)
        return numbers

    push_to(app, wsgi_server(make_wsgi_app(app)) + "/")
    result = chord([add.s(i, 10) for i in range(5)], collect.s()).apply_async()
    assert result.get(timeout=40) == [10, 11, 12, 13, 14]
    assert runs == [[10, 11, 12, 13, 14]]
