"""The core's claim-check bucket rule on S3 (moto): a missing bucket is created on first use only
under create_missing; without it (deployed runtimes) sending says what to fix and creates nothing."""

from __future__ import annotations

import pytest
from cloudq_aws.errors import BucketNotFound
from cloudq_aws.sqs import SQSBroker
from cloudq_aws.testing import MotoServer

from cloudq.claimcheck import BucketMissing
from cloudq.errors import ConfigurationError


def buckets(broker: SQSBroker) -> set[str]:
    return {b["Name"] for b in broker.clients.get("s3").list_buckets()["Buckets"]}


def test_a_missing_bucket_is_created_once_on_first_use_under_create_missing(
    aws: MotoServer, prefix: str, bucket: str
) -> None:
    broker = SQSBroker(prefix=prefix, bucket=bucket, create_missing=True)
    assert broker.claims is not None and bucket not in buckets(broker)
    with aws.count_requests() as calls:
        first = broker.claims.put(b"first")
        second = broker.claims.put(b"second")
    assert bucket in buckets(broker)
    assert [broker.claims.get(p) for p in (first, second)] == [b"first", b"second"]
    assert calls.of("s3") == {"PUT": 4}  # PutObject (NoSuchBucket), CreateBucket, PutObject, PutObject
    broker.close()


def test_without_create_missing_a_missing_bucket_is_a_configuration_error_naming_the_fix(
    aws: MotoServer, prefix: str, bucket: str
) -> None:
    broker = SQSBroker(prefix=prefix, bucket=bucket, create_missing=False)
    assert broker.claims is not None
    with pytest.raises(BucketMissing, match="cloudq deploy") as info:
        broker.claims.put(b"payload")
    assert isinstance(info.value, BucketNotFound) and isinstance(info.value, ConfigurationError)
    assert bucket not in buckets(broker)
    broker.close()
