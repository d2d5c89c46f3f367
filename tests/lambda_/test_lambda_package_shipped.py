"""The Lambda package as Lambda runs it (issue 9: what let a package without cloudq's dist-info ship).

The zip is built by the packaging function ``cloudq deploy`` uses, for a runtime that is NOT the
interpreter running the tests (python3.12 from pyenv, on this machine's architecture), and unpacked
into an empty folder. A fresh venv of that Python holds only boto3, as the Lambda runtime does; the
packaged handler runs in a subprocess that sees nothing else: the unpacked folder on the path, the
environment ``cloudq deploy`` sets on the function, and the moto server's endpoint. The event is
built from real messages received off the queue (a success, a retry, a Reject, a task out of
retries and a garbage body); the response, the results in DynamoDB and the queues are checked.
"""

from __future__ import annotations

import io
import json
import platform
import shutil
import subprocess
import sys
import textwrap
import zipfile
from collections.abc import Iterator
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner
from cloudq_aws.deploy.deps import Target
from cloudq_aws.deploy.layout import build_layout
from cloudq_aws.deploy.packaging import package_app
from cloudq_aws.testing import MotoServer, SQSPoller

from cloudq import AsyncResult
from cloudq.app import load_app
from cloudq.cli import main
from cloudq.deploy import build_model

pytestmark = [pytest.mark.aws, pytest.mark.timeout(300)]

PYTHON = "3.12"  # not the default runtime, not the dev venv's Python
ARCHITECTURE = "arm64" if platform.machine().lower() in {"aarch64", "arm64"} else "x86_64"

APP = """
from cloudq import App, Reject

app = App("shipped", broker="sqs://?prefix={prefix}&wait=0", results="dynamodb://{prefix}results", retry_jitter=False)


@app.task()
def add(a: int, b: int) -> int:
    return a + b


@app.task(bind=True, autoretry_for=(ValueError,), max_retries=3, retry_backoff=10, retry_jitter=False)
def flaky(self, n: int) -> int:
    if self.request.retries == 0:
        raise ValueError("the first attempt fails")
    return n * 10


@app.task()
def refuse() -> None:
    raise Reject("not for us")


@app.task(max_retries=0)
def broken(n: int) -> None:
    raise ValueError(f"no good {{n}}")
"""

# Lambda's bootstrap, reduced: import the handler from the task root, call it with a context
RUNNER = """
import json, sys


class Context:
    function_name = "shipped-dev-default"
    memory_limit_in_mb = 512
    aws_request_id = "c6af9ac6-7b61-11e6-9a41-93e812345678"
    invoked_function_arn = "arn:aws:lambda:us-east-1:123456789012:function:shipped-dev-default"

    def get_remaining_time_in_millis(self):
        return 60_000


from cloudq_aws.lambda_entry import handler

response = handler(json.load(sys.stdin), Context())
modules = {name: sys.modules[name].__file__ for name in ("cloudq", "cloudq_aws", "pydantic_core", "botocore")}
print(json.dumps({"response": response, "modules": modules}))
"""


def _interpreter() -> Path | None:
    found = sorted(Path.home().glob(f".pyenv/versions/{PYTHON}.*/bin/python{PYTHON}"))
    if found:
        return found[-1]
    which = shutil.which(f"python{PYTHON}")
    return Path(which) if which else None


@pytest.fixture(scope="session")
def lambda_python(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A venv of python3.12 holding only boto3 (at the version tested here), like the Lambda runtime."""
    interpreter = _interpreter()
    if interpreter is None:
        pytest.skip(f"no python{PYTHON} interpreter on this machine (~/.pyenv/versions/{PYTHON}.* or PATH)")
    venv = tmp_path_factory.mktemp("lambda-runtime") / "venv"
    subprocess.run([str(interpreter), "-m", "venv", str(venv)], check=True, capture_output=True, timeout=120)
    python = venv / "bin" / "python"
    installed = subprocess.run(
        [
            str(python),
            "-m",
            "pip",
            "install",
            "--quiet",
            "--disable-pip-version-check",
            f"boto3=={metadata.version('boto3')}",
        ],
        capture_output=True,
        text=True,
        timeout=240,
    )
    assert installed.returncode == 0, installed.stderr[-3000:]
    return python


@dataclass
class Function:
    """The unpacked package and how Lambda would run it."""

    python: Path
    root: Path
    environment: dict[str, str]
    modules: dict[str, str] | None = None

    def __call__(self, event: dict[str, Any], context: Any = None) -> dict[str, Any]:
        done = subprocess.run(
            [str(self.python), "-s", "-c", RUNNER],
            input=json.dumps(event),
            cwd=self.root,
            env=self.environment,
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert done.returncode == 0, done.stderr[-4000:]
        out = json.loads(done.stdout.strip().splitlines()[-1])
        self.modules = out["modules"]
        return out["response"]  # type: ignore[no-any-return]


@pytest.fixture
def function(tmp_path: Path, prefix: str, aws: MotoServer, lambda_python: Path) -> Iterator[Function]:
    project = tmp_path / "project"
    project.mkdir()
    (project / "shipped_tasks.py").write_text(textwrap.dedent(APP.format(prefix=prefix)))
    sys.path.insert(0, str(project))
    try:
        app = load_app("shipped_tasks:app")
        # the queues and the table, made by deploy as for a real function (create_missing is off there)
        deployed = CliRunner().invoke(main, ["deploy", "-A", "shipped_tasks:app", "--yes"])
        assert deployed.exit_code == 0, deployed.output
        package = package_app("shipped_tasks", project, target=Target(f"python{PYTHON}", ARCHITECTURE))
        root = tmp_path / "task-root"
        zipfile.ZipFile(io.BytesIO(package.data)).extractall(root)
        environment = {
            "PATH": "/usr/bin:/bin",
            "HOME": str(tmp_path),
            "PYTHONPATH": str(root),
            "LAMBDA_TASK_ROOT": str(root),
            **aws.environment(),
            **build_layout(build_model(app, "shipped_tasks:app")).environment(),
        }
        yield Function(lambda_python, root, environment)
    finally:
        sys.path.remove(str(project))
        sys.modules.pop("shipped_tasks", None)
        CliRunner().invoke(main, ["destroy", "-A", "shipped_tasks:app", "--yes"])


def test_the_packaged_handler_runs_a_real_batch_on_another_python_with_only_boto3(function: Function, sqs: Any) -> None:
    assert function.environment["CLOUDQ_APP"] == "shipped_tasks:app"
    assert function.environment["CLOUDQ_CREATE_MISSING"] == "false"
    tasks = sys.modules["shipped_tasks"]
    app = tasks.app
    ok, retried, refused, exhausted = (
        tasks.add.delay(2, 3),
        tasks.flaky.delay(4),
        tasks.refuse.delay(),
        tasks.broken.delay(7),
    )
    poller = SQSPoller(sqs, app.broker.queue("default").url)
    sqs.send_message(QueueUrl=poller.queue_url, MessageBody="this is not json")

    messages = poller.receive_all(5)
    assert len(messages) == 5
    by_task = {m.get("MessageAttributes", {}).get("task", {}).get("StringValue"): m["MessageId"] for m in messages}
    invocation = poller.invoke(function, messages)

    # only the retry is reported failed; everything else is done (results or dead letters)
    assert invocation.failed == [by_task[tasks.flaky.name]]
    # checked at once: the retry is hidden for its backoff (10 s), not visible again
    assert poller.counts() == (0, 1)
    assert poller.receive(10, wait_s=0) == []
    assert function.modules is not None
    for name in ("cloudq", "cloudq_aws", "pydantic_core"):
        assert function.modules[name].startswith(str(function.root)), function.modules
    assert not function.modules["botocore"].startswith(str(function.root))  # the runtime's own (boto3 is not needed)
    assert f"python{PYTHON}" in function.modules["botocore"]

    # results, read back from DynamoDB
    assert AsyncResult(ok.id, app=app).get(timeout=5) == 5
    assert AsyncResult(retried.id, app=app).status == "RETRY"
    assert AsyncResult(refused.id, app=app).status == "FAILURE"
    assert AsyncResult(exhausted.id, app=app).status == "FAILURE"

    # dead letters, each with its reason
    reasons = sorted(letter.reason for letter in app.broker.dead_letters("default"))
    assert [r.split(":")[0] for r in reasons] == ["MalformedMessage", "Reject", "ValueError"], reasons
    assert reasons[1].startswith("Reject: not for us") and reasons[2].startswith("ValueError: no good 7")

    # the retry comes back after its backoff, not the lease, and succeeds
    [back] = poller.receive_all(1, wait_s=20)
    assert back["MessageId"] == by_task[tasks.flaky.name]
    assert back["Attributes"]["ApproximateReceiveCount"] == "2"
    assert poller.invoke(function, [back]).failed == []
    assert AsyncResult(retried.id, app=app).get(timeout=5) == 40
    assert poller.counts() == (0, 0)
