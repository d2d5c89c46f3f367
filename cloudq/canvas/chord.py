"""Chords: the header tasks' completion counted in the result store (owned by the group/chord work).

Until chords land this is the hook ``followups`` calls for every finishing task: it sends nothing."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from ..app import App
    from ..envelope import Envelope
    from .signature import Signature


def on_header_done(app: App, env: Envelope, result: Any) -> list[Signature]:
    """The chord body to send when ``env`` is a chord header task whose completion is the last."""
    return []
