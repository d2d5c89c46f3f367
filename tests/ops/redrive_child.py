"""A redrive run in its own process, for the kill tests: it stops for good at a chosen point
inside the redrive (prints ``stopped`` and sleeps), where the test SIGKILLs it.

    python redrive_child.py sqlite PATH QUEUE N   # stops in the Nth body rewrite: a batch's transaction open
    python redrive_child.py sqs PREFIX QUEUE N OPERATION  # stops right after the Nth OPERATION
                                                          # (ReceiveMessage, SendMessageBatch, ...) answered
"""

from __future__ import annotations

import sys
import time
from typing import Any

from cloudq.config import Settings
from cloudq.registry import open_broker


def stop_here() -> None:
    print("stopped", flush=True)
    while True:
        time.sleep(60)


def main(kind: str, where: str, queue: str, n: int, operation: str = "") -> None:
    calls = 0

    def count(*_: Any, **__: Any) -> None:
        nonlocal calls
        calls += 1
        if calls == n:
            stop_here()

    def rewrite(body: bytes) -> bytes:
        count()
        return body

    if kind == "sqlite":
        broker: Any = open_broker(f"sqlite:///{where}", Settings())
        broker.redrive(queue, rewrite=rewrite)
    else:
        import cloudq_aws.sqs

        # dead letters the killed run held come back after 2 s instead of 5 minutes, so the test sees them
        cloudq_aws.sqs.DEAD_LETTER_ACTION_LEASE_S = 2
        broker = open_broker(f"sqs://?prefix={where}", Settings())
        # botocore's documented event hooks: called once the service answered the request
        for producer in (False, True):
            broker.clients.get("sqs", producer=producer).meta.events.register(f"after-call.sqs.{operation}", count)
        broker.redrive(queue)
    print("finished", flush=True)


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4]), *sys.argv[5:])
