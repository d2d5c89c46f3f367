"""``cloudq worker -Q`` naming a queue no task routes to: a warning, and the worker still runs."""

from __future__ import annotations

from pathlib import Path

import pytest

from cloudq.testing.workers import run_worker_process

pytestmark = [pytest.mark.slow, pytest.mark.timeout(120)]

HERE = Path(__file__).parent


def test_a_queue_no_task_routes_to_is_warned_about_and_still_consumed(tasks_app) -> None:
    handle = tasks_app.app.send_task(tasks_app.add.name, [1, 2], queue="nosuch")  # sent there explicitly
    done = run_worker_process("tasks_app:app", HERE, "-Q", "nosuch", "-l", "INFO", "--max-wait", "0")
    assert done.returncode == 0, done.stderr[-3000:]
    [warning] = [line for line in done.stderr.splitlines() if "routes to queue" in line]
    assert "WARNING" in warning and "'nosuch'" in warning and "(its tasks route to: default)" in warning, warning
    assert handle.get(timeout=10) == 3  # consumed anyway
