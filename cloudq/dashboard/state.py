"""What every request of one dashboard shares: the app, its cached backend reads, the guard."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from starlette.templating import Jinja2Templates

from .auth import Guard
from .data import Backends

if TYPE_CHECKING:
    from ..app import App


@dataclass(frozen=True, slots=True)
class Dashboard:
    app: App
    backends: Backends
    guard: Guard
    templates: Jinja2Templates
