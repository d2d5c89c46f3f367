"""The task index (``TaskIndex.recent``) and ``cloudq inspect recent``: failures first, no scan and
no write beyond the result write itself, on SQLite (with the migration of an older file) and on
DynamoDB (requests counted at the moto server)."""

from __future__ import annotations

import json
import sqlite3
import sys
import textwrap
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from cloudq import states
from cloudq.backends.sqlite import SQLiteResultStore
from cloudq.cli import main
from cloudq.interfaces import ResultRecord

pytestmark = pytest.mark.timeout(120)

APP = textwrap.dedent(
    """
    from cloudq import App

    app = App("idx", broker="sqlite:///{db}")

    @app.task(name="ok")
    def ok() -> int:
        return 1

    @app.task(name="bad")
    def bad() -> None:
        raise ValueError("no")
    """
)


@pytest.fixture
def project(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    for name in ("CLOUDQ_BROKER", "CLOUDQ_RESULTS", "CLOUDQ_APP"):
        monkeypatch.delenv(name, raising=False)
    (tmp_path / "idxapp.py").write_text(APP.format(db=tmp_path / "q.db"))
    monkeypatch.chdir(tmp_path)
    monkeypatch.syspath_prepend(str(tmp_path))
    yield tmp_path
    sys.modules.pop("idxapp", None)


def recent(*args: str) -> Any:
    result = CliRunner().invoke(main, ["inspect", "recent", "-A", "idxapp:app", *args])
    assert result.exit_code == 0, result.output
    return result


def test_inspect_recent_lists_failures_first_then_newest(project: Path) -> None:
    from cloudq.testing.workers import run_worker_process

    for name in ("ok", "bad", "ok"):
        assert CliRunner().invoke(main, ["send", "-A", "idxapp:app", name]).exit_code == 0
    done = run_worker_process("idxapp:app", project)
    assert done.returncode == 0, done.stdout + done.stderr
    rows = json.loads(recent("--json").output)
    assert [(r["name"], r["state"]) for r in rows] == [("bad", "FAILURE"), ("ok", "SUCCESS"), ("ok", "SUCCESS")]
    assert rows[1]["updated_at"] >= rows[2]["updated_at"]
    only = json.loads(recent("--state", "success", "--json", "--limit", "1").output)
    assert [(r["name"], r["state"]) for r in only] == [("ok", "SUCCESS")]
    assert json.loads(recent("--since", "2099-01-01T00:00:00", "--json").output) == []
    table = recent().output.splitlines()
    assert table[0].split() == ["state", "age", "task", "id"] and table[1].startswith("FAILURE")


def test_an_older_sqlite_file_is_migrated_and_its_records_listed(tmp_path: Path) -> None:
    path = tmp_path / "old.db"
    with sqlite3.connect(path) as conn:  # the table as cloudq made it before the index
        conn.execute(
            "CREATE TABLE cloudq_results (task_id TEXT PRIMARY KEY, terminal INTEGER NOT NULL, "
            "expires_at REAL, data TEXT NOT NULL)"
        )
        old = ResultRecord("old", states.FAILURE, "t", finished_at=1000.0).to_dict()
        conn.execute("INSERT INTO cloudq_results VALUES ('old', 1, NULL, ?)", (json.dumps(old),))
    conn.close()
    store = SQLiteResultStore(str(path))
    store.set(ResultRecord("new", states.FAILURE, "t"))
    assert [(s.task_id, s.updated_at == 1000.0) for s in store.recent([states.FAILURE])] == [
        ("new", False),
        ("old", True),
    ]
    plan = store.db.query(
        "EXPLAIN QUERY PLAN SELECT task_id FROM cloudq_results WHERE state IN ('FAILURE') ORDER BY updated_at DESC"
    )
    assert any("cloudq_results_recent" in str(row) for row in plan)  # the index, not a scan
    store.close()


@pytest.mark.aws
def test_dynamodb_lists_with_one_query_per_state_and_writes_nothing_more(aws: Any, prefix: str) -> None:
    from cloudq_aws.dynamodb import DynamoDBResultStore

    from cloudq.config import Settings

    store = DynamoDBResultStore.from_url(f"dynamodb://{prefix}results", Settings())
    store.get("warm-up")
    since = time.time() - 1
    with aws.count_requests() as writes:
        for i in range(20):
            store.set(ResultRecord(f"t{i}", states.FAILURE if i % 4 == 0 else states.SUCCESS, "job"))
    assert writes.of("dynamodb") == {"PutItem": 20}  # the index costs no request of its own
    with aws.count_requests() as reads:
        failures = store.recent([states.FAILURE], since)
        every = store.recent(since=since, limit=100)
    assert [s.task_id for s in failures] == ["t16", "t12", "t8", "t4", "t0"]
    assert len(every) == 20
    assert reads.of("dynamodb") == {"Query": 1 + len(states.ALL_STATES)}  # no Scan
    print(f"\nDynamoDB recent: 1 Query per state listed ({len(states.ALL_STATES)} for all states)")
    store.close()
