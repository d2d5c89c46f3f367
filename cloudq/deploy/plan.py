"""Plan as data: desired resources, what exists, and the steps between them.

A deployer describes each resource as a ``Resource`` whose ``spec`` holds the attributes cloudq
manages, in one normal form for what it wants and what it reads back, so ``diff`` is a plain
comparison of JSON values. Attributes a service cannot change in place are ``create_only``: a
difference there is refused with a message instead of planned.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

from ..errors import ConfigurationError

Action = Literal["create", "update", "unchanged", "delete"]
ACTIONS: tuple[Action, ...] = ("create", "update", "unchanged", "delete")


class DeployRefused(ConfigurationError):
    """The configuration cannot work; nothing was created. One line per problem."""

    def __init__(self, problems: Sequence[str]) -> None:
        self.problems = list(problems)
        super().__init__("cannot deploy, nothing was changed:\n" + "\n".join(f"  - {p}" for p in self.problems))


def refuse_if(problems: Sequence[str]) -> None:
    if problems:
        raise DeployRefused(problems)


@dataclass(frozen=True, slots=True)
class Resource:
    kind: str  # e.g. "sqs.queue", "pubsub.subscription"
    name: str  # the provider's name for it
    spec: Mapping[str, Any]  # managed attributes, JSON-compatible
    create_only: frozenset[str] = frozenset()
    owner: tuple[str, str] | None = None  # (app, stage) from the tags of a resource read back; never compared

    @property
    def key(self) -> str:
        return f"{self.kind}:{self.name}"


@dataclass(frozen=True, slots=True)
class Step:
    action: Action
    resource: Resource  # the desired resource; for delete, the one found
    changes: Mapping[str, tuple[Any, Any]] = field(default_factory=dict)  # attribute -> (live, desired)

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"action": self.action, "kind": self.resource.kind, "name": self.resource.name}
        if self.changes:
            out["changes"] = {k: {"from": old, "to": new} for k, (old, new) in self.changes.items()}
        return out


@dataclass(frozen=True, slots=True)
class Plan:
    provider: str
    app: str
    stage: str
    steps: tuple[Step, ...]
    notes: tuple[str, ...] = ()  # what to do by hand next (exact commands)
    info: tuple[str, ...] = ()  # facts worth showing (e.g. the function archive's size)

    @property
    def changes(self) -> list[Step]:
        return [s for s in self.steps if s.action != "unchanged"]

    @property
    def is_noop(self) -> bool:
        return not self.changes

    def count(self, action: Action) -> int:
        return sum(1 for s in self.steps if s.action == action)

    def to_dict(self) -> dict[str, Any]:
        return {
            "provider": self.provider,
            "app": self.app,
            "stage": self.stage,
            "noop": self.is_noop,
            "summary": {action: self.count(action) for action in ACTIONS},
            "steps": [s.to_dict() for s in self.steps],
            "notes": list(self.notes),
            "info": list(self.info),
        }


def changed_attributes(desired: Resource, live: Resource) -> dict[str, tuple[Any, Any]]:
    """Attributes whose live value differs from the desired one (only the desired keys count)."""
    return {key: (live.spec.get(key), value) for key, value in desired.spec.items() if live.spec.get(key) != value}


def diff(
    provider: str,
    app: str,
    stage: str,
    desired: Sequence[Resource],
    live: Mapping[str, Resource],
    managed: Iterable[Resource] = (),
    notes: Sequence[str] = (),
    info: Sequence[str] = (),
) -> Plan:
    """Steps from ``live`` (found resources by key) to ``desired``; ``managed`` are resources
    tagged as this app's and stage's, deleted when no longer desired (in reverse order given).

    Raises DeployRefused when a create-only attribute would have to change."""
    steps: list[Step] = []
    problems: list[str] = []
    for resource in desired:
        found = live.get(resource.key)
        if found is None:
            steps.append(Step("create", resource))
            continue
        if found.owner is not None and found.owner != (app, stage):
            problems.append(
                f"{resource.kind} {resource.name} belongs to app {found.owner[0]!r} stage {found.owner[1]!r}: "
                f"give stage {stage!r} of {app!r} its own names (e.g. a broker prefix option naming the stage)"
            )
            continue
        changes = changed_attributes(resource, found)
        fixed = sorted(set(changes) & resource.create_only)
        for key in fixed:
            old, new = changes[key]
            problems.append(
                f"{resource.kind} {resource.name}: {key} cannot change in place ({old!r} -> {new!r}): delete it "
                "first (`cloudq destroy` removes what cloudq created), or configure another name"
            )
        steps.append(Step("update" if changes else "unchanged", resource, changes))
    refuse_if(problems)
    wanted = {r.key for r in desired}
    gone = [r for r in managed if r.key not in wanted]
    steps.extend(Step("delete", r) for r in reversed(gone))
    return Plan(provider, app, stage, tuple(steps), tuple(notes), tuple(info))


def teardown(provider: str, app: str, stage: str, managed: Sequence[Resource]) -> Plan:
    """A plan deleting every managed resource, dependents first (``managed`` is in creation order)."""
    return Plan(provider, app, stage, tuple(Step("delete", r) for r in reversed(managed)))
