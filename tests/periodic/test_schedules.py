"""Schedules: Celery's crontab syntax, next runs (DST included), and one-line errors at declaration."""

from __future__ import annotations

from datetime import datetime, timedelta

import pytest

from cloudq import ConfigurationError
from cloudq.schedules import crontab, every, iso, next_runs, to_schedule


def at(text: str) -> float:
    return datetime.fromisoformat(text).timestamp()


# (schedule, start, the next runs in UTC) -- the kinds of cases Celery's crontab tests check,
# written as data: steps, ranges, lists, names, wrapping ranges, month ends, leap days, weekdays
CASES = [
    (crontab(), "2024-01-01T10:00:30+00:00", ["2024-01-01T10:01:00Z", "2024-01-01T10:02:00Z"]),
    (crontab(minute="*/15"), "2024-01-01T10:07:00+00:00", ["2024-01-01T10:15:00Z", "2024-01-01T10:30:00Z"]),
    (crontab(minute=30), "2024-01-01T10:30:00+00:00", ["2024-01-01T11:30:00Z", "2024-01-01T12:30:00Z"]),
    (crontab(minute=0, hour="*/3"), "2024-01-01T22:00:00+00:00", ["2024-01-02T00:00:00Z", "2024-01-02T03:00:00Z"]),
    (crontab(minute="5/20"), "2024-01-01T10:00:00+00:00", ["2024-01-01T10:05:00Z", "2024-01-01T10:25:00Z"]),
    (crontab(minute="10-30/10"), "2024-01-01T10:31:00+00:00", ["2024-01-01T11:10:00Z", "2024-01-01T11:20:00Z"]),
    (crontab(minute=[0, 45], hour="8-9"), "2024-01-01T09:00:00+00:00", ["2024-01-01T09:45:00Z", "2024-01-02T08:00:00Z"]),
    (crontab(0, 0, day_of_week="mon-fri"), "2024-01-05T12:00:00+00:00", ["2024-01-08T00:00:00Z", "2024-01-09T00:00:00Z"]),
    (crontab(0, 0, day_of_week="fri-mon"), "2024-01-02T00:00:00+00:00", ["2024-01-05T00:00:00Z", "2024-01-06T00:00:00Z"]),
    (crontab(0, 7, day_of_week="sunday"), "2024-01-01T00:00:00+00:00", ["2024-01-07T07:00:00Z", "2024-01-14T07:00:00Z"]),
    (crontab(0, 7, day_of_week=0), "2024-01-01T00:00:00+00:00", ["2024-01-07T07:00:00Z", "2024-01-14T07:00:00Z"]),
    (crontab(0, 0, day_of_month=31), "2024-01-31T00:00:00+00:00", ["2024-03-31T00:00:00Z", "2024-05-31T00:00:00Z"]),
    (crontab(0, 0, day_of_month="1,15", month_of_year="jan-feb"), "2024-01-20T00:00:00+00:00",
     ["2024-02-01T00:00:00Z", "2024-02-15T00:00:00Z", "2025-01-01T00:00:00Z"]),
    (crontab(0, 0, day_of_month=29, month_of_year=2), "2024-03-01T00:00:00+00:00",
     ["2028-02-29T00:00:00Z", "2032-02-29T00:00:00Z"]),
    # day_of_month AND day_of_week, as Celery reads them (cron reads OR): Friday the 13th
    (crontab(0, 0, day_of_month=13, day_of_week="fri"), "2024-01-01T00:00:00+00:00",
     ["2024-09-13T00:00:00Z", "2024-12-13T00:00:00Z"]),
    (crontab.from_string("*/30 9-10 * * mon"), "2024-01-01T09:40:00+00:00",
     ["2024-01-01T10:00:00Z", "2024-01-01T10:30:00Z", "2024-01-08T09:00:00Z"]),
    (crontab(0, 9, timezone="Europe/Paris"), "2024-01-01T00:00:00+00:00", ["2024-01-01T08:00:00Z", "2024-01-02T08:00:00Z"]),
    (crontab(0, 9, timezone="Europe/Paris"), "2024-07-01T00:00:00+00:00", ["2024-07-01T07:00:00Z", "2024-07-02T07:00:00Z"]),
]  # fmt: skip


@pytest.mark.parametrize(("sched", "start", "expected"), CASES, ids=[f"{c[0]!r}@{c[1]}" for c in CASES])
def test_next_runs(sched: crontab, start: str, expected: list[str]) -> None:
    assert [iso(t) for t in next_runs(sched, at(start), len(expected))] == expected


def test_spring_forward_runs_a_skipped_wall_time_once_after_the_gap() -> None:
    # 2024-03-10: New York skips 02:00-03:00; 02:30 EST is 03:30 EDT (07:30 UTC)
    sched = crontab(30, 2, timezone="America/New_York")
    runs = [iso(t) for t in next_runs(sched, at("2024-03-08T12:00:00+00:00"), 4)]
    assert runs == ["2024-03-09T07:30:00Z", "2024-03-10T07:30:00Z", "2024-03-11T06:30:00Z", "2024-03-12T06:30:00Z"]


def test_spring_forward_keeps_a_gap_time_and_the_next_one_distinct_and_ordered() -> None:
    sched = crontab(minute="30", hour="2,3", timezone="America/New_York")
    runs = [iso(t) for t in next_runs(sched, at("2024-03-10T00:00:00+00:00"), 3)]
    assert runs == ["2024-03-10T07:30:00Z", "2024-03-11T06:30:00Z", "2024-03-11T07:30:00Z"]


def test_fall_back_runs_a_repeated_wall_time_once_at_its_first_occurrence() -> None:
    # 2024-11-03: New York repeats 01:00-02:00; 01:30 runs at 05:30 UTC (EDT), not again at 06:30
    sched = crontab(30, 1, timezone="America/New_York")
    runs = [iso(t) for t in next_runs(sched, at("2024-11-02T12:00:00+00:00"), 3)]
    assert runs == ["2024-11-03T05:30:00Z", "2024-11-04T06:30:00Z", "2024-11-05T06:30:00Z"]
    # from inside the repeated hour, the next run is the next day's
    assert iso(sched.next_after(at("2024-11-03T06:10:00+00:00"))) == "2024-11-04T06:30:00Z"


def test_every_is_aligned_on_the_epoch_whatever_the_start() -> None:
    sched = every(60)
    assert sched.next_after(at("2024-01-01T00:00:30+00:00")) == at("2024-01-01T00:01:00+00:00")
    assert sched.next_after(at("2024-01-01T00:01:00+00:00")) == at("2024-01-01T00:02:00+00:00")
    assert every(timedelta(minutes=5)).seconds == 300
    assert every(10, offset=3).next_after(100.0) == 103.0


def test_to_schedule_reads_numbers_timedeltas_and_cron_strings() -> None:
    assert to_schedule(30, "x") == every(30)
    assert to_schedule("30", "x") == every(30)
    assert to_schedule(timedelta(hours=1), "x") == every(3600)
    assert to_schedule("0 9 * * mon-fri", "x") == crontab(0, 9, day_of_week="mon-fri")


@pytest.mark.parametrize(
    ("make", "message"),
    [
        (lambda: crontab(minute=60), r"crontab minute=60: 60 is out of range 0-59; allowed: numbers 0-59"),
        (lambda: crontab(hour="25"), r"crontab hour='25': 25 is out of range 0-23"),
        (lambda: crontab(day_of_week="funday"), r"crontab day_of_week='funday': 'funday' is not a number or a name"),
        (lambda: crontab(day_of_week=7), r"7 is out of range 0-6; allowed: numbers 0-6 or names sun-sat"),
        (lambda: crontab(day_of_month=0), r"crontab day_of_month=0: 0 is out of range 1-31"),
        (lambda: crontab(month_of_year="smarch"), r"crontab month_of_year='smarch'"),
        (lambda: crontab(minute="*/0"), r"step '0' must be a whole number >= 1"),
        (lambda: crontab(minute="1,,2"), r"an empty list item"),
        (lambda: crontab(minute=True), r"a bool is not a field value"),
        (lambda: crontab(day_of_month=30, month_of_year=2), r"never runs: no month has such a day"),
        (lambda: crontab(timezone="Mars/Olympus"), r"timezone 'Mars/Olympus' is not an IANA timezone name"),
        (lambda: crontab.from_string("* * *"), r"must have 5 fields"),
        (lambda: every(0), r"every\(seconds\): a number of seconds > 0"),
        (lambda: every(float("nan")), r"every\(seconds\)"),
        (lambda: to_schedule(object(), "periodic task 'x'"), r"periodic task 'x': schedule must be seconds"),
        (lambda: to_schedule(-5, "periodic task 'x'"), r"periodic task 'x': every\(seconds\)"),
    ],
)
def test_bad_schedules_fail_at_declaration_naming_the_field(make: object, message: str) -> None:
    with pytest.raises(ConfigurationError, match=message):
        make()  # type: ignore[operator]
