"""The plan as people read it, compared with stored snapshots (tests/deploy/snapshots/).

Regenerate after an intended change with ``UPDATE_SNAPSHOTS=1 pytest tests/deploy`` and
review the diff.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
from cloudq_aws.testing import MotoServer
from deploy_helpers import Project, mask_archive

pytestmark = [pytest.mark.aws, pytest.mark.timeout(120)]

SNAPSHOTS = Path(__file__).parent / "snapshots"

APP = """
from cloudq import App

app = App("snapshop", broker="sqs://?prefix=snapshop-", results="dynamodb://snapshop-results")


@app.task(name="send_email", queue="emails", max_retries=5, time_limit=20)
def send_email(to: str) -> None:
    pass


@app.task(name="add", max_retries=2)
def add(a: int, b: int) -> int:
    return a + b


@app.task(name="report", queue="reports")
def report() -> None:
    pass
"""


def check_snapshot(name: str, text: str) -> None:
    path = SNAPSHOTS / name
    if os.environ.get("UPDATE_SNAPSHOTS"):
        path.write_text(text)
    assert text == path.read_text(), f"plan output differs from {path}; see the module docstring to update it"


def test_plan_output_for_a_first_deploy(tmp_path: Path, aws: MotoServer, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(
        "CLOUDQ_DEPLOY",
        json.dumps({"queues": {"emails": {"runtime": "lambda", "batch_size": 10, "max_concurrency": 5}}}),
    )
    p = Project.create(tmp_path, APP)
    check_snapshot("aws_first_deploy.txt", mask_archive(p.run("deploy", "--dry-run").stdout))
    assert not (tmp_path / "build").exists()  # a dry run writes nothing into the project


def test_plan_output_for_updates_deletes_and_destroy(
    tmp_path: Path, aws: MotoServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    p = Project.create(tmp_path, APP)
    p.run("deploy", "--yes")
    try:
        check_snapshot("aws_redeploy.txt", p.run("deploy", "--dry-run").stdout)
        monkeypatch.setenv("CLOUDQ_DEPLOY", json.dumps({"queues": {"default": {"visibility_timeout": 90}}}))
        source = tmp_path / f"{p.module}.py"
        source.write_text(
            source.read_text().replace('queue="reports"', 'queue="emails"').replace("max_retries=5", "max_retries=1")
        )
        check_snapshot("aws_update.txt", p.run("deploy", "--dry-run").stdout)
    finally:
        check_snapshot("aws_destroy.txt", p.run("destroy", "--yes").stdout)
