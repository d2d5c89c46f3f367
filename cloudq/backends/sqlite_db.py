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
* Fork: SQLite forbids using a connection across ``fork()``, and a child that merely opens a
  new one inherits the parent's lock bookkeeping: it then holds no real lock, and the parent
  closing its last connection checkpoints and deletes the WAL under the child, losing its
  writes. So before any ``os.fork`` every database here closes its connections (once no thread
  is inside a call), and parent and child both reopen fresh ones. A pid check covers forks
  that skip Python's fork hooks, as well as it can: it leaves the inherited connections alone.
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
from .urls import Parser, integer_in, number_in, one_of, read_options

T = TypeVar("T")

DEFAULT_TIMEOUT_S = 30.0  # how long a write waits for another process's write lock
SYNCHRONOUS_MODES = ("normal", "full")
MIN_SQLITE = (3, 35, 0)  # UPDATE ... RETURNING
WAL_SOFT_LIMIT = 32 * 1024 * 1024  # past this the WAL is checkpointed and truncated when possible
WAL_CHECK_EVERY_S = 0.25
WAL_TRIM_WAIT_MS = 100
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


# the broker's and the result store's options: both accept all, since by default they share one URL
OPTION_PARSERS: dict[str, Parser] = {
    "max_deliveries": integer_in(0, 1_000_000),
    "max_body_bytes": integer_in(1, 2**31 - 1),
    "timeout": number_in(0, 3600),
    "synchronous": one_of(*SYNCHRONOUS_MODES),
}
OPTION_DEFAULTS = {"max_deliveries": 0, "timeout": DEFAULT_TIMEOUT_S, "synchronous": "normal"}


def sqlite_options(url: str, base: dict[str, Any], base_name: str) -> dict[str, Any]:
    """The URL's options over ``base`` (a settings' ``*_options``), checked."""
    return read_options(url, base, OPTION_PARSERS, OPTION_DEFAULTS, base_name=base_name)


def database_options(opts: dict[str, Any]) -> dict[str, Any]:
    """Connection options shared by the broker and the result store."""
    return {"timeout_s": opts["timeout"], "synchronous": opts["synchronous"]}


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
        schema: Sequence[str | Callable[[sqlite3.Connection], None]],
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
        self._next_wal_check = 0.0
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
            _retry_busy(lambda: self._prepare(conn), self.timeout_s)
        except BaseException:
            conn.close()
            raise
        return conn

    def _prepare(self, conn: sqlite3.Connection) -> None:
        """WAL mode, the synchronous level, and (once per process) the schema; safe to repeat."""
        if conn.execute("PRAGMA journal_mode").fetchone()[0].lower() != "wal":
            conn.execute("PRAGMA journal_mode=WAL").fetchone()
        conn.execute(f"PRAGMA synchronous={self._synchronous}")
        conn.execute(f"PRAGMA journal_size_limit={WAL_SOFT_LIMIT}")  # truncate to this when SQLite restarts it
        if self._schema_ready:
            return
        conn.execute("BEGIN IMMEDIATE")
        try:
            for statement in self._schema:
                if callable(statement):  # a migration: looks at the file and changes what it must
                    statement(conn)
                else:
                    conn.execute(statement)
        except BaseException:
            conn.execute("ROLLBACK")
            raise
        conn.execute("COMMIT")
        self._schema_ready = True

    def _forked_without_hooks(self) -> None:
        with self._lock:
            self._orphans.extend(h.conn for h in self._handles)
            self._handles = weakref.WeakSet()
            self._generation += 1

    def close(self) -> None:
        """Close every thread's connection once no call is running; a later call opens new ones."""
        with _GATE.exclusive(self.timeout_s):
            self.close_connections()

    def close_connections(self) -> None:
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
        return self._statement(sql, params)[1].rowcount

    def insert(self, sql: str, params: Sequence[Any] | dict[str, Any] = ()) -> int:
        """Run one INSERT in autocommit mode; return the rowid of its last row."""
        return self._statement(sql, params)[1].lastrowid or 0

    def _statement(self, sql: str, params: Sequence[Any] | dict[str, Any]) -> tuple[list[Any], sqlite3.Cursor]:
        # the producer's path (one call per ``.delay()``): no closure unless the lock is busy
        _GATE.enter()
        try:
            conn = self._connection()
            try:
                cursor = conn.execute(sql, params)
                result = cursor.fetchall(), cursor
            except sqlite3.OperationalError as exc:
                if not _is_busy(exc):
                    raise

                def run() -> tuple[list[Any], sqlite3.Cursor]:
                    cursor = conn.execute(sql, params)
                    return cursor.fetchall(), cursor

                result = _retry_busy(run, self.timeout_s, busy_since=time.monotonic())
            if time.monotonic() >= self._next_wal_check:
                self._trim_wal(conn)
            return result
        except sqlite3.DatabaseError as exc:
            raise self._translate(exc) from exc
        finally:
            _GATE.exit()

    def _trim_wal(self, conn: sqlite3.Connection) -> None:
        """Under constant traffic some reader always holds a snapshot in the WAL, so SQLite's own
        checkpoints never get to start it over and the file grows without bound. Now and then,
        when it is past WAL_SOFT_LIMIT, try a TRUNCATE checkpoint (it gives up at once if busy)."""
        self._next_wal_check = time.monotonic() + WAL_CHECK_EVERY_S
        try:
            if os.path.getsize(self.path + "-wal") <= WAL_SOFT_LIMIT:
                return
        except OSError:
            return  # no WAL file yet
        # readers are short: let the checkpoint wait a moment for the ones in its way
        conn.execute(f"PRAGMA busy_timeout={WAL_TRIM_WAIT_MS}")
        try:
            conn.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchall()
        except sqlite3.OperationalError:
            pass  # still busy: the next check tries again
        finally:
            conn.execute("PRAGMA busy_timeout=0")

    @contextmanager
    def write(self) -> Iterator[sqlite3.Connection]:
        """A ``BEGIN IMMEDIATE`` transaction on this thread's connection, for several statements."""
        _GATE.enter()
        try:
            conn = self._connection()
            _retry_busy(lambda: conn.execute("BEGIN IMMEDIATE"), self.timeout_s)
            try:
                yield conn
            except BaseException:
                conn.execute("ROLLBACK")
                raise
            conn.execute("COMMIT")
        except sqlite3.DatabaseError as exc:
            raise self._translate(exc) from exc
        finally:
            _GATE.exit()

    def _translate(self, exc: sqlite3.DatabaseError) -> CloudqError:
        if isinstance(exc, sqlite3.OperationalError) and _is_busy(exc):
            return self._error(
                f"SQLite database {self.path} stayed locked by another process for over {self.timeout_s}s"
            )
        return self._error(f"SQLite database {self.path}: {exc}")


def _is_busy(exc: sqlite3.OperationalError) -> bool:
    text = str(exc)
    return "locked" in text or "busy" in text


def _retry_busy(action: Callable[[], T], timeout_s: float, busy_since: float | None = None) -> T:
    """Run ``action``, retrying with short jittered sleeps while another connection holds the lock.

    Safe to repeat: a statement that fails with SQLITE_BUSY in autocommit mode changed nothing.
    ``busy_since``: the caller's own first attempt already found the lock busy then (it sleeps first).
    """
    deadline = 0.0 if busy_since is None else busy_since + timeout_s
    pause = _FIRST_RETRY_S
    if busy_since is not None:
        time.sleep(pause * (0.5 + random.random()))
        pause *= 2
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


class _Gate:
    """Lets ``close`` and ``os.fork`` wait until no thread is inside a database call.

    Calls only count themselves in and out (no lock is held while SQLite works), so threads
    of one process still read in parallel; an exclusive holder waits for the count to drop to
    zero and keeps new calls out until it releases.
    """

    def __init__(self) -> None:
        # never re-entered: a Lock is cheaper than an RLock; enter/exit (twice per statement, each
        # ``.delay()``) hold it directly, which is the condition's lock without its Python __enter__
        self._lock = threading.Lock()
        self._cond = threading.Condition(self._lock)
        self._active = 0
        self._exclusive = False

    def enter(self) -> None:
        with self._lock:
            while self._exclusive:
                self._cond.wait()
            self._active += 1

    def exit(self) -> None:
        with self._lock:
            self._active -= 1
            if not self._active and self._exclusive:
                self._cond.notify_all()

    def acquire_exclusive(self, timeout: float) -> bool:
        """Keep new calls out; return whether the running ones finished within ``timeout``."""
        with self._cond:
            while self._exclusive:
                self._cond.wait()
            self._exclusive = True
            return self._cond.wait_for(lambda: self._active == 0, timeout=timeout)

    def release_exclusive(self) -> None:
        with self._cond:
            self._exclusive = False
            self._cond.notify_all()

    @contextmanager
    def exclusive(self, timeout: float) -> Iterator[bool]:
        idle = self.acquire_exclusive(timeout)
        try:
            yield idle
        finally:
            self.release_exclusive()

    def reset_in_child(self) -> None:
        self.__init__()  # type: ignore[misc]  # the parent's lock may have been held by another thread


def _before_fork() -> None:
    """Close every idle connection, so neither parent nor child carries one across the fork."""
    if _GATE.acquire_exclusive(DEFAULT_TIMEOUT_S):  # never close a connection a thread is using
        for database in list(_LIVE):
            database.close_connections()


_LIVE: weakref.WeakSet[SQLiteDatabase] = weakref.WeakSet()
_GATE = _Gate()
os.register_at_fork(before=_before_fork, after_in_parent=_GATE.release_exclusive, after_in_child=_GATE.reset_in_child)
