"""Run the Cloud Run example on this machine: Google's Pub/Sub and Firestore emulators stand in for
Google Cloud, the app is served on a loopback port, and the queue's subscription is switched to push
to it -- the same path a deployed service takes. Needs the Cloud SDK's emulators (``gcloud`` on PATH).

    python examples/cloud_run/local_run.py
"""

from __future__ import annotations

import importlib.util
import os
import sys
import tempfile
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any
from wsgiref.simple_server import WSGIRequestHandler, make_server

from cloudq_gcp.pubsub_admin import queue_paths
from cloudq_gcp.testing import EmulatorMissing, running

# the Google client libraries of the gcp extra (README command 1 installs cloudq alone)
GOOGLE_MODULES = ("google.cloud.pubsub_v1", "google.cloud.firestore", "google.auth")
INSTALL = "pip install -e '.[gcp]' (from the checkout's root; elsewhere pip install 'cloudq[gcp]')"


class Quiet(WSGIRequestHandler):
    def log_message(self, format: str, *args: object) -> None:
        pass


def serve(application: Any) -> tuple[str, Callable[[], None]]:
    """Serve a WSGI app on a free loopback port in a thread: (URL, stop)."""
    server = make_server("127.0.0.1", 0, application, handler_class=Quiet)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return f"http://127.0.0.1:{server.server_port}/", server.shutdown


def push_to(app: Any, endpoint: str, queue: str = "default") -> str:
    """Switch the queue's own subscription (created on first use, with its dead-letter policy) to push."""
    from google.cloud import pubsub_v1  # type: ignore[import-untyped]

    app.broker.stats(queue)  # creates the queue's topic and subscriptions
    subscription = queue_paths(app.broker.options, queue).subscription
    subscriber = pubsub_v1.SubscriberClient()
    subscriber.modify_push_config(request={"subscription": subscription, "push_config": {"push_endpoint": endpoint}})
    subscriber.close()
    return str(subscription)


def installed(module: str) -> bool:
    try:
        return importlib.util.find_spec(module) is not None
    except ModuleNotFoundError:  # a parent package (google, google.cloud) is missing
        return False


def main() -> None:
    missing = [module for module in GOOGLE_MODULES if not installed(module)]
    if missing:
        sys.exit(f"local_run.py needs the gcp extra ({', '.join(missing)} not installed): {INSTALL}")
    try:
        serve_example()
    except EmulatorMissing as exc:
        sys.exit(f"local_run.py needs Google's emulators: {exc}")


def serve_example() -> None:
    with (
        tempfile.TemporaryDirectory() as logs,
        running("pubsub", Path(logs)) as pubsub,
        running("firestore", Path(logs)) as firestore,
    ):
        os.environ.update(
            {pubsub.env_var: pubsub.env_value, firestore.env_var: firestore.env_value},
            GOOGLE_CLOUD_PROJECT="cloudq-example",
        )
        import main as example  # after the environment points the clients at the emulators

        endpoint, stop = serve(example.application)
        print(f"{push_to(example.app, endpoint)} now pushes to {endpoint}")
        results = [example.slugify.delay(t) for t in ("Hello, World!", "Crème brûlée recipes")]
        results.append(example.notify.delay(7, "your export is ready"))
        results.append(example.notify.delay(-1, "nobody home"))
        for result in results:
            try:
                print(f"{result.id[:8]}  {result.get(timeout=30)!r}")
            except Exception as exc:
                print(f"{result.id[:8]}  {type(exc).__name__}: {exc}")
        stop()
        example.app.close()


if __name__ == "__main__":
    main()
