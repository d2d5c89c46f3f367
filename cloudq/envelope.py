"""The versioned message envelope: the only thing cloudq puts on a queue.

JSON only, never pickle: a message is data, never code. Unknown fields from newer producers
are kept (and forwarded on re-enqueue). With a signing key, an HMAC-SHA256 over the canonical
form of everything the task can see makes tampered or unsigned messages detectable.

Every failure to read a body is a MalformedMessage, whatever the body holds (invalid UTF-8,
100,000 nested brackets, ``1e999``): one bad message is dead-lettered, never retried forever.
Times are epoch seconds up to the end of year 9999 and counts fit a signed 32-bit integer, so
every result store and every date library can hold what the envelope says.
"""

from __future__ import annotations

import hashlib
import hmac
import json
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from .errors import InvalidOptions, MalformedMessage, SignatureInvalid, UnsupportedVersion

VERSION = 1
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


def _epoch_field(description: str) -> Any:
    return Field(None, ge=0, le=MAX_EPOCH_S, allow_inf_nan=False, description=description)


class ChordPart(BaseModel):
    """A chord header task's part: the chord's id (its header's group id), how many header tasks
    it has and which one this is, the body to send when all have ended, and the result store
    counter they count on (None: the store has no counter and a ``cloudq.chord_unlock`` task polls)."""

    model_config = ConfigDict(extra="allow", strict=True, title="chord part")

    id: str = Field(min_length=1, max_length=256, description="chord id: the header's group id")
    size: int = Field(ge=1, le=MAX_RETRIES, description="number of header tasks")
    index: int = Field(ge=0, le=MAX_RETRIES, description="this task's place in the header")
    body: dict[str, Any] = Field(description="the body's signature (its JSON form)")
    counter: str | None = Field(None, max_length=512, description="the result store counter of the chord")


class Envelope(BaseModel):  # type: ignore[no-redef]  # field "kwargs" vs the plugin's __init__(**kwargs)
    """Version 1 of the cloudq message envelope."""

    model_config = ConfigDict(extra="allow", strict=True, title="cloudq task envelope v1")

    v: int = Field(VERSION, strict=True, description="envelope version")
    id: str = Field(min_length=1, max_length=256, description="task id")
    task: str = Field(min_length=1, max_length=256, description="registered task name")
    args: list[Any] = Field(default_factory=list)
    kwargs: dict[str, Any] = Field(default_factory=dict)
    eta: float | None = _epoch_field("epoch seconds before which the task must not run")
    expires: float | None = _epoch_field("epoch seconds after which the task is not run")
    retries: int = Field(0, ge=0, le=MAX_RETRIES, description="attempts already spent before this message was sent")
    sent_at: float | None = _epoch_field("epoch seconds when first sent")
    headers: dict[str, str] = Field(default_factory=dict)
    parent_id: str | None = Field(None, max_length=256, description="id of the task that sent this one")
    root_id: str | None = Field(None, max_length=256, description="id of the first task of the chain of senders")
    group: str | None = Field(None, max_length=256, description="id of the group this task belongs to")
    ignore_result: bool | None = Field(None, description="this call's ignore_result (else the task's)")
    callbacks: list[dict[str, Any]] | None = Field(
        None, description="signature dicts sent when the task succeeds, its result prepended (link)"
    )
    errbacks: list[dict[str, Any]] | None = Field(
        None, description="signature dicts called when the task fails for good (link_error)"
    )
    chain: list[dict[str, Any]] | None = Field(
        None, description="the remaining steps of its chain as signature dicts, the next step LAST"
    )
    chord: ChordPart | None = Field(
        None, description="on a chord header task: its part in the chord (the count that completes it sends the body)"
    )
    sig: str | None = Field(
        None,
        description="HMAC-SHA256 when signing is on: 'v2:<hex>' over every field the task sees; "
        "a bare hex (the first scheme, without headers) is still read",
    )

    def encode(self, key: bytes | None = None) -> bytes:
        return _dumps(self.model_dump(exclude_none=True), key)


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
    return _dumps(data, key)


def _dumps(data: dict[str, Any], key: bytes | None) -> bytes:
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


def _verify(data: dict[str, Any], key: bytes) -> None:
    sent = data.get("sig")
    if not isinstance(sent, str):
        raise SignatureInvalid("message is unsigned but a signing key is configured")
    if sent.startswith(SIG_PREFIX):
        expected = signature(data, key)
    else:  # signed by the first scheme (before headers were covered): read during a rollout
        expected = _hmac(data, key, _LEGACY_SIGNED_FIELDS)
    if not hmac.compare_digest(sent, expected):
        raise SignatureInvalid("message signature does not match: it was altered or signed with another key")


def decode(body: bytes | str, key: bytes | None = None) -> Envelope:
    """Parse and check a message body; every failure is a MalformedMessage with the reason."""
    if key is None:  # fast path: one pass in pydantic-core; the slow path explains failures
        try:
            env = Envelope.model_validate_json(body)
        except ValidationError:
            pass
        else:
            if env.v == VERSION and "v" in env.model_fields_set:
                return env
    try:
        return _decode(body, key)
    except RecursionError:  # e.g. signing or validating a body nested just under the parser's limit
        raise MalformedMessage("body is nested too deeply to decode") from None


def _decode(body: bytes | str, key: bytes | None) -> Envelope:
    data = loads(body)
    if not isinstance(data, dict):
        raise MalformedMessage(f"body is JSON {type(data).__name__}, not an envelope object")
    if "v" not in data:
        raise UnsupportedVersion(f'envelope has no "v" (version) field; this cloudq reads version {VERSION}')
    version = data["v"]
    if type(version) is not int or version != VERSION:  # True == 1, but is no version
        raise UnsupportedVersion(f"envelope version {version!r} is not supported; this cloudq reads version {VERSION}")
    if key is not None:
        _verify(data, key)
    try:
        return Envelope.model_validate(data)
    except ValidationError as exc:
        problems = "; ".join(f"{'.'.join(map(str, e['loc'])) or 'body'}: {e['msg']}" for e in exc.errors())
        raise MalformedMessage(f"invalid envelope: {problems}") from None


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


def json_schema() -> dict[str, Any]:
    """The published JSON Schema: exactly what ``decode`` accepts (``v`` is required and must be
    this version, though the model fills it in for envelopes built in Python)."""
    schema = Envelope.model_json_schema()
    schema["properties"]["v"] = {"const": VERSION, "description": "envelope version", "type": "integer"}
    schema["required"] = ["v", *(name for name in schema["required"] if name != "v")]
    schema["$schema"] = "https://json-schema.org/draft/2020-12/schema"
    schema["$id"] = "https://cloudq.dev/schemas/envelope-v1.json"
    return schema
