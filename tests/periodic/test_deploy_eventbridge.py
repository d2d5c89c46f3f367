"""``cloudq deploy`` of periodic tasks onto EventBridge Scheduler, against the moto server: create,
no-op redeploy, an expression update, destroy; the role may only send to the schedule's queue; and
the message Scheduler would send runs the task once through the worker and the Lambda handler,
however often it is delivered."""

from __future__ import annotations

import itertools
import json
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import boto3
import pytest
from click.testing import CliRunner, Result
from cloudq_aws.testing import MotoServer
from cloudq_aws.testing.lambda_events import SQSPoller

from cloudq.cli import main
from cloudq.testing.workers import run_burst

pytestmark = [pytest.mark.aws, pytest.mark.timeout(120)]
_ids = itertools.count(1)

APP = """
from cloudq import App
from cloudq.schedules import crontab, every

app = App("{name}", broker="sqs://?prefix={prefix}&wait=1", results="dynamodb://{prefix}results")
RUNS = []


@app.periodic_task({schedule}, args=("daily",), name="report", queue="reports")
def report(kind: str) -> str:
    RUNS.append(kind)
    return kind


@app.task()
def add(a: int, b: int) -> int:
    return a + b


app.add_periodic_task(every(300), add.s(1, 2), name="sum")
"""


class Project:
    """One app module in a folder on sys.path; each CLI run imports it afresh."""

    def __init__(self, folder: Path, prefix: str) -> None:
        self.folder, self.prefix = folder, prefix
        self.module = f"schedapp{next(_ids)}"
        self.name = prefix.rstrip("-").replace("-", "")
        if str(folder) not in sys.path:
            sys.path.insert(0, str(folder))

    def write(self, schedule: str) -> None:
        source = APP.format(name=self.name, prefix=self.prefix, schedule=schedule)
        (self.folder / f"{self.module}.py").write_text(textwrap.dedent(source))
        sys.modules.pop(self.module, None)

    def load(self) -> Any:
        sys.modules.pop(self.module, None)
        return __import__(self.module)

    def run(self, *args: str, ok: bool = True) -> Result:
        sys.modules.pop(self.module, None)
        result = CliRunner().invoke(main, [args[0], "-A", f"{self.module}:app", *args[1:]])
        if ok:
            assert result.exit_code == 0, f"{result.output}\n{result.exception!r}"
        return result

    def run_json(self, *args: str) -> dict[str, Any]:
        return json.loads(self.run(*args, "--json").stdout)  # type: ignore[no-any-return]


@pytest.fixture
def clients(aws: MotoServer) -> Iterator[dict[str, Any]]:
    made = {name: boto3.client(name) for name in ("scheduler", "iam", "sqs")}
    yield made
    for client in made.values():
        client.close()


@pytest.fixture
def project(tmp_path: Path, prefix: str, aws: MotoServer) -> Iterator[Project]:
    p = Project(tmp_path, prefix)
    p.write('crontab(0, 9, day_of_week="mon-fri", timezone="Europe/Paris")')
    yield p
    p.run("destroy", "--yes", ok=False)


def deliver(sqs: Any, queue_url: str, schedule: dict[str, Any], due: str, execution: str) -> None:
    """Send what EventBridge Scheduler sends for one run: the input, its context attributes filled in."""
    body = schedule["Target"]["Input"]
    body = body.replace("<aws.scheduler.scheduled-time>", due).replace("<aws.scheduler.execution-id>", execution)
    sqs.send_message(QueueUrl=queue_url, MessageBody=body)


def test_deploy_creates_updates_and_destroys_the_schedules(project: Project, clients: dict[str, Any]) -> None:
    scheduler, prefix, name = clients["scheduler"], project.prefix, project.name
    group = f"cloudq-{name}-dev"
    plan = project.run_json("deploy", "--dry-run")
    kinds = [(s["kind"], s["name"]) for s in plan["steps"] if s["kind"].startswith("scheduler.")]
    assert kinds == [("scheduler.group", group), ("scheduler.schedule", f"{group}/report"),
                     ("scheduler.schedule", f"{group}/sum")]  # fmt: skip
    [cost] = [line for line in plan["info"] if line.startswith("Periodic tasks:")]
    assert f"2 EventBridge Scheduler schedule(s) in group {group}" in cost and "runs a month ($0.00 after" in cost
    project.run("deploy", "--yes")

    report = scheduler.get_schedule(Name="report", GroupName=group)
    assert report["ScheduleExpression"] == "cron(0 9 ? * 2-6 *)"  # AWS counts Sunday as 1
    assert report["ScheduleExpressionTimezone"] == "Europe/Paris"
    assert report["State"] == "ENABLED" and report["FlexibleTimeWindow"] == {"Mode": "OFF"}
    target = report["Target"]
    assert target["Arn"] == f"arn:aws:sqs:us-east-1:123456789012:{prefix}reports"
    assert target["RoleArn"] == f"arn:aws:iam::123456789012:role/cloudq/cloudq-{name}-dev-scheduler"
    envelope = json.loads(target["Input"])
    assert envelope["id"] == "report@<aws.scheduler.scheduled-time>"
    assert envelope["task"].endswith(".report") and envelope["args"] == ["daily"]
    assert envelope["headers"]["cloudq-schedule"] == "report"
    assert envelope["headers"]["cloudq-scheduler-execution"] == "<aws.scheduler.execution-id>"
    assert scheduler.get_schedule(Name="sum", GroupName=group)["ScheduleExpression"] == "cron(0/5 * * * ? *)"
    tags = scheduler.list_tags_for_resource(ResourceArn=scheduler.get_schedule_group(Name=group)["Arn"])["Tags"]
    assert {t["Key"]: t["Value"] for t in tags}["cloudq:app"] == name

    # the role: EventBridge Scheduler may assume it, and it may only send to the schedules' queues
    role = f"cloudq-{name}-dev-scheduler"
    trust = clients["iam"].get_role(RoleName=role)["Role"]["AssumeRolePolicyDocument"]
    assert trust["Statement"][0]["Principal"]["Service"] == ["scheduler.amazonaws.com"]
    policy = clients["iam"].get_role_policy(RoleName=role, PolicyName="cloudq")["PolicyDocument"]
    assert policy["Statement"] == [
        {
            "Sid": "CloudqScheduledRuns",
            "Effect": "Allow",
            "Action": ["sqs:SendMessage"],
            "Resource": [
                f"arn:aws:sqs:us-east-1:123456789012:{prefix}default",
                f"arn:aws:sqs:us-east-1:123456789012:{prefix}reports",
            ],
        }
    ]

    assert project.run_json("deploy", "--dry-run")["noop"] is True  # a redeploy changes nothing

    project.write('crontab(minute="*/15", hour="8-18", timezone="America/New_York")')
    plan = project.run_json("deploy", "--dry-run")
    [update] = [s for s in plan["steps"] if s["action"] != "unchanged"]
    assert update["kind"] == "scheduler.schedule" and update["name"] == f"{group}/report"
    assert update["changes"]["ScheduleExpression"] == {"from": "cron(0 9 ? * 2-6 *)", "to": "cron(0/15 8-18 * * ? *)"}
    assert update["changes"]["ScheduleExpressionTimezone"] == {"from": "Europe/Paris", "to": "America/New_York"}
    project.run("deploy", "--yes")
    assert scheduler.get_schedule(Name="report", GroupName=group)["ScheduleExpression"] == "cron(0/15 8-18 * * ? *)"
    assert project.run_json("deploy", "--dry-run")["noop"] is True

    gone = project.run_json("destroy", "--yes")
    deleted = {(s["kind"], s["name"]) for s in gone["applied"]}
    assert {("scheduler.schedule", f"{group}/report"), ("scheduler.group", group), ("iam.role", role)} <= deleted
    assert [g["Name"] for g in scheduler.list_schedule_groups(NamePrefix=group)["ScheduleGroups"]] == []


def test_a_schedule_eventbridge_cannot_express_is_refused_at_plan_time(project: Project) -> None:
    project.write("every(30)")
    refused = project.run("deploy", "--dry-run", ok=False)
    assert refused.exit_code == 1
    assert "periodic task 'report': every(30 s) cannot run on EventBridge Scheduler" in refused.output
    assert "run it with `cloudq beat` instead" in refused.output
    project.write('crontab(0, 0, day_of_month=13, day_of_week="fri")')
    refused = project.run("deploy", "--dry-run", ok=False)
    assert "restricts both day_of_month and day_of_week" in refused.output


def test_with_schedules_beat_deploy_creates_no_schedule(project: Project, monkeypatch: pytest.MonkeyPatch) -> None:
    project.write("every(30)")
    monkeypatch.setenv("CLOUDQ_DEPLOY", json.dumps({"schedules": "beat"}))
    plan = project.run_json("deploy", "--dry-run")
    assert not [s for s in plan["steps"] if s["kind"].startswith("scheduler.")]


def test_the_scheduled_message_runs_once_on_the_worker_and_on_lambda(project: Project, clients: dict[str, Any]) -> None:
    project.run("deploy", "--yes")
    module = project.load()
    app = module.app
    group = f"cloudq-{project.name}-dev"
    schedule = clients["scheduler"].get_schedule(Name="report", GroupName=group)
    sqs = clients["sqs"]
    url = sqs.get_queue_url(QueueName=f"{project.prefix}reports")["QueueUrl"]

    # the worker: one run, delivered twice by the scheduler (its retry has another execution id)
    deliver(sqs, url, schedule, "2026-12-01T08:00:00Z", "exec-1")
    deliver(sqs, url, schedule, "2026-12-01T08:00:00Z", "exec-2")
    run_burst(app, queues=["reports"])
    assert module.RUNS == ["daily"]
    assert app.AsyncResult("report@2026-12-01T08:00:00Z").get(timeout=5) == "daily"

    # the Lambda handler: the next day's run, delivered twice in one batch and once more later
    poller = SQSPoller(sqs, url)
    deliver(sqs, url, schedule, "2026-12-02T08:00:00Z", "exec-3")
    deliver(sqs, url, schedule, "2026-12-02T08:00:00Z", "exec-4")
    handler = app.lambda_handler()
    first = poller.invoke(handler, poller.receive_all(2))
    assert module.RUNS.count("daily") == 2, first.response
    deliver(sqs, url, schedule, "2026-12-02T08:00:00Z", "exec-5")
    poller.invoke(handler, poller.receive_all(1))
    assert module.RUNS == ["daily", "daily"]
    assert app.AsyncResult("report@2026-12-02T08:00:00Z").get(timeout=5) == "daily"
