"""The Cloud Run example: an app, its tasks, and ``application``, the WSGI app the queue's Pub/Sub push
subscription posts each message to (``gunicorn main:application``; ``asgi`` for uvicorn).

Producers import this module and call ``.delay()``. Broker and results come from CLOUDQ_BROKER /
CLOUDQ_RESULTS when set, else the example's prefix and collection in GOOGLE_CLOUD_PROJECT. With
CLOUDQ_PUSH_AUDIENCE set, a request must carry a Google-signed OIDC token for that audience (and, with
CLOUDQ_PUSH_SERVICE_ACCOUNT, issued to that account), else it gets 401/403 and nothing runs.
"""

from __future__ import annotations

import os
import unicodedata

from cloudq_gcp.push import make_asgi_app, make_wsgi_app

from cloudq import App, Reject
from cloudq.schedules import crontab

app = App(
    "cloud_run_example",
    broker=os.environ.get("CLOUDQ_BROKER", "pubsub://?prefix=example-"),
    results=os.environ.get("CLOUDQ_RESULTS", "firestore://example-results"),
)


@app.task()
def slugify(title: str) -> str:
    text = unicodedata.normalize("NFKD", title).encode("ascii", "ignore").decode()
    return "-".join("".join(c if c.isalnum() else " " for c in text.lower()).split())


@app.task(autoretry_for=(ConnectionError, TimeoutError), max_retries=3, retry_backoff=5, time_limit=60)
def notify(user_id: int, message: str) -> str:
    """A connection failure is retried (as in Celery, only the exceptions named in ``autoretry_for``):
    the push answer is 429 and Pub/Sub redelivers after its retry policy."""
    if user_id < 0:
        raise Reject(f"user {user_id} does not exist")  # final: dead-lettered with this reason
    return f"notified user {user_id}: {message}"


@app.periodic_task(crontab(minute="*/30"), name="refresh-feeds")
def refresh_feeds() -> str:
    """Every half hour: `cloudq deploy` prints the Cloud Scheduler job that publishes it to the queue's
    topic; locally, `cloudq beat -A main:app` sends it."""
    return "refreshed"


# the same variables `cloudq deploy` sets on push services (and cloudq_gcp.push_entry reads)
_auth = {
    "audience": os.environ.get("CLOUDQ_PUSH_AUDIENCE") or None,
    "service_account": os.environ.get("CLOUDQ_PUSH_SERVICE_ACCOUNT") or None,
}
application = make_wsgi_app(app, **_auth)
asgi = make_asgi_app(app, **_auth)
