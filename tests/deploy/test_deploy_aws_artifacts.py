"""What ``cloudq deploy`` produces besides API calls on AWS: the Lambda archive (reproducible, holds the
handler, imports from itself) and the CloudFormation template (creates the same resources)."""

from __future__ import annotations

import ast
import io
import json
import os
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path
from typing import Any

import boto3
import pytest
import yaml
from click.testing import CliRunner
from cloudq_aws.deploy.deployer import AWSDeployer
from cloudq_aws.deploy.deps import Target
from cloudq_aws.deploy.packaging import package_app
from cloudq_aws.testing import MotoServer
from deploy_helpers import Project
from test_deploy_aws import APP, project

from cloudq.cli import main
from cloudq.deploy import build_model, diff
from cloudq.deploy.settings import DEFAULT_LAMBDA_ARCHITECTURE

pytestmark = [pytest.mark.aws, pytest.mark.timeout(120)]

IMPORT_CHECK = """
import json, sys
import cloudq_aws.lambda_entry as entry
import boto3, cloudq, cloudq_aws, pydantic, pydantic_core, {module}
print(json.dumps({{
    "handler": type(entry.handler).__name__,
    "empty_batch": entry.handler({{"Records": []}}, None),
    "files": {{name: sys.modules[name].__file__ for name in
              ("cloudq", "cloudq_aws", "pydantic", "pydantic_core", "{module}", "boto3")}},
}}))
"""


def test_lambda_archive_is_reproducible_and_holds_the_handler(tmp_path: Path, prefix: str, aws: MotoServer) -> None:
    p = project(tmp_path, APP, prefix)
    model = build_model(p.load(), p.app_path)
    first = AWSDeployer(model, tmp_path).package
    again = AWSDeployer(model, tmp_path).package
    assert first.data == again.data and first.sha256 == again.sha256
    archive = zipfile.ZipFile(io.BytesIO(first.data))
    infos = archive.infolist()
    names = [i.filename for i in infos]
    assert names == sorted(names)
    assert {i.date_time for i in infos} == {(1980, 1, 1, 0, 0, 0)}
    assert {"cloudq_aws/lambda_entry.py", "cloudq_aws/lambda_/handler.py", "cloudq/app.py", f"{p.module}.py"} <= set(
        names
    )
    assert any(n.startswith("pydantic_core/") for n in names)
    assert not [n for n in names if n.split("/")[0] in {"boto3", "botocore", "s3transfer"}]
    assert not [n for n in names if "__pycache__" in n or n.endswith(".pyc")]
    assert first.size == len(first.data) and first.unzipped_bytes > first.size


def test_lambda_archive_imports_the_handler_from_itself(tmp_path: Path, prefix: str, aws: MotoServer) -> None:
    """Built for this interpreter's runtime, so it runs here (tests/lambda_/test_lambda_package_shipped.py
    runs one as Lambda does: another Python, nothing else installed)."""
    p = project(tmp_path, APP, prefix)
    p.load()
    here = Target(f"python{sys.version_info.major}.{sys.version_info.minor}", DEFAULT_LAMBDA_ARCHITECTURE)
    package = package_app(p.module, tmp_path, target=here)
    unzipped = tmp_path / "function"
    zipfile.ZipFile(io.BytesIO(package.data)).extractall(unzipped)
    elsewhere = tmp_path / "cwd"
    elsewhere.mkdir()
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith("CLOUDQ_")},
        "PYTHONPATH": str(unzipped),
        "CLOUDQ_APP": p.app_path,
    }
    done = subprocess.run(
        [sys.executable, "-c", IMPORT_CHECK.format(module=p.module)],
        cwd=elsewhere,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    out = json.loads(done.stdout)
    assert out["handler"] == "LambdaHandler"
    assert out["empty_batch"] == {"batchItemFailures": []}
    files = out["files"]
    for name in ("cloudq", "cloudq_aws", "pydantic", "pydantic_core", p.module):
        assert files[name].startswith(str(unzipped)), (name, files[name])
    assert not files["boto3"].startswith(str(unzipped))  # the runtime's own


def create_stack_from_export(p: Project, prefix: str, tmp_path: Path) -> dict[str, Any]:
    """``cloudq deploy --emit cloudformation``, its archive uploaded, and a stack made from both on
    moto's CloudFormation, as the README tells CloudFormation users to do; returns the template."""
    name = p.load().name
    emitted = p.run("deploy", "--emit", "cloudformation")
    assert f"written to build/cloudq/{name}-dev.zip" in emitted.stderr
    assert "Function code: python3.13 on x86_64" in emitted.stderr
    template = emitted.stdout
    assert template.startswith('AWSTemplateFormatVersion: "2010-09-09"')
    s3 = boto3.client("s3")
    cfn = boto3.client("cloudformation")
    code_bucket = f"{prefix}code"
    s3.create_bucket(Bucket=code_bucket)
    s3.put_object(Bucket=code_bucket, Key="fn.zip", Body=(tmp_path / f"build/cloudq/{name}-dev.zip").read_bytes())
    cfn.create_stack(
        StackName=f"{prefix}stack",
        TemplateBody=template,
        Parameters=[
            {"ParameterKey": "CodeBucket", "ParameterValue": code_bucket},
            {"ParameterKey": "CodeKey", "ParameterValue": "fn.zip"},
        ],
        Capabilities=["CAPABILITY_NAMED_IAM"],
    )
    status = cfn.describe_stacks(StackName=f"{prefix}stack")["Stacks"][0]["StackStatus"]
    assert status == "CREATE_COMPLETE"
    return yaml.safe_load(template)  # type: ignore[no-any-return]


def test_emitted_cloudformation_template_creates_the_same_resources(
    tmp_path: Path, prefix: str, aws: MotoServer
) -> None:
    p = project(tmp_path, APP, prefix)
    name = p.load().name
    parsed = create_stack_from_export(p, prefix, tmp_path)
    resources = parsed["Resources"]
    assert {r["Type"] for r in resources.values()} == {
        "AWS::SQS::Queue",
        "AWS::DynamoDB::Table",
        "AWS::IAM::Role",
        "AWS::Logs::LogGroup",
        "AWS::Lambda::Function",
        "AWS::Lambda::EventSourceMapping",
    }
    # the API deployer reads the stack's resources back as what it would have created itself
    deployer = AWSDeployer(build_model(p.load(), p.app_path), tmp_path)
    desired = deployer.desired()
    role = next(r for r in desired if r.kind == "iam.role")
    others = [r for r in desired if r.kind != "iam.role"]
    plan = diff("aws", name, "dev", others, deployer.live(others))
    changed = {s.resource.key: dict(s.changes) for s in plan.steps if s.action != "unchanged"}
    # moto's CloudFormation ignores a table's TimeToLiveSpecification and a function's Tags (both are in
    # the template); everything else matches
    tags = deployer.layout.tags
    assert changed == {
        f"dynamodb.table:{prefix}results": {"TimeToLive": (None, "expires_at")},
        f"lambda.function:{name}-dev-emails": {"tags": ({}, tags)},
    }
    table = next(r for r in resources.values() if r["Type"] == "AWS::DynamoDB::Table")
    assert table["Properties"]["TimeToLiveSpecification"] == {"AttributeName": "expires_at", "Enabled": True}
    function = next(r for r in resources.values() if r["Type"] == "AWS::Lambda::Function")
    assert {t["Key"]: t["Value"] for t in function["Properties"]["Tags"]} == tags
    assert function["Properties"]["Runtime"] == "python3.13"
    assert function["Properties"]["Architectures"] == ["x86_64"]
    [group_id] = function["DependsOn"]
    assert resources[group_id]["Properties"]["RetentionInDays"] == 30
    # what holds data outlives the stack: the results table and the dead-letter queues
    retained = {
        r["Properties"].get("QueueName", r["Properties"].get("TableName"))
        for r in resources.values()
        if r.get("DeletionPolicy") == "Retain" and r.get("UpdateReplacePolicy") == "Retain"
    }
    assert retained == {f"{prefix}results", f"{prefix}emails-dlq", f"{prefix}default-dlq"}
    iam = boto3.client("iam")
    found = iam.get_role(RoleName=role.name)["Role"]
    assert found["Path"] == role.spec["Path"]
    assert found["AssumeRolePolicyDocument"] == role.spec["AssumeRolePolicyDocument"]
    inline = iam.get_role_policy(RoleName=role.name, PolicyName="cloudq")["PolicyDocument"]
    # moto's CloudFormation keeps the document as a Python literal instead of JSON
    assert (ast.literal_eval(inline) if isinstance(inline, str) else inline) == role.spec["Policy"]
    boto3.client("cloudformation").delete_stack(StackName=f"{prefix}stack")


def test_deploy_over_a_stack_made_from_the_emitted_template(tmp_path: Path, prefix: str, aws: MotoServer) -> None:
    """Issue 9 defect 7: the role's policy document read back from such a stack is not JSON."""
    p = project(tmp_path, APP, prefix)
    name = p.load().name
    create_stack_from_export(p, prefix, tmp_path)
    plan = p.run_json("deploy", "--dry-run")
    changed = {s["name"]: s["changes"] for s in plan["steps"] if s["action"] != "unchanged"}
    assert f"cloudq-{name}-dev" not in changed  # the role (and its policy) read back as deployed
    done = p.run("deploy", "--yes")
    assert "Traceback" not in done.output
    assert p.run_json("deploy", "--dry-run")["noop"] is True
    p.run("destroy", "--yes")


REFERENCE = Path(__file__).resolve().parents[2] / "infra" / "aws"


def test_reference_template_in_infra_is_current_and_lints_clean(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    shutil.copy(REFERENCE / "reference_app.py", tmp_path / "reference_app.py")
    monkeypatch.chdir(tmp_path)
    sys.modules.pop("reference_app", None)
    result = CliRunner().invoke(main, ["deploy", "-A", "reference_app:app", "--emit", "cloudformation"])
    assert result.exit_code == 0, result.output
    assert result.stdout == (REFERENCE / "stack.yaml").read_text(), (
        "infra/aws/stack.yaml is out of date: see infra/aws/reference_app.py to regenerate it"
    )
    assert (tmp_path / "build/cloudq/shop-prod.zip").is_file()
    lint = shutil.which("cfn-lint") or str(Path(sys.executable).parent / "cfn-lint")
    if not Path(lint).is_file():
        pytest.skip("cfn-lint is not installed (it comes with moto[server]): the template was not linted")
    (tmp_path / "stack.yaml").write_text(result.stdout)
    linted = subprocess.run([lint, str(tmp_path / "stack.yaml")], capture_output=True, text=True, timeout=120)
    assert linted.returncode == 0, linted.stdout + linted.stderr
