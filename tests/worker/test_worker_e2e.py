"""End to end: ``python -m cloudq worker`` in subprocesses on the SQLite backend, stopped with
real signals. The app is tests/worker/tasks_app.py; broker and results are a temporary file."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest
from worker_helpers import wait_for

from cloudq import states

pytestmark = [pytest.mark.slow, pytest.mark.timeout(90)]

HERE = Path(__file__).parent


class WorkerProcess:
    def __init__(self, log: Path, *args: str, lease_s: float) -> None:
        env = {**os.environ, "CLOUDQ_VISIBILITY_TIMEOUT": str(lease_s)}
        self.log = log
        with log.open("wb") as out:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "cloudq", "worker", "-A", "tasks_app:app", "--loglevel", "INFO", *args],
                cwd=HERE,
                env=env,
                stdout=out,
                stderr=subprocess.STDOUT,
            )

    def output(self) -> str:
        return self.log.read_text(errors="replace")

    def wait(self, timeout: float) -> int:
        try:
            return self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
            raise AssertionError(f"worker did not exit within {timeout}s; output:\n{self.output()}") from None

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()


@pytest.fixture
def workers(tmp_path: Path):
    started: list[WorkerProcess] = []

    def start(*args: str, lease_s: float = 60.0) -> WorkerProcess:
        worker = WorkerProcess(tmp_path / f"worker{len(started)}.log", *args, lease_s=lease_s)
        started.append(worker)
        return worker

    yield start
    for worker in started:
        worker.kill()


def lines(path: Path) -> list[str]:
    return path.read_text().splitlines() if path.exists() else []


def test_sigterm_releases_prefetched_messages_to_a_second_worker_at_once(tasks_app, workers, tmp_path: Path):
    broker, queue = tasks_app.app.broker, tasks_app.app.queues()[0]
    started, marks = tmp_path / "started.txt", tmp_path / "marks.txt"
    slow = tasks_app.slow.delay(str(started), 2.0)
    quick = [tasks_app.mark.delay(str(marks), f"q{i}") for i in range(3)]
    # a 60 s lease: if the prefetched messages were not released, the second worker would wait that long
    first = workers("-c", "1", "--prefetch-multiplier", "4", lease_s=60)
    wait_for(started.exists, timeout=30)
    assert broker.stats(queue).in_flight == 4  # one running, three prefetched
    first.proc.send_signal(signal.SIGTERM)
    wait_for(lambda: broker.stats(queue).ready == 3, timeout=10)
    second = workers("--burst", "-c", "1", lease_s=60)
    assert second.wait(30) == 0, second.output()
    assert sorted(lines(marks)) == ["q0", "q1", "q2"]
    assert [h.get(timeout=1) for h in quick] == ["q0", "q1", "q2"]
    assert first.wait(30) == 0, first.output()  # the running task finished within the grace period
    assert slow.get(timeout=1) == "done"
    assert "released 3 prefetched message(s)" in first.output()
    stats = broker.stats(queue)
    assert (stats.ready, stats.in_flight, stats.delayed, stats.dead_lettered) == (0, 0, 0, 0)


def test_a_second_sigterm_exits_at_once(tasks_app, workers, tmp_path: Path):
    started = tmp_path / "started.txt"
    tasks_app.slow.delay(str(started), 60.0)
    worker = workers("-c", "1", "--grace", "60", lease_s=60)
    wait_for(started.exists, timeout=30)
    worker.proc.send_signal(signal.SIGTERM)
    wait_for(lambda: "worker stopping" in worker.output(), timeout=10)
    worker.proc.send_signal(signal.SIGTERM)
    assert worker.wait(10) == 128 + signal.SIGTERM


def test_sigkill_mid_task_runs_the_task_again_after_its_lease(tasks_app, workers, tmp_path: Path):
    broker, queue = tasks_app.app.broker, tasks_app.app.queues()[0]
    marks = tmp_path / "marks.txt"
    handle = tasks_app.sleep_first_attempt.delay(str(marks), 60.0)
    first = workers("-c", "1", lease_s=1)
    wait_for(lambda: lines(marks) == ["attempt 1"], timeout=30)
    first.proc.kill()  # SIGKILL: no shutdown, no release, no ack
    first.proc.wait()
    wait_for(lambda: broker.stats(queue).ready == 1, timeout=10)  # the lease ran out: nothing lost
    second = workers("--burst", "-c", "1", lease_s=1)
    assert second.wait(30) == 0, second.output()
    assert lines(marks) == ["attempt 1", "attempt 2"]
    assert handle.get(timeout=1) == 2
    assert handle.record is not None and handle.record.state == states.SUCCESS


def test_process_pool_from_the_command_line(tasks_app, workers):
    handles = tasks_app.add.send_each([(i, i) for i in range(10)])
    worker = workers("--pool", "process", "-c", "2", "--burst")
    assert worker.wait(60) == 0, worker.output()
    assert [h.get(timeout=1) for h in handles] == [2 * i for i in range(10)]
    assert "started 2 pool processes" in worker.output()
