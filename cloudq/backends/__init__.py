"""Backends that ship with the core: in-memory (tests) and SQLite (the embedded default)."""
