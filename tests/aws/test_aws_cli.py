"""``cloudq worker --burst`` as a subprocess against the moto server, results in DynamoDB."""

from __future__ import annotations

import importlib
import textwrap
from pathlib import Path

import pytest
from cloudq_aws.testing import MotoServer

from cloudq import states
from cloudq.testing.workers import run_worker_process

pytestmark = [pytest.mark.aws, pytest.mark.slow, pytest.mark.timeout(120)]

TASKS = """
from cloudq import App

app = App("aws-e2e")


@app.task()
def add(a: int, b: int) -> int:
    return a + b


@app.task(max_retries=0)
def boom() -> None:
    raise ValueError("no")
"""


def test_worker_subprocess_runs_sqs_tasks_and_writes_dynamodb_results(
    prefix: str, aws: MotoServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    module = f"aws_e2e_{prefix.replace('-', '_')}tasks"
    (tmp_path / f"{module}.py").write_text(textwrap.dedent(TASKS))
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.setenv("CLOUDQ_BROKER", f"sqs://?prefix={prefix}&wait=1")
    monkeypatch.setenv("CLOUDQ_RESULTS", f"dynamodb://{prefix}results")
    monkeypatch.setenv("CLOUDQ_RETRY_BACKOFF", "0")
    tasks = importlib.import_module(module)
    handles = tasks.add.send_each([(i, 1) for i in range(12)])
    failed = tasks.boom.delay()
    done = run_worker_process(f"{module}:app", tmp_path, "-c", "2", "-l", "WARNING")
    assert done.returncode == 0, done.stderr[-3000:]
    assert [h.get(timeout=5) for h in handles] == [i + 1 for i in range(12)]
    with pytest.raises(ValueError, match="no"):
        failed.get(timeout=5)
    assert failed.status == states.FAILURE
    assert tasks.app.broker.stats("default").dead_lettered == 1
    tasks.app.close()
