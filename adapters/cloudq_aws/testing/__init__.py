"""Test helpers for code on AWS: a local moto server (server.py), the Lambda service's side of an
SQS event source mapping (lambda_events.py: SQSPoller, FakeLambdaContext) and the pytest fixtures
every AWS test folder shares (fixtures.py: ``fixtures.register(config)`` from a conftest).
Importing this package needs neither moto, boto3 nor pytest; starting the server needs ``moto[server]``."""

from .lambda_events import FakeLambdaContext, Invocation, SQSPoller, lambda_record
from .server import MotoServer, RequestCounts, free_port, stop_process

__all__ = [
    "FakeLambdaContext",
    "Invocation",
    "MotoServer",
    "RequestCounts",
    "SQSPoller",
    "free_port",
    "lambda_record",
    "stop_process",
]
