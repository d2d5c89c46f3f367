"""The embedded result store: one row per task id in ``cloudq_results``, next to the queues.

The record is kept as JSON in ``data``; ``terminal`` and ``expires_at`` are columns so the
"never overwrite a finished result" rule is one conditional upsert, and expired rows are
filtered on read and swept by writers once a minute. A claim reads and writes in one
``BEGIN IMMEDIATE`` transaction. There is no ``wait``: AsyncResult polls this store.
"""

from __future__ import annotations

import json
import sqlite3
import time
from collections.abc import Sequence
from typing import TYPE_CHECKING

from ..errors import NotSerializable, ResultStoreError
from ..interfaces import Claim, Heartbeat, ResultRecord, TaskSummary
from ..states import ALL_STATES
from .common import claim_refused, claimed, counter_id
from .sqlite_db import DEFAULT_TIMEOUT_S, SQLiteDatabase, database_options, sqlite_options, sqlite_path

if TYPE_CHECKING:
    from ..config import Settings

SWEEP_EVERY_S = 60.0  # how often a writer deletes expired rows
SWEEP_BATCH = 5000  # rows per sweep, so the write lock is held briefly


def _add_index_columns(conn: sqlite3.Connection) -> None:
    """Migrate a file made before the task index: add ``state`` and ``updated_at`` and fill
    them from the records (their last known time: finished, else started)."""
    columns = {row[1] for row in conn.execute("PRAGMA table_info(cloudq_results)")}
    if "updated_at" in columns:
        return
    conn.execute("ALTER TABLE cloudq_results ADD COLUMN state TEXT")
    conn.execute("ALTER TABLE cloudq_results ADD COLUMN updated_at REAL")
    conn.execute(
        "UPDATE cloudq_results SET state = json_extract(data, '$.state'), updated_at = "
        "COALESCE(json_extract(data, '$.finished_at'), json_extract(data, '$.started_at'), 0)"
    )


# A rowid table: rows sit in creation order, which is nearly expiry order, so a sweep finds
# expired rows first without an expiry index (which would cost a quarter of every write).
_SCHEMA = (
    """CREATE TABLE IF NOT EXISTS cloudq_results (
        task_id TEXT PRIMARY KEY,
        terminal INTEGER NOT NULL,
        expires_at REAL,
        data TEXT NOT NULL,
        state TEXT,
        updated_at REAL
    )""",
    _add_index_columns,
    # TaskIndex.recent: one range per state, newest first (costs each write one index entry)
    "CREATE INDEX IF NOT EXISTS cloudq_results_recent ON cloudq_results (state, updated_at)",
    # counters (chords, periodic-task slots) in their own table: no key can collide with a task id
    """CREATE TABLE IF NOT EXISTS cloudq_counters (
        key TEXT PRIMARY KEY,
        value INTEGER NOT NULL,
        expires_at REAL
    )""",
    # worker presence (HeartbeatStore): a handful of rows, apart from the task records
    """CREATE TABLE IF NOT EXISTS cloudq_workers (
        worker_id TEXT PRIMARY KEY,
        seen_at REAL NOT NULL,
        expires_at REAL NOT NULL,
        info TEXT NOT NULL
    )""",
)
_ROW = "(?, ?, ?, ?, ?, ?)"
_COLUMNS = f"(task_id, terminal, expires_at, data, state, updated_at) VALUES {_ROW}"
# the rows, then ``now`` once: a finished record is only replaced once it has expired
_ON_CONFLICT = """
    ON CONFLICT (task_id) DO UPDATE
    SET terminal = excluded.terminal, expires_at = excluded.expires_at, data = excluded.data,
        state = excluded.state, updated_at = excluded.updated_at
    WHERE cloudq_results.terminal = 0 OR cloudq_results.expires_at <= ?
"""
_UPSERT = f"INSERT INTO cloudq_results {_COLUMNS} {_ON_CONFLICT}"
UPSERT_CHUNK = 500  # rows per statement: 6 parameters each, well under SQLite's 32766


def _upsert_many(count: int) -> str:
    """One statement for ``count`` rows: rows of one statement are applied in order, so a task id
    written twice in a batch ends as a sequence of single writes would leave it."""
    return f"INSERT INTO cloudq_results (task_id, terminal, expires_at, data, state, updated_at) VALUES {', '.join([_ROW] * count)} {_ON_CONFLICT}"


_SELECT = "SELECT data FROM cloudq_results WHERE task_id = ? AND (expires_at IS NULL OR expires_at > ?)"
# the ids travel as one JSON array parameter: any number of them in one query, no variable limit
_SELECT_MANY = (
    "SELECT data FROM cloudq_results WHERE task_id IN (SELECT value FROM json_each(?))"
    " AND (expires_at IS NULL OR expires_at > ?)"
)
# One statement, so one write lock: concurrent increments are serialised and each sees its own total.
# An expired counter starts again from 0 with the new expiry; a live one keeps the expiry it was created with.
_INCREMENT = """
    INSERT INTO cloudq_counters (key, value, expires_at) VALUES (:key, :by, :expires_at)
    ON CONFLICT (key) DO UPDATE SET
        value = CASE WHEN cloudq_counters.expires_at <= :now THEN :by ELSE cloudq_counters.value + :by END,
        expires_at = CASE WHEN cloudq_counters.expires_at <= :now THEN :expires_at ELSE cloudq_counters.expires_at END
    RETURNING value
"""
_BEAT = "INSERT OR REPLACE INTO cloudq_workers (worker_id, seen_at, expires_at, info) VALUES (?, ?, ?, ?)"
_ALIVE = "SELECT worker_id, seen_at, info FROM cloudq_workers WHERE expires_at > ?"
_SWEEP_WORKERS = "DELETE FROM cloudq_workers WHERE expires_at <= ?"
_SWEEP_COUNTERS = "DELETE FROM cloudq_counters WHERE expires_at <= ?"
_EXPIRED = "SELECT rowid FROM cloudq_results WHERE expires_at <= ? LIMIT ?"
_SWEEP = "DELETE FROM cloudq_results WHERE rowid IN (SELECT value FROM json_each(?)) AND expires_at <= ?"


_RECENT = (
    "SELECT task_id, json_extract(data, '$.task_name'), state, updated_at FROM cloudq_results"
    " WHERE state IN (SELECT value FROM json_each(?)) AND updated_at >= ? AND (expires_at IS NULL OR expires_at > ?)"
    " ORDER BY updated_at DESC LIMIT ?"
)


# built once: json.dumps with options builds a new encoder per call (a tenth of a result write)
_TO_JSON = json.JSONEncoder(ensure_ascii=False, separators=(",", ":")).encode


def _encode(record: ResultRecord) -> tuple[str, int, float | None, str, str, float]:
    try:
        data = _TO_JSON(record.to_dict())
    except (TypeError, ValueError) as exc:
        raise NotSerializable(f"result of task {record.task_id} is not JSON-serialisable: {exc}") from None
    return record.task_id, int(record.terminal), record.expires_at, data, record.state, time.time()


def _decode(data: str) -> ResultRecord:
    return ResultRecord.from_dict(json.loads(data))


class SQLiteResultStore:
    """Result records in a SQLite file (by default the broker's own file, in its own table)."""

    def __init__(self, path: str, *, timeout_s: float = DEFAULT_TIMEOUT_S, synchronous: str = "normal") -> None:
        self.db = SQLiteDatabase(path, _SCHEMA, timeout_s=timeout_s, synchronous=synchronous, error=ResultStoreError)
        self._next_sweep = time.monotonic() + SWEEP_EVERY_S

    @classmethod
    def from_url(cls, url: str, settings: Settings) -> SQLiteResultStore:
        opts = sqlite_options(url, settings.results_options, "results_options")
        return cls(sqlite_path(url), **database_options(opts))

    def __repr__(self) -> str:
        return f"<SQLiteResultStore {self.db.path}>"

    def get(self, task_id: str) -> ResultRecord | None:
        now = time.time()
        rows = self.db.query(_SELECT, (task_id, now))
        return _decode(rows[0][0]) if rows else None

    def get_many(self, task_ids: Sequence[str]) -> dict[str, ResultRecord]:
        """One query (one snapshot) for any number of ids."""
        if not task_ids:
            return {}
        rows = self.db.query(_SELECT_MANY, (json.dumps(list(task_ids)), time.time()))
        return {record.task_id: record for record in (_decode(row[0]) for row in rows)}

    def set(self, record: ResultRecord) -> bool:
        row = _encode(record)
        now = time.time()
        written = self.db.change(_UPSERT, (*row, now)) == 1
        if time.monotonic() >= self._next_sweep:
            self._next_sweep = time.monotonic() + SWEEP_EVERY_S
            self.sweep(now)
        return written

    def set_many(self, records: Sequence[ResultRecord]) -> None:
        """``set`` for many records, all or none (the worker batches its writes): one statement
        of up to UPSERT_CHUNK rows in autocommit (no BEGIN and COMMIT to run, and the write lock
        is held for that one statement), several in one transaction beyond."""
        if not records:
            return
        now = time.time()
        params = [value for record in records for value in _encode(record)]
        if len(records) <= UPSERT_CHUNK:
            self.db.change(_upsert_many(len(records)), [*params, now])
            return
        width = len(params) // len(records)
        with self.db.write() as conn:
            for start in range(0, len(records), UPSERT_CHUNK):
                chunk = params[start * width : (start + UPSERT_CHUNK) * width]
                conn.execute(_upsert_many(len(chunk) // width), [*chunk, now])

    def sweep(self, now: float | None = None) -> int:
        """Delete up to SWEEP_BATCH expired rows: found by a read (no lock held while it scans),
        deleted by one short write that checks their expiry again."""
        now = time.time() if now is None else now
        expired = self.db.query(_EXPIRED, (now, SWEEP_BATCH))
        counters = self.db.change(_SWEEP_COUNTERS, (now,))  # few rows: chords in progress, periodic slots
        if not expired:
            return counters
        return counters + self.db.change(_SWEEP, (json.dumps([row[0] for row in expired]), now))

    def claim(self, task_id: str, owner: str, until: float, task_name: str = "") -> Claim:
        now = time.time()
        with self.db.write() as conn:
            current = self._current(conn, task_id, now)
            if claim_refused(current, owner, now):
                return Claim(False, current)
            record = claimed(current, task_id, owner, until, task_name, now)
            conn.execute(f"INSERT OR REPLACE INTO cloudq_results {_COLUMNS}", _encode(record))
        return Claim(True, None)

    @staticmethod
    def _current(conn: sqlite3.Connection, task_id: str, now: float) -> ResultRecord | None:
        row = conn.execute(_SELECT, (task_id, now)).fetchone()
        return _decode(row[0]) if row else None

    def increment(self, key: str, by: int = 1, expires_at: float | None = None) -> int:
        """One ``INSERT ... ON CONFLICT DO UPDATE ... RETURNING`` statement (SQLite 3.35+)."""
        counter_id(key, by)
        rows = self.db.query(_INCREMENT, {"key": key, "by": by, "expires_at": expires_at, "now": time.time()})
        return int(rows[0][0])

    def delete_counter(self, key: str) -> None:
        self.db.change("DELETE FROM cloudq_counters WHERE key = ?", (key,))

    def recent(self, states: Sequence[str] = (), since: float | None = None, limit: int = 100) -> list[TaskSummary]:
        """One query on the (state, updated_at) index."""
        wanted = json.dumps(list(states or ALL_STATES))
        rows = self.db.query(_RECENT, (wanted, since if since is not None else float("-inf"), time.time(), limit))
        return [TaskSummary(task_id, name or "", state, updated_at) for task_id, name, state, updated_at in rows]

    def beat(self, heartbeat: Heartbeat, ttl_s: float) -> None:
        """One transaction: this worker's row, and the rows of workers gone (a few at most)."""
        info = _TO_JSON(dict(heartbeat.info))
        row = (heartbeat.worker_id, heartbeat.seen_at, heartbeat.seen_at + ttl_s, info)
        with self.db.write() as conn:
            conn.execute(_BEAT, row)
            conn.execute(_SWEEP_WORKERS, (time.time(),))

    def alive(self) -> list[Heartbeat]:
        rows = self.db.query(_ALIVE, (time.time(),))
        return [Heartbeat(worker_id, seen_at, json.loads(info)) for worker_id, seen_at, info in rows]

    def forget(self, task_id: str) -> None:
        self.db.change("DELETE FROM cloudq_results WHERE task_id = ?", (task_id,))

    def close(self) -> None:
        self.db.close()
