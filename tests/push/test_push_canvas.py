"""A chain through the Pub/Sub push handler (emulator): each step's outcome publishes the next one
before the push is answered, with the results a worker gives (tests/canvas/test_chain.py)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from cloudq_gcp.push import make_wsgi_app
from push_helpers import make_app, push_to

from cloudq import chain

pytestmark = [pytest.mark.gcp, pytest.mark.timeout(60), pytest.mark.usefixtures("pubsub_emulator")]


def test_a_chain_and_its_link_error_run_through_push(
    project: str, unique: str, wsgi_server: Callable[[Any], str]
) -> None:
    app = make_app(project, unique)

    @app.task(name="canvas.add")
    def add(x: int, y: int) -> int:
        return x + y

    @app.task(name="canvas.fail")
    def fail(x: int) -> int:
        raise ValueError(f"boom {x}")

    @app.task(name="canvas.failed_id")
    def failed_id(task_id: str) -> str:
        return f"failed:{task_id}"

    push_to(app, wsgi_server(make_wsgi_app(app)) + "/")
    result = (add.s(2, 2) | add.s(4) | add.s(8)).apply_async()
    assert [result.get(timeout=20), result.parent.get(timeout=5), result.parent.parent.get(timeout=5)] == [16, 8, 4]
    errback = failed_id.s()
    notified = errback.freeze()
    failing = chain(add.s(1, 1), fail.s(), add.s(1))
    failing.link_error(errback)
    end = failing.apply_async()
    with pytest.raises(ValueError, match="boom 2"):
        end.get(timeout=20)
    assert notified.get(timeout=20) == f"failed:{end.parent.id}"
