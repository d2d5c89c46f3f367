"""A worker process SIGKILLed between a chain step's result write and its ack: the message comes
back, and the next step is still sent exactly once, with the first run's result."""

from __future__ import annotations

import importlib
import os
import subprocess
import sys
from pathlib import Path

import pytest

from cloudq.testing.waiting import wait_for
from cloudq.testing.workers import run_burst

HERE = Path(__file__).parent


def test_a_worker_killed_after_the_result_write_still_sends_the_next_step_once(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    url = f"sqlite:///{tmp_path / 'kill.db'}"
    journal, marker = tmp_path / "journal", tmp_path / "killed"
    env = {"CLOUDQ_BROKER": url, "CLOUDQ_RESULTS": url, "CLOUDQ_VISIBILITY_TIMEOUT": "1"}
    for name, value in {**env, "CANVAS_JOURNAL": str(journal), "CANVAS_KILL_MARKER": str(marker)}.items():
        monkeypatch.setenv(name, value)
    monkeypatch.syspath_prepend(str(HERE))
    import kill_app

    kill_app = importlib.reload(kill_app)  # an App reading this test's environment
    app = kill_app.app
    result = (kill_app.first.s(2, 3) | kill_app.then.s(100)).apply_async()
    worker = subprocess.run(
        [sys.executable, "-m", "cloudq", "worker", "-A", "kill_app:app", "--burst"],
        env={**os.environ, "PYTHONPATH": os.pathsep.join([str(HERE), os.environ.get("PYTHONPATH", "")])},
        capture_output=True,
        timeout=60,
    )
    assert worker.returncode == -9, worker.stderr.decode()[-2000:]  # killed by its own task_success
    assert marker.exists() and app.results.get(result.parent.id).state == "SUCCESS"
    assert journal.read_text().splitlines() == ["first 2 3"]  # the next step was never sent
    # the lease runs out (1 s) and the message comes back; then a fresh worker runs it
    wait_for(lambda: app.broker.stats("default").ready >= 1, timeout=30, what="the killed step's message back")
    run_burst(app, timeout=60)
    assert result.get(timeout=10) == 105
    assert journal.read_text().splitlines() == ["first 2 3", "first 2 3", "then 5 100"]
    app.close()
