"""Fixtures for the shipping tests: cloudq's wheel built the way the Cloud Run image builds it, and
one venv per session holding that wheel with its gcp extra and gunicorn (pip's cache makes the
installs quick); the Google emulators come from cloudq_gcp.testing.fixtures."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
from cloudq_gcp.testing import fixtures as gcp_fixtures
from shipping_helpers import ROOT, base_python, build_context, copy_step, make_venv, run, stages


def pytest_configure(config: pytest.Config) -> None:
    gcp_fixtures.register(config)


@pytest.fixture(scope="session")
def built_wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """cloudq's wheel, built like the image's first stage: from only what its COPY lines copy out of
    the build context (so a .dockerignore that drops a file the build needs fails here)."""
    first, context = stages()[0], build_context(ROOT)
    src = tmp_path_factory.mktemp("wheel-src")
    for sources, dest in first.copies():
        copy_step(ROOT, context, sources, dest, src)
    dist = tmp_path_factory.mktemp("dist")
    run([sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "--wheel-dir", str(dist), str(src)])
    (wheel,) = dist.glob("cloudq-*.whl")
    return wheel


@pytest.fixture(scope="session")
def image_python() -> Path:
    """An interpreter of the Python version the image's final stage runs."""
    version = stages()[-1].python_version()
    python = base_python(version)
    if python is None:
        pytest.skip(f"the image runs Python {version}: no python{version} on this machine (pyenv has none)")
    return python


@pytest.fixture(scope="session")
def image_venv(built_wheel: Path, image_python: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A fresh venv with the wheel's gcp extra and gunicorn, as the image's final stage installs them
    (not the checkout: nothing of it is importable there); returns its bin folder."""
    bin_dir = make_venv(tmp_path_factory.mktemp("image") / "venv", image_python)
    run([str(bin_dir / "python"), "-m", "pip", "install", "-q", f"{built_wheel}[gcp]", "gunicorn"])
    return bin_dir
