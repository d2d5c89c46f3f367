"""The contract between ``cloudq deploy`` and a provider's deployer.

A deployer is built for one ``AppModel`` and turns it into resources, reads what exists, and
applies one step at a time; the core plans, renders, confirms and reports (runner.py).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Protocol, runtime_checkable

from .plan import Resource, Step

MANAGED_BY = "cloudq"


def ownership_marks(app: str, stage: str, own: Mapping[str, str], separator: str) -> dict[str, str]:
    """Tags (AWS, ``separator=":"``) or labels (Google, ``"-"``) on everything cloudq creates: the
    user's own, then who owns it -- what destroy and the stage guard go by."""
    marks = {"app": app, "stage": stage, "managed-by": MANAGED_BY}
    return {**own, **{f"cloudq{separator}{key}": value for key, value in marks.items()}}


def owner_of(marks: Mapping[str, str], separator: str) -> tuple[str, str] | None:
    """(app, stage) when the marks say cloudq created it, else None."""
    if marks.get(f"cloudq{separator}managed-by") != MANAGED_BY or f"cloudq{separator}app" not in marks:
        return None
    return marks[f"cloudq{separator}app"], marks.get(f"cloudq{separator}stage", "")


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
