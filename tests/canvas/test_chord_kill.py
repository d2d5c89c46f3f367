"""A worker process SIGKILLed between a chord header task's result write and its count: the
message comes back, the lost count is made up by the redelivery's check, and the body runs once."""

from __future__ import annotations

import importlib
import os
import subprocess
import sys
from pathlib import Path

import pytest

from cloudq import chord
from cloudq.testing.waiting import wait_for
from cloudq.testing.workers import run_burst

HERE = Path(__file__).parent


def test_a_worker_killed_before_a_header_count_still_runs_the_body_once(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    url = f"sqlite:///{tmp_path / 'kill.db'}"
    journal, marker = tmp_path / "journal", tmp_path / "killed"
    env = {"CLOUDQ_BROKER": url, "CLOUDQ_RESULTS": url, "CLOUDQ_VISIBILITY_TIMEOUT": "1"}
    for name, value in {**env, "CANVAS_JOURNAL": str(journal)}.items():
        monkeypatch.setenv(name, value)
    monkeypatch.syspath_prepend(str(HERE))
    import chord_kill_app

    module = importlib.reload(chord_kill_app)  # an App reading this test's environment (no kill marker)
    app = module.app
    result = chord(module.add.s(i, i) for i in range(4))(module.total.s())
    worker = subprocess.run(
        [sys.executable, "-m", "cloudq", "worker", "-A", "chord_kill_app:app", "--burst"],
        env={
            **os.environ,
            "CANVAS_KILL_MARKER": str(marker),
            "PYTHONPATH": os.pathsep.join([str(HERE), os.environ.get("PYTHONPATH", "")]),
        },
        capture_output=True,
        timeout=60,
    )
    assert worker.returncode == -9, worker.stderr.decode()[-2000:]  # killed at its first count
    assert marker.exists() and "total" not in journal.read_text()
    wait_for(lambda: app.broker.stats("default").ready >= 1, timeout=30, what="the killed header's message back")
    run_burst(app, timeout=90)
    assert result.get(timeout=30) == 12
    lines = journal.read_text().splitlines()
    assert lines.count("total 12") == 1, lines
    assert {f"add {i} {i}" for i in range(4)} <= set(lines)
    app.close()
