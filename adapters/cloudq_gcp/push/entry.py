"""The WSGI app of Cloud Run services ``cloudq deploy`` tells you to create for push queues:
``gunicorn cloudq_gcp.push_entry:application`` (that stable name re-exports this module's app).

The app comes from ``CLOUDQ_APP`` (``module:attribute``); OIDC verification is on when
``CLOUDQ_PUSH_AUDIENCE`` is set (the push endpoint), for tokens of ``CLOUDQ_PUSH_SERVICE_ACCOUNT``.
"""

from __future__ import annotations

import os

from cloudq.app import load_app
from cloudq.errors import ConfigurationError

from .apps import PushWSGI, make_wsgi_app

APP_ENV = "CLOUDQ_APP"


def _application() -> PushWSGI:
    path = os.environ.get(APP_ENV)
    if not path:
        raise ConfigurationError(f"set {APP_ENV}=module:attribute on the service")
    return make_wsgi_app(
        load_app(path),
        audience=os.environ.get("CLOUDQ_PUSH_AUDIENCE") or None,
        service_account=os.environ.get("CLOUDQ_PUSH_SERVICE_ACCOUNT") or None,
    )


application = _application()
