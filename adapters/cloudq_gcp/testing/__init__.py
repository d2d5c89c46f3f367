"""Local stand-ins for Google Cloud, for tests, benchmarks and examples: ``emulators`` starts
Google's Pub/Sub and Firestore emulators and a GCS emulator (no pytest needed), ``fixtures`` is the
pytest plugin that serves them to a test session."""

from .emulators import ENV_VARS, Emulator, EmulatorMissing, command, free_port, running, sdk_root, start

__all__ = ["ENV_VARS", "Emulator", "EmulatorMissing", "command", "free_port", "running", "sdk_root", "start"]
