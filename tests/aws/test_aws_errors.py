"""Translation of botocore errors into cloudq errors (each names what to fix)."""

from __future__ import annotations

import pytest
from botocore.exceptions import ClientError, EndpointConnectionError, NoCredentialsError, NoRegionError
from cloudq_aws.errors import BucketNotFound, TableNotFound, translate

from cloudq.errors import (
    AccessDenied,
    BackendUnavailable,
    BrokerError,
    ConfigurationError,
    CredentialsMissing,
    QueueNotFound,
    ResultStoreError,
)


def client_error(code: str, status: int = 400, message: str = "details") -> ClientError:
    return ClientError(
        {"Error": {"Code": code, "Message": message}, "ResponseMetadata": {"HTTPStatusCode": status}}, "Op"
    )


@pytest.mark.parametrize(
    ("exc", "action", "expected", "mentions"),
    [
        (client_error("AccessDenied", 403), "sqs:SendMessage", AccessDenied, "sqs:SendMessage"),
        (client_error("AccessDeniedException", 400), "dynamodb:PutItem", AccessDenied, "dynamodb:PutItem"),
        (client_error("AWS.SimpleQueueService.NonExistentQueue"), "sqs:GetQueueUrl", QueueNotFound, "cloudq deploy"),
        (client_error("ResourceNotFoundException"), "dynamodb:GetItem", TableNotFound, "cloudq deploy"),
        (client_error("NoSuchBucket", 404), "s3:PutObject", BucketNotFound, "cloudq deploy"),
        (client_error("InvalidClientTokenId", 403), "sqs:ReceiveMessage", CredentialsMissing, "AWS_ACCESS_KEY_ID"),
        (client_error("ThrottlingException"), "sqs:SendMessage", BackendUnavailable, "after retries"),
        (client_error("InternalError", 500), "sqs:SendMessage", BackendUnavailable, "after retries"),
        (client_error("InvalidParameterValue"), "sqs:SendMessage", BrokerError, "InvalidParameterValue"),
        (NoCredentialsError(), "sqs:SendMessage", CredentialsMissing, "AWS_PROFILE"),
        (NoRegionError(), "sqs:client", ConfigurationError, "AWS_DEFAULT_REGION"),
        (EndpointConnectionError(endpoint_url="http://x:1"), "sqs:SendMessage", BackendUnavailable, "http://x:1"),
    ],
)
def test_botocore_errors_become_cloudq_errors(
    exc: Exception, action: str, expected: type[Exception], mentions: str
) -> None:
    mapped = translate(exc, action, "resource-name", "http://x:1")
    assert type(mapped) is expected
    assert mentions in str(mapped)


def test_result_store_errors_keep_their_kind_and_others_pass_through() -> None:
    mapped = translate(client_error("ValidationException"), "dynamodb:PutItem", "t", None, ResultStoreError)
    assert type(mapped) is ResultStoreError
    assert translate(ValueError("not botocore"), "x", "y", None) is None
