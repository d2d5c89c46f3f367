"""The process pool's child side and the pipe protocol between parent and child.

A frame is one line of JSON (the header) then raw bytes (a message body), sent with
``Connection.send_bytes``: typed, small, and never pickle. The parent sends a delivery; the
child runs ``app.executor.execute`` and answers with the outcome.
"""

from __future__ import annotations

import json
import logging
import signal
from multiprocessing.connection import Connection
from typing import Any

from ..interfaces import Delivery, OutgoingMessage
from .executor import Ack, DeadLetter, Executor, Followups, Outcome, Requeue, RetryIn
from .lifecycle import process_init, process_shutdown

READY = "ready"
FATAL = "fatal"
ERROR = "error"


class ChildError(Exception):
    """The child could not run a delivery (execute raised) or could not start."""


def frame(header: dict[str, Any], payload: bytes = b"") -> bytes:
    return json.dumps(header, separators=(",", ":")).encode() + b"\n" + payload


def unframe(data: bytes) -> tuple[dict[str, Any], bytes]:
    head, _, payload = data.partition(b"\n")
    header = json.loads(head)
    if not isinstance(header, dict):
        raise ValueError("frame header is not a JSON object")
    return header, payload


def encode_delivery(delivery: Delivery) -> bytes:
    return frame(
        {
            "count": delivery.delivery_count,
            "queue": delivery.queue,
            "id": delivery.message_id,
            "attrs": dict(delivery.attributes),
            "key": delivery.ordering_key,
        },
        delivery.body,
    )


def decode_delivery(data: bytes) -> Delivery:
    h, body = unframe(data)
    return Delivery(body, None, int(h["count"]), str(h["queue"]), str(h["id"]), dict(h["attrs"]), h["key"])


def _followups(followups: Followups) -> list[list[Any]]:
    """Follow-up messages as JSON (their bodies are envelopes: UTF-8 JSON)."""
    return [[q, m.body.decode(), m.delay_s, m.ordering_key, m.dedup_id, dict(m.attributes)] for q, m in followups]


def _read_followups(items: Any) -> Followups:
    return tuple(
        (str(q), OutgoingMessage(body.encode(), float(d), k, i, dict(a))) for q, body, d, k, i, a in items or ()
    )


def encode_outcome(outcome: Outcome) -> bytes:
    if isinstance(outcome, Ack):
        return frame(
            {"kind": "ack", "event": outcome.event, "followups": _followups(outcome.followups), "step": outcome.step}
        )
    if isinstance(outcome, RetryIn):
        return frame({"kind": "retry", "delay": outcome.delay_s})
    if isinstance(outcome, DeadLetter):
        return frame({"kind": "dead", "reason": outcome.reason, "followups": _followups(outcome.followups)})
    m = outcome.message
    header = {
        "kind": "requeue",
        "event": outcome.event,
        "delay": m.delay_s,
        "key": m.ordering_key,
        "dedup": m.dedup_id,
        "attrs": dict(m.attributes),
    }
    return frame(header, m.body)


def decode_outcome(data: bytes) -> Outcome:
    """The child's answer; raises ChildError when the child reports that execute raised."""
    h, payload = unframe(data)
    kind = h.get("kind")
    if kind == "ack":
        return Ack(str(h["event"]), _read_followups(h.get("followups")), h.get("step"))
    if kind == "retry":
        return RetryIn(float(h["delay"]))
    if kind == "dead":
        return DeadLetter(str(h["reason"]), _read_followups(h.get("followups")))
    if kind == "requeue":
        message = OutgoingMessage(payload, float(h["delay"]), h["key"], h["dedup"], dict(h["attrs"]))
        return Requeue(message, str(h["event"]))
    raise ChildError(str(h.get("error") or f"unexpected frame kind {kind!r}"))


def describe(exc: BaseException) -> str:
    return f"{type(exc).__name__}: {exc}"


def child_main(app_path: str, conn: Connection, log_level: int, log_format: str | None) -> None:
    """Entry point of a pool process: import the app, then run deliveries until the pipe closes."""
    # the parent decides when children stop: a Ctrl-C sent to the whole process group must not
    # kill the tasks that the parent is letting finish
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    logging.basicConfig(level=log_level, format=log_format or logging.BASIC_FORMAT)
    try:
        from ..app import load_app

        executor = load_app(app_path).executor
    except BaseException as exc:  # anything at import time is a start failure
        conn.send_bytes(frame({"kind": FATAL, "error": f"cannot load app {app_path!r}: {describe(exc)}"}))
        return
    process_init()  # after the app is loaded, before the first task (a raising receiver is logged)
    conn.send_bytes(frame({"kind": READY}))
    try:
        _serve(conn, executor)
    finally:
        process_shutdown()


def _serve(conn: Connection, executor: Executor) -> None:
    """Run deliveries until the parent closes the pipe (or is gone)."""
    while True:
        try:
            data = conn.recv_bytes()
        except (EOFError, OSError):
            return
        try:
            reply = encode_outcome(executor.execute(decode_delivery(data)))
        except BaseException as exc:  # report: the parent gives the message back
            reply = frame({"kind": ERROR, "error": describe(exc)})
        try:
            conn.send_bytes(reply)
        except (EOFError, OSError):
            return
