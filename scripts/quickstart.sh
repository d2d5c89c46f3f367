#!/usr/bin/env bash
# README command 1: install cloudq and run the quickstart on the embedded SQLite default.
set -euo pipefail
cd "$(dirname "$0")/.."
[ -x .venv/bin/python ] || python3 -m venv .venv
. .venv/bin/activate
python -m pip install -q --upgrade pip
python -m pip install -q -e .
cd examples/quickstart
rm -f cloudq.db cloudq.db-wal cloudq.db-shm
python run.py
