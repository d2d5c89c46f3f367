"""One SQLite file shared by threads and processes: a connection per thread per process.

Why it is safe with several worker and producer processes:

* WAL journal: readers never block the writer or each other; there is one writer at a time.
* Every write is one short ``BEGIN IMMEDIATE`` transaction, so a writer takes the write lock
  *before* it reads and two processes never act on the same stale snapshot (no message is
  leased twice). A busy write lock is retried here with sub-millisecond sleeps rather than
  SQLite's own busy handler, whose first sleep is a whole millisecond.
* ``synchronous=NORMAL`` (the default here): a committed transaction survives the application
  or its process crashing at any point, including SIGKILL. After a power loss or an OS crash
  the last transactions before it may be rolled back, but the file is never corrupted.
  ``?synchronous=full`` makes every commit survive power loss too, at the cost of an fsync.
* Fork: SQLite forbids using a connection across ``fork()``, and even inherits lock
  bookkeeping into the child. Before any ``os.fork`` every open database here closes its
  (idle) connections, so parent and child both reopen fresh ones; a pid check covers forks that
  skip Python's fork hooks.
"""

from __future__ import annotations

import os
import random
import sqlite3
import threading
import time
import weakref
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from typing import Any, TypeVar
from urllib.parse import unquote, urlsplit

from ..errors import BackendUnavailable, CloudqError, ConfigurationError
from .urls import number, url_options

T = TypeVar("T")

DEFAULT_TIMEOUT_S = 30.0  # how long a write waits for another process's write lock
SYNCHRONOUS_MODES = ("normal", "full")
MIN_SQLITE = (3, 35, 0)  # UPDATE ... RETURNING
_FIRST_RETRY_S = 0.0001
_MAX_RETRY_S = 0.005


def sqlite_path(url: str) -> str:
    """The file path of ``sqlite:///relative.db`` or ``sqlite:////absolute.db``."""
    parts = urlsplit(url)
    if parts.netloc or not parts.path.startswith("/") or parts.path == "/":
        raise ConfigurationError(
            f"SQLite URL {url!r} needs a file path: sqlite:///relative/path.db or sqlite:////absolute/path.db"
        )
    path = unquote(parts.path[1:])
    if path == ":memory:" or path.startswith("file:"):
        raise ConfigurationError(
            f"SQLite URL {url!r}: in-memory SQLite cannot be shared between processes; use memory:// instead"
        )
    return path


def database_options(opts: dict[str, Any]) -> dict[str, Any]:
    """Connection options shared by the broker and the result store."""
    return {
        "timeout_s": number(opts, "timeout", DEFAULT_TIMEOUT_S),
        "synchronous": str(opts.get("synchronous", "normal")),
    }


def check_url_options(url: str, known: Sequence[str]) -> None:
    """A URL's query names options for this backend only: a typo is an error, not ignored."""
    unknown = sorted(set(url_options(url)) - set(known))
    if unknown:
        raise ConfigurationError(
            f"unknown option(s) {', '.join(unknown)} in {url!r}; SQLite accepts: {', '.join(known)}"
        )


class _Handle:
    """A thread's connection and the generation it was opened in (weak-referenceable)."""

    __slots__ = ("__weakref__", "conn", "generation", "pid")

    def __init__(self, conn: sqlite3.Connection, generation: int) -> None:
        self.conn = conn
        self.generation = generation
        self.pid = os.getpid()


class SQLiteDatabase:
    """Connections to one SQLite file, the schema it needs, and short write transactions.

    ``error`` is the cloudq error type SQLite failures are translated into at this boundary.
    """

    def __init__(
        self,
        path: str,
        schema: Sequence[str],
        *,
        timeout_s: float = DEFAULT_TIMEOUT_S,
        synchronous: str = "normal",
        error: type[CloudqError] = BackendUnavailable,
    ) -> None:
        if sqlite3.sqlite_version_info < MIN_SQLITE:
            raise ConfigurationError(
                f"the SQLite backend needs SQLite {'.'.join(map(str, MIN_SQLITE))} or newer; "
                f"this Python has {sqlite3.sqlite_version}"
            )
        if synchronous.lower() not in SYNCHRONOUS_MODES:
            raise ConfigurationError(f"option 'synchronous' must be one of {', '.join(SYNCHRONOUS_MODES)}")
        self.path = path
        self.timeout_s = timeout_s
        self._schema = tuple(schema)
        self._synchronous = synchronous.upper()
        self._error = error
        self._local = threading.local()
        self._lock = threading.Lock()
        self._handles: weakref.WeakSet[_Handle] = weakref.WeakSet()
        self._generation = 0
        self._schema_ready = False
        # connections inherited through a fork that skipped the hooks: never used nor closed here
        self._orphans: list[sqlite3.Connection] = []
        _LIVE.add(self)
        self.query("SELECT 1")  # fail fast on a bad path or a file that is not a database

    # -- connections -----------------------------------------------------------------------

    def _connection(self) -> sqlite3.Connection:
        handle: _Handle | None = getattr(self._local, "handle", None)
        if handle is not None and handle.generation == self._generation and handle.pid == os.getpid():
            return handle.conn
        return self._open(handle)

    def _open(self, stale: _Handle | None) -> sqlite3.Connection:
        if stale is not None and stale.pid != os.getpid():
            self._forked_without_hooks()
        conn = self._connect()
        handle = _Handle(conn, self._generation)
        with self._lock:
            self._handles.add(handle)
        self._local.handle = handle
        return conn

    def _connect(self) -> sqlite3.Connection:
        # timeout=0: a busy lock is retried by _retry_busy, with shorter sleeps than SQLite's handler
        conn = sqlite3.connect(self.path, timeout=0, isolation_level=None, check_same_thread=False)
        try:
            if conn.execute("PRAGMA journal_mode").fetchone()[0].lower() != "wal":
                _retry_busy(lambda: conn.execute("PRAGMA journal_mode=WAL").fetchone(), self.timeout_s)
            conn.execute(f"PRAGMA synchronous={self._synchronous}")
            if not self._schema_ready:
                _retry_busy(lambda: conn.execute("BEGIN IMMEDIATE"), self.timeout_s)
                try:
                    for statement in self._schema:
                        conn.execute(statement)
                finally:
                    conn.execute("COMMIT")
                self._schema_ready = True
        except BaseException:
            conn.close()
            raise
        return conn

    def _forked_without_hooks(self) -> None:
        with self._lock:
            self._orphans.extend(h.conn for h in self._handles)
            self._handles = weakref.WeakSet()
            self._generation += 1

    def close(self) -> None:
        """Close every thread's connection; a later call opens new ones."""
        with self._lock:
            handles = list(self._handles)
            self._handles = weakref.WeakSet()
            self._generation += 1
        for handle in handles:
            try:
                handle.conn.close()
            except sqlite3.Error:
                pass

    # -- statements and transactions -------------------------------------------------------

    def query(self, sql: str, params: Sequence[Any] | dict[str, Any] = ()) -> list[Any]:
        """Run one statement in autocommit mode and return its rows.

        One statement is one transaction: a write statement holds the write lock from its
        start, so an ``UPDATE ... RETURNING`` decides and changes under the same lock.
        """
        return self._statement(sql, params)[0]

    def change(self, sql: str, params: Sequence[Any] | dict[str, Any] = ()) -> int:
        """Run one write statement in autocommit mode; return how many rows it changed."""
        return self._statement(sql, params)[1]

    def _statement(self, sql: str, params: Sequence[Any] | dict[str, Any]) -> tuple[list[Any], int]:
        _FORK_GATE.enter()
        try:
            conn = self._connection()

            def run() -> tuple[list[Any], int]:
                cursor = conn.execute(sql, params)
                return cursor.fetchall(), cursor.rowcount

            return _retry_busy(run, self.timeout_s)
        except sqlite3.DatabaseError as exc:
            raise self._translate(exc) from exc
        finally:
            _FORK_GATE.exit()

    @contextmanager
    def write(self) -> Iterator[sqlite3.Connection]:
        """A ``BEGIN IMMEDIATE`` transaction on this thread's connection, for several statements."""
        _FORK_GATE.enter()
        try:
            conn = self._connection()
            self._statement("BEGIN IMMEDIATE", ())
            try:
                yield conn
            except BaseException:
                conn.execute("ROLLBACK")
                raise
            conn.execute("COMMIT")
        except sqlite3.DatabaseError as exc:
            raise self._translate(exc) from exc
        finally:
            _FORK_GATE.exit()

    def _translate(self, exc: sqlite3.DatabaseError) -> CloudqError:
        if isinstance(exc, sqlite3.OperationalError) and _is_busy(exc):
            return self._error(
                f"SQLite database {self.path} stayed locked by another process for over {self.timeout_s}s"
            )
        return self._error(f"SQLite database {self.path}: {exc}")


def _is_busy(exc: sqlite3.OperationalError) -> bool:
    text = str(exc)
    return "locked" in text or "busy" in text


def _retry_busy(action: Callable[[], T], timeout_s: float) -> T:
    """Run ``action``, retrying with short jittered sleeps while another connection holds the lock.

    Safe to repeat: a statement that fails with SQLITE_BUSY in autocommit mode changed nothing.
    """
    deadline = 0.0
    pause = _FIRST_RETRY_S
    while True:
        try:
            return action()
        except sqlite3.OperationalError as exc:
            if not _is_busy(exc):
                raise
            deadline = deadline or time.monotonic() + timeout_s
            if time.monotonic() >= deadline:
                raise
        time.sleep(pause * (0.5 + random.random()))
        pause = min(pause * 2, _MAX_RETRY_S)


class _ForkGate:
    """Lets ``os.fork`` wait until no thread is inside a database call, then closes connections.

    Calls only count themselves in and out (a condition per call, no global lock held while
    SQLite works), so threads of one process still run their reads in parallel.
    """

    def __init__(self) -> None:
        self._cond = threading.Condition()
        self._active = 0
        self._forking = False

    def enter(self) -> None:
        with self._cond:
            while self._forking:
                self._cond.wait()
            self._active += 1

    def exit(self) -> None:
        with self._cond:
            self._active -= 1
            if not self._active and self._forking:
                self._cond.notify_all()

    def before_fork(self) -> None:
        with self._cond:
            self._forking = True
            idle = self._cond.wait_for(lambda: self._active == 0, timeout=DEFAULT_TIMEOUT_S)
        if idle:  # never close a connection under a thread still using it
            for database in list(_LIVE):
                database.close()

    def after_fork_in_parent(self) -> None:
        with self._cond:
            self._forking = False
            self._cond.notify_all()

    def after_fork_in_child(self) -> None:
        self._cond = threading.Condition()  # the parent's may have been held by another thread
        self._active = 0
        self._forking = False


_LIVE: weakref.WeakSet[SQLiteDatabase] = weakref.WeakSet()
_FORK_GATE = _ForkGate()
os.register_at_fork(
    before=_FORK_GATE.before_fork,
    after_in_parent=_FORK_GATE.after_fork_in_parent,
    after_in_child=_FORK_GATE.after_fork_in_child,
)
