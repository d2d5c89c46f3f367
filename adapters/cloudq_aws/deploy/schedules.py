"""Periodic tasks as EventBridge Scheduler schedules, as data: the expression, the timezone, the
target queue and the message each run sends, one schedule group per app and stage, and the
checks that refuse what the scheduler cannot express.

A run's message is a cloudq envelope whose task id is ``name@<aws.scheduler.scheduled-time>``:
the due time, which Scheduler keeps across its own retries and which a beat gives the same run, so
a redelivered run is recognised by the worker (``cloudq.periodic.SCHEDULE_HEADER``) and runs once.
``<aws.scheduler.execution-id>`` goes in a header, for tracing.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from cloudq.deploy.model import AppModel, ScheduleSpec
from cloudq.schedules import DAY_OF_MONTH, DAY_OF_WEEK, HOUR, MINUTE, MONTH_OF_YEAR, crontab, every, runs_per_month

from .. import resources as res

SCHEDULED_TIME = "<aws.scheduler.scheduled-time>"
EXECUTION_ID = "<aws.scheduler.execution-id>"
EXECUTION_HEADER = "cloudq-scheduler-execution"
GROUP_NAME_MAX = 64
# EventBridge Scheduler's price (us-east-1): 14 million invocations a month free, then $1.00 a million
FREE_INVOCATIONS = 14_000_000
USD_PER_MILLION = 1.00
# Scheduler's retries of a run it could not deliver: the worker dedupes them by task id
RETRY_POLICY = {"MaximumRetryAttempts": 185, "MaximumEventAgeInSeconds": 86400}
_GROUP_NAME = re.compile(r"[^0-9A-Za-z_.-]")
BEAT_HINT = 'run it with `cloudq beat` instead (schedules = "beat" in [tool.cloudq.deploy])'


@dataclass(frozen=True, slots=True)
class ScheduleLayout:
    spec: ScheduleSpec
    group: str
    queue_sqs_name: str
    fifo: bool
    expression: str
    timezone: str

    def target(self, queue_arn: Any, role_arn: Any) -> dict[str, Any]:
        target: dict[str, Any] = {
            "Arn": queue_arn,
            "RoleArn": role_arn,
            "Input": self.spec.message(SCHEDULED_TIME, {EXECUTION_HEADER: EXECUTION_ID}),
            "RetryPolicy": dict(RETRY_POLICY),
        }
        if self.fifo:
            target["SqsParameters"] = {"MessageGroupId": self.spec.name}
        return target


def group_name(model: AppModel) -> str:
    return _GROUP_NAME.sub("-", f"cloudq-{model.app}-{model.stage}")[:GROUP_NAME_MAX]


def _field(values: frozenset[int], low: int, high: int, shift: int = 0) -> str:
    """A cron field from a set: ``*`` when full, ``start/step`` for a step to the end, else
    comma-separated runs (``1-5,7``)."""
    if len(values) == high - low + 1:
        return "*"
    ordered = sorted(values)
    step = ordered[1] - ordered[0] if len(ordered) > 2 else 0
    if step > 1 and ordered == list(range(ordered[0], high + 1, step)):  # */15, 5/20: start/step
        return f"{ordered[0] + shift}/{step}"
    runs: list[list[int]] = []
    for value in ordered:
        if runs and value == runs[-1][-1] + 1:
            runs[-1].append(value)
        else:
            runs.append([value])
    parts = [f"{r[0] + shift}-{r[-1] + shift}" if len(r) > 2 else ",".join(str(v + shift) for v in r) for r in runs]
    return ",".join(parts)


def expression(sched: Any) -> tuple[str, str] | str:
    """``(expression, timezone)`` for EventBridge Scheduler, or why it cannot express ``sched``."""
    if isinstance(sched, every):
        seconds = sched.seconds
        if seconds < 60 or seconds % 60 or sched.offset:
            return (
                f"every({seconds:g} s{f', offset={sched.offset:g}' if sched.offset else ''}) cannot be an "
                "EventBridge Scheduler schedule: it runs at most once a minute, on whole minutes"
            )
        minutes = int(seconds // 60)
        if 60 % minutes == 0:  # aligned like the beat's runs: on multiples of the interval
            return f"cron(0/{minutes} * * * ? *)" if minutes > 1 else "cron(* * * * ? *)", "UTC"
        if minutes % 60 == 0 and 24 % (minutes // 60) == 0:
            return f"cron(0 0/{minutes // 60} * * ? *)", "UTC"
        if minutes == 1440:
            return "cron(0 0 * * ? *)", "UTC"
        return f"rate({minutes} minutes)", "UTC"  # counted from the schedule's creation, not the epoch
    if isinstance(sched, crontab):
        if sched.restricted("day_of_month") and sched.restricted("day_of_week"):
            return (
                f"{sched!r} restricts both day_of_month and day_of_week, which cloudq reads as both (Celery's "
                "meaning) and EventBridge cron cannot combine"
            )
        minute = _field(sched.minute, MINUTE.low, MINUTE.high)
        hour = _field(sched.hour, HOUR.low, HOUR.high)
        dom = _field(sched.day_of_month, DAY_OF_MONTH.low, DAY_OF_MONTH.high)
        month = _field(sched.month_of_year, MONTH_OF_YEAR.low, MONTH_OF_YEAR.high)
        dow = _field(sched.day_of_week, DAY_OF_WEEK.low, DAY_OF_WEEK.high, shift=1)  # AWS: 1 = Sunday
        if dow == "*":
            dow = "?"
        else:
            dom = "?"
        return f"cron({minute} {hour} {dom} {month} {dow} *)", sched.timezone
    return f"{sched!r} is not a schedule cloudq can deploy"


def build_schedules(model: AppModel, sqs_name: Any) -> tuple[list[ScheduleLayout], list[str]]:
    """The schedules and the problems that refuse the deploy (each names the periodic task)."""
    group = group_name(model)
    out: list[ScheduleLayout] = []
    problems: list[str] = []
    if model.schedules and model.settings.signing_key is not None:
        problems.append(
            "periodic tasks cannot be deployed to EventBridge Scheduler with a signing key: the scheduler "
            f"builds each run's message and cannot sign it; {BEAT_HINT}"
        )
    for spec in model.schedules:
        found = expression(spec.schedule)
        if isinstance(found, str):
            problems.append(f"periodic task {spec.name!r}: {found}; {BEAT_HINT}")
            continue
        if "expires" in spec.options:
            problems.append(
                f"periodic task {spec.name!r}: options expires is relative to each run's due time, which "
                f"EventBridge Scheduler cannot compute into the message; remove it or {BEAT_HINT}"
            )
            continue
        name = sqs_name(spec.queue)
        out.append(ScheduleLayout(spec, group, name, res.is_fifo(name), found[0], found[1]))
    return out, problems


def schedules_cost(schedules: Sequence[ScheduleLayout], now: float | None = None) -> str:
    """What the schedules cost a month: Scheduler invocations, each also one SQS SendMessage."""
    import time

    start = time.time() if now is None else now
    runs = sum(runs_per_month(s.spec.schedule, start) for s in schedules)
    billed = max(0, runs - FREE_INVOCATIONS) * USD_PER_MILLION / 1e6
    return (
        f"Periodic tasks: {len(schedules)} EventBridge Scheduler schedule(s) in group {schedules[0].group}, "
        f"about {runs:,} runs a month (${billed:.2f} after the {FREE_INVOCATIONS // 1_000_000}M free invocations; "
        f"${USD_PER_MILLION:.2f} per million), each one SQS SendMessage"
    )
