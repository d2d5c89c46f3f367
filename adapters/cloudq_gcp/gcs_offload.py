"""Claim-check in Cloud Storage: bodies too large for Pub/Sub or Firestore live in a bucket and the
message or document carries only ``gs://BUCKET/KEY``.

Objects are deleted when their message is acked or their result forgotten; a bucket lifecycle rule
(e.g. delete after the results' retention) catches the rest. With ``STORAGE_EMULATOR_HOST`` set the
official client talks to that emulator anonymously.
"""

from __future__ import annotations

import os
import threading
import uuid
from typing import TYPE_CHECKING, Any

from cloudq.errors import CloudqError, ConfigurationError

from .errors import STORAGE, translated

if TYPE_CHECKING:
    from google.cloud.storage import Bucket, Client  # type: ignore[import-untyped]

GCS_MAX_OBJECT_BYTES = 5 * 1024**4  # 5 TiB per object
SCHEME = "gs://"


class ClaimCheckMissing(CloudqError):
    """The object a claim-check points at is gone (deleted, or removed by a lifecycle rule)."""


class ForeignClaimCheck(ClaimCheckMissing):
    """A pointer outside this offload's bucket and prefix: never read or deleted, since anyone who
    can publish could otherwise name any object in the bucket (a stored result, another queue's body)."""


def is_ref(value: object) -> bool:
    return isinstance(value, str) and value.startswith(SCHEME)


class GCSOffload:
    def __init__(self, bucket: str, prefix: str, project: str | None = None, timeout: float = 60.0) -> None:
        self.bucket_name = bucket
        self.prefix = prefix
        self.project = project
        self.timeout = timeout
        self._bucket: Bucket | None = None
        self._client: Client | None = None
        self._lock = threading.Lock()

    def _get_bucket(self) -> Bucket:
        if self._bucket is None:
            with self._lock, translated(STORAGE, f"opening bucket {self.bucket_name}"):
                if self._bucket is None:
                    from google.cloud import storage  # type: ignore[import-untyped]

                    kwargs: dict[str, Any] = {"project": self.project}
                    if os.environ.get("STORAGE_EMULATOR_HOST"):
                        from google.auth.credentials import AnonymousCredentials

                        kwargs["credentials"] = AnonymousCredentials()  # type: ignore[no-untyped-call]
                    self._client = storage.Client(**kwargs)
                    self._bucket = self._client.bucket(self.bucket_name)
        return self._bucket

    def put(self, data: bytes, content_type: str = "application/octet-stream", timeout: float | None = None) -> str:
        """Store ``data`` under a new key; returns its ``gs://`` reference. ``timeout``: what is
        left of a producer's deadline, instead of this offload's own."""
        from google.api_core.exceptions import NotFound

        key = f"{self.prefix}{uuid.uuid4().hex}"
        with translated(STORAGE, f"uploading {len(data)} bytes to gs://{self.bucket_name}"):
            try:
                self._get_bucket().blob(key).upload_from_string(
                    data, content_type=content_type, timeout=timeout or self.timeout
                )
            except NotFound:
                raise ConfigurationError(
                    f"Cloud Storage bucket {self.bucket_name!r} does not exist: create it (cloudq deploy does) "
                    "or change ?bucket="
                ) from None
        return f"{SCHEME}{self.bucket_name}/{key}"

    def get(self, ref: str) -> bytes:
        from google.api_core.exceptions import NotFound

        _, key = self._split(ref)
        with translated(STORAGE, f"downloading {ref}"):
            try:
                data: bytes = self._get_bucket().blob(key).download_as_bytes(timeout=self.timeout)
            except NotFound:
                raise ClaimCheckMissing(
                    f"claim-check object {ref} is gone (deleted or expired by a lifecycle rule)"
                ) from None
        return data

    def delete(self, ref: str) -> None:
        """Best effort: a missing object is already what we want."""
        from google.api_core.exceptions import NotFound

        _, key = self._split(ref)
        with translated(STORAGE, f"deleting {ref}"):
            try:
                self._get_bucket().blob(key).delete(timeout=self.timeout)
            except NotFound:
                pass

    def _split(self, ref: str) -> tuple[str, str]:
        bucket, _, key = ref.removeprefix(SCHEME).partition("/")
        if not is_ref(ref) or bucket != self.bucket_name or not key.startswith(self.prefix) or key == self.prefix:
            raise ForeignClaimCheck(
                f"claim-check {ref[:200]!r} does not point into gs://{self.bucket_name}/{self.prefix}"
            )
        return bucket, key

    def close(self) -> None:
        client, self._client, self._bucket = self._client, None, None
        if client is not None:
            client.close()
