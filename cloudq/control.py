"""``app.control``: the part of Celery's remote control cloudq does through the result store.

Celery broadcasts a revoke to every worker, which keeps the id in memory. cloudq has no broadcast
channel: ``revoke`` writes a REVOKED record with the store's conditional ``set`` (so a finished
task stays finished), and every runtime reads the records of a batch before running it
(``runtime/revocations.py``). The revocation lasts as long as the record (``result_expires``).
"""

from __future__ import annotations

import logging
import os
import signal as signals_module
import socket
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from . import states
from .errors import ConfigurationError
from .interfaces import ManyWriter, ResultRecord
from .results import read_many

if TYPE_CHECKING:
    from .app import App

log = logging.getLogger("cloudq.control")

REVOKED_ERROR = "cloudq.errors.TaskRevokedError"
_BROADCAST_OPTIONS = ("connection", "reply", "callback", "limit")


@dataclass(frozen=True, slots=True)
class RevokeReport:
    """What a revoke did: ``revoked`` ids now carry a REVOKED record; ``finished`` ids already had
    a final one (SUCCESS, FAILURE or REVOKED), which revoking leaves as it is (as in Celery)."""

    revoked: tuple[str, ...]
    finished: tuple[str, ...]


def signal_number(value: str | int) -> int:
    """Celery's ``signal=`` argument: ``"SIGKILL"``, ``"KILL"`` or a number."""
    if isinstance(value, int) and not isinstance(value, bool):
        try:
            return int(signals_module.Signals(value))
        except ValueError:
            raise ConfigurationError(f"revoke: {value} is not a signal number of this system") from None
    if isinstance(value, str):
        name = value.strip().upper()
        name = name if name.startswith("SIG") else f"SIG{name}"
        found = getattr(signals_module.Signals, name, None)
        if found is not None:
            return int(found)
    raise ConfigurationError(f"revoke: signal must be a signal name such as 'SIGTERM' or 'SIGKILL', got {value!r}")


def terminate_signal(record: ResultRecord) -> int | None:
    """The signal a REVOKED record asks to kill the running task with; None: let it finish."""
    meta = record.result
    if record.state != states.REVOKED or not isinstance(meta, dict) or not meta.get("terminate"):
        return None
    try:
        return signal_number(meta.get("signal", "SIGTERM"))
    except ConfigurationError:
        return int(signals_module.SIGTERM)


def revocation(task_id: str, terminate: bool, signum: int, expires_at: float | None) -> ResultRecord:
    """The REVOKED record ``revoke`` writes; a terminate request rides in ``result``."""
    how = f" (terminate with {signals_module.Signals(signum).name})" if terminate else ""
    return ResultRecord(
        task_id,
        states.REVOKED,
        error_type=REVOKED_ERROR,
        error_message=f"revoked by app.control.revoke from {socket.gethostname()}:{os.getpid()}{how}",
        result={"terminate": True, "signal": signals_module.Signals(signum).name} if terminate else None,
        finished_at=time.time(),
        expires_at=expires_at,
    )


class Control:
    """Celery's ``app.control`` (``revoke`` today; ``inspect`` belongs to the operations work)."""

    def __init__(self, app: App) -> None:
        self.app = app

    def revoke(
        self,
        task_id: str | Iterable[str],
        destination: Sequence[str] | None = None,
        terminate: bool = False,
        signal: str | int = "SIGTERM",
        **options: Any,
    ) -> RevokeReport:
        """Revoke one task id or many: a task that has not started never runs (it is acked,
        ``task_revoked`` fires, ``.get()`` raises TaskRevokedError). ``terminate=True`` kills a
        running task in the process pool with ``signal``; threads and async pools cannot stop one
        (the worker logs a warning), but its late result is not recorded over the REVOKED record.
        Costs one conditional write per id (SQLite: one transaction for all)."""
        if destination:
            raise ConfigurationError(
                "revoke(destination=...): cloudq revokes through the result store, so every worker and "
                "runtime honours it; there is no per-worker delivery to choose"
            )
        for name, value in options.items():
            if name not in (*_BROADCAST_OPTIONS, "timeout"):
                raise TypeError(f"revoke() got an unexpected keyword argument {name!r}")
            if name != "timeout" and value not in (None, False):
                raise ConfigurationError(
                    f"revoke({name}=...): cloudq has no broadcast channel or worker replies; revoke returns "
                    "once the REVOKED record is stored (a RevokeReport of what changed)"
                )
        signum = signal_number(signal)
        ids = [task_id] if isinstance(task_id, str) else list(dict.fromkeys(task_id))
        if not ids:
            return RevokeReport((), ())
        keep = self.app.settings.result_expires
        expires_at = time.time() + keep if keep else None
        records = [revocation(i, terminate, signum, expires_at) for i in ids]
        written = self._write(records)
        revoked = tuple(i for i in ids if i in written)
        finished = tuple(i for i in ids if i not in written)
        for done in finished:
            log.info("task %s is already finished: revoking it changes nothing", done)
        if revoked:
            log.info("revoked %d task(s)%s: %s", len(revoked), " (terminate)" if terminate else "", ", ".join(revoked))
        return RevokeReport(revoked, finished)

    def _write(self, records: list[ResultRecord]) -> set[str]:
        """Write the records that may be written; the ids whose record is now ours."""
        store = self.app.results
        if len(records) > 1 and isinstance(store, ManyWriter):
            store.set_many(records)  # one transaction; which ones took is read back in one query
            now = read_many(store, [r.task_id for r in records])
            return {
                r.task_id
                for r in records
                if (got := now.get(r.task_id)) is not None
                and (got.state, got.error_message, got.finished_at) == (r.state, r.error_message, r.finished_at)
            }
        return {record.task_id for record in records if store.set(record)}
