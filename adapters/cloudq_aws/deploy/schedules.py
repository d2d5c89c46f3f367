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

from cloudq.deploy.checks import beat_hint, schedule_problems
from cloudq.deploy.model import AppModel, ScheduleSpec
from cloudq.schedules import cron_fields, crontab, day_fields_problem, every, minute_interval, runs_per_month

from .. import resources as res

SCHEDULER = "EventBridge Scheduler"
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


def expression(sched: Any) -> tuple[str, str] | str:
    """``(expression, timezone)`` for EventBridge Scheduler, or why it cannot express ``sched``."""
    if isinstance(sched, every):
        minutes = minute_interval(sched, SCHEDULER)
        if isinstance(minutes, str):
            return minutes
        if 60 % minutes == 0:  # aligned like the beat's runs: on multiples of the interval
            return f"cron(0/{minutes} * * * ? *)" if minutes > 1 else "cron(* * * * ? *)", "UTC"
        if minutes % 60 == 0 and 24 % (minutes // 60) == 0:
            return f"cron(0 0/{minutes // 60} * * ? *)", "UTC"
        if minutes == 1440:
            return "cron(0 0 * * ? *)", "UTC"
        return f"rate({minutes} minutes)", "UTC"  # counted from the schedule's creation, not the epoch
    if isinstance(sched, crontab):
        problem = day_fields_problem(sched, SCHEDULER)
        if problem:
            return problem
        minute, hour, dom, month, dow = cron_fields(sched, weekday_shift=1)  # AWS: 1 = Sunday
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
    specs, problems = schedule_problems(model, SCHEDULER)
    for spec in specs:
        found = expression(spec.schedule)
        if isinstance(found, str):
            problems.append(f"periodic task {spec.name!r}: {found}; {beat_hint()}")
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
