"""The versioned message envelope: the only thing cloudq puts on a queue.

JSON only, never pickle: a message is data, never code. Unknown fields from newer producers
are kept (and forwarded on re-enqueue). With a signing key, an HMAC-SHA256 over the canonical
form of the fields that decide what runs makes tampered or unsigned messages detectable.
"""

from __future__ import annotations

import hashlib
import hmac
import json
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from .errors import MalformedMessage, SignatureInvalid, UnsupportedVersion

VERSION = 1
CONTENT_TYPE = "application/vnd.cloudq.v1+json"
_ENCODER = json.JSONEncoder(separators=(",", ":"), ensure_ascii=False)
_SIGNED_FIELDS = ("v", "id", "task", "args", "kwargs", "eta", "expires", "retries")


class Envelope(BaseModel):  # type: ignore[no-redef]  # field "kwargs" vs the plugin's __init__(**kwargs)
    """Version 1 of the cloudq message envelope."""

    model_config = ConfigDict(extra="allow", strict=True, title="cloudq task envelope v1")

    v: int = Field(VERSION, strict=True, description="envelope version")
    id: str = Field(min_length=1, max_length=256, description="task id")
    task: str = Field(min_length=1, max_length=256, description="registered task name")
    args: list[Any] = Field(default_factory=list)
    kwargs: dict[str, Any] = Field(default_factory=dict)
    eta: float | None = Field(None, description="epoch seconds before which the task must not run")
    expires: float | None = Field(None, description="epoch seconds after which the task is not run")
    retries: int = Field(0, ge=0, description="attempts already spent before this message was sent")
    sent_at: float | None = Field(None, description="epoch seconds when first sent")
    headers: dict[str, str] = Field(default_factory=dict)
    sig: str | None = Field(None, description="hex HMAC-SHA256 of the signed fields, when signing is on")

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
) -> bytes:
    """Encode a new task message without building a model: the producer's hot path.

    ``args``/``kwargs`` must already be JSON-compatible (the validator's output)."""
    data: dict[str, Any] = {"v": VERSION, "id": task_id, "task": task, "args": args, "kwargs": kwargs}
    if eta is not None:
        data["eta"] = eta
    if expires is not None:
        data["expires"] = expires
    data["sent_at"] = sent_at
    if headers:
        data["headers"] = headers
    return _dumps(data, key)


def _dumps(data: dict[str, Any], key: bytes | None) -> bytes:
    data.pop("sig", None)
    if key is not None:
        data["sig"] = signature(data, key)
    return _ENCODER.encode(data).encode()


def signature(data: dict[str, Any], key: bytes) -> str:
    signed = {name: data.get(name) for name in _SIGNED_FIELDS}
    canonical = json.dumps(signed, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return hmac.new(key, canonical.encode(), hashlib.sha256).hexdigest()


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
        data = json.loads(body)
    except (ValueError, UnicodeDecodeError) as exc:
        raise MalformedMessage(f"body is not JSON: {exc}") from None
    if not isinstance(data, dict):
        raise MalformedMessage(f"body is JSON {type(data).__name__}, not an envelope object")
    version = data.get("v")
    if type(version) is not int or version != VERSION:  # True == 1, but is no version
        raise UnsupportedVersion(f"envelope version {version!r} is not supported; this cloudq reads version {VERSION}")
    if key is not None:
        sent = data.get("sig")
        if not isinstance(sent, str):
            raise SignatureInvalid("message is unsigned but a signing key is configured")
        if not hmac.compare_digest(sent, signature(data, key)):
            raise SignatureInvalid("message signature does not match: it was altered or signed with another key")
    try:
        return Envelope.model_validate(data)
    except ValidationError as exc:
        problems = "; ".join(f"{'.'.join(map(str, e['loc'])) or 'body'}: {e['msg']}" for e in exc.errors())
        raise MalformedMessage(f"invalid envelope: {problems}") from None


def peek_id(body: bytes | str) -> str | None:
    """Best-effort task id of a body that failed to decode, to record the failure against it."""
    try:
        data = json.loads(body)
    except (ValueError, UnicodeDecodeError):
        return None
    value = data.get("id") if isinstance(data, dict) else None
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
