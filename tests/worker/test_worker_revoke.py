"""revoke(terminate=True) on the process pool: the child running the task is killed with the
revoke's signal (SIGKILL after the kill grace when the child ignores it, as children ignore
SIGTERM), the task is recorded REVOKED, its message acked, the child replaced, the worker goes on."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from worker_helpers import Running, wait_for

from cloudq import signals, states
from cloudq.errors import TaskRevokedError
from cloudq.runtime.worker import Worker

pytestmark = pytest.mark.timeout(90)


@pytest.mark.parametrize(("signal_name", "signum"), [("SIGKILL", 9), ("SIGTERM", 15)])
def test_terminate_kills_the_child_running_a_revoked_task(tasks_app, tmp_path: Path, signal_name: str, signum: int):
    fired: list[dict[str, Any]] = []

    def receiver(sender: Any = None, **kwargs: Any) -> None:
        fired.append(kwargs)

    signals.task_revoked.connect(receiver)
    marks = tmp_path / "marks.txt"
    sleeper = tasks_app.slow.delay(str(marks), 60)
    worker = Worker(
        tasks_app.app, pool="process", app_path="tasks_app:app", concurrency=1, kill_grace_s=0.2, revoke_poll_s=0.05
    )
    try:
        with Running(worker):
            wait_for(lambda: marks.exists() and "started" in marks.read_text(), timeout=60)
            assert sleeper.revoke(terminate=True, signal=signal_name) is None  # Celery's return value
            wait_for(lambda: worker.counts.get("ack", 0) == 1, timeout=30)
            after = tasks_app.add.delay(20, 22)  # run by the replacement child
            assert after.get(timeout=30) == 42
    finally:
        signals.task_revoked.disconnect(receiver)
    assert sleeper.state == states.REVOKED
    with pytest.raises(TaskRevokedError, match=f"terminate with {signal_name}"):
        sleeper.get(timeout=5)
    assert worker.counts == {"ack": 2}  # acked, never retried nor dead-lettered
    [revoked] = fired
    assert revoked["request"].id == sleeper.id
    assert (revoked["terminated"], revoked["signum"], revoked["expired"]) == (True, signum, False)
    assert marks.read_text().splitlines() == ["started"]  # it never ran again
