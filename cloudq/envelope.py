"""The versioned message envelope: the only thing cloudq puts on a queue.

JSON only, never pickle: a message is data, never code. Unknown fields from newer producers
are kept (and forwarded on re-enqueue). With a signing key, an HMAC-SHA256 over the canonical
form of everything the task can see makes tampered or unsigned messages detectable.

Every failure to read a body is a MalformedMessage, whatever the body holds (invalid UTF-8,
100,000 nested brackets, ``1e999``): one bad message is dead-lettered, never retried forever.
Times are epoch seconds up to the end of year 9999 and counts fit a signed 32-bit integer, so
every result store and every date library can hold what the envelope says.

This module encodes, signs and peeks with the standard library alone, so a producer never
imports pydantic-core; the schema (``Envelope``, ``decode``, ``json_schema``) lives in
envelope_schema.py (pydantic-core; pydantic itself only for ``json_schema``) and is loaded on
first use of those names from here.
"""

from __future__ import annotations

import hashlib
import hmac
import json
from typing import TYPE_CHECKING, Any

from .errors import InvalidOptions, MalformedMessage, SignatureInvalid

if TYPE_CHECKING:
    from .envelope_schema import ChordPart as ChordPart
    from .envelope_schema import Envelope as Envelope
    from .envelope_schema import decode as decode
    from .envelope_schema import json_schema as json_schema

VERSION = 1
SCHEDULE_HEADER = "cloudq-schedule"  # set on a periodic run: its id is its slot, so it runs once
CONTENT_TYPE = "application/vnd.cloudq.v1+json"
_ENCODER = json.JSONEncoder(separators=(",", ":"), ensure_ascii=False)
MAX_EPOCH_S = 253402300799.0  # 9999-12-31T23:59:59Z: the last second datetime can represent
MAX_RETRIES = 2**31 - 1  # fits every result store's integers
# signature schemes: "v2:<hex>" covers everything the task sees (headers included); a bare hex
# (the first scheme, without headers) is still verified, so messages signed before an upgrade
# stay readable while producers and workers roll over
SIG_PREFIX = "v2:"
_LEGACY_SIGNED_FIELDS = ("v", "id", "task", "args", "kwargs", "eta", "expires", "retries")
_SIGNED_FIELDS = (*_LEGACY_SIGNED_FIELDS, "headers")
# optional fields a v2 signature covers when the message has them (so messages signed before
# they existed still verify): a task's lineage, a per-call ignore_result, and the canvas: what
# runs after it (links, the rest of its chain, a chord header's part), since those are task calls too
_OPTIONAL_SIGNED_FIELDS = ("parent_id", "root_id", "group", "ignore_result", "callbacks", "errbacks", "chain", "chord")


def build(
    task_id: str,
    task: str,
    args: list[Any],
    kwargs: dict[str, Any],
    *,
    sent_at: float,
    eta: float | None = None,
    expires: float | None = None,
    headers: dict[str, str] | None = None,
    key: bytes | None = None,
    extra: dict[str, Any] | None = None,
) -> bytes:
    """Encode a new task message without building a model: the producer's hot path.

    ``args``/``kwargs`` must already be JSON-compatible (the validator's output). A time no worker
    could read (not finite, negative, past year 9999) raises InvalidOptions before anything is sent."""
    data: dict[str, Any] = {"v": VERSION, "id": task_id, "task": task, "args": args, "kwargs": kwargs}
    if eta is not None:
        data["eta"] = check_epoch("eta", eta)
    if expires is not None:
        data["expires"] = check_epoch("expires", expires)
    data["sent_at"] = sent_at
    if headers:
        data["headers"] = headers
    if extra:
        data.update((name, extra[name]) for name in _OPTIONAL_SIGNED_FIELDS if extra.get(name) is not None)
    return encode_dict(data, key)


def encode_dict(data: dict[str, Any], key: bytes | None) -> bytes:
    """The body of the envelope ``data`` (signed with ``key`` when given)."""
    data.pop("sig", None)
    if key is not None:
        data["sig"] = signature(data, key)
    return _ENCODER.encode(data).encode()


def check_epoch(name: str, value: float) -> float:
    """``value`` if a worker can read it as the envelope's ``name``, else InvalidOptions."""
    if type(value) not in (int, float) or not 0 <= value <= MAX_EPOCH_S:  # NaN fails both
        raise InvalidOptions(f"{name} must be epoch seconds between 0 and {MAX_EPOCH_S:.0f} (year 9999), got {value!r}")
    return value


def signature(data: dict[str, Any], key: bytes) -> str:
    """The current scheme's signature of ``data``: every field the task sees, headers included."""
    present = tuple(name for name in _OPTIONAL_SIGNED_FIELDS if data.get(name) is not None)
    return SIG_PREFIX + _hmac(data, key, _SIGNED_FIELDS + present)


def _hmac(data: dict[str, Any], key: bytes, fields: tuple[str, ...]) -> str:
    signed = {name: data.get(name) for name in fields}
    canonical = json.dumps(signed, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return hmac.new(key, canonical.encode(), hashlib.sha256).hexdigest()


def verify(data: dict[str, Any], key: bytes) -> None:
    try:
        _verify(data, key)
    except UnicodeEncodeError:  # a lone surrogate (JSON can spell one) has no canonical form to sign
        raise SignatureInvalid("message holds a string that is not valid Unicode: it cannot be verified") from None


def _verify(data: dict[str, Any], key: bytes) -> None:
    sent = data.get("sig")
    if not isinstance(sent, str):
        raise SignatureInvalid("message is unsigned but a signing key is configured")
    if sent.startswith(SIG_PREFIX):
        expected = signature(data, key)
    else:  # signed by the first scheme (before headers were covered): read during a rollout
        expected = _hmac(data, key, _LEGACY_SIGNED_FIELDS)
    if not sent.isascii() or not hmac.compare_digest(sent, expected):  # compare_digest refuses non-ASCII str
        raise SignatureInvalid("message signature does not match: it was altered or signed with another key")


def loads(body: bytes | str) -> Any:
    """``json.loads`` whose every failure is a MalformedMessage: invalid UTF-8 or JSON, and
    nesting deeper than the parser's recursion limit (a RecursionError otherwise)."""
    try:
        return json.loads(body)
    except RecursionError:
        raise MalformedMessage("body is nested too deeply to decode") from None
    except (ValueError, UnicodeDecodeError, TypeError) as exc:
        raise MalformedMessage(f"body is not JSON: {exc}") from None


def peek(body: bytes | str) -> dict[str, Any]:
    """The top-level object of a body, validating nothing, or {} when there is none; never
    raises. For log lines and for recording a failure against the body's task id."""
    try:
        data = loads(body)
    except MalformedMessage:
        return {}
    return data if isinstance(data, dict) else {}


def peek_id(body: bytes | str) -> str | None:
    """Best-effort task id of a body that failed to decode, to record the failure against it."""
    value = peek(body).get("id")
    return value if isinstance(value, str) and value else None


_SCHEMA_NAMES = frozenset({"ChordPart", "Envelope", "decode", "json_schema"})


def __getattr__(name: str) -> Any:
    """The schema's names, imported (with pydantic-core) on first use: producers never need them."""
    if name in _SCHEMA_NAMES:
        from . import envelope_schema

        return getattr(envelope_schema, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
