"""The process pool: tasks run in child processes that import the app; the parent survives
whatever a child does (hard time limit kill, os._exit) and starts a replacement."""

from __future__ import annotations

import os
import signal
from pathlib import Path

import pytest
from worker_helpers import Running, run_burst, wait_for

from cloudq import states
from cloudq.errors import ConfigurationError
from cloudq.runtime.worker import Worker
from cloudq.testing import SignalRecorder

pytestmark = pytest.mark.timeout(90)


def process_worker(app, **options) -> Worker:
    options = {"concurrency": 2, "burst": True, "kill_grace_s": 0.5, **options}
    return Worker(app, pool="process", app_path="tasks_app:app", **options)


def test_process_pool_runs_tasks_in_children(tasks_app, tmp_path: Path):
    marks = tmp_path / "marks.txt"
    handles = tasks_app.add.send_each([(i, 1) for i in range(20)])
    token = tasks_app.mark.delay(str(marks), "ran")
    worker = process_worker(tasks_app.app)
    assert run_burst(worker) == 0
    assert [h.get(timeout=5) for h in handles] == [i + 1 for i in range(20)]
    assert token.get(timeout=5) == "ran"
    assert marks.read_text().splitlines() == ["ran"]
    assert worker.counts["ack"] == 21


def test_hard_time_limit_kills_a_child_stuck_in_c_and_the_pool_goes_on(tasks_app):
    stuck = tasks_app.stuck.delay(60)  # time_limit=0.5, max_retries=0: time.sleep ignores the soft limit
    after = tasks_app.add.send_each([(1, 1), (2, 2), (3, 3)])
    assert run_burst(process_worker(tasks_app.app, concurrency=1)) == 0
    record = stuck.record
    assert record is not None and record.state == states.FAILURE
    assert record.error_type == "cloudq.errors.TimeLimitExceeded"
    assert "worker process killed" in (record.error_message or "")
    assert [h.get(timeout=5) for h in after] == [2, 4, 6]  # run by the replacement child
    [dead] = tasks_app.app.broker.dead_letters(tasks_app.app.queues()[0])
    assert "TimeLimitExceeded" in dead.reason


def test_a_child_calling_os_exit_is_retried_then_failed_and_the_worker_survives(tasks_app):
    doomed = tasks_app.die.delay(7)  # max_retries=1: two attempts, both kill their process
    after = tasks_app.add.delay(20, 22)
    worker = process_worker(tasks_app.app, concurrency=1)
    assert run_burst(worker) == 0
    record = doomed.record
    assert record is not None and record.state == states.FAILURE and record.attempts == 2
    assert record.error_type == "cloudq.errors.WorkerLost"
    assert record.error_message == "worker process died with exit code 7"
    assert after.get(timeout=5) == 42
    assert worker.counts["nack"] == 1 and worker.counts["dead_letter"] == 1


def test_a_pool_that_cannot_import_the_app_fails_with_one_clear_error(tasks_app):
    worker = Worker(tasks_app.app, pool="process", app_path="no_such_module_here:app", concurrency=1, burst=True)
    with pytest.raises(ConfigurationError, match="cannot load app 'no_such_module_here:app'"):
        worker.run()


def test_a_child_that_dies_while_idle_is_replaced_without_costing_an_attempt(tasks_app, caplog):
    worker = process_worker(tasks_app.app, concurrency=1, burst=False)
    with Running(worker), caplog.at_level("WARNING", logger="cloudq.worker"):
        assert tasks_app.add.delay(1, 1).get(timeout=30) == 2
        [runner] = worker.runners
        child = runner.process
        assert child is not None
        os.kill(child.pid, signal.SIGKILL)
        wait_for(lambda: child.exitcode is not None)
        handle = tasks_app.add.delay(2, 2)
        assert handle.get(timeout=30) == 4
    assert handle.record is not None and handle.record.attempts == 1
    assert any("exited with code -9 while idle" in r.getMessage() for r in caplog.records)


def test_each_child_fires_worker_process_init_before_its_tasks_and_process_shutdown_at_exit(
    tasks_app, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
):
    marks = tmp_path / "process-marks.txt"
    monkeypatch.setenv("CLOUDQ_TEST_PROCESS_MARKS", str(marks))
    handles = [tasks_app.process_inits.delay() for _ in range(6)]
    with SignalRecorder() as recorder:
        worker = process_worker(tasks_app.app)
        assert run_burst(worker) == 0
    seen = [h.get(timeout=5) for h in handles]
    assert all(len(pids) == 1 for pids in seen)  # fired once in the child, before its first task
    lines = marks.read_text().splitlines()
    children = {int(line.split()[1]) for line in lines if line.startswith("init")}
    assert len(children) == 2 and {pids[0] for pids in seen} <= children
    assert sorted(line for line in lines if line.startswith("shutdown")) == sorted(
        f"shutdown {pid} 0" for pid in children
    )
    names = [name for name, _ in recorder.named()]  # the parent's: no process signal fires there
    assert names == ["worker_init", "worker_ready", "worker_shutting_down", "worker_shutdown"]
