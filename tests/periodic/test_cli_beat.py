"""The command line: ``cloudq beat --dry-run``, ``cloudq schedules`` and ``cloudq worker --beat``."""

from __future__ import annotations

import itertools
import json
import sys
import textwrap
from datetime import UTC, datetime
from pathlib import Path

import pytest
from beat_helpers import Clock
from click.testing import CliRunner, Result

from cloudq.beat import Beat
from cloudq.cli import main

_ids = itertools.count(1)

APP = """
from cloudq import App
from cloudq.schedules import crontab, every

app = App("cliapp", broker="sqlite:///{db}", results="sqlite:///{db}")


@app.periodic_task(crontab(0, 9, day_of_week="mon-fri", timezone="America/New_York"), name="standup")
def standup() -> str:
    return "standup"


app.conf.beat_schedule = {{"often": {{"task": standup.name, "schedule": 3600}}}}
"""


@pytest.fixture
def module(tmp_path: Path) -> str:
    name = f"cliapp{next(_ids)}"
    (tmp_path / f"{name}.py").write_text(textwrap.dedent(APP.format(db=tmp_path / "c.db")))
    sys.path.insert(0, str(tmp_path))
    yield name
    sys.path.remove(str(tmp_path))
    sys.modules.pop(name, None)


def cli(*args: str) -> Result:
    return CliRunner().invoke(main, list(args))


def test_beat_dry_run_prints_the_next_runs_of_each_schedule(module: str) -> None:
    out = cli("beat", "-A", f"{module}:app", "--dry-run", "-n", "3")
    assert out.exit_code == 0, out.output
    standup, often = out.output.splitlines()
    assert standup.startswith(f"standup ({module}.standup, crontab 0 9 * * mon-fri (America/New_York)): ")
    assert len(standup.split(": ", 1)[1].split(", ")) == 3
    assert all(t.endswith(":00:00Z") for t in often.split(": ", 1)[1].split(", "))


def test_schedules_lists_next_and_last_runs_and_where_they_run(module: str) -> None:
    before = json.loads(cli("schedules", "-A", f"{module}:app", "--json").output)
    assert [(r["name"], r["last_run"], r["runs_on"]) for r in before] == [
        ("standup", None, "cloudq beat"),
        ("often", None, "cloudq beat"),
    ]
    app = __import__(module).app
    clock = Clock()  # near the real time: the stores expire records by their own clock
    top = clock.now - clock.now % 3600  # the top of this hour, when 'often' falls due
    if datetime.fromtimestamp(top, UTC).hour in (13, 14):  # 09:00 New York (EDT, EST): standup too
        top -= 3 * 3600
    clock.now = top - 1
    beat = Beat(app, clock=clock)
    beat.tick()
    clock.now += 2
    beat.tick()
    app.close()
    table = cli("schedules", "-A", f"{module}:app").output.splitlines()
    assert table[0].split() == ["name", "schedule", "next", "run", "last", "run", "runs", "on"]
    often = next(line for line in table if line.startswith("often"))
    assert beat.sent[0].task_id.split("@")[1] in often and often.endswith("cloudq beat")
    assert "never" in next(line for line in table if line.startswith("standup"))


def test_beat_refuses_an_app_without_periodic_tasks(tmp_path: Path) -> None:
    (tmp_path / "plainapp.py").write_text("from cloudq import App\napp = App('plain', broker='memory://')\n")
    sys.path.insert(0, str(tmp_path))
    try:
        out = cli("beat", "-A", "plainapp:app")
    finally:
        sys.path.remove(str(tmp_path))
    assert out.exit_code == 1
    assert "declares no periodic tasks: nothing to schedule" in out.output


def test_worker_beat_runs_the_beat_beside_the_worker(module: str, caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level("INFO", logger="cloudq.beat"):
        out = cli("worker", "-A", f"{module}:app", "--beat", "--burst", "--max-wait", "0", "--poll-wait", "0.1")
    assert out.exit_code == 0, out.output
    assert any("2 periodic task(s): standup, often" in r.getMessage() for r in caplog.records), caplog.text
