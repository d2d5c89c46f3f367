"""Celery's revoke (``AsyncResult.revoke``, ``app.control.revoke``) as its docs use it, on the embedded
backends: a revoked task that has not started never runs (acked, ``task_revoked`` fires, ``.get()``
raises TaskRevokedError); a finished task stays finished; a running one is stopped only where the
pool can (the process pool: tests/worker/test_worker_revoke.py), and its late result never
replaces the REVOKED record."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from cloudq import App, signals, states
from cloudq.control import RevokeReport, terminate_signal
from cloudq.errors import ConfigurationError, TaskRevokedError
from cloudq.interfaces import ResultRecord
from cloudq.runtime.worker import Worker
from cloudq.testing.workers import run_burst

pytestmark = pytest.mark.timeout(60)


@pytest.fixture
def revoked_signals() -> Iterator[list[dict[str, Any]]]:
    seen: list[dict[str, Any]] = []

    def receiver(sender: Any = None, **kwargs: Any) -> None:
        seen.append({"sender": sender, **kwargs})

    signals.task_revoked.connect(receiver)
    yield seen
    signals.task_revoked.disconnect(receiver)


def _until(predicate: Callable[[], object], timeout: float = 20.0) -> None:
    """Wait for something another thread does (a deadline, never an assertion on time)."""
    end = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < end, "condition not met"
        time.sleep(0.005)


def test_a_revoked_queued_task_never_runs(app: App, revoked_signals: list[dict[str, Any]]) -> None:
    ran: list[int] = []

    @app.task()
    def add(x: int, y: int) -> int:
        ran.append(x)
        return x + y

    doomed, kept = add.delay(1, 1), add.delay(2, 2)
    assert doomed.revoke() is None  # Celery's AsyncResult.revoke returns None
    worker = run_burst(app, concurrency=1)
    assert ran == [2] and kept.get(timeout=5) == 4
    assert doomed.state == states.REVOKED and doomed.ready() and not doomed.successful()
    with pytest.raises(TaskRevokedError, match="revoked by app.control.revoke"):
        doomed.get(timeout=5)
    assert isinstance(doomed.result, TaskRevokedError)
    assert worker.counts == {"ack": 2}  # acked, not retried nor dead-lettered
    [fired] = revoked_signals
    assert fired["sender"] is add and fired["request"].id == doomed.id
    assert (fired["terminated"], fired["signum"], fired["expired"]) == (False, None, False)


def test_control_revoke_takes_many_ids_and_leaves_finished_tasks_finished(
    app: App, caplog: pytest.LogCaptureFixture
) -> None:
    ran: list[int] = []

    @app.task()
    def work(n: int) -> int:
        ran.append(n)
        return n

    done = work.delay(0)
    run_burst(app)
    queued = [work.delay(n) for n in range(1, 6)]
    with caplog.at_level(logging.INFO, "cloudq.control"):
        report = app.control.revoke([done.id, *(h.id for h in queued[:3]), queued[0].id])
    assert report == RevokeReport(tuple(h.id for h in queued[:3]), (done.id,))
    assert f"task {done.id} is already finished: revoking it changes nothing" in caplog.text
    assert app.control.revoke(queued[0].id).finished == (queued[0].id,)  # revoking twice: the first stands
    run_burst(app)
    assert sorted(ran) == [0, 4, 5]
    assert done.get(timeout=5) == 0  # a finished task stays finished (as in Celery)
    assert [h.state for h in queued] == [states.REVOKED] * 3 + [states.SUCCESS] * 2


def test_revoke_before_the_eta_skips_the_delayed_task(app: App) -> None:
    ran: list[str] = []

    @app.task()
    def later() -> None:
        ran.append("ran")

    handle = later.apply_async(countdown=0.2)
    handle.revoke()
    run_burst(app, max_wait_s=1.0)
    assert ran == [] and handle.state == states.REVOKED


def test_a_success_record_does_not_stop_a_redelivered_task(app: App) -> None:
    """Celery runs a redelivered message again whatever the result backend says: only REVOKED
    skips (idempotent=True tasks skip finished duplicates through their claim)."""
    ran: list[int] = []

    @app.task()
    def charge(n: int) -> int:
        ran.append(n)
        return n

    app.results.set(ResultRecord("dup-1", states.SUCCESS, charge.name, result=1, finished_at=time.time()))
    charge.apply_async((2,), task_id="dup-1")
    run_burst(app)
    assert ran == [2]
    assert app.AsyncResult("dup-1").get(timeout=5) == 1  # the first outcome stands


def test_revoke_check_can_be_switched_off(make_app: Callable[..., App]) -> None:
    app = make_app(revoke_check=False)
    ran: list[int] = []

    @app.task()
    def add(x: int) -> int:
        ran.append(x)
        return x

    handle = add.delay(7)
    handle.revoke()
    worker = run_burst(app)
    assert ran == [7]  # not checked: it ran ...
    assert handle.state == states.REVOKED  # ... and its result did not replace the REVOKED record
    assert worker.counts["ack"] == 1


def test_a_buffered_task_revoked_after_its_receive_is_skipped_by_the_poll(app: App) -> None:
    started, release = threading.Event(), threading.Event()
    ran: list[str] = []

    @app.task()
    def blocker() -> str:
        started.set()
        release.wait(30)
        return "done"

    @app.task()
    def follower() -> None:
        ran.append("follower")

    first, second = blocker.delay(), follower.delay()
    worker = Worker(app, concurrency=1, burst=True, poll_wait_s=0.2, revoke_poll_s=0.01)
    thread = threading.Thread(target=worker.run, daemon=True)
    thread.start()
    assert started.wait(20)  # the follower was received with it and waits in the buffer
    assert worker.holding == 2
    second.revoke()
    polls = worker.revoke_polls
    # two polls: the first may have read before the revoke was written (it was under way)
    _until(lambda: worker.revoke_polls > polls + 1)
    release.set()
    thread.join(30)
    assert not thread.is_alive()
    assert first.get(timeout=5) == "done" and ran == [] and second.state == states.REVOKED


def test_terminate_in_the_threads_pool_warns_and_keeps_the_revoked_record(
    app: App, caplog: pytest.LogCaptureFixture
) -> None:
    started, release = threading.Event(), threading.Event()

    @app.task()
    def long_running() -> str:
        started.set()
        release.wait(30)
        return "late"

    handle = long_running.delay()
    worker = Worker(app, concurrency=1, burst=True, poll_wait_s=0.2, revoke_poll_s=0.01)
    thread = threading.Thread(target=worker.run, daemon=True)
    with caplog.at_level(logging.WARNING, "cloudq.worker"):
        thread.start()
        assert started.wait(20)
        handle.revoke(terminate=True)
        _until(lambda: "cannot terminate task" in caplog.text)
        release.set()
        thread.join(30)
    assert f"cannot terminate task {handle.id}: this pool cannot stop a running task" in caplog.text
    assert handle.state == states.REVOKED  # the late "late" is not recorded over it
    with pytest.raises(TaskRevokedError, match="terminate with SIGTERM"):
        handle.get(timeout=5)


def test_eager_mode_does_not_run_a_revoked_id_and_apply_stays_unchecked(make_app: Callable[..., App]) -> None:
    app = make_app(eager=True)
    ran: list[int] = []

    @app.task()
    def add(x: int) -> int:
        ran.append(x)
        return x

    app.control.revoke("eager-1")
    handle = add.apply_async((1,), task_id="eager-1")  # task_always_eager: runs at send, checked
    assert ran == [] and handle.state == states.REVOKED
    with pytest.raises(TaskRevokedError):
        handle.get()
    assert add.apply((2,), task_id="eager-1").get() == 2  # apply(): run here and now, as Celery's
    finished = add.apply((3,))
    finished.revoke()  # the run already happened: nothing to revoke
    assert finished.get() == 3 and ran == [2, 3]


def test_revoke_arguments_are_celerys_and_refusals_say_why(app: App) -> None:
    report = app.control.revoke("t-1", terminate=True, signal="KILL")
    assert report.revoked == ("t-1",)
    record = app.results.get("t-1")
    assert record is not None and record.error_type == "cloudq.errors.TaskRevokedError"
    assert terminate_signal(record) == 9 and "terminate with SIGKILL" in (record.error_message or "")
    plain = app.results.get(app.control.revoke("t-2").revoked[0])
    assert plain is not None and terminate_signal(plain) is None
    with pytest.raises(ConfigurationError, match="signal must be a signal name"):
        app.control.revoke("t-3", terminate=True, signal="SIGNOPE")
    with pytest.raises(ConfigurationError, match="every worker and runtime honours it"):
        app.control.revoke("t-3", destination=["celery@host"])
    with pytest.raises(ConfigurationError, match="no broadcast channel or worker replies"):
        app.control.revoke("t-3", reply=True)
    with pytest.raises(ConfigurationError, match="no broadcast channel"):
        app.AsyncResult("t-3").revoke(wait=True)
    with pytest.raises(TypeError, match="unexpected keyword argument 'nope'"):
        app.control.revoke("t-3", nope=1)
    assert app.control.revoke([]) == RevokeReport((), ())
    assert app.results.get("t-3") is None  # refused before anything was written


def test_revoking_a_chain_step_stops_the_chain_there(app: App) -> None:
    from cloudq import chain

    ran: list[int] = []

    @app.task()
    def add(x: int, y: int) -> int:
        ran.append(y)
        return x + y

    workflow: chain = add.s(1, 1) | add.s(2) | add.s(3)  # type: ignore[assignment]
    last = workflow.apply_async()
    middle = last.parent
    assert middle is not None and middle.parent is not None
    middle.revoke()
    run_burst(app)
    assert ran == [1] and middle.parent.get(timeout=5) == 2
    assert middle.state == states.REVOKED
    with pytest.raises(TaskRevokedError, match="of its chain was revoked"):
        last.get(timeout=5)  # the step after it will never run: waiting on it raises, never hangs
