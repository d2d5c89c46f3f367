"""Who may change state: a token holder, through a login form (a server-side session cookie) or
an ``Authorization: Bearer`` header, and for the cookie also a per-session CSRF token in the form.

The token itself is never put in a cookie, a page or a log: the cookie holds a random session id.
A Bearer request needs no CSRF token, since a browser never sends that header cross-site.
"""

from __future__ import annotations

import hmac
import secrets
import time
from collections import OrderedDict
from collections.abc import Callable, Mapping
from dataclasses import dataclass

COOKIE = "cloudq_dashboard_session"
CSRF_FIELD = "csrf_token"
MAX_SESSIONS = 1000  # the oldest is dropped past this: a login flood cannot grow memory
SESSION_S = 12 * 3600.0


@dataclass(frozen=True, slots=True)
class Session:
    csrf: str
    until: float


class Guard:
    """Decides whether a request may act. ``actions`` is False with no token or ``read_only``:
    then pages show no buttons and every POST is refused."""

    def __init__(self, token: str | None, read_only: bool, clock: Callable[[], float] = time.time) -> None:
        self._token = token.encode() if token else None
        self.read_only = read_only
        self.clock = clock
        self._sessions: OrderedDict[str, Session] = OrderedDict()

    @property
    def actions(self) -> bool:
        return self._token is not None and not self.read_only

    def _is_token(self, given: str) -> bool:
        return self._token is not None and hmac.compare_digest(given.encode(), self._token)

    def login(self, given: str) -> str | None:
        """A new session id when ``given`` is the token, else None."""
        if not self.actions or not self._is_token(given):
            return None
        session_id = secrets.token_urlsafe(32)
        self._sessions[session_id] = Session(secrets.token_urlsafe(32), self.clock() + SESSION_S)
        while len(self._sessions) > MAX_SESSIONS:
            self._sessions.popitem(last=False)
        return session_id

    def logout(self, cookies: Mapping[str, str]) -> None:
        self._sessions.pop(cookies.get(COOKIE, ""), None)

    def session(self, cookies: Mapping[str, str]) -> Session | None:
        found = self._sessions.get(cookies.get(COOKIE, ""))
        if found is None or found.until < self.clock():
            return None
        return found

    def bearer(self, headers: Mapping[str, str]) -> bool:
        scheme, _, value = headers.get("authorization", "").partition(" ")
        return scheme.lower() == "bearer" and self._is_token(value.strip())

    def may_act(self, cookies: Mapping[str, str], headers: Mapping[str, str], form_csrf: str) -> bool:
        """The token (Bearer header) or a live session whose CSRF token the form carries."""
        if not self.actions:
            return False
        if self.bearer(headers):
            return True
        found = self.session(cookies)
        return found is not None and hmac.compare_digest(form_csrf.encode(), found.csrf.encode())
