"""The plan as text for people (the ``--json`` form is ``Plan.to_dict``)."""

from __future__ import annotations

import json
from typing import Any

from .plan import Plan, Step

MAX_VALUE_CHARS = 160
_MARKS = {"create": "+", "update": "~", "unchanged": "=", "delete": "-"}


def _value(value: Any) -> str:
    text = "(none)" if value is None else json.dumps(value, sort_keys=True, separators=(",", ":"))
    return text if len(text) <= MAX_VALUE_CHARS else text[: MAX_VALUE_CHARS - 3] + "..."


def render_step(step: Step) -> list[str]:
    r = step.resource
    lines = [f"  {_MARKS[step.action]} {step.action:<9}  {r.kind:<22} {r.name}"]
    for key, (old, new) in sorted(step.changes.items()):
        lines.append(f"        {key}: {_value(old)} -> {_value(new)}")
    return lines


def summary(plan: Plan, title: str = "deploy") -> str:
    if plan.is_noop and title == "destroy":
        return f"Nothing to destroy: no resource is tagged as app {plan.app!r} stage {plan.stage!r}."
    if plan.is_noop:
        return f"No changes: the cloud already matches app {plan.app!r} (stage {plan.stage})."
    return (
        f"Plan: {plan.count('create')} to create, {plan.count('update')} to update, "
        f"{plan.count('delete')} to delete, {plan.count('unchanged')} unchanged."
    )


def render_plan(plan: Plan, title: str = "deploy") -> str:
    lines = [f"cloudq {title}: app {plan.app!r}, stage {plan.stage!r}, on {plan.provider}"]
    if not plan.steps:
        lines.append("  (no resources)")
    for step in plan.steps:
        lines.extend(render_step(step))
    lines.extend(plan.info)
    lines.append(summary(plan, title))
    if plan.notes:
        lines.append("Next, by hand (cloudq deploy cannot do these here):")
        lines.extend(f"  {note}" for note in plan.notes)
    return "\n".join(lines)
