"""A pytest plugin: session fixtures for Google's Pub/Sub and Firestore emulators and a GCS emulator,
each a real server process on a free 127.0.0.1 port, started on first use and stopped by process
group at the end (the only module of cloudq_gcp that imports pytest).

Where a binary is missing the dependent tests are skipped with a reason naming it (``-ra`` prints it
in the summary): they never pass as if they had run.

Shared by every test folder that talks to Google's emulators (tests/gcp, tests/push, tests/deploy,
...): each folder's conftest calls ``register(config)``, so one emulator of each kind serves the
whole session.
"""

from __future__ import annotations

import os
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from .emulators import Emulator, EmulatorMissing, sdk_root, start

PROJECT = "cloudq-test"


@pytest.fixture(scope="session")
def gcloud_sdk() -> Path | None:
    return sdk_root()


@pytest.fixture(scope="session")
def emulator_logs(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("gcp-emulators")


def _serve(kind: str, logs: Path, sdk: Path | None) -> Iterator[Emulator]:
    """Run one emulator for the session with its variable (and the project) in the environment."""
    try:
        emulator = start(kind, logs, sdk)
    except EmulatorMissing as exc:
        pytest.skip(str(exc))
    try:
        with pytest.MonkeyPatch.context() as patch:
            patch.setenv(emulator.env_var, emulator.env_value)
            patch.setenv("GOOGLE_CLOUD_PROJECT", PROJECT)
            yield emulator
    finally:
        emulator.stop()


@pytest.fixture(scope="session")
def pubsub_emulator(gcloud_sdk: Path | None, emulator_logs: Path) -> Iterator[Emulator]:
    """Google's Pub/Sub emulator; sets PUBSUB_EMULATOR_HOST and GOOGLE_CLOUD_PROJECT."""
    yield from _serve("pubsub", emulator_logs, gcloud_sdk)


@pytest.fixture(scope="session")
def firestore_emulator(gcloud_sdk: Path | None, emulator_logs: Path) -> Iterator[Emulator]:
    """Google's Firestore emulator; sets FIRESTORE_EMULATOR_HOST and GOOGLE_CLOUD_PROJECT."""
    yield from _serve("firestore", emulator_logs, gcloud_sdk)


@pytest.fixture(scope="session")
def gcs_emulator(emulator_logs: Path) -> Iterator[Emulator]:
    """gcp-storage-emulator (PyPI) in memory; sets STORAGE_EMULATOR_HOST for google-cloud-storage."""
    yield from _serve("storage", emulator_logs, None)


@pytest.fixture
def unique() -> str:
    """A short name part that keeps each test's topics, subscriptions and documents apart."""
    return uuid.uuid4().hex[:10]


@pytest.fixture
def project() -> str:
    return os.environ.get("GOOGLE_CLOUD_PROJECT", PROJECT)


def register(config: pytest.Config) -> None:
    """Make these fixtures visible to the calling conftest's tests, once per session."""
    module = sys.modules[__name__]
    if not config.pluginmanager.is_registered(module):
        config.pluginmanager.register(module, "cloudq-gcp-fixtures")
