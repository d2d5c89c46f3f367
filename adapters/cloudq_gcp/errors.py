"""Google client errors -> cloudq errors, at the adapter boundary.

User code and the core only ever see ``cloudq.errors``; each message names the service, what
cloudq was doing, and where it was talking to (an emulator address names its variable). Google's
modules are imported only when an error needs translating: importing an adapter stays cheap.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

from cloudq.errors import (
    AccessDenied,
    BackendUnavailable,
    BrokerError,
    CloudqError,
    ConfigurationError,
    CredentialsMissing,
    QueueNotFound,
    ResultStoreError,
)


@dataclass(frozen=True, slots=True)
class Service:
    name: str
    emulator_env: str
    error: type[CloudqError]  # what other failures become

    def where(self) -> str:
        host = os.environ.get(self.emulator_env)
        return f"the {self.name} emulator at {host} ({self.emulator_env})" if host else f"Google Cloud {self.name}"


PUBSUB = Service("Pub/Sub", "PUBSUB_EMULATOR_HOST", BrokerError)
FIRESTORE = Service("Firestore", "FIRESTORE_EMULATOR_HOST", ResultStoreError)
STORAGE = Service("Cloud Storage", "STORAGE_EMULATOR_HOST", CloudqError)


def _detail(exc: BaseException) -> str:
    from google.api_core import exceptions as gexc

    if isinstance(exc, gexc.RetryError) and exc.cause is not None:
        return f"{exc.message} (last error: {_detail(exc.cause)})"
    if isinstance(exc, gexc.GoogleAPICallError):
        return str(exc.message)
    return str(exc) or type(exc).__name__


def translate(exc: BaseException, service: Service, action: str) -> CloudqError:
    """The cloudq error for a Google client error raised while ``action`` (e.g. "publishing to q")."""
    from google.api_core import exceptions as gexc
    from google.auth import exceptions as auth_exc

    where = service.where()
    unreachable = (gexc.RetryError, gexc.ServiceUnavailable, gexc.DeadlineExceeded, gexc.GatewayTimeout)
    if isinstance(exc, (*unreachable, auth_exc.TransportError)):
        hint = (
            "is the emulator running?"
            if os.environ.get(service.emulator_env)
            else (f"check the network, or set {service.emulator_env} to use the emulator")
        )
        return BackendUnavailable(f"cannot reach {where} while {action}: {_detail(exc)}; {hint}")
    if isinstance(exc, gexc.PermissionDenied):
        return AccessDenied(f"permission denied by {where} while {action}: {_detail(exc)}")
    if isinstance(exc, (gexc.Unauthenticated, auth_exc.DefaultCredentialsError, auth_exc.RefreshError)):
        return CredentialsMissing(
            f"no usable Google credentials for {where} while {action}: {_detail(exc)}; set "
            f"GOOGLE_APPLICATION_CREDENTIALS or run `gcloud auth application-default login` "
            f"(or set {service.emulator_env} to use the emulator)"
        )
    if isinstance(exc, gexc.NotFound) and service is PUBSUB:  # the broker recreates it where allowed
        return QueueNotFound(f"{where} has no such topic or subscription while {action}: {_detail(exc)}")
    if isinstance(exc, gexc.InvalidArgument):
        return ConfigurationError(f"{where} rejected a request while {action}: {_detail(exc)}")
    return service.error(f"{where} failed while {action}: {_detail(exc)}")


@contextmanager
def translated(service: Service, action: str, keep: tuple[type[Exception], ...] = ()) -> Iterator[None]:
    """Re-raise Google client errors from the block as cloudq errors (cause kept for debugging),
    except those in ``keep``, which the caller handles."""
    try:
        yield
    except CloudqError:
        raise
    except Exception as exc:
        from google.api_core.exceptions import GoogleAPIError
        from google.auth.exceptions import GoogleAuthError

        if isinstance(exc, keep) or not isinstance(exc, (GoogleAPIError, GoogleAuthError)):
            raise
        raise translate(exc, service, action) from exc
