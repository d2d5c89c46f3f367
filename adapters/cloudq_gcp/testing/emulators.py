"""Start and stop local emulators -- Google's Pub/Sub and Firestore emulators (from the Cloud SDK)
and gcp-storage-emulator (from PyPI) -- as child processes on free loopback ports, for tests,
benchmarks and local development::

    with running("pubsub", log_dir) as emulator:
        os.environ[emulator.env_var] = emulator.host

Each emulator runs in its own process group (the Firestore launcher is a shell script that starts
Java), so stopping it by that group's id ends the JVM too and touches nothing else.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

READY_TIMEOUT_S = 60.0
ENV_VARS = {
    "pubsub": "PUBSUB_EMULATOR_HOST",
    "firestore": "FIRESTORE_EMULATOR_HOST",
    "storage": "STORAGE_EMULATOR_HOST",
}
_SDK_BINARIES = {
    "pubsub": ("Pub/Sub emulator", "platform/pubsub-emulator/bin/cloud-pubsub-emulator"),
    "firestore": ("Firestore emulator", "platform/cloud-firestore-emulator/cloud_firestore_emulator"),
}


class EmulatorMissing(RuntimeError):
    """The emulator's binary (or what it needs) is not installed here; the message names it."""


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def sdk_root() -> Path | None:
    """The Google Cloud SDK's root, from ``gcloud info`` (None when gcloud is absent)."""
    gcloud = shutil.which("gcloud")
    if gcloud is None:
        return None
    out = subprocess.run(
        [gcloud, "info", "--format=value(installation.sdk_root)"],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    root = out.stdout.strip()
    return Path(root) if out.returncode == 0 and root else None


def command(kind: str, port: int, sdk: Path | None = None) -> list[str]:
    """The command line that serves ``kind`` on 127.0.0.1:PORT; EmulatorMissing names what is absent."""
    if kind == "storage":
        binary = shutil.which("gcp-storage-emulator") or str(Path(sys.executable).parent / "gcp-storage-emulator")
        if not Path(binary).is_file():
            raise EmulatorMissing(
                "GCS emulator: `gcp-storage-emulator` is not installed (pip install gcp-storage-emulator)"
            )
        return [binary, "start", "--host=127.0.0.1", f"--port={port}", "--in-memory", "--quiet"]
    what, relative = _SDK_BINARIES[kind]
    sdk = sdk or sdk_root()
    if sdk is None:
        raise EmulatorMissing(
            f"{what}: `gcloud` (Google Cloud SDK) is not on PATH, so its emulator binary cannot be found"
        )
    path = sdk / relative
    if not path.is_file():
        raise EmulatorMissing(f"{what}: emulator binary {path} is missing")
    if shutil.which("java") is None:
        raise EmulatorMissing(f"{what}: `java` is not on PATH (needed by {path})")
    start = ["start"] if kind == "firestore" else []
    return [str(path), *start, "--host=127.0.0.1", f"--port={port}"]


@dataclass
class Emulator:
    kind: str
    host: str  # HOST:PORT
    process: subprocess.Popen[bytes]
    log: Path

    @property
    def env_var(self) -> str:
        return ENV_VARS[self.kind]

    @property
    def env_value(self) -> str:
        """What the client libraries expect in ``env_var`` (the storage client wants a URL)."""
        return f"http://{self.host}" if self.kind == "storage" else self.host

    def stop(self) -> None:
        """SIGTERM the emulator's process group, then SIGKILL it if it lingers."""
        if self.process.poll() is not None:
            return
        pgid = os.getpgid(self.process.pid)
        os.killpg(pgid, signal.SIGTERM)
        try:
            self.process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            os.killpg(pgid, signal.SIGKILL)
            self.process.wait(timeout=10)
        try:  # the JVM may outlive the launcher script for a moment
            os.killpg(pgid, signal.SIGKILL)
        except ProcessLookupError:
            pass


def start(kind: str, log_dir: Path, sdk: Path | None = None, port: int | None = None) -> Emulator:
    """Start an emulator and wait until ``http://HOST:PORT/`` answers (the SDK's emulators say "Ok").
    ``port``: a given one (to restart an emulator where its clients look), else a free one."""
    port = port or free_port()
    argv = command(kind, port, sdk)
    log = log_dir / f"{kind}-emulator-{port}.log"
    with log.open("ab") as out:
        process = subprocess.Popen(argv, stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
    emulator = Emulator(kind, f"127.0.0.1:{port}", process, log)
    deadline = time.monotonic() + READY_TIMEOUT_S
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"{kind} emulator exited with code {process.returncode}: {_tail(log)}")
        try:
            with urllib.request.urlopen(f"http://{emulator.host}/", timeout=1):
                return emulator
        except urllib.error.HTTPError:  # any HTTP answer means it is serving
            return emulator
        except (urllib.error.URLError, OSError):
            time.sleep(0.1)
    emulator.stop()
    raise RuntimeError(f"{kind} emulator did not answer on {emulator.host} within {READY_TIMEOUT_S:.0f}s: {_tail(log)}")


@contextmanager
def running(kind: str, log_dir: Path, sdk: Path | None = None) -> Iterator[Emulator]:
    emulator = start(kind, log_dir, sdk)
    try:
        yield emulator
    finally:
        emulator.stop()


def _tail(log: Path, lines: int = 15) -> str:
    try:
        return "\n".join(log.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return "(no log)"
