"""``cloudq dead-letters`` end to end on SQLite: failed tasks are listed, filtered, shown with
their traceback, redriven with a fresh start (they then succeed) and purged."""

from __future__ import annotations

import json
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner, Result

from cloudq.cli import main
from cloudq.testing.workers import run_burst

APP_MODULE = textwrap.dedent(
    """
    from pathlib import Path

    from cloudq import App

    app = App("ops", broker="sqlite:///{db}", signing_key="k3y")
    BROKEN = Path({marker!r})

    @app.task(name="flaky")
    def flaky(n: int) -> int:
        if BROKEN.exists():
            raise ValueError(f"broken {{n}}")
        return n

    @app.task(name="lookup")
    def lookup(key: str) -> str:
        raise KeyError(key)
    """
)


@pytest.fixture
def app(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Any]:
    marker = tmp_path / "broken"
    marker.touch()
    (tmp_path / "opsapp.py").write_text(APP_MODULE.format(db=tmp_path / "q.db", marker=str(marker)))
    monkeypatch.chdir(tmp_path)
    monkeypatch.syspath_prepend(str(tmp_path))
    sys.modules.pop("opsapp", None)
    import opsapp  # type: ignore[import-not-found]

    yield opsapp.app
    opsapp.app.close()
    sys.modules.pop("opsapp", None)


def cli(*args: str, input: str | None = None) -> Result:
    return CliRunner().invoke(main, list(args), input=input)


def ok(*args: str, input: str | None = None) -> str:
    result = cli(*args, input=input)
    assert result.exit_code == 0, result.output
    return result.output


def failed(app: Any) -> dict[str, str]:
    """Three failed tasks (two ValueError, one KeyError), dead-lettered by a worker: name -> id."""
    ids = {
        "one": app.send_task("flaky", [1]).id,
        "two": app.send_task("flaky", [2]).id,
        "key": app.send_task("lookup", ["k"]).id,
    }
    run_burst(app)
    return ids


def listed(*filters: str) -> list[dict[str, Any]]:
    return json.loads(ok("dead-letters", "-A", "opsapp:app", "default", "--json", *filters))


def test_list_filters_and_show(app: Any) -> None:
    ids = failed(app)
    table = ok("dead-letters", "default", "-A", "opsapp:app")  # as before: QUEUE first, options after
    assert len(table.strip().splitlines()) == 4 and "ValueError: broken 1" in table
    everything = listed()
    assert sorted(d["task_id"] for d in everything) == sorted(ids.values())
    assert {d["error_type"] for d in everything} == {"ValueError", "KeyError"}
    assert [d["task_id"] for d in listed("--error-type", "KeyError")] == [ids["key"]]
    assert [d["task_id"] for d in listed("--task", "lookup")] == [ids["key"]]
    assert len(listed("--error-type", "ValueError", "--since", "1h")) == 2
    assert listed("--since", "2999-01-01T00:00:00") == []
    bad = cli("dead-letters", "list", "-A", "opsapp:app", "default", "--since", "yesterday")
    assert bad.exit_code == 2 and "neither a duration" in bad.output

    shown = json.loads(ok("dead-letters", "show", "-A", "opsapp:app", "default", ids["one"], "--json"))
    assert shown["task"] == "flaky" and shown["state"] == "FAILURE" and shown["attempts"] == 1
    assert "ValueError: broken 1" in shown["traceback"] and shown["body"]["args"] == [1]
    text = ok("dead-letters", "show", "-A", "opsapp:app", "default", shown["message_id"])
    assert "traceback:" in text and 'raise ValueError(f"broken {n}")' in text
    missing = cli("dead-letters", "show", "-A", "opsapp:app", "default", "nope")
    assert missing.exit_code == 1 and "no dead letter" in missing.output


def test_redrive_gives_a_fresh_start_and_purge_deletes(app: Any, tmp_path: Path) -> None:
    ids = failed(app)
    redrive = ("dead-letters", "redrive", "-A", "opsapp:app", "default")
    assert cli(*redrive).exit_code == 2  # which ones? ids, a filter or --all
    dry = ok(*redrive, "--error-type", "ValueError", "--dry-run")
    assert "would redrive 2 message(s)" in dry and len(listed()) == 3
    assert cli(*redrive, "--error-type", "ValueError", input="n\n").exit_code == 1  # not confirmed
    unknown = cli(*redrive, ids["one"], "absent-id", "--yes")
    assert unknown.exit_code == 1 and "absent-id (nothing done)" in unknown.output and len(listed()) == 3

    (tmp_path / "broken").unlink()
    assert "redrove 2 message(s) to default" in ok(*redrive, "--error-type", "ValueError", "--yes")
    assert [d["task_id"] for d in listed()] == [ids["key"]]
    assert app.AsyncResult(ids["one"]).status == "PENDING"  # the FAILURE record was forgotten first
    run_burst(app)
    assert app.AsyncResult(ids["one"]).get(timeout=5) == 1 and app.AsyncResult(ids["two"]).get(timeout=5) == 2

    purge = ("dead-letters", "purge", "-A", "opsapp:app", "default")
    assert "would delete 1" in ok(*purge, "--all", "--dry-run")
    assert "deleted 1 dead letter(s)" in ok(*purge, ids["key"], "--yes")
    assert listed() == []
    assert app.broker.stats("default").ready == 0
