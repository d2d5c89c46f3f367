"""ResultRecord <-> Firestore document fields.

``result`` is stored as JSON text (``result_json``): exact for every JSON value, including nested
arrays, which Firestore's own arrays cannot hold. ``expires_at`` is a timestamp so a Firestore TTL
policy can delete the document; ``expires_exact`` keeps the float the record carried, which reads
compare against (TTL deletion is lazy, so expired documents read as absent). Extended results
keep the call as JSON text too (``call_json``: ``{"args": [...], "kwargs": {...}}``), offloaded
like the result (``call_ref``) when the document would not fit.
"""

from __future__ import annotations

import hashlib
import json
import re
import time
from datetime import UTC, datetime
from typing import Any

from cloudq.interfaces import LINEAGE_IDS, ResultRecord

FIRESTORE_MAX_DOCUMENT_BYTES = 1_048_576  # 1 MiB per document
DOCUMENT_MARGIN_BYTES = 16 * 1024  # room for Firestore's per-field accounting and the document name
RESULT_JSON = "result_json"
RESULT_REF = "result_ref"  # gs:// reference of an offloaded result
CALL_JSON = "call_json"  # result_extended: the task's args and kwargs
CALL_REF = "call_ref"  # gs:// reference of an offloaded call
REFS = (RESULT_REF, CALL_REF)
EXPIRES_AT = "expires_at"  # the TTL policy's field
EXPIRES_EXACT = "expires_exact"
KIND = "kind"  # COUNTER_KIND on counter documents; task records have none
COUNT = "count"
UPDATED_AT = "updated_at"  # epoch seconds of the write: what TaskIndex.recent orders by
WORKERS_SUFFIX = "-workers"  # presence records live in the collection next to the results'
NO_EXPIRY = float("inf")  # a counter's expires_exact when it never expires (the Minimum transform needs a number)
_TEXT = ("error_type", "error_message", "traceback", "claim_owner", "queue", "worker", *LINEAGE_IDS)
_NUMBERS = ("started_at", "finished_at", "claim_until", "sent_at")
FIELDS = (
    "task_id",
    "state",
    "task_name",
    "attempts",
    RESULT_JSON,
    RESULT_REF,
    CALL_JSON,
    CALL_REF,
    EXPIRES_AT,
    EXPIRES_EXACT,
    UPDATED_AT,
    *_TEXT,
    *_NUMBERS,
)
_RESERVED_ID = re.compile(r"^__.*__$")


def document_id(task_id: str) -> str:
    """The task id itself when Firestore allows it as a document id, else a stable digest of it."""
    allowed = task_id and "/" not in task_id and task_id not in (".", "..") and not _RESERVED_ID.match(task_id)
    if allowed and len(task_id.encode()) <= 1500:
        return task_id
    return "sha256-" + hashlib.sha256(task_id.encode()).hexdigest()


def result_text(record: ResultRecord) -> str | None:
    if record.result is None:
        return None
    return json.dumps(record.result, ensure_ascii=False, separators=(",", ":"))


def call_text(record: ResultRecord) -> str | None:
    if record.args is None and record.kwargs is None:
        return None
    return json.dumps({"args": record.args, "kwargs": record.kwargs}, ensure_ascii=False, separators=(",", ":"))


def to_fields(
    record: ResultRecord,
    result_json: str | None,
    result_ref: str | None,
    *,
    call_json: str | None = None,
    call_ref: str | None = None,
) -> dict[str, Any]:
    fields: dict[str, Any] = {
        "task_id": record.task_id,
        "state": record.state,
        "task_name": record.task_name,
        "attempts": int(record.attempts),
        UPDATED_AT: time.time(),
    }
    if result_ref is not None:
        fields[RESULT_REF] = result_ref
    elif result_json is not None:
        fields[RESULT_JSON] = result_json
    if call_ref is not None:
        fields[CALL_REF] = call_ref
    elif call_json is not None:
        fields[CALL_JSON] = call_json
    for name in (*_TEXT, *_NUMBERS):
        value = getattr(record, name)
        if value is not None:
            fields[name] = value
    if record.expires_at is not None:
        fields[EXPIRES_EXACT] = record.expires_at
        fields[EXPIRES_AT] = datetime.fromtimestamp(record.expires_at, UTC)
    return fields


def size_estimate(fields: dict[str, Any], document_path: str) -> int:
    """An upper-bound-ish estimate of Firestore's document size for these fields."""
    size = len(document_path.encode()) + 32
    for name, value in fields.items():
        size += len(name.encode()) + 1 + (len(value.encode()) + 1 if isinstance(value, str) else 8)
    return size


def fits(fields: dict[str, Any], document_path: str) -> bool:
    return size_estimate(fields, document_path) <= FIRESTORE_MAX_DOCUMENT_BYTES - DOCUMENT_MARGIN_BYTES


def expired(fields: dict[str, Any], now: float) -> bool:
    until = fields.get(EXPIRES_EXACT)
    return until is not None and until <= now


def from_fields(fields: dict[str, Any], result: Any, call: Any = None) -> ResultRecord:
    """The record; ``result`` and ``call`` are the already decoded (or downloaded) values."""
    call = call if isinstance(call, dict) else {}
    return ResultRecord(
        task_id=fields["task_id"],
        state=fields["state"],
        task_name=fields.get("task_name", ""),
        result=result,
        attempts=fields.get("attempts", 0),
        expires_at=fields.get(EXPIRES_EXACT),
        args=call.get("args"),
        kwargs=call.get("kwargs"),
        **{name: fields.get(name) for name in (*_TEXT, *_NUMBERS)},
    )


def expiry_timestamp(expires_at: float | None, delete: bool = False) -> dict[str, Any]:
    """The TTL policy's field for a counter (absent, or deleted with ``delete``, when it never expires)."""
    if expires_at is not None:
        return {EXPIRES_AT: datetime.fromtimestamp(expires_at, UTC)}
    if not delete:
        return {}
    from google.cloud.firestore import DELETE_FIELD

    return {EXPIRES_AT: DELETE_FIELD}


def number(value: Any) -> int | float:
    """An integer or double Firestore ``Value`` (a transform's result) as a Python number."""
    pb = type(value).pb(value)
    kind = pb.WhichOneof("value_type")
    if kind not in ("integer_value", "double_value"):
        raise ValueError(f"expected a number from Firestore, got {kind}")
    found: int | float = getattr(pb, kind)
    return found
