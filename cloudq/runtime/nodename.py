"""Celery's node names (``worker -n name@%h``): ``self.request.hostname`` and the worker's logs."""

from __future__ import annotations

import re
import socket

from ..errors import ConfigurationError


def node_name(pattern: str | None, host: str | None = None) -> str:
    """Celery's ``-n/--hostname``: ``name@host`` with ``%h`` (host name), ``%n`` (its first label),
    ``%d`` (its domain) and ``%%`` expanded; a pattern without ``@`` is the host part of
    ``cloudq@...`` (Celery: ``celery@...``)."""
    host = host or socket.gethostname()
    name, _, where = (pattern or "").partition("@") if "@" in (pattern or "") else ("", "", pattern or "")
    full = f"{name or 'cloudq'}@{where or '%h'}"
    short, _, domain = host.partition(".")
    table = {"%h": host, "%n": short, "%d": domain, "%%": "%"}
    unknown = sorted(set(re.findall("%[^hnd%]", full.replace("%%", ""))))
    if unknown:
        raise ConfigurationError(
            f"node name {pattern!r}: {', '.join(unknown)} cannot be expanded; cloudq expands %h, %n, %d and %% "
            "(Celery's %i/%I, the pool process index, name no process here: the worker has one node name)"
        )
    return re.sub("%[hnd%]", lambda m: table[m.group(0)], full)
