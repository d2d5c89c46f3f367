"""The worker flags Celery users type: -P prefork/solo, -n, --max-tasks-per-child,
--max-memory-per-child, --autoscale and -E (in-process Workers, and one real ``cloudq worker``)."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import threading
from collections import Counter
from pathlib import Path

import pytest
from click.testing import CliRunner
from worker_helpers import Running, run_burst, wait_for

from cloudq.cli import main
from cloudq.errors import ConfigurationError
from cloudq.runtime.autoscale import Autoscaler, parse_autoscale
from cloudq.runtime.nodename import node_name
from cloudq.runtime.worker import Worker
from cloudq.testing.clock import FakeClock

pytestmark = pytest.mark.timeout(120)
HERE = Path(__file__).parent


# -- -n/--hostname ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("pattern", "expected"),
    [
        (None, "cloudq@box.example.com"),
        ("w1@%h", "w1@box.example.com"),
        ("w1@%n", "w1@box"),
        ("w1@%n.%d", "w1@box.example.com"),
        ("%h", "cloudq@box.example.com"),  # no name part: cloudq's default, as Celery's celery@
        ("w1", "cloudq@w1"),
        ("a@b@%n", "a@b@box"),  # split at the first @, as Celery does
        ("w%%1@%n", "w%1@box"),
    ],
)
def test_node_names_expand_like_celery(pattern, expected):
    assert node_name(pattern, "box.example.com") == expected


def test_the_hostname_setting_is_self_request_hostname(make_app):
    app = make_app(hostname="w2@%n")

    @app.task(bind=True)
    def where(self) -> str:
        return str(self.request.hostname)

    handle = where.delay()
    assert run_burst(Worker(app, concurrency=1, burst=True)) == 0
    assert handle.get(timeout=1) == f"w2@{socket.gethostname().partition('.')[0]}"


@pytest.mark.parametrize("pattern", ["w%i@%h", "w1@%I", "w1@%x"])
def test_a_node_name_code_cloudq_cannot_expand_is_one_line(pattern):
    with pytest.raises(ConfigurationError, match=r"cannot be expanded; cloudq expands %h, %n, %d and %%"):
        node_name(pattern, "box")


# -- -P prefork / solo ------------------------------------------------------------------------------


def test_prefork_is_the_process_pool(tasks_app):
    handles = tasks_app.pid.send_each([(i,) for i in range(3)])
    worker = Worker(tasks_app.app, pool="prefork", app_path="tasks_app:app", concurrency=1, burst=True)
    assert worker.pool == "process"
    assert run_burst(worker) == 0
    assert os.getpid() not in {h.get(timeout=5) for h in handles}


def test_solo_runs_one_task_at_a_time_in_one_thread(make_app):
    app = make_app(concurrency=8)  # solo ignores the concurrency setting, as Celery's does
    lock = threading.Lock()
    running, most, threads = [0], [0], set()

    @app.task()
    def work(i: int) -> int:
        with lock:
            running[0] += 1
            most[0] = max(most[0], running[0])
            threads.add(threading.get_ident())
        with lock:
            running[0] -= 1
        return i

    handles = work.send_each([(i,) for i in range(20)])
    worker = Worker(app, pool="solo", burst=True)
    assert (worker.pool, worker.concurrency) == ("threads", 1)
    assert run_burst(worker) == 0
    assert [h.get(timeout=1) for h in handles] == list(range(20))
    assert most == [1] and len(threads) == 1


def test_solo_refuses_more_concurrency(make_app):
    app = make_app()
    with pytest.raises(ConfigurationError, match="solo pool runs one task at a time: drop concurrency=4"):
        Worker(app, pool="solo", concurrency=4, queues=["default"])


def test_an_unknown_pool_lists_celerys_names_too(make_app):
    with pytest.raises(ConfigurationError, match="unknown pool 'gevent'.*prefork, solo"):
        Worker(make_app(), pool="gevent", queues=["default"])


# -- max tasks / memory per child -------------------------------------------------------------------


def test_max_tasks_per_child_replaces_the_child_between_tasks(tasks_app):
    handles = tasks_app.pid.send_each([(i,) for i in range(5)])
    worker = Worker(
        tasks_app.app, pool="process", app_path="tasks_app:app", concurrency=1, burst=True, max_tasks_per_child=2
    )
    assert run_burst(worker) == 0
    pids = [h.get(timeout=5) for h in handles]
    assert sorted(Counter(pids).values()) == [1, 2, 2]  # a child per two tasks
    assert all(h.record is not None and h.record.attempts == 1 for h in handles)  # no task cut short
    assert worker.counts["ack"] == 5


def test_the_setting_and_celerys_name_apply_too(tasks_app):
    tasks_app.app.conf.worker_max_tasks_per_child = 1
    handles = tasks_app.pid.send_each([(i,) for i in range(3)])
    assert run_burst(Worker(tasks_app.app, pool="process", app_path="tasks_app:app", concurrency=1, burst=True)) == 0
    assert len({h.get(timeout=5) for h in handles}) == 3


def test_max_memory_per_child_replaces_a_child_left_above_it(tasks_app, caplog):
    handles = tasks_app.pid.send_each([(i,) for i in range(3)])
    worker = Worker(
        tasks_app.app, pool="process", app_path="tasks_app:app", concurrency=1, burst=True, max_memory_per_child=1
    )  # 1 KiB: every child is above it after its task
    with caplog.at_level("INFO", logger="cloudq.worker"):
        assert run_burst(worker) == 0
    assert len({h.get(timeout=5) for h in handles}) == 3
    assert any("max_memory_per_child=1 KiB" in r.getMessage() for r in caplog.records)


def test_a_child_under_its_memory_limit_is_kept(tasks_app):
    handles = tasks_app.pid.send_each([(i,) for i in range(3)])
    worker = Worker(
        tasks_app.app, pool="process", app_path="tasks_app:app", concurrency=1, burst=True, max_memory_per_child=2**30
    )
    assert run_burst(worker) == 0
    assert len({h.get(timeout=5) for h in handles}) == 1


@pytest.mark.parametrize("pool", ["threads", "async", "solo"])
def test_recycling_children_needs_the_process_pool(make_app, pool):
    with pytest.raises(ConfigurationError, match=f"need the process pool.*not {pool}"):
        Worker(make_app(), pool=pool, max_tasks_per_child=10, queues=["default"])


# -- autoscale --------------------------------------------------------------------------------------


def test_autoscale_grows_at_once_and_shrinks_after_the_keepalive():
    clock = FakeClock()
    scaler = Autoscaler(10, 2, keepalive_s=30, clock=clock)
    assert scaler.target(live=2, held=0) == 2
    assert scaler.target(live=2, held=7) == 7
    assert scaler.target(live=7, held=50) == 10  # bounded by MAX
    clock.now += 29
    assert scaler.target(live=10, held=0) == 10  # a short lull keeps the slots
    clock.now += 1
    assert scaler.target(live=10, held=3) == 3
    assert scaler.target(live=3, held=0) == 2  # never under MIN


@pytest.mark.parametrize(("value", "parsed"), [("10,3", (10, 3)), (" 4 , 4 ", (4, 4)), ("6", (6, 1))])
def test_autoscale_takes_max_comma_min(value, parsed):
    assert parse_autoscale(value, "--autoscale") == parsed


@pytest.mark.parametrize(
    ("value", "message"),
    [("3,x", "takes MAX,MIN"), ("1,2,3", "takes MAX,MIN"), ("3,5", "MAX must be between"), ("4,0", "MIN must be")],
)
def test_bad_autoscale_values_are_one_line(value, message):
    with pytest.raises(ConfigurationError, match=message):
        parse_autoscale(value, "--autoscale")


def test_the_threads_pool_autoscales_and_its_buffer_follows_the_live_slots(make_app):
    app = make_app()
    gate = threading.Event()
    lock = threading.Lock()
    running, most = [0], [0]

    @app.task()
    def blocked(i: int) -> int:
        with lock:
            running[0] += 1
            most[0] = max(most[0], running[0])
        gate.wait(30)
        with lock:
            running[0] -= 1
        return i

    handles = blocked.send_each([(i,) for i in range(12)])
    worker = Worker(
        app,
        autoscale=(4, 1),
        prefetch_multiplier=5,
        poll_wait_s=0.05,
        autoscale_keepalive_s=0,
        autoscale_interval_s=0.02,
    )
    assert worker.live == 1
    try:
        with Running(worker):
            wait_for(lambda: running[0] == 4 and worker.budget == 20)  # the buffer grew with the slots
            assert worker.live == 4
            gate.set()
            wait_for(lambda: all(h.ready() for h in handles))
            # back to 1 slot: 5 x 1, raised to one full receive batch (10)
            wait_for(lambda: worker.live == 1 and len(worker.runners) == 1 and worker.budget == 10)
    finally:
        gate.set()
    assert most == [4]
    assert [h.get(timeout=1) for h in handles] == list(range(12))


def test_the_process_pool_autoscales_its_children(tasks_app, tmp_path):
    worker = Worker(
        tasks_app.app,
        pool="process",
        app_path="tasks_app:app",
        autoscale=(2, 1),
        prefetch_multiplier=1,
        poll_wait_s=0.05,
        autoscale_keepalive_s=0,
        autoscale_interval_s=0.02,
    )
    marks = tmp_path / "marks"
    with Running(worker):
        handles = [tasks_app.slow.delay(str(marks), 1.0) for _ in range(4)]
        wait_for(lambda: len(worker.runners) == 2, timeout=30)
        wait_for(lambda: all(h.ready() for h in handles), timeout=60)
        wait_for(lambda: len(worker.runners) == 1, timeout=30)
    assert [h.get(timeout=1) for h in handles] == ["done"] * 4


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"pool": "async", "autoscale": (4, 1)}, "threads and process pools, not async"),
        ({"pool": "solo", "autoscale": (4, 1)}, "threads and process pools, not solo"),
        ({"autoscale": (4, 1), "concurrency": 2}, "not both"),
        ({"autoscale": (2, 3)}, "1 <= min <= max"),
    ],
)
def test_autoscale_misuse_is_one_line(make_app, options, message):
    with pytest.raises(ConfigurationError, match=message):
        Worker(make_app(), queues=["default"], **options)


# -- the command line -------------------------------------------------------------------------------


def test_worker_help_shows_every_celery_flag():
    result = CliRunner().invoke(main, ["worker", "--help"], terminal_width=200)
    assert result.exit_code == 0
    text = " ".join(result.output.split())
    for flag in ("-P, --pool", "prefork", "solo", "-n, --hostname", "--max-tasks-per-child", "--max-memory-per-child"):
        assert flag in text
    assert "--autoscale MAX,MIN" in text
    assert "-E, --task-events" in text and "cloudq has no event stream" in text


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--autoscale", "3,x"], "ConfigurationError: --autoscale takes MAX,MIN"),
        (["--autoscale", "4,2", "-c", "3"], "give --autoscale MAX,MIN or -c/--concurrency, not both"),
    ],
)
def test_worker_flag_mistakes_are_one_line(args, message):
    result = CliRunner().invoke(main, ["worker", "-A", "nowhere:app", *args])
    assert result.exit_code != 0 and message in result.output


def test_cloudq_worker_with_celerys_flags(tasks_app, clean_env):
    """A real ``cloudq worker -P prefork -n w1@%h -E --max-tasks-per-child 1``: the node name
    reaches the pool child's self.request.hostname, -E says what it does."""
    handles = [tasks_app.node.delay() for _ in range(2)]
    pids = tasks_app.pid.send_each([(i,) for i in range(2)])
    args = ["-P", "prefork", "-c", "1", "-n", "w1@%h", "-E", "--max-tasks-per-child", "1", "--burst"]
    done = subprocess.run(
        [sys.executable, "-m", "cloudq", "worker", "-A", "tasks_app:app", "-l", "INFO", *args],
        cwd=HERE,
        env=dict(os.environ),
        capture_output=True,
        text=True,
        timeout=90,
    )
    assert done.returncode == 0, done.stderr
    assert [h.get(timeout=5) for h in handles] == [f"w1@{socket.gethostname()}"] * 2
    assert len({h.get(timeout=5) for h in pids}) == 2
    assert f"worker started: w1@{socket.gethostname()}" in done.stderr
    assert "-E: cloudq has no event stream" in done.stderr


def test_the_process_pools_children_share_the_workers_one_bucket(tasks_app):
    """Celery's rate limits are per worker: two children, one token per minute between them."""
    from cloudq.runtime.ratelimit import RateLimits

    handles = tasks_app.limited.send_each([(i,) for i in range(3)])
    clock = FakeClock()
    worker = Worker(tasks_app.app, pool="process", app_path="tasks_app:app", concurrency=2, poll_wait_s=0.05)
    worker.rate_limits = RateLimits(tasks_app.app, clock)
    with Running(worker):
        wait_for(lambda: handles[0].ready(), timeout=60)
        assert not handles[1].ready() and not handles[2].ready()
        clock.now += 60
        wait_for(lambda: handles[1].ready(), timeout=30)
        assert not handles[2].ready()
        clock.now += 60
        wait_for(lambda: handles[2].ready(), timeout=30)
    assert all(h.record is not None and h.record.attempts == 1 for h in handles)
