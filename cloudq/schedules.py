"""Schedules of periodic tasks: ``every`` (an interval), ``crontab`` (Celery's fields and syntax,
with an IANA timezone) and cron strings, with their next due times.

Parsed here rather than with croniter: Celery parses its crontab itself (names, ``*/15``, wrapping
ranges like ``fri-mon``, day_of_month AND day_of_week), croniter reads cron's day OR semantics,
and it is no longer maintained. Times are epoch seconds; wall clocks come from ``zoneinfo``.

Due times are a function of the schedule alone (an interval is aligned on the epoch, not on when
a process started), so every beat replica and the cloud schedulers agree on each run's slot.
DST: a wall time skipped by a spring-forward change runs at the same offset after the change
(02:30 -> 03:30); a wall time repeated by a fall-back change runs once, at its first occurrence.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from typing import Any, Protocol, runtime_checkable
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from .errors import ConfigurationError

WEEKDAYS = ("sun", "mon", "tue", "wed", "thu", "fri", "sat")  # Celery's 0-6, Sunday first
MONTHS = ("jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec")
SEARCH_YEARS = 30  # a crontab without a run in this many years never runs (e.g. 30 February)


@runtime_checkable
class Schedule(Protocol):
    """When a periodic task is due."""

    def next_after(self, when: float) -> float:
        """The first due time strictly after ``when`` (epoch seconds)."""

    def describe(self) -> str:
        """One line for people (``cloudq schedules``)."""


@dataclass(frozen=True, slots=True)
class every:  # noqa: N801 - reads as a phrase: every(60)
    """Every ``seconds``, at the multiples of ``seconds`` since the epoch (plus ``offset``), so
    replicas and restarts agree on the due times (Celery's ``schedule(run_every=...)`` counts from
    the last run instead)."""

    seconds: float
    offset: float = 0.0

    def __post_init__(self) -> None:
        value = self.seconds.total_seconds() if isinstance(self.seconds, timedelta) else self.seconds
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) or value <= 0:
            raise ConfigurationError(f"every(seconds): a number of seconds > 0 or a timedelta, got {self.seconds!r}")
        object.__setattr__(self, "seconds", float(value))

    def next_after(self, when: float) -> float:
        steps = math.floor((when - self.offset) / self.seconds) + 1
        return self.offset + steps * self.seconds

    def describe(self) -> str:
        return f"every {self.seconds:g} s"


# Celery's own name for an interval schedule
schedule = every


@dataclass(frozen=True, slots=True)
class _Field:
    name: str
    low: int
    high: int
    names: tuple[str, ...] = ()  # name of low, low + 1, ...

    def allowed(self) -> str:
        extra = f" or names {self.names[0]}-{self.names[-1]}" if self.names else ""
        return f"numbers {self.low}-{self.high}{extra}, '*', ranges 'a-b', steps '*/n' or 'a-b/n', lists 'a,b'"

    def fail(self, value: Any, why: str) -> ConfigurationError:
        return ConfigurationError(f"crontab {self.name}={value!r}: {why}; allowed: {self.allowed()}")

    def number(self, text: str, value: Any) -> int:
        word = text.strip().lower()
        if word.isdigit():
            number = int(word)
        elif self.names and word[:3] in self.names and len(word) >= 3:
            number = self.low + self.names.index(word[:3])
        else:
            raise self.fail(value, f"{text!r} is not a number" + (" or a name" if self.names else ""))
        if not self.low <= number <= self.high:
            raise self.fail(value, f"{number} is out of range {self.low}-{self.high}")
        return number

    def span(self, text: str, value: Any) -> list[int]:
        if text == "*":
            return list(range(self.low, self.high + 1))
        first, dash, last = text.partition("-")
        start = self.number(first, value)
        if not dash:
            return [start]
        end = self.number(last, value)
        if end >= start:
            return list(range(start, end + 1))
        return list(range(start, self.high + 1)) + list(range(self.low, end + 1))  # wraps: fri-mon

    def parse(self, value: Any) -> frozenset[int]:
        """The set of values a field matches: an int, an iterable of ints, or Celery's syntax."""
        if isinstance(value, bool):
            raise self.fail(value, "a bool is not a field value")
        if isinstance(value, int):
            return frozenset([self.number(str(value), value)])
        if not isinstance(value, str):
            if isinstance(value, Iterable):
                return frozenset(n for item in value for n in self.parse(item))
            raise self.fail(value, f"a {type(value).__name__} is not a field value")
        found: set[int] = set()
        for part in value.replace(" ", "").split(","):
            if not part:
                raise self.fail(value, "an empty list item")
            base, slash, step_text = part.partition("/")
            values = self.span(base, value)
            if slash:
                if not step_text.isdigit() or int(step_text) < 1:
                    raise self.fail(value, f"step {step_text!r} must be a whole number >= 1")
                if "-" not in base and base != "*":  # '5/15': from 5 to the end, as Celery reads it
                    values = list(range(values[0], self.high + 1))
                values = values[:: int(step_text)]
            found.update(values)
        return frozenset(found)


MINUTE = _Field("minute", 0, 59)
HOUR = _Field("hour", 0, 23)
DAY_OF_WEEK = _Field("day_of_week", 0, 6, WEEKDAYS)
DAY_OF_MONTH = _Field("day_of_month", 1, 31)
MONTH_OF_YEAR = _Field("month_of_year", 1, 12, MONTHS)


def zone(name: str) -> ZoneInfo:
    """The IANA timezone ``name``; ConfigurationError naming it when unknown."""
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError, TypeError):
        raise ConfigurationError(
            f"crontab timezone {name!r} is not an IANA timezone name (e.g. 'UTC', 'Europe/Paris')"
        ) from None


class crontab:  # noqa: N801 - Celery's name
    """Celery's ``crontab(minute, hour, day_of_week, day_of_month, month_of_year)``: each field an
    int, a set of ints, or a string such as ``"*/15"``, ``"9-17"``, ``"mon-fri"``, ``"1,15"``; a
    time matches when every field matches (day_of_month AND day_of_week, as in Celery). Wall times
    are read in ``timezone`` (an IANA name, default UTC)."""

    __slots__ = ("_given", "_tz", "day_of_month", "day_of_week", "hour", "minute", "month_of_year", "timezone")

    def __init__(
        self,
        minute: Any = "*",
        hour: Any = "*",
        day_of_week: Any = "*",
        day_of_month: Any = "*",
        month_of_year: Any = "*",
        *,
        timezone: str = "UTC",
    ) -> None:
        self._given = (minute, hour, day_of_week, day_of_month, month_of_year)
        self.minute = MINUTE.parse(minute)
        self.hour = HOUR.parse(hour)
        self.day_of_week = DAY_OF_WEEK.parse(day_of_week)
        self.day_of_month = DAY_OF_MONTH.parse(day_of_month)
        self.month_of_year = MONTH_OF_YEAR.parse(month_of_year)
        self.timezone = timezone
        self._tz = zone(timezone)
        if self._first_day(date(2000, 1, 1)) is None:  # a leap year: 29 February counts
            raise ConfigurationError(f"{self!r} never runs: no month has such a day")

    @classmethod
    def from_string(cls, text: str, timezone: str = "UTC") -> crontab:
        """A cron line ``minute hour day_of_month month_of_year day_of_week`` (Celery's
        ``crontab.from_string``, standard cron order)."""
        parts = text.split()
        if len(parts) != 5:
            raise ConfigurationError(
                f"cron string {text!r} must have 5 fields: minute hour day_of_month month_of_year day_of_week"
            )
        minute, hour, dom, month, dow = parts
        return cls(minute, hour, day_of_week=dow, day_of_month=dom, month_of_year=month, timezone=timezone)

    def restricted(self, field: str) -> bool:
        """Whether a day field narrows the days (is not '*')."""
        spec = {"day_of_week": DAY_OF_WEEK, "day_of_month": DAY_OF_MONTH, "month_of_year": MONTH_OF_YEAR}[field]
        return len(getattr(self, field)) < spec.high - spec.low + 1

    def _day_matches(self, day: date) -> bool:
        return (
            day.month in self.month_of_year
            and day.day in self.day_of_month
            and (day.isoweekday() % 7) in self.day_of_week  # isoweekday: Monday 1 .. Sunday 7
        )

    def _first_day(self, start: date) -> date | None:
        day, end = start, start + timedelta(days=366 * SEARCH_YEARS)
        while day < end:
            if self._day_matches(day):
                return day
            day += timedelta(days=1)
        return None

    def _instants(self, day: date) -> Iterator[float]:
        """The due instants of one local day. A skipped wall time reads with the offset before the
        change (fold=0), so it lands after the gap; a repeated one reads as its first occurrence."""
        for hour in sorted(self.hour):
            for minute in sorted(self.minute):
                yield datetime(day.year, day.month, day.day, hour, minute, tzinfo=self._tz).timestamp()

    def next_after(self, when: float) -> float:
        local = datetime.fromtimestamp(when, self._tz).date() - timedelta(days=1)  # a gap may push a run past midnight
        day: date | None = local
        while day is not None:
            day = self._first_day(day)
            if day is None:
                break
            later = [t for t in self._instants(day) if t > when]
            if later:
                return min(later)
            day += timedelta(days=1)
        raise ConfigurationError(f"{self!r} has no run within {SEARCH_YEARS} years")

    def describe(self) -> str:
        return f"crontab {self.cron()} ({self.timezone})"

    def cron(self) -> str:
        """The five fields in standard cron order, as given."""
        minute, hour, dow, dom, month = (_text(v) for v in self._given)
        return f"{minute} {hour} {dom} {month} {dow}"

    def __eq__(self, other: object) -> bool:
        return isinstance(other, crontab) and self._key() == other._key()

    def __hash__(self) -> int:
        return hash(self._key())

    def _key(self) -> tuple[Any, ...]:
        return (self.minute, self.hour, self.day_of_week, self.day_of_month, self.month_of_year, self.timezone)

    def __repr__(self) -> str:
        minute, hour, dow, dom, month = (repr(_text(v)) for v in self._given)
        tz = f", timezone={self.timezone!r}" if self.timezone != "UTC" else ""
        return (
            f"crontab(minute={minute}, hour={hour}, day_of_week={dow}, day_of_month={dom}, month_of_year={month}{tz})"
        )


def _text(value: Any) -> str:
    if isinstance(value, (str, int)):
        return str(value)
    return ",".join(str(v) for v in sorted(value))


def cron_field(values: frozenset[int], low: int, high: int, shift: int = 0, unix: bool = False) -> str:
    """A cron field from a set: ``*`` when full, a step to the end (``0/15``; in ``unix`` cron
    ``*/15`` or ``5-59/15``), else comma-separated runs (``1-5,7``)."""
    if len(values) == high - low + 1:
        return "*"
    ordered = sorted(values)
    step = ordered[1] - ordered[0] if len(ordered) > 2 else 0
    if step > 1 and ordered == list(range(ordered[0], high + 1, step)):  # */15, 5/20: start/step
        if unix:
            return f"*/{step}" if ordered[0] == low else f"{ordered[0] + shift}-{high + shift}/{step}"
        return f"{ordered[0] + shift}/{step}"
    runs: list[list[int]] = []
    for value in ordered:
        if runs and value == runs[-1][-1] + 1:
            runs[-1].append(value)
        else:
            runs.append([value])
    parts = [f"{r[0] + shift}-{r[-1] + shift}" if len(r) > 2 else ",".join(str(v + shift) for v in r) for r in runs]
    return ",".join(parts)


def cron_fields(sched: crontab, weekday_shift: int = 0, unix: bool = False) -> tuple[str, str, str, str, str]:
    """minute, hour, day of month, month, day of week as cron fields (``weekday_shift=1`` for
    clouds that count Sunday as 1), for cloud schedulers' cron expressions."""
    return (
        cron_field(sched.minute, MINUTE.low, MINUTE.high, unix=unix),
        cron_field(sched.hour, HOUR.low, HOUR.high, unix=unix),
        cron_field(sched.day_of_month, DAY_OF_MONTH.low, DAY_OF_MONTH.high, unix=unix),
        cron_field(sched.month_of_year, MONTH_OF_YEAR.low, MONTH_OF_YEAR.high, unix=unix),
        cron_field(sched.day_of_week, DAY_OF_WEEK.low, DAY_OF_WEEK.high, weekday_shift, unix),
    )


def minute_interval(sched: every, scheduler: str) -> int | str:
    """The whole minutes of an interval a cloud scheduler (minute-granular) can run, or why not."""
    if sched.seconds < 60 or sched.seconds % 60 or sched.offset:
        offset = f", offset={sched.offset:g}" if sched.offset else ""
        return (
            f"every({sched.seconds:g} s{offset}) cannot run on {scheduler}: it runs at most once a minute, "
            "on whole minutes"
        )
    return int(sched.seconds // 60)


def day_fields_problem(sched: crontab, scheduler: str) -> str | None:
    """Cron reads day_of_month and day_of_week as either; Celery and cloudq as both."""
    if sched.restricted("day_of_month") and sched.restricted("day_of_week"):
        return (
            f"{sched!r} restricts both day_of_month and day_of_week, which cloudq reads as both (Celery's "
            f"meaning) and {scheduler} cron cannot"
        )
    return None


_NUMBER = re.compile(r"^\s*\d+(\.\d+)?\s*$")


def to_schedule(value: Any, where: str) -> Schedule:
    """A schedule from what a declaration may give: a Schedule, seconds, a timedelta, or a cron
    string (``"*/5 * * * *"``; a number in a string is seconds, as TOML and env values come)."""
    if isinstance(value, (every, crontab)) or (isinstance(value, Schedule) and not isinstance(value, type)):
        return value
    if isinstance(value, timedelta) or (isinstance(value, (int, float)) and not isinstance(value, bool)):
        try:
            return every(value)  # type: ignore[arg-type]
        except ConfigurationError as exc:
            raise ConfigurationError(f"{where}: {exc}") from None
    if isinstance(value, str):
        if _NUMBER.match(value):
            return every(float(value))
        try:
            return crontab.from_string(value)
        except ConfigurationError as exc:
            raise ConfigurationError(f"{where}: {exc}") from None
    raise ConfigurationError(
        f"{where}: schedule must be seconds, a timedelta, every(...), crontab(...) or a cron string, got {value!r:.60}"
    )


def next_runs(sched: Schedule, after: float, count: int) -> list[float]:
    """The next ``count`` due times after ``after``."""
    out: list[float] = []
    when = after
    for _ in range(count):
        when = sched.next_after(when)
        out.append(when)
    return out


def runs_per_month(sched: Schedule, start: float) -> int:
    """About how many runs the 30 days from ``start`` hold (what a cloud scheduler bills)."""
    if isinstance(sched, every):
        return int(30 * 86400 // sched.seconds)
    if isinstance(sched, crontab):
        first = datetime.fromtimestamp(start, sched._tz).date()
        days = sum(1 for n in range(30) if sched._day_matches(first + timedelta(days=n)))
        return days * len(sched.hour) * len(sched.minute)
    runs, when, end = 0, start, start + 30 * 86400
    while (when := sched.next_after(when)) <= end and runs < 10_000_000:
        runs += 1
    return runs


def iso(when: float) -> str:
    """UTC ISO 8601 with a Z, whole seconds unless the time has a fraction (EventBridge Scheduler's
    ``<aws.scheduler.scheduled-time>`` form): the text of a slot's task id."""
    moment = datetime.fromtimestamp(when, UTC)
    if moment.microsecond:
        return moment.isoformat(timespec="milliseconds").replace("+00:00", "Z")
    return moment.strftime("%Y-%m-%dT%H:%M:%SZ")
