"""cloudq's error tree.

Adapters translate provider SDK errors into these at the boundary, so user code and the
core only ever catch ``CloudqError`` subclasses.
"""

from __future__ import annotations

from typing import Any


class CloudqError(Exception):
    """Base of every error cloudq raises on purpose."""


class ConfigurationError(CloudqError):
    """A setting is missing or has a value cloudq cannot use."""


class MissingExtra(ConfigurationError):
    """A URL scheme needs an optional dependency that is not installed."""


class BrokerError(CloudqError):
    """The broker refused or failed an operation."""


class BackendUnavailable(BrokerError):
    """The broker or result store cannot be reached."""


class QueueNotFound(BrokerError):
    """The queue does not exist and cloudq is not allowed to create it."""


class AccessDenied(BrokerError):
    """The credentials are valid but lack a permission."""


class CredentialsMissing(BrokerError):
    """No credentials were found for the provider."""


class MessageTooLarge(CloudqError):
    """A message is larger than the broker accepts and cannot be offloaded."""

    def __init__(self, size: int, limit: int, hint: str = "") -> None:
        self.size = size
        self.limit = limit
        text = f"message of {size} bytes exceeds the broker limit of {limit} bytes"
        super().__init__(f"{text}; {hint}" if hint else text)


class ResultStoreError(CloudqError):
    """The result store refused or failed an operation."""


class ResultTooLarge(ResultStoreError):
    """A result is larger than the store accepts and cannot be offloaded."""


class NotSerializable(CloudqError):
    """A value cannot be represented as JSON."""


class InvalidArguments(CloudqError, ValueError):
    """Task arguments do not bind to the signature or fail validation."""


class InvalidOptions(CloudqError, ValueError):
    """Send options (``eta``, ``countdown``, ``expires``, ...) that no worker could read."""


class InternalError(CloudqError):
    """cloudq's own machinery kept failing on a message (not the task): it is dead-lettered with
    the exception and its traceback once its deliveries are spent."""


class UnknownTask(CloudqError):
    """A message names a task this app does not define."""


class MalformedMessage(CloudqError):
    """A message body is not a valid cloudq envelope."""


class UnsupportedVersion(MalformedMessage):
    """The envelope was written by an incompatible cloudq version."""


class SignatureInvalid(MalformedMessage):
    """The message is unsigned or its signature does not match: it may be tampered."""


class TimeLimitExceeded(CloudqError):
    """The task ran longer than its ``time_limit``."""


class SoftTimeLimitExceeded(CloudqError):
    """Raised inside a task when its ``soft_time_limit`` passes: the task may catch it, clean up
    and return (its value is then the result); ``time_limit`` stays the hard limit."""


class WorkerLost(CloudqError):
    """The process running the task died before reporting an outcome."""


class MaxRetriesExceededError(CloudqError):
    """``task.retry()`` was called without ``exc=`` after the task's ``max_retries`` were spent."""


class TaskRevokedError(CloudqError):
    """The task was revoked (e.g. its ``expires`` passed before it ran): ``.get()`` raises this."""


class ChordError(CloudqError):
    """A chord's header task failed, so its body never runs (Celery's ChordError): the body's
    ``.get()`` raises this, naming the failed task."""


class TaskExpired(CloudqError):
    """The task's ``expires`` time passed before it could run."""


class ResultTimeout(CloudqError, TimeoutError):
    """``AsyncResult.get`` waited longer than its timeout."""


class TaskFailed(CloudqError):
    """A task failed with an exception that cannot be rebuilt locally.

    Carries the remote exception's type name, message and formatted traceback.
    """

    def __init__(self, exc_type: str, message: str, traceback: str | None = None) -> None:
        self.exc_type = exc_type
        self.message = message
        self.remote_traceback = traceback
        super().__init__(f"{exc_type}: {message}")


class Retry(CloudqError):
    """What ``task.retry(...)`` raises: run the task again after ``countdown`` seconds (or at
    ``eta``, epoch seconds), optionally with new ``args``/``kwargs``, on another ``queue``, with
    its own ``max_retries``. ``exc`` is the failure recorded for this attempt, and the one the task
    fails with when no retries are left."""

    def __init__(
        self,
        countdown: float | None = None,
        exc: BaseException | None = None,
        *,
        eta: float | None = None,
        max_retries: int | None = None,
        args: tuple[Any, ...] | list[Any] | None = None,
        kwargs: dict[str, Any] | None = None,
        queue: str | None = None,
    ) -> None:
        self.countdown = countdown
        self.exc = exc
        self.eta = eta
        self.max_retries = max_retries
        self.args_override = None if args is None else list(args)
        self.kwargs_override = kwargs
        self.queue = queue
        when = f" in {countdown}s" if countdown is not None else f" at {eta}" if eta is not None else ""
        super().__init__(f"retry requested{when}" + (f": {type(exc).__name__}: {exc}" if exc is not None else ""))


class Reject(CloudqError):
    """Raise from a task to dead-letter its message at once with ``reason``."""

    def __init__(self, reason: str) -> None:
        self.reason = reason
        super().__init__(reason)
