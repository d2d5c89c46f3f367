"""Claim-check storage in S3 for payloads above a service's size limit.

The queue (or results table) holds a small JSON pointer; the payload lives in the bucket. The
SQS broker deletes the object when the message is acknowledged, never on nack or dead-letter, so
a message that is retried or inspected later still finds its payload.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from cloudq.errors import BrokerError, CloudqError

from .errors import error_code, translated
from .resources import bucket_definition
from .session import Clients

POINTER_KEY = "cloudq_claim_check"
S3_MAX_DELETE = 1000  # keys per DeleteObjects call
_MISSING_KEY = {"NoSuchKey", "404", "NotFound"}


class ClaimCheckMissing(BrokerError):
    """The object a pointer names is gone (already processed, or deleted by a lifecycle rule)."""


@dataclass(frozen=True, slots=True)
class S3Ref:
    bucket: str
    key: str

    def pointer(self, size: int) -> str:
        """The JSON text stored in place of the payload."""
        return json.dumps({POINTER_KEY: {"bucket": self.bucket, "key": self.key, "size": size}}, separators=(",", ":"))

    @classmethod
    def from_pointer(cls, text: str) -> S3Ref:
        try:
            data = json.loads(text)[POINTER_KEY]
            return cls(str(data["bucket"]), str(data["key"]))
        except (ValueError, KeyError, TypeError):
            raise BrokerError(f"message marked as a claim check has no valid pointer: {text[:200]!r}") from None

    def __str__(self) -> str:
        return f"s3://{self.bucket}/{self.key}"


class ClaimCheckStore:
    """Puts, gets and deletes payload objects under ``prefix`` in one bucket."""

    def __init__(
        self,
        clients: Clients,
        bucket: str,
        prefix: str = "cloudq/",
        create_missing: bool = True,
        kind: type[CloudqError] = BrokerError,
    ) -> None:
        self.clients = clients
        self.bucket = bucket
        self.prefix = prefix
        self.create_missing = create_missing
        self.kind = kind
        self._bucket_checked = False

    def _s3(self) -> Any:
        return self.clients.get("s3")

    def owns(self, ref: S3Ref, folder: str = "") -> bool:
        """Whether ``ref`` lies under this store's bucket, prefix and ``folder``: only such objects
        are read or deleted, since a pointer can come from anyone who can write a message or item."""
        inside = f"{self.prefix}{folder}/" if folder else self.prefix
        return ref.bucket == self.bucket and ref.key.startswith(inside) and ref.key != inside

    def where(self, folder: str = "") -> str:
        """The ``s3://`` location ``owns`` accepts (for error messages)."""
        return f"s3://{self.bucket}/{self.prefix}{folder}/" if folder else f"s3://{self.bucket}/{self.prefix}"

    def put(self, data: bytes, folder: str, name: str | None = None) -> S3Ref:
        ref = S3Ref(self.bucket, f"{self.prefix}{folder}/{name or uuid.uuid4().hex}")
        with translated("s3:PutObject", self.bucket, self.clients.endpoint("s3"), self.kind):
            try:
                self._s3().put_object(Bucket=ref.bucket, Key=ref.key, Body=data)
            except Exception as exc:
                if error_code(exc) != "NoSuchBucket" or not self.create_missing or self._bucket_checked:
                    raise
                self._create_bucket()
                self._s3().put_object(Bucket=ref.bucket, Key=ref.key, Body=data)
        return ref

    def _create_bucket(self) -> None:
        s3 = self._s3()
        try:
            s3.create_bucket(**bucket_definition(self.bucket, s3.meta.region_name))
        except Exception as exc:
            if error_code(exc) not in {"BucketAlreadyOwnedByYou", "BucketAlreadyExists"}:
                raise
        self._bucket_checked = True

    def get(self, ref: S3Ref) -> bytes:
        with translated("s3:GetObject", str(ref), self.clients.endpoint("s3"), self.kind):
            try:
                response = self._s3().get_object(Bucket=ref.bucket, Key=ref.key)
            except Exception as exc:
                code = error_code(exc)
                if code in _MISSING_KEY:
                    raise ClaimCheckMissing(f"payload object {ref} does not exist") from None
                if code == "NoSuchBucket":  # so neither can the object: nobody could have written it
                    raise ClaimCheckMissing(f"payload object {ref} does not exist (no bucket {ref.bucket!r})") from None
                raise
            body: bytes = response["Body"].read()
            return body

    def delete(self, refs: Iterable[S3Ref]) -> None:
        by_bucket: dict[str, list[str]] = {}
        for ref in refs:
            by_bucket.setdefault(ref.bucket, []).append(ref.key)
        for bucket, keys in by_bucket.items():
            for start in range(0, len(keys), S3_MAX_DELETE):
                chunk = keys[start : start + S3_MAX_DELETE]
                with translated("s3:DeleteObject", bucket, self.clients.endpoint("s3"), self.kind):
                    if len(chunk) == 1:
                        self._s3().delete_object(Bucket=bucket, Key=chunk[0])
                    else:
                        self._s3().delete_objects(
                            Bucket=bucket, Delete={"Objects": [{"Key": k} for k in chunk], "Quiet": True}
                        )
