"""A fresh venv holding ``pip install <this checkout's wheel>`` and nothing else (no extras, no
checkout on the path), shared by the session: how a new user starts."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
from install_helpers import ROOT, checked, clean_env, run


@pytest.fixture(scope="session")
def plain_venv(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The bin folder of a venv where only the wheel (and its required dependencies) is installed."""
    dist = tmp_path_factory.mktemp("dist")
    checked(run([sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "-w", str(dist), str(ROOT)], dist))
    (wheel,) = dist.glob("cloudq-*.whl")
    venv = tmp_path_factory.mktemp("plain") / "venv"
    checked(run([sys.executable, "-m", "venv", str(venv)], dist, clean_env()))
    bin_dir = venv / "bin"
    checked(run([str(bin_dir / "python"), "-m", "pip", "install", "-q", str(wheel)], dist, clean_env()))
    probe = "import importlib.util as u; print([m for m in ('boto3', 'google') if u.find_spec(m)])"
    assert run([str(bin_dir / "python"), "-c", probe], dist, clean_env()).stdout.strip() == "[]", "an SDK came along"
    return bin_dir
