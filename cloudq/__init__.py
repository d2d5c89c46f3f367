"""cloudq: Celery-style background tasks for serverless cloud infrastructure.

``import cloudq`` stays light (no pydantic, click or provider SDK): the machinery loads when an
App is created, and the canvas' composites (``chain``, ``group``, ``chord``, ``GroupResult``)
load on first use of their names here, so a worker or Lambda function that never builds one
does not pay for importing them.
"""

from importlib import import_module
from typing import TYPE_CHECKING, Any

from . import signals, states
from .app import App, current_app, shared_task
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

if TYPE_CHECKING:
    from .canvas.chain import chain
    from .canvas.chord import chord
    from .canvas.group import group
    from .canvas.results import GroupResult

__version__ = "0.1.0"

# public names imported on first use: name -> the module defining it
_LAZY = {
    "chain": ".canvas.chain",
    "chord": ".canvas.chord",
    "group": ".canvas.group",
    "GroupResult": ".canvas.results",
}


def __getattr__(name: str) -> Any:
    """The lazy public names (``_LAZY``), imported once, then kept as module attributes."""
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(import_module(module, __name__), name)
    globals()[name] = value
    return value


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
