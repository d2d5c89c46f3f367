"""CLI: every command has --help; user mistakes print one clear line and exit non-zero."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap

import pytest
from click.testing import CliRunner

from cloudq.cli import main

APP_MODULE = textwrap.dedent(
    """
    from cloudq import App

    app = App("cli", broker="sqlite:///{db}")

    @app.task(name="add")
    def add(a: int, b: int) -> int:
        return a + b
    """
)


@pytest.fixture
def project(tmp_path, monkeypatch):
    for name in ("CLOUDQ_BROKER", "CLOUDQ_RESULTS", "CLOUDQ_APP"):
        monkeypatch.delenv(name, raising=False)
    (tmp_path / "cliapp.py").write_text(APP_MODULE.format(db=tmp_path / "q.db"))
    monkeypatch.chdir(tmp_path)
    monkeypatch.syspath_prepend(str(tmp_path))
    yield tmp_path
    sys.modules.pop("cliapp", None)


def run(*args: str, input: str | None = None):
    return CliRunner().invoke(main, list(args), input=input)


@pytest.mark.parametrize("command", ["worker", "send", "result", "inspect", "purge", "dead-letters", "schema"])
def test_every_command_has_help(command):
    result = run(command, "--help")
    assert result.exit_code == 0 and "Usage:" in result.output


def test_send_inspect_result_round_trip(project):
    sent = run("send", "-A", "cliapp:app", "add", "--args", "[1, 2]")
    assert sent.exit_code == 0, sent.output
    task_id = sent.output.strip()
    inspected = run("inspect", "-A", "cliapp:app", "--json")
    assert json.loads(inspected.output) == [
        {"queue": "default", "ready": 1, "in_flight": 0, "delayed": 0, "dead_lettered": 0}
    ]
    shown = run("result", "-A", "cliapp:app", task_id)
    assert json.loads(shown.output)["state"] == "PENDING"


def test_purge_asks_for_confirmation(project):
    run("send", "-A", "cliapp:app", "add", "--args", "[1, 2]")
    refused = run("purge", "-A", "cliapp:app", "default", input="n\n")
    assert refused.exit_code != 0
    done = run("purge", "-A", "cliapp:app", "default", "--yes")
    assert done.exit_code == 0 and "purged 1 message" in done.output


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["send", "-A", "nosuchmodule:app", "add"], "cannot import app module 'nosuchmodule'"),
        (["send", "-A", "cliapp:nope", "add"], "has no cloudq App named 'nope'"),
        (["send", "-A", "cliapp:app", "mul"], "unknown task 'mul'; this app defines: add"),
        (["send", "-A", "cliapp:app", "add", "--args", "[1,"], "--args: not valid JSON"),
        (["send", "-A", "cliapp:app", "add", "--args", "{}"], "--args: must be a JSON array"),
        (["send", "-A", "cliapp:app", "add", "--args", '["x", 1]'], "InvalidArguments: add: argument a"),
    ],
)
def test_user_mistakes_are_one_clear_line(project, args, message):
    result = run(*args)
    assert result.exit_code != 0
    assert message in result.output
    assert "Traceback" not in result.output


def test_unreachable_backend_is_one_line_without_traceback(project):
    (project / "badapp.py").write_text(
        "from cloudq import App\napp = App('bad', broker='sqlite:////nonexistent-dir/x/q.db')\n"
        "@app.task(name='t')\ndef t() -> None: ...\n"
    )
    proc = subprocess.run(
        [sys.executable, "-m", "cloudq", "send", "-A", "badapp:app", "t"],
        capture_output=True,
        text=True,
        cwd=project,
        timeout=60,
    )
    assert proc.returncode != 0
    assert "Traceback" not in proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1, proc.stderr
    assert "Error:" in proc.stderr


def test_schema_prints_the_envelope_schema():
    result = run("schema")
    assert json.loads(result.output)["title"] == "cloudq task envelope v1"


def test_inspect_shows_counts_a_service_cannot_report_as_unknown(project, monkeypatch):
    import cliapp

    from cloudq.interfaces import UNKNOWN, QueueStats

    monkeypatch.setattr(cliapp.app.broker, "stats", lambda queue: QueueStats(queue, UNKNOWN, 2, 0, 1))
    table = run("inspect", "-A", "cliapp:app")
    assert table.exit_code == 0
    assert table.output.splitlines()[1].split() == ["default", "?", "2", "0", "1"]
    assert "does not report" in table.output
    as_json = run("inspect", "-A", "cliapp:app", "--json")
    assert json.loads(as_json.output) == [
        {"queue": "default", "ready": None, "in_flight": 2, "delayed": 0, "dead_lettered": 1}
    ]


def test_worker_burst_from_the_cli_with_a_poll_wait(project):
    sent = run("send", "-A", "cliapp:app", "add", "--args", "[2, 3]")
    task_id = sent.output.strip()
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "cloudq",
            "worker",
            "-A",
            "cliapp:app",
            "--burst",
            "--poll-wait",
            "0.2",
            "-l",
            "WARNING",
        ],
        capture_output=True,
        text=True,
        cwd=project,
        timeout=60,
    )
    assert proc.returncode == 0, proc.stderr
    assert json.loads(run("result", "-A", "cliapp:app", task_id).output)["result"] == 5


def test_poll_wait_out_of_range_is_a_usage_error():
    result = run("worker", "-A", "cliapp:app", "--poll-wait", "0")
    assert result.exit_code == 2 and "--poll-wait" in result.output


def test_schema_prints_the_published_schema_file():
    from pathlib import Path

    import cloudq

    result = run("schema")
    assert result.exit_code == 0
    assert json.loads(result.output) == json.loads((Path(cloudq.__file__).parent / "envelope.schema.json").read_text())


@pytest.mark.parametrize(
    ("app_path", "message"),
    [
        ("./cliapp.py", "Error: app path './cliapp.py' is a file path; -A takes module:attribute"),
        ("cliapp.py", "use -A cliapp:app"),
        ("sub/cliapp.py:app", "use -A sub.cliapp:app"),
        (".cliapp", "relative module names cannot be imported"),
    ],
)
def test_a_file_path_as_app_says_to_give_the_module(project, app_path, message):
    result = run("inspect", "-A", app_path)
    assert isinstance(result.exception, SystemExit) and result.exit_code == 1, result.exception
    assert message in result.output
    assert len(result.output.strip().splitlines()) == 1


def test_an_invalid_cloudq_toml_is_one_line_naming_file_and_position(project):
    (project / "cloudq.toml").write_text("[routes\n")
    result = run("inspect", "-A", "cliapp:app")
    assert isinstance(result.exception, SystemExit) and result.exit_code == 1, result.exception
    (line,) = result.output.strip().splitlines()
    assert line.startswith(f"Error: {project / 'cloudq.toml'}: not valid TOML (") and "line 1" in line
