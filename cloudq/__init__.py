"""cloudq: Celery-style background tasks for serverless cloud infrastructure.

``import cloudq`` stays light (no pydantic, click or provider SDK): the machinery loads when an
App is created.
"""

from . import states
from .app import App, current_app
from .errors import (
    CloudqError,
    ConfigurationError,
    InvalidArguments,
    MessageTooLarge,
    Reject,
    ResultTimeout,
    Retry,
    TaskFailed,
    TimeLimitExceeded,
    UnknownTask,
)
from .results import AsyncResult
from .retry import RetryPolicy
from .task import Signature, Task

__version__ = "0.1.0"

__all__ = [
    "App",
    "AsyncResult",
    "CloudqError",
    "ConfigurationError",
    "InvalidArguments",
    "MessageTooLarge",
    "Reject",
    "ResultTimeout",
    "Retry",
    "RetryPolicy",
    "Signature",
    "Task",
    "TaskFailed",
    "TimeLimitExceeded",
    "UnknownTask",
    "current_app",
    "states",
]
