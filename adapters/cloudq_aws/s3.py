"""S3 as cloudq's claim-check object store: the SDK shim ``cloudq.claimcheck`` builds on.

``claim_checks()`` gives the ClaimCheckStore the SQS broker and DynamoDB result store use (keys,
pointers, the trust rule and when a missing bucket is created are the core's). Only what S3
itself does lives here: the calls, a missing bucket as BucketNotFound (a BucketMissing) and how
to create one, missing objects as ClaimCheckMissing.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

from cloudq.claimcheck import LEGACY_POINTER_KEY, ClaimCheckMissing, ClaimChecks, Pointer
from cloudq.errors import BrokerError, CloudqError
from cloudq.util.chunks import chunks

from .errors import error_code, translated
from .resources import bucket_definition
from .session import Clients

S3_MAX_DELETE = 1000  # keys per DeleteObjects call
_MISSING_KEY = {"NoSuchKey", "404", "NotFound"}


def pointer_text(pointer: Pointer, size: int) -> str:
    """The text an SQS body or DynamoDB item carries in place of the payload: the JSON form, which
    consumers of every cloudq version read (the core also reads ``s3://`` pointers)."""
    fields = {"bucket": pointer.bucket, "key": pointer.key, "size": size}
    return json.dumps({LEGACY_POINTER_KEY: fields}, separators=(",", ":"))


class S3Objects:
    """The objects of one bucket (an ``ObjectStore``); errors become ``kind`` with what to fix."""

    scheme = "s3"

    def __init__(self, clients: Clients, bucket: str, kind: type[CloudqError]) -> None:
        self.clients = clients
        self.bucket = bucket
        self.kind = kind

    def _call(self, action: str, resource: str) -> Any:
        return translated(f"s3:{action}", resource, self.clients.endpoint("s3"), self.kind)

    def put_object(self, key: str, data: bytes, content_type: str, timeout: float | None) -> None:
        """Upload (timeouts are the client's own); NoSuchBucket becomes BucketNotFound."""
        with self._call("PutObject", self.bucket):
            self.clients.get("s3").put_object(Bucket=self.bucket, Key=key, Body=data, ContentType=content_type)

    def ensure_bucket(self) -> None:
        s3 = self.clients.get("s3")
        with self._call("CreateBucket", self.bucket):
            try:
                s3.create_bucket(**bucket_definition(self.bucket, s3.meta.region_name))
            except Exception as exc:
                if error_code(exc) not in {"BucketAlreadyOwnedByYou", "BucketAlreadyExists"}:
                    raise

    def get_object(self, key: str) -> bytes:
        where = f"s3://{self.bucket}/{key}"
        with self._call("GetObject", where):
            try:
                response = self.clients.get("s3").get_object(Bucket=self.bucket, Key=key)
            except Exception as exc:
                code = error_code(exc)
                if code in _MISSING_KEY:
                    raise ClaimCheckMissing(f"payload object {where} does not exist") from None
                if code == "NoSuchBucket":  # so neither can the object: nobody could have written it
                    raise ClaimCheckMissing(
                        f"payload object {where} does not exist (no bucket {self.bucket!r})"
                    ) from None
                raise
            body: bytes = response["Body"].read()
            return body

    def delete_objects(self, keys: Sequence[str]) -> None:
        s3 = self.clients.get("s3")
        for chunk in chunks(keys, S3_MAX_DELETE):
            with self._call("DeleteObject", self.bucket):
                if len(chunk) == 1:
                    s3.delete_object(Bucket=self.bucket, Key=chunk[0])
                else:
                    s3.delete_objects(
                        Bucket=self.bucket, Delete={"Objects": [{"Key": k} for k in chunk], "Quiet": True}
                    )

    def close(self) -> None:
        """The clients belong to the backend, which closes them."""


def claim_checks(
    clients: Clients, bucket: str, prefix: str, create_missing: bool = True, kind: type[CloudqError] = BrokerError
) -> ClaimChecks:
    """The claim checks of a backend: objects under ``prefix`` in ``bucket`` (created on first use
    under ``create_missing``)."""
    return ClaimChecks(S3Objects(clients, bucket, kind), prefix, create_missing)
