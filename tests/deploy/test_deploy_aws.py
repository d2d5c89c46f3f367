"""``cloudq deploy`` / ``destroy`` on AWS, against the session's moto server: every resource read
back through the API after a deploy, redeploys that change nothing, an option change that
updates one resource, destroy that touches only what cloudq tagged, stages side by side."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import boto3
import pytest
from cloudq_aws.deploy.iam import RESULT_ACTIONS
from cloudq_aws.testing import MotoServer
from deploy_helpers import Project

pytestmark = [pytest.mark.aws, pytest.mark.timeout(120)]

APP = """
from cloudq import App

app = App(
    "{name}",
    broker="sqs://?prefix={prefix}",
    results="dynamodb://{prefix}results",
    deploy={{"queues": {{"emails": {{"runtime": "lambda", "batch_size": 5, "batching_window": 2, "max_concurrency": 4}}}}}},
)


@app.task(queue="emails", max_retries=5, time_limit=20)
def send_email(to: str) -> None:
    pass


@app.task(max_retries=2)
def add(a: int, b: int) -> int:
    return a + b
"""

CONTAINER_APP = """
from cloudq import App

app = App("{name}")  # broker and results from CLOUDQ_BROKER / CLOUDQ_RESULTS: one set per stage


@app.task(max_retries=1)
def add(a: int, b: int) -> int:
    return a + b


@app.task(queue="reports")
def report() -> None:
    pass
"""


def use_stage_names(monkeypatch: pytest.MonkeyPatch, prefix: str) -> None:
    """Point the app at one stage's names, as each stage's environment would."""
    monkeypatch.setenv("CLOUDQ_BROKER", f"sqs://?prefix={prefix}")
    monkeypatch.setenv("CLOUDQ_RESULTS", f"dynamodb://{prefix}results")


@pytest.fixture
def clients(aws: MotoServer) -> Iterator[dict[str, Any]]:
    made = {name: boto3.client(name) for name in ("sqs", "dynamodb", "iam", "lambda", "s3", "cloudformation", "logs")}
    yield made
    for client in made.values():
        client.close()


def project(tmp_path: Path, source: str, prefix: str) -> Project:
    name = prefix.rstrip("-").replace("-", "")
    return Project.create(tmp_path, source.format(name=name, prefix=prefix))


def stage_project(tmp_path: Path, prefix: str, monkeypatch: pytest.MonkeyPatch) -> tuple[Project, str]:
    """CONTAINER_APP with its stage's names from the environment, and the app's name."""
    use_stage_names(monkeypatch, prefix)
    p = project(tmp_path, CONTAINER_APP, prefix)
    return p, p.load().name


def queue_attributes(sqs: Any, name: str) -> dict[str, str]:
    url = sqs.get_queue_url(QueueName=name)["QueueUrl"]
    return sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["All"])["Attributes"]  # type: ignore[no-any-return]


def queue_tags(sqs: Any, name: str) -> dict[str, str]:
    url = sqs.get_queue_url(QueueName=name)["QueueUrl"]
    return sqs.list_queue_tags(QueueUrl=url).get("Tags", {})  # type: ignore[no-any-return]


def queue_names(sqs: Any, prefix: str) -> set[str]:
    return {u.rsplit("/", 1)[-1] for u in sqs.list_queues(QueueNamePrefix=prefix).get("QueueUrls", [])}


def test_deploy_creates_every_resource_with_its_attributes(
    tmp_path: Path, prefix: str, clients: dict[str, Any]
) -> None:
    p = project(tmp_path, APP, prefix)
    app_name = p.load().name
    out = p.run_json("deploy", "--yes")
    assert out["summary"]["create"] == 9 and len(out["applied"]) == 9
    sqs = clients["sqs"]
    account = "123456789012"
    ours = {"cloudq:app": app_name, "cloudq:stage": "dev", "cloudq:managed-by": "cloudq"}

    # the Lambda queue: visibility 6x the function timeout (time_limit 20 s -> 60 s default timeout)
    emails = queue_attributes(sqs, f"{prefix}emails")
    assert emails["VisibilityTimeout"] == "360"
    assert emails["ReceiveMessageWaitTimeSeconds"] == "20"
    assert emails["MaximumMessageSize"] == "1048576"
    redrive = json.loads(emails["RedrivePolicy"])
    assert redrive["deadLetterTargetArn"] == f"arn:aws:sqs:us-east-1:{account}:{prefix}emails-dlq"
    assert int(redrive["maxReceiveCount"]) == 5 + 1 + 3  # max_retries + first attempt + headroom
    # the container queue: the worker's lease, retries of its task
    default = queue_attributes(sqs, f"{prefix}default")
    assert default["VisibilityTimeout"] == "60"
    assert int(json.loads(default["RedrivePolicy"])["maxReceiveCount"]) == 2 + 1 + 3
    assert queue_attributes(sqs, f"{prefix}default-dlq")["MessageRetentionPeriod"] == "1209600"
    for name in ("emails", "emails-dlq", "default", "default-dlq"):
        assert queue_tags(sqs, f"{prefix}{name}") == ours

    table = clients["dynamodb"].describe_table(TableName=f"{prefix}results")["Table"]
    assert table["BillingModeSummary"]["BillingMode"] == "PAY_PER_REQUEST"
    assert table["KeySchema"] == [{"AttributeName": "task_id", "KeyType": "HASH"}]
    ttl = clients["dynamodb"].describe_time_to_live(TableName=f"{prefix}results")["TimeToLiveDescription"]
    assert ttl == {"TimeToLiveStatus": "ENABLED", "AttributeName": "expires_at"}
    tags = clients["dynamodb"].list_tags_of_resource(ResourceArn=table["TableArn"])["Tags"]
    assert {t["Key"]: t["Value"] for t in tags} == ours

    role = clients["iam"].get_role(RoleName=f"cloudq-{app_name}-dev")["Role"]
    assert role["Path"] == "/cloudq/"
    principals = role["AssumeRolePolicyDocument"]["Statement"][0]["Principal"]["Service"]
    assert principals == ["ecs-tasks.amazonaws.com", "lambda.amazonaws.com"]

    function = clients["lambda"].get_function(FunctionName=f"{app_name}-dev-emails")
    config = function["Configuration"]
    assert config["Handler"] == "cloudq_aws.lambda_entry.handler"
    assert config["Runtime"] == "python3.13" and config["Architectures"] == ["x86_64"]  # the defaults
    assert config["Timeout"] == 60 and config["MemorySize"] == 512
    assert config["Role"] == role["Arn"]
    env = config["Environment"]["Variables"]
    assert env["CLOUDQ_APP"] == p.app_path
    assert env["CLOUDQ_BROKER"] == f"sqs://?prefix={prefix}"
    assert env["CLOUDQ_CREATE_MISSING"] == "false"
    assert function["Tags"] == ours

    # its log group, made before the function so Lambda never makes one that keeps logs forever
    [group] = clients["logs"].describe_log_groups(logGroupNamePrefix=f"/aws/lambda/{app_name}-dev-emails")["logGroups"]
    assert group["logGroupName"] == f"/aws/lambda/{app_name}-dev-emails" and group["retentionInDays"] == 30
    assert clients["logs"].list_tags_for_resource(resourceArn=group["arn"].removesuffix(":*"))["tags"] == ours

    [mapping] = clients["lambda"].list_event_source_mappings(FunctionName=f"{app_name}-dev-emails")[
        "EventSourceMappings"
    ]
    assert mapping["EventSourceArn"] == f"arn:aws:sqs:us-east-1:{account}:{prefix}emails"
    assert mapping["FunctionResponseTypes"] == ["ReportBatchItemFailures"]
    assert mapping["BatchSize"] == 5
    assert mapping["MaximumBatchingWindowInSeconds"] == 2
    assert mapping["ScalingConfig"] == {"MaximumConcurrency": 4}
    p.run("destroy", "--yes")
    assert clients["logs"].describe_log_groups(logGroupNamePrefix=f"/aws/lambda/{app_name}-")["logGroups"] == []


def test_lambda_runtime_architecture_and_log_retention_are_deploy_settings(
    tmp_path: Path, prefix: str, clients: dict[str, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    p, name = stage_project(tmp_path, prefix, monkeypatch)
    lambda_queue = {"queues": {"reports": {"runtime": "lambda"}}}
    first = {"lambda_runtime": "python3.12", "lambda_architecture": "arm64", "log_retention_days": 7}
    monkeypatch.setenv("CLOUDQ_DEPLOY", json.dumps({**lambda_queue, **first}))
    planned = p.run("deploy", "--dry-run").stdout
    assert "Function code: python3.12 on arm64 (" in planned
    p.run("deploy", "--yes")
    function = f"{name}-dev-reports"
    config = clients["lambda"].get_function(FunctionName=function)["Configuration"]
    assert (config["Runtime"], config["Architectures"]) == ("python3.12", ["arm64"])
    group = f"/aws/lambda/{function}"
    assert clients["logs"].describe_log_groups(logGroupNamePrefix=group)["logGroups"][0]["retentionInDays"] == 7

    # the architecture stays: moto ignores Architectures in UpdateFunctionCode (AWS applies it)
    then = {"lambda_runtime": "python3.13", "lambda_architecture": "arm64", "log_retention_days": 14}
    monkeypatch.setenv("CLOUDQ_DEPLOY", json.dumps({**lambda_queue, **then}))
    plan = p.run_json("deploy", "--dry-run")
    changes = {s["name"]: s["changes"] for s in plan["steps"] if s["action"] == "update"}
    assert set(changes) == {function, group}
    assert changes[function]["Runtime"] == {"from": "python3.12", "to": "python3.13"}
    assert "CodeSha256" in changes[function]  # rebuilt for the new target
    assert changes[group] == {"RetentionInDays": {"from": 7, "to": 14}}
    p.run("deploy", "--yes")
    config = clients["lambda"].get_function(FunctionName=function)["Configuration"]
    assert (config["Runtime"], config["Architectures"]) == ("python3.13", ["arm64"])
    assert p.run_json("deploy", "--dry-run")["noop"] is True
    p.run("destroy", "--yes")


def test_iam_policy_grants_only_cloudq_actions_on_this_apps_arns(
    tmp_path: Path, prefix: str, clients: dict[str, Any]
) -> None:
    p = project(tmp_path, APP, prefix)
    name = p.load().name
    p.run("deploy", "--yes")
    policy = clients["iam"].get_role_policy(RoleName=f"cloudq-{name}-dev", PolicyName="cloudq")["PolicyDocument"]
    resources = [r for s in policy["Statement"] for r in s["Resource"]]
    actions = {a for s in policy["Statement"] for a in s["Action"]}
    assert "*" not in resources
    assert all(r.startswith("arn:aws:") and ":*:" not in r and "::*" not in r for r in resources), resources
    assert all("*" not in r or r.endswith(":log-stream:*") for r in resources), resources
    queues = {r.rsplit(":", 1)[-1] for r in resources if r.startswith("arn:aws:sqs:")}
    assert queues == {f"{prefix}{q}" for q in ("emails", "emails-dlq", "default", "default-dlq")}
    assert {r for r in resources if ":dynamodb:" in r} == {
        f"arn:aws:dynamodb:us-east-1:123456789012:table/{prefix}results",
        f"arn:aws:dynamodb:us-east-1:123456789012:table/{prefix}results/index/cloudq-recent",
    }
    [index] = [s for s in policy["Statement"] if s["Sid"] == "CloudqTaskIndex"]
    assert index["Action"] == ["dynamodb:Query"] and index["Resource"][0].endswith("/index/cloudq-recent")
    [results] = [s for s in policy["Statement"] if s["Sid"] == "CloudqResults"]
    assert set(results["Action"]) == set(RESULT_ACTIONS)  # what the store calls (test_deploy_iam_results.py)
    # deploy creates the log groups itself: the role only writes streams into them
    assert all(not a.endswith("*") and ":Create" not in a.replace("logs:CreateLogStream", "") for a in actions), actions
    assert "sqs:DeleteQueue" not in actions and "dynamodb:DeleteTable" not in actions
    p.run("destroy", "--yes")


def test_redeploy_changes_nothing_and_says_so(tmp_path: Path, prefix: str, clients: dict[str, Any]) -> None:
    p = project(tmp_path, APP, prefix)
    p.run("deploy", "--yes")
    again = p.run("deploy", "--yes")
    assert "No changes: the cloud already matches" in again.stdout
    assert "Applying" not in again.output
    out = p.run_json("deploy", "--yes")
    assert out["noop"] is True and out["applied"] == []
    assert out["summary"] == {"create": 0, "update": 0, "unchanged": 9, "delete": 0}
    p.run("destroy", "--yes")


def test_a_changed_option_updates_only_that_resource(
    tmp_path: Path, prefix: str, clients: dict[str, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    use_stage_names(monkeypatch, prefix)
    p = project(tmp_path, CONTAINER_APP, prefix)
    p.run("deploy", "--yes")
    monkeypatch.setenv("CLOUDQ_DEPLOY", json.dumps({"queues": {"reports": {"visibility_timeout": 300}}}))
    plan = p.run_json("deploy", "--dry-run")
    [update] = [s for s in plan["steps"] if s["action"] != "unchanged"]
    assert update == {
        "action": "update",
        "kind": "sqs.queue",
        "name": f"{prefix}reports",
        "changes": {"VisibilityTimeout": {"from": "60", "to": "300"}},
    }
    assert queue_attributes(clients["sqs"], f"{prefix}reports")["VisibilityTimeout"] == "60"  # dry run
    done = p.run_json("deploy", "--yes")
    assert [s["name"] for s in done["applied"]] == [f"{prefix}reports"]
    assert queue_attributes(clients["sqs"], f"{prefix}reports")["VisibilityTimeout"] == "300"
    assert queue_attributes(clients["sqs"], f"{prefix}default")["VisibilityTimeout"] == "60"
    assert p.run_json("deploy", "--yes")["noop"] is True
    p.run("destroy", "--yes")


def test_a_queue_no_longer_used_is_planned_for_deletion(
    tmp_path: Path, prefix: str, clients: dict[str, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    use_stage_names(monkeypatch, prefix)
    p = project(tmp_path, CONTAINER_APP, prefix)
    p.run("deploy", "--yes")
    source = tmp_path / f"{p.module}.py"
    source.write_text(source.read_text().replace('queue="reports"', 'queue="default"'))  # nothing uses "reports" now
    plan = p.run_json("deploy", "--dry-run")
    deletes = sorted(s["name"] for s in plan["steps"] if s["action"] == "delete")
    assert deletes == [f"{prefix}reports", f"{prefix}reports-dlq"]
    p.run("deploy", "--yes")
    assert queue_names(clients["sqs"], prefix) == {f"{prefix}default", f"{prefix}default-dlq"}
    p.run("destroy", "--yes")


def test_destroy_removes_only_what_cloudq_tagged_for_the_app_and_stage(
    tmp_path: Path, prefix: str, clients: dict[str, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    sqs = clients["sqs"]
    p = project(tmp_path, CONTAINER_APP, prefix)
    name = p.load().name
    use_stage_names(monkeypatch, f"{prefix}prod-")
    p.run("deploy", "--stage", "prod", "--yes")  # the same app's prod stage, under its own names
    use_stage_names(monkeypatch, prefix)
    p.run("deploy", "--yes")
    sqs.create_queue(QueueName=f"{prefix}hand-made")  # same prefix, not tagged
    sqs.create_queue(
        QueueName=f"{prefix}other-app",
        tags={"cloudq:app": "someone-else", "cloudq:stage": "dev", "cloudq:managed-by": "cloudq"},
    )
    result = p.run("destroy", "--yes")
    assert f"{prefix}hand-made" not in result.stdout and f"{prefix}prod-" not in result.stdout
    assert queue_names(sqs, prefix) == {
        f"{prefix}hand-made",
        f"{prefix}other-app",
        *(f"{prefix}prod-{q}" for q in ("default", "default-dlq", "reports", "reports-dlq")),
    }
    assert clients["iam"].get_role(RoleName=f"cloudq-{name}-prod")["Role"]
    clients["dynamodb"].describe_table(TableName=f"{prefix}prod-results")
    with pytest.raises(clients["iam"].exceptions.NoSuchEntityException):
        clients["iam"].get_role(RoleName=f"cloudq-{name}-dev")
    with pytest.raises(clients["dynamodb"].exceptions.ResourceNotFoundException):
        clients["dynamodb"].describe_table(TableName=f"{prefix}results")
    assert "Nothing to destroy" in p.run("destroy", "--yes").stdout
    use_stage_names(monkeypatch, f"{prefix}prod-")
    p.run("destroy", "--stage", "prod", "--yes")
    assert queue_names(sqs, prefix) == {f"{prefix}hand-made", f"{prefix}other-app"}


def test_a_stage_cannot_take_over_another_stages_resources(
    tmp_path: Path, prefix: str, clients: dict[str, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    use_stage_names(monkeypatch, prefix)
    p = project(tmp_path, CONTAINER_APP, prefix)
    p.run("deploy", "--yes")
    refused = p.run("deploy", "--stage", "prod", "--yes", ok=False)
    assert refused.exit_code == 1
    assert f"sqs.queue {prefix}default belongs to app" in refused.output and "stage 'dev'" in refused.output
    assert "Traceback" not in refused.output
    assert queue_tags(clients["sqs"], f"{prefix}default")["cloudq:stage"] == "dev"
    p.run("destroy", "--yes")


def test_deploy_adopts_queues_created_on_first_use(
    tmp_path: Path, prefix: str, clients: dict[str, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    use_stage_names(monkeypatch, prefix)
    p = project(tmp_path, CONTAINER_APP, prefix)
    app = p.load()
    app.broker.queue("default")  # created on first use, untagged, with the broker's defaults
    plan = p.run_json("deploy", "--dry-run")
    steps = {s["name"]: s for s in plan["steps"]}
    default = steps[f"{prefix}default"]
    assert default["action"] == "update"
    assert set(default["changes"]) == {"RedrivePolicy", "tags"}  # same attributes otherwise: one builder
    p.run("deploy", "--yes")
    assert queue_tags(clients["sqs"], f"{prefix}default")["cloudq:managed-by"] == "cloudq"
    p.run("destroy", "--yes")


BUCKET_APP = """
from cloudq import App

app = App(
    "{name}",
    broker="sqs://?prefix={prefix}&bucket={bucket}",
    results="dynamodb://{prefix}results?bucket={bucket}",
)


@app.task()
def add(a: int, b: int) -> int:
    return a + b
"""


def test_a_configured_payload_bucket_is_created_scoped_in_the_policy_and_emptied_on_destroy(
    tmp_path: Path, prefix: str, bucket: str, clients: dict[str, Any]
) -> None:
    s3 = clients["s3"]
    name = prefix.rstrip("-").replace("-", "")
    p = Project.create(tmp_path, BUCKET_APP.format(name=name, prefix=prefix, bucket=bucket))
    p.run("deploy", "--yes")
    tags = {t["Key"]: t["Value"] for t in s3.get_bucket_tagging(Bucket=bucket)["TagSet"]}
    assert tags == {"cloudq:app": name, "cloudq:stage": "dev", "cloudq:managed-by": "cloudq"}
    policy = clients["iam"].get_role_policy(RoleName=f"cloudq-{name}-dev", PolicyName="cloudq")["PolicyDocument"]
    [payloads] = [s for s in policy["Statement"] if s["Sid"] == "CloudqPayloads"]
    assert payloads["Resource"] == [
        f"arn:aws:s3:::{bucket}/{prefix}cloudq/*",
        f"arn:aws:s3:::{bucket}/cloudq-results/{prefix}results/*",
    ]
    assert payloads["Action"] == ["s3:DeleteObject", "s3:GetObject", "s3:PutObject"]
    s3.put_object(Bucket=bucket, Key=f"{prefix}cloudq/q/left-over", Body=b"x")
    p.run("destroy", "--yes")
    assert bucket not in {b["Name"] for b in s3.list_buckets()["Buckets"]}


def test_a_bucket_cloudq_did_not_create_is_used_but_never_touched(
    tmp_path: Path, prefix: str, bucket: str, clients: dict[str, Any]
) -> None:
    s3 = clients["s3"]
    s3.create_bucket(Bucket=bucket)
    s3.put_object(Bucket=bucket, Key="someone-elses-data", Body=b"keep me")
    name = prefix.rstrip("-").replace("-", "")
    p = Project.create(tmp_path, BUCKET_APP.format(name=name, prefix=prefix, bucket=bucket))
    plan = p.run_json("deploy", "--dry-run")
    assert {s["name"]: s["action"] for s in plan["steps"]}[bucket] == "unchanged"
    p.run("deploy", "--yes")
    p.run("destroy", "--yes")
    assert s3.get_object(Bucket=bucket, Key="someone-elses-data")["Body"].read() == b"keep me"


def test_an_attribute_aws_cannot_change_in_place_is_refused(
    tmp_path: Path, prefix: str, clients: dict[str, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    p, name = stage_project(tmp_path, prefix, monkeypatch)
    trust = {"Version": "2012-10-17", "Statement": []}
    clients["iam"].create_role(
        RoleName=f"cloudq-{name}-dev", Path="/other/", AssumeRolePolicyDocument=json.dumps(trust)
    )
    refused = p.run("deploy", "--yes", ok=False)
    assert f"iam.role cloudq-{name}-dev: Path cannot change in place ('/other/' -> '/cloudq/')" in refused.output
    assert queue_names(clients["sqs"], prefix) == set()
    clients["iam"].delete_role(RoleName=f"cloudq-{name}-dev")
