"""Claim checks: a payload above a service's size limit is stored as an object, and the message or
record carries only a pointer to it.

Written once for every provider: the pointer format (``SCHEME://BUCKET/KEY``: ``s3://``,
``gs://``), its parsing, key naming and the trust rule. An adapter supplies only an
``ObjectStore``, a thin shim over its SDK for one bucket; ``ClaimChecks`` does the rest.

The trust rule: a pointer can come from anyone who can send a message or write a record, so a
store reads and deletes only objects under its own bucket and prefix (``owns``). Anything else
raises ``ForeignClaimCheck`` and is never fetched, which would otherwise let a forged message read
a stored result or delete another queue's bodies.

The bucket rule, the same on every provider: a missing bucket is created on first use only under
``create_missing`` (development and tests; deployed runtimes run with it off, and ``cloudq
deploy`` creates the bucket). Otherwise the shim's ``BucketMissing`` reaches the caller and says
what to fix.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Protocol, runtime_checkable

from .errors import CloudqError, ConfigurationError

LEGACY_POINTER_KEY = "cloudq_claim_check"  # the JSON pointer SQS and DynamoDB wrote before s3:// URLs


class ClaimCheckMissing(CloudqError):
    """The object a pointer names is gone (already processed, or deleted by a lifecycle rule)."""


class ForeignClaimCheck(ClaimCheckMissing):
    """A pointer that is not a pointer, or lies outside this store's bucket and prefix: never read
    or deleted."""


class BucketMissing(ConfigurationError):
    """The claim-check bucket does not exist (raised by a shim's ``put_object``)."""


@dataclass(frozen=True, slots=True)
class Pointer:
    """Where a claim-checked payload lives; ``str()`` is the text carried in its place."""

    scheme: str  # "s3", "gs", ...
    bucket: str
    key: str

    def __str__(self) -> str:
        return f"{self.scheme}://{self.bucket}/{self.key}"


def is_pointer(text: object, scheme: str) -> bool:
    """Whether ``text`` looks like a ``scheme://`` pointer (cheap: no parsing)."""
    return isinstance(text, str) and text.startswith(f"{scheme}://")


def parse_pointer(text: str, scheme: str) -> Pointer:
    """The pointer ``text`` holds: ``scheme://BUCKET/KEY``, or the legacy JSON object
    ``{"cloudq_claim_check": {"bucket": ..., "key": ...}}`` (read so messages and records written
    by earlier versions still resolve). Anything else raises ForeignClaimCheck."""
    if is_pointer(text, scheme):
        bucket, _, key = text[len(scheme) + 3 :].partition("/")
        if bucket and key:
            return Pointer(scheme, bucket, key)
    elif text.startswith("{"):
        try:
            data = json.loads(text)[LEGACY_POINTER_KEY]
            bucket, key = data["bucket"], data["key"]
        except (ValueError, KeyError, TypeError):
            pass
        else:
            if isinstance(bucket, str) and isinstance(key, str) and bucket and key:
                return Pointer(scheme, bucket, key)
    raise ForeignClaimCheck(f"not a {scheme}:// claim-check pointer: {text[:200]!r}")


@runtime_checkable
class ObjectStore(Protocol):
    """The SDK shim an adapter writes: the objects of one bucket. It knows nothing of pointers,
    prefixes or trust; errors other than a missing object are translated into cloudq errors."""

    scheme: str
    bucket: str

    def put_object(self, key: str, data: bytes, content_type: str, timeout: float | None) -> None:
        """Write the object; ``timeout`` (None: the shim's own) is what is left of a deadline.
        Raises BucketMissing (with what to fix) when the bucket does not exist."""

    def get_object(self, key: str) -> bytes:
        """The object's bytes; raises ClaimCheckMissing when it (or its bucket) does not exist."""

    def delete_objects(self, keys: Sequence[str]) -> None:
        """Delete the objects (batched as the service allows); a missing one is not an error."""

    def close(self) -> None:
        """Release the client. Idempotent."""


@runtime_checkable
class BucketCreator(Protocol):
    """An ObjectStore that can create its bucket (used under ``create_missing`` only)."""

    def ensure_bucket(self) -> None:
        """Create the bucket; one that exists already is fine."""


@runtime_checkable
class ClaimCheckStore(Protocol):
    """What brokers and result stores use: payloads in, pointers out, and back. ``folder``
    narrows a store's prefix (a result store keeps each task's objects under its task id)."""

    def owns(self, pointer: Pointer, folder: str = "") -> bool:
        """Whether ``pointer`` lies strictly under this store's bucket, prefix and ``folder``."""

    def where(self, folder: str = "") -> str:
        """The location ``owns`` accepts, as a URL (for error messages)."""

    def parse(self, text: str) -> Pointer:
        """``parse_pointer`` with this store's scheme."""

    def put(
        self,
        data: bytes,
        folder: str = "",
        content_type: str = "application/octet-stream",
        timeout: float | None = None,
    ) -> Pointer:
        """Store ``data`` under a new key inside ``where(folder)``; returns its pointer."""

    def get(self, pointer: Pointer, folder: str = "") -> bytes:
        """The payload; ForeignClaimCheck when not ``owns(pointer, folder)`` (nothing is
        requested), ClaimCheckMissing when the object is gone."""

    def delete(self, pointers: Iterable[Pointer], folder: str = "") -> list[Pointer]:
        """Delete the payloads this store owns; returns the foreign pointers it left alone."""

    def close(self) -> None:
        """Release the client. Idempotent."""


class ClaimChecks:
    """The ClaimCheckStore of every adapter: keys ``PREFIX[FOLDER/]UUID`` in ``objects``' bucket.
    With ``create_missing``, a missing bucket is created once (BucketCreator shims) and the put
    retried; a bucket that goes missing again raises, as without it."""

    def __init__(self, objects: ObjectStore, prefix: str, create_missing: bool = False) -> None:
        self.objects = objects
        self.prefix = prefix
        self.create_missing = create_missing
        self._created = False

    def _inside(self, folder: str) -> str:
        return f"{self.prefix}{folder}/" if folder else self.prefix

    def owns(self, pointer: Pointer, folder: str = "") -> bool:
        inside = self._inside(folder)
        return (
            pointer.scheme == self.objects.scheme
            and pointer.bucket == self.objects.bucket
            and pointer.key.startswith(inside)
            and pointer.key != inside
        )

    def where(self, folder: str = "") -> str:
        return f"{self.objects.scheme}://{self.objects.bucket}/{self._inside(folder)}"

    def parse(self, text: str) -> Pointer:
        return parse_pointer(text, self.objects.scheme)

    def put(
        self,
        data: bytes,
        folder: str = "",
        content_type: str = "application/octet-stream",
        timeout: float | None = None,
    ) -> Pointer:
        pointer = Pointer(self.objects.scheme, self.objects.bucket, f"{self._inside(folder)}{uuid.uuid4().hex}")
        try:
            self.objects.put_object(pointer.key, data, content_type, timeout)
        except BucketMissing:
            if not self.create_missing or self._created or not isinstance(self.objects, BucketCreator):
                raise
            self.objects.ensure_bucket()
            self._created = True
            self.objects.put_object(pointer.key, data, content_type, timeout)
        return pointer

    def get(self, pointer: Pointer, folder: str = "") -> bytes:
        if not self.owns(pointer, folder):
            raise ForeignClaimCheck(f"claim-check {pointer} does not point into {self.where(folder)}")
        return self.objects.get_object(pointer.key)

    def delete(self, pointers: Iterable[Pointer], folder: str = "") -> list[Pointer]:
        keys: list[str] = []
        foreign: list[Pointer] = []
        for pointer in pointers:
            if self.owns(pointer, folder):
                keys.append(pointer.key)
            else:
                foreign.append(pointer)
        if keys:
            self.objects.delete_objects(keys)
        return foreign

    def close(self) -> None:
        self.objects.close()
