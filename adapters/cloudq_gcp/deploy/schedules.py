"""Periodic tasks as Cloud Scheduler jobs publishing to their queue's Pub/Sub topic, as data, and
the exact ``gcloud scheduler jobs create pubsub`` commands deploy prints for them.

There is no Cloud Scheduler emulator and this deployer talks only to Pub/Sub, so jobs are not
created, read back or diffed: ``cloudq deploy`` prints the commands (as it does for Cloud Run and
the Firestore TTL policy), and tests check the job specs and commands as data.

A Cloud Scheduler job publishes a fixed message: the envelope's id and due time carry
``PUBLISH_MINUTE``, which the Pub/Sub broker replaces with the message's publish time down to the
minute (the job fires on the minute and publishes within seconds). Pub/Sub redeliveries keep the
publish time, so the run keeps its id and the worker runs it once; a publish Cloud Scheduler
itself retries after the minute turned gets another id and may run again.
"""

from __future__ import annotations

import re
import shlex
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from cloudq.deploy.checks import beat_hint, schedule_problems
from cloudq.deploy.model import AppModel, ScheduleSpec
from cloudq.periodic import PUBLISH_MINUTE
from cloudq.schedules import cron_fields, crontab, day_fields_problem, every, minute_interval

SCHEDULER = "Cloud Scheduler"
JOB_ATTRIBUTE = "schedule"  # the job's periodic task name, on every message it publishes
_JOB_NAME = re.compile(r"[^A-Za-z0-9_-]")
JOB_NAME_MAX = 500


@dataclass(frozen=True, slots=True)
class SchedulerJob:
    """One Cloud Scheduler job, as its REST resource would hold it."""

    name: str
    schedule: str  # unix cron
    time_zone: str
    topic: str  # projects/P/topics/T
    data: str  # the envelope text
    attributes: dict[str, str]

    def spec(self, project: str, location: str) -> dict[str, Any]:
        """The job in the Cloud Scheduler API's shape (``projects.locations.jobs``)."""
        return {
            "name": f"projects/{project}/locations/{location}/jobs/{self.name}",
            "schedule": self.schedule,
            "timeZone": self.time_zone,
            "pubsubTarget": {"topicName": self.topic, "data": self.data, "attributes": dict(self.attributes)},
        }

    def command(self, project: str, location: str) -> str:
        attributes = ",".join(f"{k}={v}" for k, v in sorted(self.attributes.items()))
        return (
            f"gcloud scheduler jobs create pubsub {self.name} --project={project} --location={location} "
            f"--schedule={shlex.quote(self.schedule)} --time-zone={shlex.quote(self.time_zone)} "
            f"--topic={self.topic} --message-body={shlex.quote(self.data)} --attributes={shlex.quote(attributes)}"
        )


def unix_cron(sched: Any) -> tuple[str, str] | str:
    """``(unix cron, timezone)`` for Cloud Scheduler, or why it cannot express ``sched``."""
    if isinstance(sched, every):
        minutes = minute_interval(sched, SCHEDULER)
        if isinstance(minutes, str):
            return minutes
        if 60 % minutes == 0:
            return ("* * * * *" if minutes == 1 else f"*/{minutes} * * * *"), "UTC"
        if minutes % 60 == 0 and 24 % (minutes // 60) == 0:
            return f"0 */{minutes // 60} * * *", "UTC"
        if minutes == 1440:
            return "0 0 * * *", "UTC"
        return (
            f"every({sched.seconds:g} s) cannot run on {SCHEDULER}: cron repeats only intervals that divide an "
            "hour or a day"
        )
    if isinstance(sched, crontab):
        problem = day_fields_problem(sched, SCHEDULER)
        if problem:
            return problem
        return " ".join(cron_fields(sched, unix=True)), sched.timezone
    return f"{sched!r} is not a schedule cloudq can deploy"


def job_name(model: AppModel, spec: ScheduleSpec) -> str:
    return _JOB_NAME.sub("-", f"cloudq-{model.app}-{model.stage}-{spec.name}")[:JOB_NAME_MAX]


def build_jobs(model: AppModel, topic_of: Any) -> tuple[list[SchedulerJob], list[str]]:
    """The jobs (``topic_of(queue)`` gives a queue's topic path) and the problems refusing the deploy."""
    specs, problems = schedule_problems(model, SCHEDULER)
    jobs: list[SchedulerJob] = []
    for spec in specs:
        found = unix_cron(spec.schedule)
        if isinstance(found, str):
            problems.append(f"periodic task {spec.name!r}: {found}; {beat_hint()}")
            continue
        jobs.append(
            SchedulerJob(
                name=job_name(model, spec),
                schedule=found[0],
                time_zone=found[1],
                topic=topic_of(spec.queue),
                data=spec.message(PUBLISH_MINUTE),
                attributes={JOB_ATTRIBUTE: spec.name},
            )
        )
    return jobs, problems


def job_notes(jobs: Sequence[SchedulerJob], project: str, location: str) -> list[str]:
    if not jobs:
        return []
    return [
        "# periodic tasks run as Cloud Scheduler jobs (cloudq deploy cannot reach Cloud Scheduler; "
        "use `update` instead of `create` for a job that exists; about $0.10 a job a month after 3 free):",
        *(job.command(project, location) for job in jobs),
    ]
