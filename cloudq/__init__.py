"""cloudq: Celery-style background tasks for serverless cloud infrastructure.

``import cloudq`` stays light (no pydantic, click or provider SDK): the machinery loads when an
App is created.
"""

from . import signals, states
from .app import App, current_app, shared_task
from .canvas.chain import chain
from .canvas.chord import chord
from .canvas.group import group
from .canvas.results import GroupResult
from .canvas.signature import Signature, signature
from .errors import (
    CloudqError,
    ConfigurationError,
    InvalidArguments,
    MaxRetriesExceededError,
    MessageTooLarge,
    Reject,
    ResultTimeout,
    Retry,
    SoftTimeLimitExceeded,
    TaskFailed,
    TaskRevokedError,
    TimeLimitExceeded,
    UnknownTask,
    WorkerLost,
)
from .results import AsyncResult, EagerResult
from .retry import RetryPolicy
from .task import Task

__version__ = "0.1.0"

__all__ = [
    "App",
    "AsyncResult",
    "CloudqError",
    "ConfigurationError",
    "EagerResult",
    "GroupResult",
    "InvalidArguments",
    "MaxRetriesExceededError",
    "MessageTooLarge",
    "Reject",
    "ResultTimeout",
    "Retry",
    "RetryPolicy",
    "Signature",
    "SoftTimeLimitExceeded",
    "Task",
    "TaskFailed",
    "TaskRevokedError",
    "TimeLimitExceeded",
    "UnknownTask",
    "WorkerLost",
    "chain",
    "chord",
    "current_app",
    "group",
    "shared_task",
    "signals",
    "signature",
    "states",
]
