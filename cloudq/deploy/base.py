"""The contract between ``cloudq deploy`` and a provider's deployer.

A deployer is built for one ``AppModel`` and turns it into resources, reads what exists, and
applies one step at a time; the core plans, renders, confirms and reports (runner.py).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Protocol, runtime_checkable

from .plan import Resource, Step

# tag / label values every provider sets on what cloudq creates (keys are the provider's spelling)
MANAGED_BY = "cloudq"


@runtime_checkable
class Deployer(Protocol):
    provider: str

    def problems(self) -> list[str]:
        """Why this configuration cannot work on this provider (each says what to change); [] when it can."""

    def desired(self) -> list[Resource]:
        """Every resource the app needs, in creation order (dependencies first)."""

    def live(self, desired: Sequence[Resource]) -> Mapping[str, Resource]:
        """The desired resources that exist, by key, read back in the same normal form."""

    def managed(self) -> list[Resource]:
        """Every existing resource tagged as this app's and stage's, in creation order."""

    def notes(self) -> list[str]:
        """What the user must still do by hand, as exact commands (services deploy cannot reach)."""

    def info(self) -> list[str]:
        """Facts about the deploy worth showing (e.g. where the function archive is and its size)."""

    def apply(self, step: Step) -> None:
        """Create, update or delete one resource; idempotent, so a rerun after a failure continues."""

    def emit(self, fmt: str) -> str:
        """The resources as an infrastructure-as-code document (e.g. ``cloudformation``)."""
