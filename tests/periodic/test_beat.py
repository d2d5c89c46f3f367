"""cloudq beat on SQLite: declaring, replicas sending each slot exactly once, catch-up policies,
and the worker running a slot once however often it is sent."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from beat_helpers import Clock, drain, race, replicas

from cloudq import App, ConfigurationError
from cloudq.beat import Beat, due_slots, last_runs
from cloudq.errors import UnknownTask
from cloudq.periodic import periodic_entry
from cloudq.schedules import crontab, every, iso
from cloudq.testing.workers import run_burst


def make_app(folder: Path, missed: str = "latest", seconds: float = 1.0, **config: Any) -> App:
    url = f"sqlite:///{folder / 'beat.db'}"
    app = App("beatapp", broker=url, results=url, **config)

    @app.periodic_task(every(seconds), args=(1,), name="tick", missed=missed)
    def tick(n: int) -> int:
        return n

    return app


def test_periodic_task_add_periodic_task_and_beat_schedule_make_one_table(tmp_path: Path) -> None:
    app = make_app(tmp_path)

    @app.task()
    def report(day: str, *, full: bool = False) -> str:
        return day

    app.add_periodic_task(crontab(0, 9, timezone="Europe/Paris"), report.s("mon", full=True), name="morning")
    app.conf.beat_schedule = {
        "nightly": {"task": report.name, "schedule": "0 3 * * *", "args": ["sun"], "options": {"queue": "slow"}},
        "often": {"task": report.name, "schedule": 30.0, "args": ["x"], "missed": "all"},
    }
    table = app.periodic_tasks
    assert sorted(table) == ["morning", "nightly", "often", "tick"]
    assert table["morning"].kwargs == {"full": True} and table["morning"].args == ("mon",)
    assert table["nightly"].schedule == crontab(0, 3) and table["nightly"].queue == "slow"
    assert table["often"].schedule == every(30) and table["often"].missed == "all"
    assert table["tick"].task_id(1.0) == "tick@1970-01-01T00:00:01Z"


@pytest.mark.parametrize(
    ("entry", "message"),
    [
        ({"schedule": 5}, r"beat_schedule\['bad'\] has no 'task'"),
        ({"task": "t", "schedule": "61 * * * *"}, r"beat_schedule\['bad'\].*crontab minute='61'"),
        ({"task": "t", "schedule": 5, "every": 2}, r"unknown keys every"),
        ({"task": "t", "schedule": 5, "missed": "some"}, r"missed='some'; allowed: latest, all, skip"),
        ({"task": "t", "schedule": 5, "options": {"countdown": 3}}, r"options countdown do not apply"),
        ({"task": "t", "schedule": 5, "relative": True}, r"relative=True is not available"),
    ],
)
def test_a_bad_beat_schedule_entry_fails_when_set_naming_it(
    tmp_path: Path, entry: dict[str, Any], message: str
) -> None:
    app = make_app(tmp_path)
    with pytest.raises(ConfigurationError, match=message):
        app.conf.beat_schedule = {"bad": entry}


def test_an_entry_for_an_unknown_task_or_a_duplicate_name_is_refused(tmp_path: Path) -> None:
    app = make_app(tmp_path)
    tick = app.tasks[app.periodic_tasks["tick"].task]
    with pytest.raises(ConfigurationError, match="'tick' is already declared with another schedule"):
        app.add_periodic_task(every(2), tick.s(1), name="tick")
    app.add_periodic_task(every(1), tick.s(1), name="tick")  # the same declaration again (a re-import) is fine
    app.conf.beat_schedule = {"ghost": {"task": "no.such.task", "schedule": 5}}
    with pytest.raises(UnknownTask, match="'ghost' sends 'no.such.task', which this app does not define"):
        app.periodic_tasks


def test_one_beat_sends_each_due_run_with_the_slot_as_task_id(tmp_path: Path) -> None:
    app = make_app(tmp_path, seconds=2)
    clock = Clock()
    clock.now -= clock.now % 2 + 0.5  # just before a due time
    beat = Beat(app, clock=clock)
    assert beat.tick() == pytest.approx(0.5)  # nothing due yet: starts from now
    clock.now += 0.5
    beat.tick()
    clock.now += 3.9
    beat.tick()
    due = [s.due for s in beat.sent]
    assert due == [clock.now - 3.9, clock.now - 1.9]
    assert drain(app) == {f"tick@{iso(t)}": 1 for t in due}
    assert last_runs(app, ["tick"]) == {"tick": due[-1]}


@pytest.mark.parametrize("count", [2, 3])
def test_replicas_send_each_of_60_slots_exactly_once(tmp_path: Path, count: int) -> None:
    clock = Clock()
    start = clock.now
    beats = replicas(lambda: make_app(tmp_path), count, clock)
    race(beats, clock, steps=60)
    sent = drain(beats[0].app)
    expected = {f"tick@{iso(start + i)}": 1 for i in range(1, 61)}
    assert sent == expected  # none missed, none twice
    assert sum(len(b.sent) for b in beats) == 60
    assert len({b.owner for b in beats if b.sent}) >= 1


@pytest.mark.parametrize(
    ("missed", "expected_offsets"),
    [("latest", [10]), ("all", [4, 5, 6, 7, 8, 9, 10]), ("skip", [])],
)
def test_a_beat_that_was_down_catches_up_per_its_policy(
    tmp_path: Path, missed: str, expected_offsets: list[int]
) -> None:
    clock = Clock()
    start = clock.now
    first = Beat(make_app(tmp_path, missed=missed), clock=clock)
    for _ in range(3):
        clock.now += 1
        first.tick()  # runs start+1..start+3 sent, then the beat stops
    drain(first.app)
    clock.now = start + 10 + 0.5  # a new beat, 7.5 s later: runs start+4..start+10 were missed
    late = Beat(make_app(tmp_path, missed=missed), clock=clock, late_after_s=0.25)
    late.tick()
    assert [s.due - start for s in late.sent] == expected_offsets
    assert sorted(drain(late.app)) == sorted(f"tick@{iso(start + o)}" for o in expected_offsets)


def test_skip_sends_a_run_reached_in_time(tmp_path: Path) -> None:
    item = periodic_entry("t", "task", every(10), missed="skip")
    assert due_slots(item, after=0.0, now=31.0, late_after_s=5.0) == [30.0]
    assert due_slots(item, after=0.0, now=36.0, late_after_s=5.0) == []
    assert due_slots(periodic_entry("t", "task", every(10), missed="latest"), 0.0, 36.0) == [30.0]


def test_a_failed_send_frees_the_slot_for_the_next_tick(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    app = make_app(tmp_path)
    clock = Clock()
    beat = Beat(app, clock=clock)
    beat.tick()
    clock.now += 1
    real_send = app.send_many

    def failing(_: Any) -> Any:
        raise ConnectionError("broker down")

    monkeypatch.setattr(app, "send_many", failing)
    beat.tick()
    assert beat.sent == []
    monkeypatch.setattr(app, "send_many", real_send)
    beat.tick()  # same clock: the run that failed is sent now
    assert [s.due for s in beat.sent] == [clock.now]
    assert drain(app) == {f"tick@{iso(clock.now)}": 1}


def test_the_worker_runs_a_slot_once_however_often_it_is_sent(tmp_path: Path) -> None:
    runs: list[int] = []
    url = f"sqlite:///{tmp_path / 'w.db'}"
    app = App("dup", broker=url, results=url)

    @app.periodic_task(every(60), name="count")
    def count() -> int:
        runs.append(1)
        return len(runs)

    clock = Clock()
    clock.now -= clock.now % 60
    beat = Beat(app, clock=clock)
    beat.tick()
    clock.now += 60
    beat.tick()
    run_burst(app)
    assert runs == [1]
    # a second send of the same slot (a beat that died before marking it done, a scheduler's retry);
    # a copy received while the first still runs would wait out that run's claim (lease + 5 s), then ack
    item = app.periodic_tasks["count"]
    count.apply_async(task_id=item.task_id(clock.now), headers={"cloudq-schedule": "count"})
    run_burst(app)
    assert runs == [1]
    assert drain(app) == {}  # the copy was acked as a duplicate
    assert app.AsyncResult(item.task_id(clock.now)).get(timeout=5) == 1
