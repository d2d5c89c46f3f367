#!/usr/bin/env bash
# README command 2: install everything the tests need, run the quality gates and the whole suite.
# The servers the tests use (moto, Google's Pub/Sub and Firestore emulators, a GCS emulator) are
# started by pytest session fixtures on free 127.0.0.1 ports and stopped at the end.
set -euo pipefail
cd "$(dirname "$0")/.."
[ -x .venv/bin/python ] || python3 -m venv .venv
. .venv/bin/activate
python -m pip install -q --upgrade pip
python -m pip install -q -e '.[dev]'
# tests/dashboard's browser tests drive the system's chromium (Playwright never downloads one);
# they fail in CI without it
if [ ! -x /usr/bin/chromium ]; then
  if command -v apt-get >/dev/null 2>&1 && [ "$(id -u)" = 0 ]; then
    echo "== installing chromium (apt-get) for the dashboard's browser tests"
    (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium) >/dev/null 2>&1 \
      || echo "== WARNING: apt-get could not install chromium: the dashboard's browser tests will fail in CI, skip locally"
  else
    echo "== WARNING: /usr/bin/chromium is missing (install it: apt-get install chromium): the dashboard's browser tests will fail in CI, skip locally"
  fi
fi

echo "== ruff";  ruff check . && ruff format --check .
echo "== mypy";  mypy
if command -v gcloud >/dev/null 2>&1; then
  echo "== Google emulators: $(gcloud info --format='value(installation.sdk_root)')/platform"
else
  echo "== WARNING: gcloud is not installed: the Google Cloud tests will be SKIPPED (see the summary)"
fi
echo "== pytest"
# exit code 5 (no tests collected) fails this script like any other non-zero code
python -m pytest -p no:cacheprovider "$@"
