"""Dead letters as the operator sees them: select by id, error type, task and age; describe one
with its result record; redrive or delete a selection through the broker's ``DeadLetterAdmin``.

Redriving resets a task to a fresh start: the broker starts its delivery count over, the body's
envelope ``retries`` goes back to 0 (re-signed with the app's key; a body that does not verify
with it, or any body the app cannot sign, moves unchanged), and the task's FAILURE record is
forgotten first, so the task's next outcome can be written (a terminal record is never
overwritten) and an idempotent task is not refused as already finished. A SUCCESS record is
kept: a task that already succeeded is not made to look as if it never ran.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Collection, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from . import states
from .envelope import decode, peek
from .errors import CloudqError
from .interfaces import DeadLetter, DeadLetterAdmin, ManyReader, ResultRecord

if TYPE_CHECKING:
    from .app import App

SCAN_LIMIT = 100_000  # dead letters read at most to select from (a redrive of "all" moves what was read)
REDACTED = "***"
# header names whose values are credentials: shown as REDACTED by ``describe``
_SECRET_HEADER = re.compile(r"auth|token|secret|passw|cookie|credential|api[-_]?key|session", re.IGNORECASE)
_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([smhdw])\s*$")
_UNIT_S = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}
_ERROR_TYPE = re.compile(r"^([A-Za-z_][\w.]*):")


class DeadLettersUnsupported(CloudqError):
    """The app's broker cannot redrive or delete dead letters."""


@dataclass(frozen=True, slots=True)
class Selection:
    """Which dead letters an operation acts on: all of the given conditions hold (none: all)."""

    ids: frozenset[str] | None = None
    error_type: str | None = None
    task: str | None = None
    since: float | None = None  # epoch seconds: dead-lettered at or after (unknown times do not match)

    def matches(self, letter: DeadLetter) -> bool:
        if self.ids is not None and letter.message_id not in self.ids and task_id(letter) not in self.ids:
            return False
        if self.error_type is not None and not error_type_matches(error_type(letter.reason), self.error_type):
            return False
        if self.task is not None and task_name(letter) != self.task:
            return False
        return self.since is None or (letter.dead_at is not None and letter.dead_at >= self.since)


def error_type(reason: str) -> str:
    """The exception type a dead-letter reason starts with (``ValueError: ...``), else ''."""
    found = _ERROR_TYPE.match(reason)
    return found.group(1) if found else ""


def error_type_matches(found: str, wanted: str) -> bool:
    """``ValueError`` matches ``ValueError`` and ``proj.errors.ValueError``; a dotted name matches itself."""
    return found == wanted or found.endswith(f".{wanted}")


def task_id(letter: DeadLetter) -> str:
    value = peek(letter.body).get("id")
    return value if isinstance(value, str) else ""


def task_name(letter: DeadLetter) -> str:
    value = peek(letter.body).get("task")
    return value if isinstance(value, str) else ""


def parse_since(text: str, now: float) -> float:
    """Epoch seconds for ``--since``: a duration back from ``now`` (``90s``, ``30m``, ``1h``,
    ``2d``, ``1w``) or an ISO 8601 time (UTC when it has no offset). ValueError says which."""
    found = _DURATION.match(text)
    if found:
        return now - float(found.group(1)) * _UNIT_S[found.group(2)]
    try:
        when = datetime.fromisoformat(text.strip())
    except ValueError:
        raise ValueError(
            f"{text!r} is neither a duration (90s, 30m, 1h, 2d, 1w) nor an ISO time (2026-01-31T12:00:00Z)"
        ) from None
    return (when if when.tzinfo else when.replace(tzinfo=UTC)).timestamp()


def admin(app: App) -> DeadLetterAdmin:
    broker = app.broker
    if not isinstance(broker, DeadLetterAdmin):
        raise DeadLettersUnsupported(f"the broker {type(broker).__name__} cannot redrive or delete dead letters")
    return broker


def select(app: App, queue: str, selection: Selection, limit: int = SCAN_LIMIT) -> list[DeadLetter]:
    """The dead letters of ``queue`` that match, oldest first where the broker orders them, read
    from the first ``limit``."""
    return [letter for letter in app.broker.dead_letters(queue, limit) if selection.matches(letter)]


def find(app: App, queue: str, wanted: str) -> DeadLetter | None:
    """The dead letter whose message id or task id is ``wanted``."""
    found = select(app, queue, Selection(ids=frozenset({wanted})))
    return found[0] if found else None


def record_of(app: App, letter: DeadLetter) -> ResultRecord | None:
    tid = task_id(letter)
    return app.results.get(tid) if tid else None


def describe(letter: DeadLetter, record: ResultRecord | None = None) -> dict[str, Any]:
    """What ``cloudq dead-letters`` prints for a dead letter: with a ``record``, also its
    attempts and traceback (the reason may lack them). Header values named like credentials
    are redacted; ``sig`` is an HMAC, not a secret, and is shown."""
    data = peek(letter.body)
    envelope: dict[str, Any] | str
    if data:
        envelope = dict(data)
        headers = envelope.get("headers")
        if isinstance(headers, dict):
            envelope["headers"] = {k: (REDACTED if _SECRET_HEADER.search(str(k)) else v) for k, v in headers.items()}
    else:
        envelope = letter.body.decode("utf-8", "replace")
    out: dict[str, Any] = {
        "message_id": letter.message_id,
        "task_id": data.get("id") if data else None,
        "task": data.get("task") if data else None,
        "error_type": error_type(letter.reason) or None,
        "reason": letter.reason,
        "dead_at": _iso(letter.dead_at),
        "retries": data.get("retries", 0) if data else None,
    }
    if record is not None:
        out.update(
            state=record.state,
            attempts=record.attempts,
            error_message=record.error_message,
            traceback=record.traceback,
        )
    out["body"] = envelope
    return out


def _iso(when: float | None) -> str | None:
    return None if when is None else datetime.fromtimestamp(when, UTC).isoformat().replace("+00:00", "Z")


def fresh_start(key: bytes | None) -> Callable[[bytes], bytes]:
    """The body rewrite of a redrive: the envelope's ``retries`` back to 0, signed with ``key``.
    Bodies that do not decode (or verify) with ``key``, and signed bodies when the app has no
    key, are kept byte for byte: the worker judges them as it did. Never raises."""

    def rewrite(body: bytes) -> bytes:
        try:
            env = decode(body, key)
        except Exception:
            return body
        if env.retries == 0 or (key is None and env.sig is not None):
            return body
        return env.model_copy(update={"retries": 0}).encode(key)

    return rewrite


def forget_failures(app: App, letters: Sequence[DeadLetter]) -> int:
    """Forget the FAILURE records of the letters' tasks (before they are redriven); returns how many."""
    ids = sorted({tid for tid in map(task_id, letters) if tid})
    store = app.results
    if isinstance(store, ManyReader):
        records = store.get_many(ids)
    else:
        records = {tid: rec for tid in ids if (rec := store.get(tid)) is not None}
    failed = [tid for tid, rec in records.items() if rec.state == states.FAILURE]
    for tid in failed:
        store.forget(tid)
    return len(failed)


def redrive(app: App, queue: str, letters: Sequence[DeadLetter], progress: Callable[[int], None] | None = None) -> int:
    """Put ``letters`` back on ``queue`` with a fresh start (see the module docstring); returns how many moved."""
    broker = admin(app)
    if not letters:
        return 0
    forget_failures(app, letters)
    ids: Collection[str] = {letter.message_id for letter in letters}
    return broker.redrive(queue, ids, rewrite=fresh_start(app.signing_key), progress=progress)


def delete(app: App, queue: str, letters: Sequence[DeadLetter]) -> int:
    """Delete ``letters`` for good; returns how many."""
    broker = admin(app)
    return broker.delete_dead_letters(queue, {letter.message_id for letter in letters}) if letters else 0
