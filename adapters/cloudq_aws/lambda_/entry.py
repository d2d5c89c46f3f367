"""The handler of the functions ``cloudq deploy`` creates: ``cloudq_aws.lambda_entry.handler``.

The app comes from ``CLOUDQ_APP`` (``module:attribute``), imported once per container during
Lambda's init phase; the handler itself is ``make_handler(app)`` (handler.py). No client is
created here: the app builds its broker and result store on the first invocation.
"""

from __future__ import annotations

import os

from cloudq.app import load_app
from cloudq.backends.urls import integer_in
from cloudq.errors import ConfigurationError

from .handler import LambdaHandler, make_handler

APP_ENV = "CLOUDQ_APP"
CONCURRENCY_ENV = "CLOUDQ_LAMBDA_CONCURRENCY"  # records run at once in one invocation
MAX_CONCURRENCY = 1024


def _handler() -> LambdaHandler:
    path = os.environ.get(APP_ENV)
    if not path:
        raise ConfigurationError(f"set {APP_ENV}=module:attribute on the function (cloudq deploy does)")
    concurrency = integer_in(1, MAX_CONCURRENCY)(CONCURRENCY_ENV, os.environ.get(CONCURRENCY_ENV) or "1")
    return make_handler(load_app(path), concurrency=concurrency)


handler = _handler()
