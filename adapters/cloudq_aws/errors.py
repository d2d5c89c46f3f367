"""botocore errors -> cloudq errors, at the adapter boundary.

Each translated error says what to fix: the deploy command for a missing resource, the IAM action
for a refused call, the environment variables for missing credentials, the endpoint for an
unreachable service. botocore is imported only when an error is being translated.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager

from cloudq.claimcheck import BucketMissing
from cloudq.errors import (
    AccessDenied,
    BackendUnavailable,
    BrokerError,
    CloudqError,
    ConfigurationError,
    CredentialsMissing,
    QueueNotFound,
    ResultStoreError,
)

CREDENTIALS_HINT = (
    "set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY (or AWS_PROFILE, or run where an IAM role is attached)"
)
DEPLOY_HINT = "create it with `cloudq deploy`, or allow creation on first use with create_missing=true"

_MISSING_QUEUE = {"AWS.SimpleQueueService.NonExistentQueue", "QueueDoesNotExist"}
_DENIED = {"AccessDenied", "AccessDeniedException", "UnauthorizedOperation", "AuthorizationError"}
_BAD_CREDENTIALS = {
    "InvalidClientTokenId",
    "UnrecognizedClientException",
    "SignatureDoesNotMatch",
    "InvalidAccessKeyId",
    "ExpiredToken",
    "ExpiredTokenException",
    "InvalidSecurity",
}
_BUSY = {
    "Throttling",
    "ThrottlingException",
    "RequestThrottled",
    "ProvisionedThroughputExceededException",
    "RequestLimitExceeded",
    "ServiceUnavailable",
    "InternalError",
    "InternalFailure",
    "SlowDown",
}


class TableNotFound(ResultStoreError):
    """The DynamoDB results table does not exist and cloudq may not create it."""


class BucketNotFound(BucketMissing):
    """The S3 bucket configured for large payloads does not exist (the core's claim-check rule
    creates it on first use under create_missing)."""


class FifoDelayUnsupported(BrokerError, ValueError):
    """SQS FIFO queues cannot delay single messages."""


def configured_endpoint(service: str, explicit: str | None = None) -> str | None:
    """The endpoint a ``service`` client is configured to use, with where that came from (the
    option, else botocore's ``AWS_ENDPOINT_URL_<SERVICE>`` / ``AWS_ENDPOINT_URL``), or None for
    AWS's own endpoint. For messages about calls made before (or without) a client."""
    if explicit:
        return explicit
    names = (f"AWS_ENDPOINT_URL_{service.upper()}", "AWS_ENDPOINT_URL") if service else ("AWS_ENDPOINT_URL",)
    for name in names:
        value = os.environ.get(name, "").strip()
        if value:
            return f"{value} ({name})"
    return None


def _where(endpoint: str | None, action: str) -> tuple[str, bool]:
    """Where a call went (for messages), and whether that is a configured (non-AWS) endpoint."""
    service = action.partition(":")[0] if ":" in action else ""
    custom = configured_endpoint(service)
    if endpoint is None or endpoint.startswith("the default"):
        endpoint = custom or endpoint
    local = bool(custom) or bool(endpoint and "amazonaws.com" not in endpoint)
    return endpoint or f"the default {service or 'AWS'} endpoint", local


def error_code(exc: BaseException) -> str:
    response = getattr(exc, "response", None)
    if isinstance(response, dict):
        return str(response.get("Error", {}).get("Code", ""))
    return ""


def translate(
    exc: BaseException, action: str, resource: str, endpoint: str | None, kind: type[CloudqError] = BrokerError
) -> CloudqError | None:
    """The cloudq error for a botocore error, or None when ``exc`` is not one."""
    if isinstance(exc, CloudqError):
        return None
    try:
        from botocore import exceptions as bx  # type: ignore[import-untyped]
    except ImportError:  # pragma: no cover - the aws extra is installed whenever this runs
        return None
    where, local = _where(endpoint, action)
    if isinstance(exc, (bx.NoCredentialsError, bx.PartialCredentialsError, bx.CredentialRetrievalError)):
        return CredentialsMissing(f"no usable AWS credentials for {action} on {resource}: {CREDENTIALS_HINT}")
    if isinstance(exc, bx.NoRegionError):
        return ConfigurationError(
            f"no AWS region configured for {resource}: set AWS_DEFAULT_REGION (or AWS_REGION), or add ?region=... to the URL"
        )
    if isinstance(exc, (bx.EndpointConnectionError, bx.ConnectionError, bx.ConnectTimeoutError, bx.ReadTimeoutError)):
        hint = (
            "is the service running there? (endpoint_url option / AWS_ENDPOINT_URL)"
            if local
            else "check the network and the region, or set AWS_ENDPOINT_URL to use a local endpoint"
        )
        return BackendUnavailable(f"cannot reach {where} for {action} on {resource}: {exc}; {hint}")
    if not isinstance(exc, bx.ClientError):
        if isinstance(exc, bx.BotoCoreError):
            return kind(f"{action} on {resource} failed: {exc}")
        return None
    code = error_code(exc)
    message = exc.response.get("Error", {}).get("Message", "") or str(exc)
    if code in _MISSING_QUEUE:
        return QueueNotFound(f"SQS queue {resource!r} does not exist at {where}: {DEPLOY_HINT}")
    if code in _DENIED:
        return AccessDenied(
            f"AWS refused {action} on {resource}: the credentials lack permission for {action} ({message})"
        )
    if code in _BAD_CREDENTIALS:
        return CredentialsMissing(
            f"AWS rejected the credentials for {action} on {resource} ({code}): {CREDENTIALS_HINT}"
        )
    if code == "ResourceNotFoundException" and action.startswith("dynamodb:"):
        return TableNotFound(f"DynamoDB table {resource!r} does not exist at {where}: {DEPLOY_HINT}")
    if code == "NoSuchBucket":
        return BucketNotFound(f"S3 bucket {resource!r} does not exist at {where}: {DEPLOY_HINT}")
    status = exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode", 0)
    if code in _BUSY or (isinstance(status, int) and status >= 500):
        return BackendUnavailable(f"{where} is unavailable for {action} on {resource} after retries: {code}: {message}")
    return kind(f"{action} on {resource} failed: {code}: {message}")


@contextmanager
def translated(
    action: str, resource: str, endpoint: str | None, kind: type[CloudqError] = BrokerError
) -> Iterator[None]:
    """Run a block of SDK calls; re-raise botocore errors as cloudq errors."""
    try:
        yield
    except Exception as exc:
        mapped = translate(exc, action, resource, endpoint, kind)
        if mapped is None:
            raise
        raise mapped from exc
