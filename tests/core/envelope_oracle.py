"""The envelope's pydantic models as cloudq had them before its hand-written core schema: the
oracle of the differential test (tests/core/test_envelope_decode.py), kept only here."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from cloudq.envelope import MAX_EPOCH_S, MAX_RETRIES, VERSION, encode_dict


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
        return encode_dict(self.model_dump(exclude_none=True), key)
