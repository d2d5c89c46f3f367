"""``cloudq worker -Q`` naming a queue no task routes to: a warning, and the worker still runs."""

from __future__ import annotations

import importlib
import sys
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


def test_the_worker_concurrency_reaches_the_apps_settings(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """``-c`` is seen by the app's settings, which size the backends' connection pools (SQS/DynamoDB)."""
    (tmp_path / "conc_app.py").write_text(
        "from cloudq import App\n"
        "app = App('conc', broker='sqlite:///conc.db', results='sqlite:///conc.db')\n"
        "@app.task()\n"
        "def concurrency() -> int:\n"
        "    return app.settings.concurrency or 0\n"
    )
    monkeypatch.chdir(tmp_path)
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.delitem(sys.modules, "conc_app", raising=False)
    handle = importlib.import_module("conc_app").concurrency.delay()
    done = run_worker_process("conc_app:app", tmp_path, "-c", "7", "--max-wait", "0")
    assert done.returncode == 0, done.stderr[-3000:]
    assert handle.get(timeout=10) == 7
