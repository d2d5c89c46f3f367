"""Start and stop local Google Cloud emulators as child processes on free loopback ports.

Each emulator runs in its own process group (the Firestore launcher is a shell script that
starts Java), so stopping it by that group's id ends the JVM too and touches nothing else.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path

READY_TIMEOUT_S = 60.0


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


def missing_binary(path: Path | None, what: str) -> str | None:
    """Why an emulator cannot start here, naming the missing binary; None when it can."""
    if path is None:
        return f"{what}: `gcloud` (Google Cloud SDK) is not on PATH, so its emulator binary cannot be found"
    if not path.is_file():
        return f"{what}: emulator binary {path} is missing"
    if shutil.which("java") is None:
        return f"{what}: `java` is not on PATH (needed by {path})"
    return None


@dataclass
class Emulator:
    name: str
    host: str
    process: subprocess.Popen[bytes]
    log: Path

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


def start(name: str, argv: list[str], port: int, log_dir: Path) -> Emulator:
    """Start ``argv`` and wait until ``http://127.0.0.1:PORT/`` answers (the emulators say "Ok")."""
    log = log_dir / f"{name}.log"
    with log.open("wb") as out:
        process = subprocess.Popen(argv, stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
    emulator = Emulator(name, f"127.0.0.1:{port}", process, log)
    deadline = time.monotonic() + READY_TIMEOUT_S
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"{name} exited with code {process.returncode}: {_tail(log)}")
        try:
            with urllib.request.urlopen(f"http://{emulator.host}/", timeout=1):
                return emulator
        except urllib.error.HTTPError:  # any HTTP answer means it is serving
            return emulator
        except (urllib.error.URLError, OSError):
            time.sleep(0.1)
    emulator.stop()
    raise RuntimeError(f"{name} did not answer on {emulator.host} within {READY_TIMEOUT_S:.0f}s: {_tail(log)}")


def _tail(log: Path, lines: int = 15) -> str:
    try:
        return "\n".join(log.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return "(no log)"
