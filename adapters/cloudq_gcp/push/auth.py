"""Checking the OIDC token Pub/Sub signs each push request with (``Authorization: Bearer``).

Verification is google-auth's: ``google.oauth2.id_token.verify_token`` checks the signature against
Google's certificates, the expiry and the audience; then, as ``verify_oauth2_token`` does, the
issuer must be Google; then the token's ``email`` must be the push subscription's service account,
verified. The certificate URL is a parameter (Google's by default) so the same code runs against a
local certificate endpoint in tests. Certificates are cached for their ``max-age``: google-auth
would otherwise fetch them on every request.
"""

from __future__ import annotations

import re
import threading
import time
from collections.abc import Mapping
from typing import Any

from cloudq.errors import CloudqError, ConfigurationError

GOOGLE_CERTS_URL = "https://www.googleapis.com/oauth2/v1/certs"
GOOGLE_ISSUERS = ("accounts.google.com", "https://accounts.google.com")
CLOCK_SKEW_S = 10  # tolerated difference between Google's clock and ours
DEFAULT_CERTS_TTL_S = 300.0  # when the certificate response has no max-age
MAX_CERTS_TTL_S = 86_400.0
FETCH_TIMEOUT_S = 10.0
_MAX_AGE = re.compile(r"max-age=(\d+)")


class AuthFailed(CloudqError):
    """The request is not from the expected push subscription: 401 (no or bad token) or 403 (a
    valid token for someone else). Nothing runs."""

    def __init__(self, status: int, reason: str) -> None:
        super().__init__(reason)
        self.status = status
        self.reason = reason


class AuthUnavailable(CloudqError):
    """The certificates could not be fetched: not the caller's fault (503, Pub/Sub retries)."""


class CachedCertificates:
    """A google-auth transport that keeps successful GET responses for their ``max-age``."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._cache: dict[str, tuple[float, Any]] = {}
        self._transport: Any = None

    def __call__(self, url: str, method: str = "GET", body: Any = None, headers: Any = None, **kwargs: Any) -> Any:
        if method == "GET":
            with self._lock:
                cached = self._cache.get(url)
            if cached is not None and cached[0] > time.monotonic():
                return cached[1]
        kwargs.setdefault("timeout", FETCH_TIMEOUT_S)
        response = self._request()(url, method=method, body=body, headers=headers, **kwargs)
        if method == "GET" and response.status == 200:
            with self._lock:
                self._cache[url] = (time.monotonic() + _ttl(response.headers), response)
        return response

    def _request(self) -> Any:
        if self._transport is None:
            from google.auth.transport.requests import Request

            self._transport = Request()
        return self._transport


def _ttl(headers: Mapping[str, str] | None) -> float:
    found = _MAX_AGE.search(str((headers or {}).get("cache-control", "") or (headers or {}).get("Cache-Control", "")))
    return min(float(found.group(1)), MAX_CERTS_TTL_S) if found else DEFAULT_CERTS_TTL_S


class OIDCVerifier:
    """Accepts a request only with a Google-signed ID token for ``audience`` (the push
    subscription's audience, by default its endpoint URL) issued to ``service_account``."""

    def __init__(self, audience: str, service_account: str | None = None, certs_url: str = GOOGLE_CERTS_URL) -> None:
        if not audience:
            raise ConfigurationError("OIDC verification needs the audience the push subscription signs tokens for")
        self.audience = audience
        self.service_account = service_account
        self.certs_url = certs_url
        self._certificates = CachedCertificates()

    def check(self, authorization: str | None) -> Mapping[str, Any]:
        """The token's claims; AuthFailed / AuthUnavailable otherwise."""
        if not authorization:
            raise AuthFailed(401, "no Authorization header")
        scheme, _, token = authorization.strip().partition(" ")
        if scheme.lower() != "bearer" or not token.strip():
            raise AuthFailed(401, "Authorization is not a Bearer token")
        from google.auth import exceptions
        from google.oauth2 import id_token

        try:
            claims: Mapping[str, Any] = id_token.verify_token(
                token.strip(),
                self._certificates,  # type: ignore[arg-type]  # google-auth's transport protocol is __call__
                audience=self.audience,
                certs_url=self.certs_url,
                clock_skew_in_seconds=CLOCK_SKEW_S,
            )
        except exceptions.TransportError as exc:
            raise AuthUnavailable(f"could not fetch the token certificates from {self.certs_url}: {exc}") from None
        except Exception as exc:  # google-auth raises ValueError and friends for every bad token
            raise AuthFailed(401, f"token rejected: {exc}") from None
        if claims.get("iss") not in GOOGLE_ISSUERS:
            raise AuthFailed(401, f"token issuer {claims.get('iss')!r} is not Google")
        if self.service_account is not None:
            email = claims.get("email")
            if email != self.service_account:
                raise AuthFailed(403, f"token is for {email!r}, not the push service account {self.service_account!r}")
            if claims.get("email_verified") is not True:
                raise AuthFailed(403, f"token email {email!r} is not verified")
        return claims
