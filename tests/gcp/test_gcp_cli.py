"""``cloudq worker --burst`` as a subprocess against the Pub/Sub and Firestore emulators."""

from __future__ import annotations

import importlib
import textwrap
import time
from pathlib import Path

import pytest
from gcp_apps import gcp_urls

from cloudq import states
from cloudq.testing.workers import run_worker_process

pytestmark = [pytest.mark.gcp, pytest.mark.slow, pytest.mark.timeout(120)]

TASKS = """
import time

from cloudq import App

app = App("gcp-e2e")


@app.task()
def add(a: int, b: int) -> int:
    return a + b


@app.task()
def stamp() -> float:
    return time.time()


@app.task(max_retries=0)
def boom() -> None:
    raise ValueError("no")
"""


def test_worker_subprocess_runs_pubsub_tasks_and_writes_firestore_results(
    pubsub_emulator, firestore_emulator, project: str, unique: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    module = f"gcp_e2e_{unique}"
    (tmp_path / f"{module}.py").write_text(textwrap.dedent(TASKS))
    monkeypatch.syspath_prepend(str(tmp_path))
    broker, results = gcp_urls(project, unique)
    monkeypatch.setenv("CLOUDQ_BROKER", broker)
    monkeypatch.setenv("CLOUDQ_RESULTS", results)
    tasks = importlib.import_module(module)
    handles = tasks.add.send_each([(i, 1) for i in range(12)])
    eta = time.time() + 2
    delayed = tasks.stamp.apply_async(eta=eta)
    failed = tasks.boom.delay()
    done = run_worker_process(f"{module}:app", tmp_path, "-c", "2", "-l", "WARNING")
    assert done.returncode == 0, done.stderr[-3000:]
    assert [h.get(timeout=10) for h in handles] == [i + 1 for i in range(12)]
    assert delayed.get(timeout=10) >= eta
    with pytest.raises(ValueError, match="no"):
        failed.get(timeout=10)
    assert failed.status == states.FAILURE
    [dead] = tasks.app.broker.dead_letters("default")
    assert dead.reason.startswith("ValueError: no")
    tasks.app.close()
