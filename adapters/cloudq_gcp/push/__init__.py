"""Pub/Sub push for Cloud Run and Cloud Functions: ``handler`` turns one push request into one
executor run and an HTTP answer, ``apps`` serves it (WSGI, ASGI, CloudEvents), ``envelope`` reads
the request body, ``auth`` checks its OIDC token, ``entry`` is the app gunicorn loads."""

from .apps import PushASGI, PushRetry, PushWSGI, make_asgi_app, make_cloud_event_function, make_wsgi_app
from .envelope import MalformedPush
from .handler import PushHandler, PushResponse

__all__ = [
    "MalformedPush",
    "PushASGI",
    "PushHandler",
    "PushResponse",
    "PushRetry",
    "PushWSGI",
    "make_asgi_app",
    "make_cloud_event_function",
    "make_wsgi_app",
]
