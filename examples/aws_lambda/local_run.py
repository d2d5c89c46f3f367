"""Run the Lambda example on this machine: a moto server stands in for AWS, and this script plays the
Lambda service (receive a batch, invoke ``tasks.handler`` with an SQS event, delete what it did not
report as failed) until the queue is empty. No AWS account and no Docker needed.

    python examples/aws_lambda/local_run.py
"""

from __future__ import annotations

import importlib.util
import os
import sys
import tempfile
from pathlib import Path

from cloudq_aws.testing import FakeLambdaContext, MotoServer, SQSPoller

# module -> the package that provides it: what this script needs beyond README command 1
NEEDS = {"boto3": "boto3", "moto": "moto[server]", "flask": "moto[server]"}
INSTALL = "pip install -e '.[moto]' (from the checkout's root; elsewhere pip install 'cloudq[moto]')"


def missing_packages() -> list[str]:
    """The packages of NEEDS that are not installed, each named once."""
    return sorted({package for module, package in NEEDS.items() if importlib.util.find_spec(module) is None})


def main() -> None:
    missing = missing_packages()
    if missing:
        sys.exit(f"local_run.py needs {' and '.join(missing)}, not installed here: {INSTALL}")
    with tempfile.TemporaryDirectory() as workdir, MotoServer(workdir=Path(workdir)) as moto:
        os.environ.update(moto.environment())
        import tasks  # after the environment points boto3 at moto

        results = [tasks.thumbnail.delay(f"uploads/{i}.png", 128) for i in range(5)]
        results.append(tasks.charge.delay("order-1", 1999))
        results.append(tasks.charge.delay("order-2", 0))  # fails for good: dead-lettered with the reason
        results.append(tasks.nightly_report.delay("2026-11-24"))
        print(f"sent {len(results)} tasks; invoking the handler like the Lambda service would")

        sqs = tasks.app.broker.clients.get("sqs")  # type: ignore[attr-defined]
        poller = SQSPoller(sqs, tasks.app.broker.queue("default").url)  # type: ignore[attr-defined]
        while messages := poller.receive():
            invocation = poller.invoke(tasks.handler, messages, FakeLambdaContext(remaining_ms=60_000))
            failed = len(invocation.failed)
            print(f"batch of {len(messages)}: {len(messages) - failed} done, {failed} to retry")
        for result in results:
            try:
                print(f"{result.id[:8]}  {result.status:<8} {result.get(timeout=10)!r}")
            except Exception as exc:
                print(f"{result.id[:8]}  {result.status:<8} {type(exc).__name__}: {exc}")
        for letter in tasks.app.broker.dead_letters("default"):
            print(f"dead letter {letter.message_id[:8]}: {letter.reason}")


if __name__ == "__main__":
    main()
