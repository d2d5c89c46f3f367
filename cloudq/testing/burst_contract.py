"""What ``cloudq worker --burst`` must do on every broker, as a pytest class to subclass.

::

    class TestMyBrokerBurst(BurstContract):
        @pytest.fixture
        def burst_env(self, tmp_path):
            return {"CLOUDQ_BROKER": "my://...", "CLOUDQ_RESULTS": "sqlite:///..."}

        @pytest.fixture
        def unreachable_env(self):
            return {"CLOUDQ_BROKER": "my://127.0.0.1:1"}, "127.0.0.1:1"  # env, endpoint the error names

The worker runs as users run it, ``python -m cloudq worker --burst`` in a subprocess; a broker that
lives in the test's process (``memory://``) sets ``in_process = True`` and runs the same command
through click in this process. Bounds are small (``--max-wait 1``), and the only time limits are
generous "it finished" timeouts.
"""

from __future__ import annotations

import importlib
import logging
import socket
import sys
import textwrap
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Any, ClassVar

import pytest

from .. import states
from .workers import run_worker_process

FINISH_TIMEOUT_S = 90.0  # "it finished": far above every bound the tests set

TASKS = """
from cloudq import App

app = App("burst-contract")


@app.task(bind=True, retry_backoff=2, retry_jitter=False, max_retries=3, autoretry_for=(ConnectionError,))
def flaky(self) -> int:
    if self.request.attempt < 2:
        raise ConnectionError("the first attempt fails")
    return self.request.attempt


@app.task(bind=True)
def tomorrow(self) -> None:
    raise self.retry(countdown=86400)


@app.task()
def add(a: int, b: int) -> int:
    return a + b
"""


def closed_port() -> int:
    """A 127.0.0.1 port nothing listens on (bound for a moment here, then released): an
    unreachable endpoint for ``unreachable_env``."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass(frozen=True)
class Finished:
    code: int
    output: str


class BurstContract:
    pytestmark: ClassVar[list[Any]] = [pytest.mark.timeout(FINISH_TIMEOUT_S + 60)]
    in_process: ClassVar[bool] = False  # the broker lives in this process (memory://)

    @pytest.fixture
    def burst_env(self) -> dict[str, str]:
        """Environment that points the app at the broker (and a result store) under test."""
        raise NotImplementedError("provide a burst_env fixture")

    @pytest.fixture
    def unreachable_env(self) -> tuple[dict[str, str], str]:
        """Environment whose broker cannot be reached, and the endpoint the error must name."""
        pytest.skip("this broker provides no unreachable_env fixture")

    @pytest.fixture
    def tasks(self, burst_env: dict[str, str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Any]:
        module = self._tasks(burst_env, tmp_path, monkeypatch)
        yield module
        module.app.close()

    # -- the contract -----------------------------------------------------------------------

    def test_burst_waits_for_a_retry_it_scheduled(
        self, tasks: Any, tmp_path: Path, caplog: pytest.LogCaptureFixture
    ) -> None:
        handle = tasks.flaky.delay()
        done = self.run_worker(tasks, tmp_path, caplog, "-c", "1", "--max-wait", "30")
        assert done.code == 0, done.output[-3000:]
        assert handle.status == states.SUCCESS, done.output[-3000:]
        assert handle.get(timeout=10) == 2

    def test_burst_exits_at_max_wait_and_logs_what_is_left(
        self, tasks: Any, tmp_path: Path, caplog: pytest.LogCaptureFixture
    ) -> None:
        retried = tasks.tomorrow.delay()
        later = tasks.add.apply_async((1, 2), eta=time.time() + 86400)
        quick = tasks.add.delay(2, 3)
        done = self.run_worker(tasks, tmp_path, caplog, "-c", "1", "--max-wait", "1")
        assert done.code == 0, done.output[-3000:]
        assert quick.get(timeout=10) == 5
        assert retried.status == states.RETRY
        assert later.status == states.PENDING
        [line] = [line for line in done.output.splitlines() if "burst done" in line]
        assert "delayed message(s)" in line and "due at" in line, line

    def test_burst_gives_up_on_an_unreachable_broker(
        self,
        unreachable_env: tuple[dict[str, str], str],
        tmp_path: Path,
        monkeypatch: pytest.MonkeyPatch,
        caplog: pytest.LogCaptureFixture,
    ) -> None:
        env, endpoint = unreachable_env
        tasks = self._tasks(env, tmp_path, monkeypatch)
        try:
            done = self.run_worker(tasks, tmp_path, caplog, "--unreachable-timeout", "2")
        finally:
            tasks.app.close()
        assert done.code != 0, done.output[-3000:]
        assert "Traceback" not in done.output, done.output[-3000:]
        last = [line for line in done.output.splitlines() if "ERROR" in line or "Error" in line][-1]
        assert endpoint in last, done.output[-3000:]

    # -- helpers ----------------------------------------------------------------------------

    def _tasks(self, env: dict[str, str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> ModuleType:
        """A tasks module of its own (a fresh App on ``env``), importable by the worker subprocess."""
        for name, value in env.items():
            monkeypatch.setenv(name, value)
        name = f"burst_tasks_{uuid.uuid4().hex[:10]}"
        (tmp_path / f"{name}.py").write_text(textwrap.dedent(TASKS))
        monkeypatch.syspath_prepend(str(tmp_path))
        module = importlib.import_module(name)
        monkeypatch.setitem(sys.modules, name, module)
        return module

    def run_worker(self, tasks: ModuleType, cwd: Path, caplog: pytest.LogCaptureFixture, *args: str) -> Finished:
        """``cloudq worker -A <tasks>:app --burst -l INFO *args`` until it exits."""
        path = f"{tasks.__name__}:app"
        if not self.in_process:
            done = run_worker_process(path, cwd, "-l", "INFO", *args, timeout=FINISH_TIMEOUT_S)
            return Finished(done.returncode, done.stdout + done.stderr)
        from click.testing import CliRunner

        from ..cli import main

        caplog.set_level(logging.INFO)
        result = CliRunner().invoke(main, ["worker", "-A", path, "--burst", "-l", "INFO", *args])
        crash = "" if result.exception is None or isinstance(result.exception, SystemExit) else "Traceback"
        return Finished(result.exit_code, caplog.text + result.output + crash)
