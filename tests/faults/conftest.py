"""Fixtures for the fault suite: each backend as a Target (sqlite file, SQS + DynamoDB on the
session's moto server, Pub/Sub + Firestore on the session's emulators). The AWS and GCP fixtures
are the shared plugins of tests/aws and tests/gcp, registered here the way tests/lambda_ does."""

from __future__ import annotations

import importlib
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from cloudq_aws.testing import fixtures as aws_fixtures
from cloudq_gcp.testing import Emulator, EmulatorMissing
from cloudq_gcp.testing import fixtures as gcp_fixtures
from cloudq_gcp.testing import start as start_emulator
from fault_harness import PubSubQueue, SQLiteQueue, SQSQueue, Target, WorkerProc

BACKENDS = ("sqlite", "sqs", "pubsub")


def pytest_configure(config: pytest.Config) -> None:
    aws_fixtures.register(config)
    gcp_fixtures.register(config)


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    here = Path(__file__).parent
    for item in items:
        if here in Path(str(item.fspath)).parents:
            item.add_marker(pytest.mark.faults)


def _bind(monkeypatch: pytest.MonkeyPatch, broker: str, results: str) -> object:
    """fault_app bound to these URLs, in this process and in every worker started from it."""
    monkeypatch.setenv("CLOUDQ_BROKER", broker)
    monkeypatch.setenv("CLOUDQ_RESULTS", results)
    monkeypatch.syspath_prepend(str(Path(__file__).parent))
    import fault_app

    return importlib.reload(fault_app)


@pytest.fixture
def sqlite_target(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Iterator[Target]:
    monkeypatch.chdir(tmp_path)
    url = f"sqlite:///{tmp_path / 'cloudq.db'}"
    module = _bind(monkeypatch, url, url)
    app = module.app  # type: ignore[attr-defined]
    app.broker.stats("default")  # the schema exists before rows are written around the broker
    yield Target("sqlite", module, SQLiteQueue(str(tmp_path / "cloudq.db"), "default"), lease_s=2.0)  # type: ignore[arg-type]
    app.close()


@pytest.fixture
def sqs_target(aws: object, prefix: str, monkeypatch: pytest.MonkeyPatch) -> Iterator[Target]:
    module = _bind(monkeypatch, f"sqs://?prefix={prefix}&wait=1", f"dynamodb://{prefix}results")
    app = module.app  # type: ignore[attr-defined]
    yield Target("sqs", module, SQSQueue(app.broker.queue("default").url), lease_s=2.0)  # type: ignore[arg-type]
    app.close()


@pytest.fixture
def pubsub_target(
    pubsub_emulator: object, firestore_emulator: object, project: str, unique: str, monkeypatch: pytest.MonkeyPatch
) -> Iterator[Target]:
    module = _bind(
        monkeypatch,
        f"pubsub://{project}?prefix=t{unique}-&ack_deadline=10",
        f"firestore://results-{unique}?project={project}",
    )
    app = module.app  # type: ignore[attr-defined]
    app.broker.stats("default")  # creates the topic and the subscription
    base = f"projects/{project}/%s/t{unique}-default"
    yield Target("pubsub", module, PubSubQueue(base % "topics", base % "subscriptions"), lease_s=10.0)  # type: ignore[arg-type]
    app.close()


@dataclass
class OwnPubSub:
    """A Pub/Sub emulator of one test's own, which the test may restart in place (same port,
    nothing kept: Google's emulator holds topics and subscriptions in memory only)."""

    emulator: Emulator
    log_dir: Path
    sdk: Path | None

    def restart(self, down_s: float) -> None:
        port = int(self.emulator.host.rsplit(":", 1)[1])
        self.emulator.stop()
        time.sleep(down_s)
        self.emulator = start_emulator("pubsub", self.log_dir, self.sdk, port=port)


@pytest.fixture
def own_pubsub_target(
    gcloud_sdk: Path | None, project: str, unique: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> Iterator[tuple[Target, OwnPubSub]]:
    """Pub/Sub on an emulator of this test's own (results in a SQLite file: only Pub/Sub restarts)."""
    try:
        own = OwnPubSub(start_emulator("pubsub", tmp_path, gcloud_sdk), tmp_path, gcloud_sdk)
    except EmulatorMissing as exc:
        pytest.skip(str(exc))
    monkeypatch.setenv(own.emulator.env_var, own.emulator.env_value)
    monkeypatch.setenv("GOOGLE_CLOUD_PROJECT", project)
    module = _bind(monkeypatch, f"pubsub://{project}?prefix=r{unique}-&ack_deadline=10", f"sqlite:///{tmp_path}/r.db")
    app = module.app  # type: ignore[attr-defined]
    app.broker.stats("default")
    base = f"projects/{project}/%s/r{unique}-default"
    try:
        yield Target("pubsub", module, PubSubQueue(base % "topics", base % "subscriptions"), lease_s=10.0), own  # type: ignore[arg-type]
    finally:
        app.close()
        own.emulator.stop()


@pytest.fixture(params=BACKENDS)
def target(request: pytest.FixtureRequest) -> Target:
    """The test once per backend."""
    return request.getfixturevalue(f"{request.param}_target")  # type: ignore[no-any-return]


@pytest.fixture
def workers(tmp_path: Path) -> Iterator[Callable[..., WorkerProc]]:
    """Start worker processes; every one still running at the end is killed by its pid."""
    started: list[WorkerProc] = []

    def start(*args: str, lease_s: float, env: dict[str, str] | None = None) -> WorkerProc:
        worker = WorkerProc(tmp_path / f"worker{len(started)}.log", *args, lease_s=lease_s, env=env)
        started.append(worker)
        return worker

    yield start
    for worker in started:
        worker.stop()
