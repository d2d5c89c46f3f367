"""Configurations that cannot work are refused before anything exists: one clear message saying
what to change, exit code 1, no traceback, and nothing created in the cloud."""

from __future__ import annotations

import json
from pathlib import Path

import boto3
import pytest
from cloudq_aws.testing import MotoServer
from deploy_helpers import Project

pytestmark = [pytest.mark.aws, pytest.mark.timeout(60)]

APP = """
from cloudq import App

app = App("{name}", broker="sqs://?prefix={prefix}", results="dynamodb://{prefix}results")


@app.task(name="send_email", queue="emails", time_limit={time_limit})
def send_email(to: str) -> None:
    pass


@app.task(queue="orders.fifo")
def place_order(order_id: int) -> None:
    pass
"""

CASES = {
    "visibility below 6x the Lambda timeout": (
        {"emails": {"runtime": "lambda", "timeout": 60, "visibility_timeout": 120}},
        10,
        "queue 'emails': visibility timeout 120 s is below 6x its Lambda timeout (60 s), so SQS would deliver "
        "messages again while a batch still runs: set visibility_timeout >= 360 (or remove it) "
        "in [tool.cloudq.deploy.queues.emails]",
    ),
    "per-message delay on a FIFO queue": (
        {"orders.fifo": {"delayed": True}},
        10,
        "queue 'orders.fifo' is an SQS FIFO queue, which cannot delay single messages (countdown/eta): route "
        'delayed tasks to a standard queue, or remove delayed = true from [tool.cloudq.deploy.queues."orders.fifo"]',
    ),
    "time_limit above Lambda's 900 s": (
        {"emails": {"runtime": "lambda"}},
        1200,
        "task 'send_email' has time_limit=1200 s but queue 'emails' runs on Lambda, which allows at most 900 s: "
        'lower its time_limit, or set runtime = "container" in [tool.cloudq.deploy.queues.emails]',
    ),
    "time_limit above the function timeout": (
        {"emails": {"runtime": "lambda", "timeout": 30}},
        100,
        "task 'send_email' has time_limit=100 s, longer than the 30 s timeout of queue 'emails' on Lambda: raise "
        "timeout in [tool.cloudq.deploy.queues.emails] or lower the task's time_limit",
    ),
    "FIFO batch above 10": (
        {"orders.fifo": {"runtime": "lambda", "batch_size": 20}},
        10,
        "queue 'orders.fifo': batch_size 20 is above the 10 Lambda allows for FIFO queues",
    ),
    "large batch without a batching window": (
        {"emails": {"runtime": "lambda", "batch_size": 100}},
        10,
        "Lambda needs a batching window of at least 1 s for batch_size above 10",
    ),
    "push runtime on AWS": (
        {"emails": {"runtime": "push"}},
        10,
        "queue 'emails': runtime 'push' is for Pub/Sub; on AWS use runtime = \"lambda\" or \"container\"",
    ),
    "unknown deploy setting": (
        {"emails": {"batchsize": 5}},
        10,
        "unknown deploy setting 'queues.emails.batchsize' (in [tool.cloudq.deploy] or CLOUDQ_DEPLOY)",
    ),
}


@pytest.mark.parametrize("case", list(CASES))
def test_an_impossible_configuration_is_refused_and_creates_nothing(
    case: str, tmp_path: Path, prefix: str, aws: MotoServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    queues, time_limit, message = CASES[case]
    name = prefix.rstrip("-").replace("-", "")
    p = Project.create(tmp_path, APP.format(name=name, prefix=prefix, time_limit=time_limit))
    monkeypatch.setenv("CLOUDQ_DEPLOY", json.dumps({"queues": queues}))
    for args in (("deploy", "--yes"), ("deploy", "--dry-run"), ("deploy", "--emit", "cloudformation")):
        result = p.run(*args, ok=False)
        assert result.exit_code == 1, result.output
        assert message in result.output
        assert "Traceback" not in result.output
    sqs = boto3.client("sqs")
    assert sqs.list_queues(QueueNamePrefix=prefix).get("QueueUrls", []) == []
    assert f"{prefix}results" not in boto3.client("dynamodb").list_tables()["TableNames"]
    assert not [r for r in boto3.client("iam").list_roles()["Roles"] if name in r["RoleName"]]


def test_every_problem_is_listed_at_once(
    tmp_path: Path, prefix: str, aws: MotoServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    name = prefix.rstrip("-").replace("-", "")
    p = Project.create(tmp_path, APP.format(name=name, prefix=prefix, time_limit=1200))
    queues = {"emails": {"runtime": "lambda"}, "orders.fifo": {"delayed": True}}
    monkeypatch.setenv("CLOUDQ_DEPLOY", json.dumps({"queues": queues}))
    result = p.run("deploy", "--dry-run", ok=False)
    assert result.output.startswith("Error: DeployRefused: cannot deploy, nothing was changed:")
    assert "time_limit=1200 s" in result.output and "cannot delay single messages" in result.output


@pytest.mark.parametrize(
    ("args", "env", "message"),
    [
        (("--stage", "Prod!"), {}, "stage 'Prod!' is not allowed: 1-16 lowercase letters, digits or '-'"),
        ((), {"CLOUDQ_BROKER": "sqlite:///x.db"}, "uses the embedded sqlite:// broker, which needs no cloud resources"),
        ((), {"CLOUDQ_BROKER": "redis://localhost"}, "cloudq deploy does not know broker scheme 'redis'"),
    ],
)
def test_bad_stage_or_broker_is_one_line(
    args: tuple[str, ...], env: dict[str, str], message: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    monkeypatch.chdir(tmp_path)
    p = Project.create(tmp_path, 'from cloudq import App\napp = App("plain")\n')
    result = p.run("deploy", "--dry-run", *args, ok=False)
    assert result.exit_code != 0 and message in result.output, result.output
    assert "Traceback" not in result.output
