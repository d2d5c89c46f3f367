"""Worker presence: the records workers write, and ``cloudq status`` / ``cloudq inspect`` reading
them -- unit cases on the memory store with an injected clock, then two real worker processes
on SQLite running a slow task."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from cloudq.backends.memory import MemoryResultStore
from cloudq.cli import main
from cloudq.interfaces import Delivery, Heartbeat
from cloudq.runtime.executor import Ack, DeadLetter, Requeue, RetryIn
from cloudq.runtime.presence import Presence, Tracker, outcome_kind
from cloudq.testing.waiting import wait_for

pytestmark = pytest.mark.timeout(120)


class Clock:
    """Starts at the real time: the stores expire records by the real clock."""

    def __init__(self) -> None:
        self.now = time.time()

    def __call__(self) -> float:
        return self.now


def delivery(task_id: str, name: str = "t.slow", queue: str = "default") -> Delivery:
    body = json.dumps({"v": 1, "id": task_id, "task": name}).encode()
    return Delivery(body, receipt=task_id, delivery_count=1, queue=queue, message_id=f"m-{task_id}")


class FlakyStore(MemoryResultStore):
    def __init__(self) -> None:
        super().__init__()
        self.fail = True

    def beat(self, heartbeat: Heartbeat, ttl_s: float) -> None:
        if self.fail:
            raise OSError("store unreachable")
        super().beat(heartbeat, ttl_s)


def test_outcomes_count_as_celery_counts_them() -> None:
    assert [
        outcome_kind(o)
        for o in (Ack(), Ack("duplicate"), Ack("expired"), Ack("retried"), RetryIn(1.0), DeadLetter("ValueError: x"))
    ] == ["succeeded", None, None, "retried", "retried", "failed"]
    requeued = Requeue(message=None, event="deferred")  # type: ignore[arg-type]
    assert outcome_kind(requeued) is None


def test_the_record_lists_running_and_reserved_tasks_and_counts() -> None:
    clock = Clock()
    store, tracker = MemoryResultStore(), Tracker(clock)
    running, waiting = delivery("t1"), delivery("t2", "t.other", "low")
    seen: dict[str, Any] = {}

    def run(d: Delivery) -> Ack:
        presence.beat()  # inside the task: the record shows it active, t2 reserved
        seen.update(store.alive()[0].info)
        return Ack()

    presence = Presence(
        store, "w1", {"hostname": "cloudq@h", "queues": ["default"]}, 30, tracker, lambda: [running, waiting], clock
    )
    tracker.run(run, running)
    tracker.run(lambda d: DeadLetter("ValueError: no"), delivery("t3"))
    assert seen["active"] == [{"id": "t1", "name": "t.slow", "queue": "default", "started": clock.now}]
    assert seen["reserved"] == [{"id": "t2", "name": "t.other", "queue": "low"}]
    assert (seen["active_count"], seen["reserved_count"], seen["hostname"]) == (1, 1, "cloudq@h")
    presence.beat()
    info = store.alive()[0].info
    assert info["counts"] == {"succeeded": 1, "failed": 1, "retried": 0} and info["active"] == []
    assert info["pid"] == os.getpid() and info["version"]


def test_invocation_paths_write_at_most_once_per_interval() -> None:
    clock, store = Clock(), MemoryResultStore()
    presence = Presence(store, "lambda@1", {}, 30, Tracker(), clock=clock)
    wrote = []
    for step in (0, 10, 19, 1, 5, 30):  # seconds between invocations
        clock.now += step
        wrote.append(presence.maybe_beat())
    assert wrote == [True, False, False, True, False, True] and presence.written == 3


def test_a_failed_write_is_logged_and_the_next_one_retries(caplog: pytest.LogCaptureFixture) -> None:
    store = FlakyStore()
    presence = Presence(store, "w1", {}, 30, Tracker())
    assert presence.beat() is False and "store unreachable" in caplog.text
    store.fail = False
    assert presence.beat() is True and [b.worker_id for b in store.alive()] == ["w1"]


def test_a_stopping_worker_leaves_the_listing_at_once() -> None:
    store = MemoryResultStore()
    presence = Presence(store, "w1", {}, 30, Tracker())
    presence.start()
    wait_for(lambda: store.alive(), what="the first record")
    presence.stop()
    assert store.alive() == []


# -- two real workers, the CLI ----------------------------------------------------------------

APP = textwrap.dedent(
    """
    import pathlib, time
    from cloudq import App

    app = App("pres", broker="sqlite:///{db}")

    @app.task(name="slow")
    def slow(flag: str) -> str:
        while not pathlib.Path(flag).exists():
            time.sleep(0.02)
        return "done"

    @app.task(name="fails")
    def fails() -> None:
        raise ValueError("no")
    """
)


@pytest.fixture
def project(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    for name in ("CLOUDQ_BROKER", "CLOUDQ_RESULTS", "CLOUDQ_APP"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("CLOUDQ_PRESENCE_INTERVAL", "0.2")
    (tmp_path / "presapp.py").write_text(APP.format(db=tmp_path / "q.db"))
    monkeypatch.chdir(tmp_path)
    monkeypatch.syspath_prepend(str(tmp_path))
    yield tmp_path
    sys.modules.pop("presapp", None)


def cli(*args: str) -> Any:
    return CliRunner().invoke(main, list(args))


def cli_json(*args: str) -> Any:
    result = cli(*args, "-A", "presapp:app", "--json")
    assert result.exit_code == 0, result.output
    return json.loads(result.output)


def alive() -> list[dict[str, Any]]:
    """``cloudq status --json``; [] while none is alive (exit code 69)."""
    result = cli("status", "-A", "presapp:app", "--json")
    assert result.exit_code in (0, 69), result.output
    return json.loads(result.output) if result.exit_code == 0 else []


def start_worker(cwd: Path) -> subprocess.Popen[str]:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(cwd), os.environ.get("PYTHONPATH", "")])}
    command = [sys.executable, "-m", "cloudq", "worker", "-A", "presapp:app", "-c", "1", "--poll-wait", "0.2"]
    return subprocess.Popen(command, cwd=cwd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


def test_two_workers_show_in_status_and_a_slow_task_in_inspect_active(project: Path) -> None:
    assert cli("status", "-A", "presapp:app").exit_code == 69  # Celery's "no node replied"
    workers = [start_worker(project) for _ in range(2)]
    try:
        statuses = wait_for(lambda: len(found := alive()) == 2 and found, 30, 0.1, "two workers")
        assert len({s["worker_id"] for s in statuses}) == 2
        flag = project / "go"
        sent = cli("send", "-A", "presapp:app", "slow", "--args", json.dumps([str(flag)]))
        task_id = sent.output.strip()

        def active() -> list[dict[str, Any]]:
            return [task for tasks in cli_json("inspect", "active").values() for task in tasks]

        running = wait_for(lambda: active(), 30, 0.1, "the slow task listed as active")
        assert [(t["id"], t["name"], t["queue"]) for t in running] == [(task_id, "slow", "default")]
        assert running[0]["started"] <= time.time()
        table = cli("inspect", "active", "-A", "presapp:app")
        assert f"* slow[{task_id}] queue=default running" in table.output and "2 nodes online." in table.output
        flag.write_text("")
        assert set(cli_json("inspect", "active")) == {s["worker_id"] for s in statuses}  # keyed by worker id
        cli("send", "-A", "presapp:app", "fails")

        def totals() -> dict[str, int]:
            summed: dict[str, int] = {}
            for stats in cli_json("inspect", "stats").values():
                for kind, n in stats["total"].items():
                    summed[kind] = summed.get(kind, 0) + n
            return summed

        wait_for(lambda: totals() == {"succeeded": 1, "failed": 1, "retried": 0}, 30, 0.1, "the counts")
        stats = cli_json("inspect", "stats")
        assert {s["pool"]["implementation"] for s in stats.values()} == {"threads"}
        assert all(s["pid"] in {w.pid for w in workers} for s in stats.values())
        hour = [minute for s in stats.values() for queue in s["series"].values() for minute in queue.values()]
        assert (sum(m["succeeded"] for m in hour), sum(m["failed"] for m in hour)) == (1, 1), "the series agrees"
        assert (
            sum(m["run"]["count"] for m in hour) == 2 and 1 <= sum(m["wait"]["count"] for m in hour) <= 2
        )  # waits sampled
        assert all(m["minutes"] == 1 and m["run"]["p95_s"] is not None for m in hour)
        assert "last hour: succeeded=" in cli("inspect", "stats", "-A", "presapp:app").output
        assert cli_json("inspect", "registered") == {"fails": "default", "slow": "default"}
        wait_for(lambda: active() == [], 10, 0.1, "nothing active once done")
    finally:
        (project / "go").write_text("")
        for worker in workers:
            worker.send_signal(signal.SIGTERM)
        for worker in workers:
            worker.wait(30)
    assert [w.returncode for w in workers] == [0, 0]
    result = cli("status", "-A", "presapp:app")
    assert result.exit_code == 69, result.output  # each wrote a record that expires at once


def test_inspect_without_a_subcommand_still_prints_queue_counts(project: Path) -> None:
    cli("send", "-A", "presapp:app", "fails")
    assert cli_json("inspect") == cli_json("inspect", "queues")
    assert cli_json("inspect")[0]["ready"] == 1


def test_presence_off_says_so(project: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CLOUDQ_PRESENCE_INTERVAL", "0")
    result = CliRunner().invoke(main, ["status", "-A", "presapp:app"])
    assert result.exit_code == 69 and "presence is off" in result.stderr
