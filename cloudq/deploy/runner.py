"""Validate, plan and apply: the provider-neutral order of a deploy or a destroy.

Nothing is created before every check passed and the plan is complete; apply then runs the
plan's changes one at a time, so a failure stops with the finished steps reported and a rerun
picks up where it stopped (each step is idempotent).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from ..errors import CloudqError
from .base import Deployer
from .model import AppModel
from .plan import Plan, Step, diff, refuse_if, teardown


class ApplyFailed(CloudqError):
    """A step failed part-way through applying a plan; the steps before it are done."""

    def __init__(self, step: Step, done: list[Step], cause: BaseException) -> None:
        self.step = step
        self.done = done
        super().__init__(
            f"{step.action} {step.resource.kind} {step.resource.name} failed after {len(done)} finished step(s): "
            f"{cause}; fix the cause and run the command again (finished steps are not repeated)"
        )


@dataclass(slots=True)
class Outcome:
    plan: Plan
    applied: list[Step] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return {**self.plan.to_dict(), "applied": [s.to_dict() for s in self.applied]}


def plan_deploy(deployer: Deployer, model: AppModel) -> Plan:
    """Check the configuration, then compare what the app needs with what exists. Creates nothing."""
    refuse_if(deployer.problems())
    desired = deployer.desired()
    return diff(
        deployer.provider,
        model.app,
        model.stage,
        desired,
        deployer.live(desired),
        deployer.managed(),
        deployer.notes(),
        deployer.info(),
    )


def plan_destroy(deployer: Deployer, model: AppModel) -> Plan:
    """Delete steps for every resource tagged as this app's and stage's (and nothing else)."""
    return teardown(deployer.provider, model.app, model.stage, deployer.managed())


def apply_plan(deployer: Deployer, plan: Plan, steps: Iterable[Step] | None = None) -> Outcome:
    """Apply the plan's changes in order; ``steps`` is ``plan.changes`` wrapped (e.g. by a progress bar)."""
    outcome = Outcome(plan)
    for step in plan.changes if steps is None else steps:
        try:
            deployer.apply(step)
        except Exception as exc:
            raise ApplyFailed(step, outcome.applied, exc) from exc
        outcome.applied.append(step)
    return outcome
