"""``pip install cloudq`` without extras: every entry point that needs one says which, in one line.

Driven in a fresh venv holding the built wheel, not the checkout, so what is tested is what ships."""

from __future__ import annotations

import json
import textwrap
from pathlib import Path

import pytest
from install_helpers import clean_env, run

pytestmark = [pytest.mark.slow, pytest.mark.timeout(300)]

TASKS = textwrap.dedent(
    """
    from cloudq import App

    app = App("plain")

    @app.task(name="add")
    def add(a: int, b: int) -> int:
        return a + b
    """
)
COMMANDS = [
    ["worker", "--burst"],
    ["send", "add", "--args", "[1, 2]"],
    ["result", "0123"],
    ["inspect"],
    ["purge", "default", "--yes"],
    ["dead-letters", "default"],
    ["deploy", "--dry-run"],
    ["destroy", "--yes"],
]
SCHEMES = [
    ("CLOUDQ_BROKER", "sqs://", "aws"),
    ("CLOUDQ_BROKER", "pubsub://proj", "gcp"),
    ("CLOUDQ_RESULTS", "dynamodb://results", "aws"),
    ("CLOUDQ_RESULTS", "firestore://results?project=proj", "gcp"),
]


@pytest.fixture(scope="module")
def project(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("project")
    (folder / "tasks.py").write_text(TASKS)
    return folder


@pytest.mark.parametrize(("variable", "url", "extra"), SCHEMES, ids=[url for _, url, _ in SCHEMES])
@pytest.mark.parametrize("command", COMMANDS, ids=[c[0] for c in COMMANDS])
def test_each_command_gives_the_pip_hint_in_one_line(
    plain_venv: Path, project: Path, variable: str, url: str, extra: str, command: list[str]
) -> None:
    proc = run([str(plain_venv / "cloudq"), *command, "-A", "tasks:app"], project, clean_env(**{variable: url}))
    assert proc.returncode == 1, (proc.stdout, proc.stderr)
    assert "Traceback" not in proc.stderr
    (line,) = proc.stderr.strip().splitlines()
    assert line.startswith("Error: ") and line.endswith(f"not installed: pip install 'cloudq[{extra}]'"), line


PROBE = textwrap.dedent(
    """
    import json
    from cloudq import App

    cases = {
        "App(broker=sqs://)": lambda: App("x", broker="sqs://"),
        "App(broker=pubsub://)": lambda: App("x", broker="pubsub://proj"),
        "App(results=dynamodb://)": lambda: App("x", results="dynamodb://results"),
        "App(results=firestore://)": lambda: App("x", results="firestore://results"),
        "lambda_handler()": lambda: App("x", broker="memory://").lambda_handler(),
        "push_app(wsgi)": lambda: App("x", broker="memory://").push_app("wsgi"),
        "push_app(asgi)": lambda: App("x", broker="memory://").push_app("asgi"),
        "push_app(cloud_event)": lambda: App("x", broker="memory://").push_app("cloud_event"),
    }
    out = {}
    for name, make in cases.items():
        try:
            make()
        except Exception as exc:
            out[name] = f"{type(exc).__name__}: {exc}"
        else:
            out[name] = "constructed"
    print(json.dumps(out))
    """
)
LIBRARY_CASES = {
    "App(broker=sqs://)": "aws",
    "App(broker=pubsub://)": "gcp",
    "App(results=dynamodb://)": "aws",
    "App(results=firestore://)": "gcp",
    "lambda_handler()": "aws",
    "push_app(wsgi)": "gcp",
    "push_app(asgi)": "gcp",
    "push_app(cloud_event)": "gcp",
}


@pytest.fixture(scope="module")
def library_outcomes(plain_venv: Path, project: Path) -> dict[str, str]:
    proc = run([str(plain_venv / "python"), "-c", PROBE], project, clean_env())
    assert proc.returncode == 0, proc.stderr
    outcomes: dict[str, str] = json.loads(proc.stdout)
    return outcomes


@pytest.mark.parametrize(("case", "extra"), LIBRARY_CASES.items())
def test_app_and_runtimes_fail_at_construction_with_the_pip_hint(
    library_outcomes: dict[str, str], case: str, extra: str
) -> None:
    message = library_outcomes[case]
    assert message.startswith("MissingExtra: ") and "\n" not in message, message
    assert message.endswith(f"not installed: pip install 'cloudq[{extra}]'"), message


def test_the_dashboard_gives_the_pip_hint_in_one_line(plain_venv: Path, project: Path) -> None:
    proc = run([str(plain_venv / "cloudq"), "dashboard", "-A", "tasks:app", "--port", "0"], project, clean_env())
    assert proc.returncode == 1, (proc.stdout, proc.stderr)
    (line,) = proc.stderr.strip().splitlines()
    assert line.startswith("Error: ") and line.endswith("not installed: pip install 'cloudq[dashboard]'"), line
