"""The core stays provider-neutral and light to import."""

from __future__ import annotations

import ast
import json
import subprocess
import sys
from pathlib import Path

import pytest

import cloudq

CORE = Path(cloudq.__file__).parent
FORBIDDEN = ("boto3", "botocore", "aiobotocore", "google", "cloudq_aws", "cloudq_gcp")


def _imported_modules(path: Path) -> list[str]:
    names = []
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        if isinstance(node, ast.Import):
            names += [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names.append(node.module)
    return names


@pytest.mark.parametrize("path", sorted(CORE.rglob("*.py")), ids=lambda p: str(p.relative_to(CORE)))
def test_core_module_imports_no_provider_sdk(path):
    offending = [name for name in _imported_modules(path) if name.split(".")[0] in FORBIDDEN]
    assert offending == [], f"{path} imports {offending}: the core must stay provider-neutral"


def test_the_scan_catches_a_provider_import(tmp_path):
    bad = tmp_path / "bad.py"
    bad.write_text("def f():\n    from google.cloud import pubsub_v1\n    import boto3\n")
    assert _imported_modules(bad) == ["google.cloud", "boto3"]


def _top_level_modules(code: str) -> set[str]:
    script = f"import sys, json\n{code}\nprint(json.dumps(sorted(m for m in sys.modules if '.' not in m)))"
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, check=True).stdout
    return set(json.loads(out))


def test_import_cloudq_loads_no_heavy_dependency():
    # a bare interpreter may already hold some (namespace-package .pth files create ``google``)
    loaded = _top_level_modules("import cloudq") - _top_level_modules("pass")
    heavy = {"pydantic", "click", "boto3", "botocore", "google", "sqlite3", "asyncio", "uuid"} & loaded
    assert heavy == set(), f"import cloudq pulled in {heavy}"


LAZY = {"cloudq.periodic", "cloudq.schedules", "cloudq.canvas.chord", "cloudq.canvas.group"}


def _loaded(code: str) -> set[str]:
    script = f"import sys, json\n{code}\nprint(json.dumps(sorted(sys.modules)))"
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, check=True).stdout
    return set(json.loads(out))


def test_periodic_and_canvas_composites_load_on_first_use_only():
    # an app with a task that sends and runs one: no schedule, no chord, no group
    app_code = (
        "from cloudq import App\n"
        "app = App('lazy', broker='memory://', results='memory://')\n"
        "@app.task()\n"
        "def add(a: int, b: int) -> int:\n"
        "    return a + b\n"
    )
    loaded = _loaded(app_code + "add.apply_async((1, 2), task_id='t1')\napp.executor\n")
    assert LAZY & loaded == set(), f"loaded before use: {LAZY & loaded}"
    # each public name still imports, and loads its module then
    assert "cloudq.periodic" in _loaded(app_code + "app.periodic_task(60)(add)\n")
    assert {"cloudq.canvas.chord", "cloudq.canvas.group"} <= _loaded("from cloudq import chord, group, GroupResult\n")
    import cloudq as package

    for name in package.__all__:
        assert getattr(package, name) is not None, name


def test_a_composite_signature_dict_loads_its_module_when_read():
    from cloudq import App, chord, group

    app = App("lazy", broker="memory://", results="memory://")

    @app.task()
    def add(a: int, b: int) -> int:
        return a + b

    for sig in (group(add.s(1, 2), add.s(3, 4)), chord([add.s(1, 2)], add.s(5))):
        data = json.dumps(sig.to_dict())
        code = (
            "import json\nfrom cloudq.canvas.signature import from_dict\n"
            f"print(type(from_dict(json.loads({data!r}))).__name__)"
        )
        out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
        assert out.strip() == type(sig).__name__


def test_a_lazy_name_that_does_not_exist_is_an_attribute_error():
    import cloudq as package

    with pytest.raises(AttributeError, match="no attribute 'nope'"):
        package.nope


LAMBDA_BATCH = """
from cloudq import App
from cloudq.envelope import build
from cloudq_aws.lambda_.handler import make_handler
from cloudq_aws.testing import FakeLambdaContext
from cloudq_aws.testing.lambda_events import lambda_record

app = App("cold", broker="sqs://", results="memory://")

@app.task()
def add(a, b):
    return a + b

def message(i):
    body = build(f"t{i}", add.name, [i, 1], {}, sent_at=1.0).decode()
    attributes = {"ApproximateReceiveCount": "1", "SentTimestamp": "1", "ApproximateFirstReceiveTimestamp": "1"}
    return {"MessageId": f"m{i}", "ReceiptHandle": f"r{i}", "Body": body, "Attributes": attributes, "MD5OfBody": ""}

arn = "arn:aws:sqs:us-east-1:123456789012:default"
event = {"Records": [lambda_record(message(i), arn, "us-east-1") for i in range(3)]}
assert make_handler(app)(event, FakeLambdaContext()) == {"batchItemFailures": []}
assert [app.results.get(f"t{i}").result for i in range(3)] == [1, 2, 3]
"""


def test_handling_a_lambda_batch_loads_no_pydantic_when_no_task_needs_it(monkeypatch):
    """The envelope is decoded by pydantic-core alone: pydantic (~200 ms of the handler's cold
    import) waits for a task with typed arguments. Any SQS call would fail (port 9)."""
    for name, value in {
        "AWS_DEFAULT_REGION": "us-east-1",
        "AWS_ACCESS_KEY_ID": "x",
        "AWS_SECRET_ACCESS_KEY": "x",
    }.items():
        monkeypatch.setenv(name, value)
    monkeypatch.setenv("AWS_ENDPOINT_URL", "http://127.0.0.1:9")
    loaded = _top_level_modules(LAMBDA_BATCH)
    assert "cloudq_aws" in loaded and "pydantic_core" in loaded and "pydantic" not in loaded


WORKER_RUN = """
from cloudq import App
from cloudq.testing.workers import run_burst

app = App("cold", broker="memory://", results="memory://")

@app.task()
def add(a, b):
    return a + b

results = [add.delay(i, 1) for i in range(3)]
results[1].revoke()
run_burst(app, concurrency=1)
assert [r.state for r in results] == ["SUCCESS", "REVOKED", "SUCCESS"], [r.state for r in results]
assert results[2].get() == 3
"""


def test_a_worker_run_loads_no_pydantic_when_no_task_needs_it():
    """The container worker too: its bodies are decoded (and revoke-checked) by pydantic-core alone."""
    loaded = _top_level_modules(WORKER_RUN)
    assert "pydantic_core" in loaded and "pydantic" not in loaded
