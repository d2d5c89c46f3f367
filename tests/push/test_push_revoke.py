"""Revoke behind the Pub/Sub push endpoint: a revoked message is answered 200 without running (one
read of its result record first: a push carries one message, so it cannot be batched)."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import pytest
from cloudq_gcp.push import make_wsgi_app
from push_helpers import ensure_queue, make_app, post, push_body

from cloudq import signals, states
from cloudq.envelope import build
from cloudq.errors import TaskRevokedError

pytestmark = [pytest.mark.gcp, pytest.mark.timeout(60), pytest.mark.usefixtures("pubsub_emulator")]


@pytest.mark.parametrize("check", [True, False])
def test_a_revoked_push_is_acked_without_running(
    project: str, unique: str, wsgi_server: Callable[[Any], str], check: bool
) -> None:
    app = make_app(project, unique, revoke_check=check)
    runs: list[int] = []
    fired: list[dict[str, Any]] = []

    @app.task(name="count")
    def count(n: int) -> int:
        runs.append(n)
        return n

    def receiver(sender: Any = None, **kwargs: Any) -> None:
        fired.append(kwargs)

    paths = ensure_queue(app)
    url = wsgi_server(make_wsgi_app(app))
    task_id = f"t-{time.monotonic_ns()}"
    app.control.revoke(task_id)
    body = build(task_id, "count", [5], {}, sent_at=time.time())
    signals.task_revoked.connect(receiver)
    try:
        status, answer, _ = post(url, push_body(body, paths.subscription, attempt=1))
    finally:
        signals.task_revoked.disconnect(receiver)
    assert status == 200
    handle = app.AsyncResult(task_id)
    assert handle.state == states.REVOKED  # ran or not, its result never replaces the REVOKED record
    with pytest.raises(TaskRevokedError):
        handle.get(timeout=5)
    if check:
        assert answer["outcome"] == "revoked" and runs == []
        [revoked] = fired
        assert revoked["request"].id == task_id and revoked["expired"] is False
    else:  # revoke_check = false: not read, so it ran
        assert answer["outcome"] == "succeeded" and runs == [5] and fired == []
