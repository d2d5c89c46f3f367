"""Session fixtures: Google's Pub/Sub and Firestore emulators and a GCS emulator, each a real server
process on a free 127.0.0.1 port, started on first use and stopped by process group at the end.

Where a binary is missing the dependent tests are skipped with a reason naming it (``-ra`` prints it
in the summary): they never pass as if they had run.
"""

from __future__ import annotations

import os
import shutil
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from gcp_emulators import Emulator, free_port, missing_binary, sdk_root, start

PROJECT = "cloudq-test"


@pytest.fixture(scope="session")
def gcloud_sdk() -> Path | None:
    return sdk_root()


@pytest.fixture(scope="session")
def emulator_logs(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("gcp-emulators")


def _run(name: str, argv: list[str], port: int, logs: Path, env_var: str) -> Iterator[Emulator]:
    emulator = start(name, argv, port, logs)
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv(env_var, emulator.host)
        patch.setenv("GOOGLE_CLOUD_PROJECT", PROJECT)
        try:
            yield emulator
        finally:
            emulator.stop()


@pytest.fixture(scope="session")
def pubsub_emulator(gcloud_sdk: Path | None, emulator_logs: Path) -> Iterator[Emulator]:
    """Google's Pub/Sub emulator; sets PUBSUB_EMULATOR_HOST and GOOGLE_CLOUD_PROJECT."""
    binary = gcloud_sdk / "platform/pubsub-emulator/bin/cloud-pubsub-emulator" if gcloud_sdk else None
    reason = missing_binary(binary, "Pub/Sub emulator")
    if reason or binary is None:
        pytest.skip(reason or "Pub/Sub emulator missing")
    port = free_port()
    argv = [str(binary), "--host=127.0.0.1", f"--port={port}"]
    yield from _run("pubsub-emulator", argv, port, emulator_logs, "PUBSUB_EMULATOR_HOST")


@pytest.fixture(scope="session")
def firestore_emulator(gcloud_sdk: Path | None, emulator_logs: Path) -> Iterator[Emulator]:
    """Google's Firestore emulator; sets FIRESTORE_EMULATOR_HOST and GOOGLE_CLOUD_PROJECT."""
    binary = gcloud_sdk / "platform/cloud-firestore-emulator/cloud_firestore_emulator" if gcloud_sdk else None
    reason = missing_binary(binary, "Firestore emulator")
    if reason or binary is None:
        pytest.skip(reason or "Firestore emulator missing")
    port = free_port()
    argv = [str(binary), "start", "--host=127.0.0.1", f"--port={port}"]
    yield from _run("firestore-emulator", argv, port, emulator_logs, "FIRESTORE_EMULATOR_HOST")


@pytest.fixture(scope="session")
def gcs_emulator(emulator_logs: Path) -> Iterator[Emulator]:
    """gcp-storage-emulator (PyPI) in memory; sets STORAGE_EMULATOR_HOST for google-cloud-storage."""
    binary = shutil.which("gcp-storage-emulator") or str(Path(sys.executable).parent / "gcp-storage-emulator")
    if not Path(binary).is_file():
        pytest.skip("GCS emulator: `gcp-storage-emulator` is not installed (pip install gcp-storage-emulator)")
    port = free_port()
    argv = [binary, "start", "--host=127.0.0.1", f"--port={port}", "--in-memory", "--quiet"]
    emulator = start("gcs-emulator", argv, port, emulator_logs)
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("STORAGE_EMULATOR_HOST", f"http://{emulator.host}")
        patch.setenv("GOOGLE_CLOUD_PROJECT", PROJECT)
        try:
            yield emulator
        finally:
            emulator.stop()


@pytest.fixture
def unique() -> str:
    """A short name part that keeps each test's topics, subscriptions and documents apart."""
    return uuid.uuid4().hex[:10]


@pytest.fixture
def project() -> str:
    return os.environ.get("GOOGLE_CLOUD_PROJECT", PROJECT)
