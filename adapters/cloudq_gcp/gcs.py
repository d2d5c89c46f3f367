"""Claim-checks in Cloud Storage: the ``gs://`` shim over the core's claim-check store.

Bodies too large for Pub/Sub and results too large for Firestore live in a bucket and the message
or document carries only ``gs://BUCKET/KEY``. Pointer format, key naming and the trust rule are
the core's (``cloudq.claimcheck``), and so is the bucket rule: a missing bucket is created on first
use only under ``create_missing``; this module only speaks to the bucket. Objects are deleted
when their message is acked or their result forgotten; a bucket lifecycle rule catches the rest.
With ``STORAGE_EMULATOR_HOST`` set the official client talks to that emulator anonymously.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from cloudq.claimcheck import BucketMissing, ClaimCheckMissing, ClaimChecks, ForeignClaimCheck, Pointer, is_pointer

from .errors import STORAGE, translated

if TYPE_CHECKING:
    from google.cloud.storage import Bucket, Client  # type: ignore[import-untyped]

__all__ = ["GCS_MAX_OBJECT_BYTES", "ClaimCheckMissing", "ForeignClaimCheck", "GCSObjects", "GCSOffload"]

GCS_MAX_OBJECT_BYTES = 5 * 1024**4  # 5 TiB per object
SCHEME = "gs"


class GCSObjects:
    """The objects of one bucket (``cloudq.claimcheck.ObjectStore``); the client is made on first use."""

    scheme = SCHEME

    def __init__(self, bucket: str, project: str | None = None, timeout: float = 60.0) -> None:
        self.bucket = bucket
        self.project = project
        self.timeout = timeout
        self._bucket: Bucket | None = None
        self._client: Client | None = None
        self._lock = threading.Lock()

    def _get_bucket(self) -> Bucket:
        if self._bucket is None:
            with self._lock, translated(STORAGE, f"opening bucket {self.bucket}"):
                if self._bucket is None:
                    from google.cloud import storage  # type: ignore[import-untyped]

                    kwargs: dict[str, Any] = {"project": self.project}
                    if os.environ.get("STORAGE_EMULATOR_HOST"):
                        from google.auth.credentials import AnonymousCredentials

                        kwargs["credentials"] = AnonymousCredentials()  # type: ignore[no-untyped-call]
                    self._client = storage.Client(**kwargs)
                    self._bucket = self._client.bucket(self.bucket)
        return self._bucket

    def put_object(self, key: str, data: bytes, content_type: str, timeout: float | None) -> None:
        """Upload; a missing bucket raises BucketMissing."""
        from google.api_core.exceptions import NotFound

        with translated(STORAGE, f"uploading {len(data)} bytes to gs://{self.bucket}"):
            try:
                self._get_bucket().blob(key).upload_from_string(
                    data, content_type=content_type, timeout=timeout or self.timeout
                )
            except NotFound:
                raise BucketMissing(
                    f"Cloud Storage bucket {self.bucket!r} does not exist: create it with `cloudq deploy`, "
                    "allow creation on first use with create_missing=true, or change ?bucket="
                ) from None

    def ensure_bucket(self) -> None:
        from google.api_core.exceptions import Conflict

        with translated(STORAGE, f"creating bucket gs://{self.bucket}"):
            try:
                self._get_bucket().create(timeout=self.timeout)
            except Conflict:  # it exists (made meanwhile by another producer)
                pass

    def get_object(self, key: str) -> bytes:
        from google.api_core.exceptions import NotFound

        ref = f"gs://{self.bucket}/{key}"
        with translated(STORAGE, f"downloading {ref}"):
            try:
                data: bytes = self._get_bucket().blob(key).download_as_bytes(timeout=self.timeout)
            except NotFound:
                raise ClaimCheckMissing(
                    f"claim-check object {ref} is gone (deleted or expired by a lifecycle rule)"
                ) from None
        return data

    def delete_objects(self, keys: Sequence[str]) -> None:
        """One request per object (what the JSON API offers outside batches); missing is fine."""
        from google.api_core.exceptions import NotFound

        for key in keys:
            with translated(STORAGE, f"deleting gs://{self.bucket}/{key}"):
                try:
                    self._get_bucket().blob(key).delete(timeout=self.timeout)
                except NotFound:
                    pass

    def close(self) -> None:
        client, self._client, self._bucket = self._client, None, None
        if client is not None:
            client.close()


class GCSOffload:
    """The claim-checks of one bucket and prefix, as the ``gs://`` text Pub/Sub attributes and
    Firestore fields carry. Only ``gs://`` pointers this store owns are read or deleted."""

    def __init__(
        self,
        bucket: str,
        prefix: str,
        project: str | None = None,
        timeout: float = 60.0,
        create_missing: bool = False,
    ) -> None:
        self.checks = ClaimChecks(GCSObjects(bucket, project, timeout), prefix, create_missing)

    @property
    def prefix(self) -> str:
        return self.checks.prefix

    def put(self, data: bytes, content_type: str = "application/octet-stream", timeout: float | None = None) -> str:
        """Store ``data`` under a new key; returns its ``gs://`` reference. ``timeout``: what is
        left of a producer's deadline, instead of this store's own."""
        return str(self.checks.put(data, content_type=content_type, timeout=timeout))

    def get(self, ref: str) -> bytes:
        """ForeignClaimCheck outside this store (nothing requested), ClaimCheckMissing when gone."""
        return self.checks.get(self._own(ref))

    def delete(self, ref: str) -> None:
        """Best effort: a missing object is already what we want; a foreign one raises."""
        self.checks.delete([self._own(ref)])

    def _own(self, ref: str) -> Pointer:
        try:
            pointer = self.checks.parse(ref) if is_pointer(ref, SCHEME) else None  # never the legacy JSON form
        except ForeignClaimCheck:
            pointer = None
        if pointer is not None and self.checks.owns(pointer):
            return pointer
        raise ForeignClaimCheck(f"claim-check {ref[:200]!r} does not point into {self.checks.where()}")

    def close(self) -> None:
        self.checks.close()
