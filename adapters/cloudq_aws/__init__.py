"""cloudq on AWS: the SQS broker (``sqs://``), the DynamoDB result store (``dynamodb://TABLE``)
and S3 claim-check storage for payloads above the services' size limits.

Importing this package builds no client and touches no network (Lambda cold starts): boto3 is
imported when a backend makes its first call.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .dynamodb import DynamoDBResultStore
    from .sqs import SQSBroker

__all__ = ["DynamoDBResultStore", "SQSBroker"]


def __getattr__(name: str) -> Any:
    if name == "SQSBroker":
        from .sqs import SQSBroker

        return SQSBroker
    if name == "DynamoDBResultStore":
        from .dynamodb import DynamoDBResultStore

        return DynamoDBResultStore
    raise AttributeError(f"module 'cloudq_aws' has no attribute {name!r}")
