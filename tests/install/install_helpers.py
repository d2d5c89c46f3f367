"""Subprocesses for the install tests, in an environment free of the developer's settings."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


def run(args: list[str], cwd: Path, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    """Run a command with its output captured (a hang fails the test after 120 s)."""
    return subprocess.run(args, cwd=cwd, env=env, capture_output=True, text=True, timeout=120)


def clean_env(**extra: str) -> dict[str, str]:
    """The environment without cloudq settings, Python paths or a virtualenv of the developer's."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("CLOUDQ_", "PYTHON", "VIRTUAL_ENV"))}
    return {**env, **extra}


def checked(proc: subprocess.CompletedProcess[str]) -> None:
    if proc.returncode != 0:
        pytest.fail(f"{' '.join(proc.args)} failed ({proc.returncode}):\n{proc.stdout}\n{proc.stderr}")
