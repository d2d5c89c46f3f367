"""A real ``cloudq dashboard`` process and Debian's chromium driven by Playwright (never a
downloaded browser). Without chromium or Playwright the browser tests skip locally with the
reason and FAIL in CI (``CI=true``), where scripts/test.sh installs both."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import threading
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parents[2]
CHROMIUM = "/usr/bin/chromium"
TOKEN = "dash-t0ken-for-tests"  # the dashboard token every test in this folder serves with
SCREENSHOTS = ROOT / "build" / "dashboard-screenshots"  # test artifacts (build/ is not committed)
START_S = 30.0


def chromium() -> str:
    """The system chromium, or a skip (a failure in CI) saying what is missing."""
    found = CHROMIUM if os.access(CHROMIUM, os.X_OK) else shutil.which("chromium")
    missing = []
    if found is None:
        missing.append("chromium (apt-get install chromium)")
    try:
        import playwright.sync_api  # noqa: F401
    except ImportError:
        missing.append("playwright (pip install -e '.[dev]')")
    if missing:
        reason = f"the browser tests need {' and '.join(missing)}"
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail(f"{reason}: scripts/test.sh installs them in CI", pytrace=False)
        pytest.skip(reason)
    assert found is not None
    return found


@contextmanager
def served(app_dir: Path, env: Mapping[str, str], *args: str) -> Iterator[str]:
    """``cloudq dashboard -A dashapp:app --port 0 ARGS`` in ``app_dir``; yields its URL."""
    pythonpath = os.pathsep.join([str(app_dir), str(ROOT), str(ROOT / "adapters")])
    proc = subprocess.Popen(
        [sys.executable, "-m", "cloudq", "dashboard", "-A", "dashapp:app", "--port", "0", *args],
        cwd=app_dir,
        env={**os.environ, "PYTHONPATH": pythonpath, **env},
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    lines: list[str] = []
    found = threading.Event()

    def read() -> None:  # keeps draining the pipe so the server never blocks on a full one
        for line in proc.stdout or ():
            lines.append(line)
            if "http://" in line:
                found.set()

    threading.Thread(target=read, daemon=True).start()
    try:
        if not found.wait(START_S):
            proc.kill()
            pytest.fail(f"cloudq dashboard did not print its URL within {START_S} s: {''.join(lines)}", pytrace=False)
        line = next(line for line in lines if "http://" in line)
        url = line.split("http://", 1)[1].split()[0].rstrip("/")
        yield f"http://{url}"
    finally:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


@contextmanager
def browser_page(executable: str) -> Iterator[Any]:
    from playwright.sync_api import sync_playwright

    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=executable, headless=True, args=["--no-sandbox"])
        try:
            page = browser.new_context().new_page()
            page.set_default_timeout(15_000)
            yield page
        finally:
            browser.close()


def screenshot(page: Any, name: str) -> None:
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(SCREENSHOTS / f"{name}.png"), full_page=True)
