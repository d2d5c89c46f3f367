"""``cloudq deploy`` makes the results table's index (``cloudq-recent``: task listings and live
workers) and adds it to a table deployed before it existed."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import boto3
import pytest
from cloudq_aws.testing import MotoServer
from deploy_helpers import Project

pytestmark = [pytest.mark.aws, pytest.mark.timeout(120)]

APP = """
from cloudq import App

app = App("{name}", broker="sqs://?prefix={prefix}", results="dynamodb://{prefix}results")


@app.task()
def add(a: int, b: int) -> int:
    return a + b
"""


def indexes(db: Any, table: str) -> list[dict[str, Any]]:
    return db.describe_table(TableName=table)["Table"].get("GlobalSecondaryIndexes", [])  # type: ignore[no-any-return]


def test_deploy_creates_the_index_and_adds_it_to_an_older_table(tmp_path: Path, prefix: str, aws: MotoServer) -> None:
    db = boto3.client("dynamodb")
    p = Project.create(tmp_path, APP.format(name=prefix.rstrip("-").replace("-", ""), prefix=prefix))
    p.run("deploy", "--yes")
    table = f"{prefix}results"
    [index] = indexes(db, table)
    assert index["IndexName"] == "cloudq-recent"
    assert [k["AttributeName"] for k in index["KeySchema"]] == ["state", "updated_at"]
    assert index["Projection"] == {
        "ProjectionType": "INCLUDE",
        "NonKeyAttributes": ["task_name", "expires_exact", "info"],
    }
    # a table from before the index: deploy plans one update and adds it
    db.update_table(TableName=table, GlobalSecondaryIndexUpdates=[{"Delete": {"IndexName": "cloudq-recent"}}])
    assert indexes(db, table) == []
    plan = p.run_json("deploy", "--dry-run")
    assert plan["summary"]["update"] == 1
    p.run("deploy", "--yes")
    assert [i["IndexName"] for i in indexes(db, table)] == ["cloudq-recent"]
    assert p.run_json("deploy", "--dry-run")["summary"]["update"] == 0
    p.run("destroy", "--yes")
    db.close()
