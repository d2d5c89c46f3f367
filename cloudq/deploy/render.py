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


def _by_sid(items: list[Any]) -> dict[str, Any] | None:
    """Policy statements keyed by their Sid, so a change shows which statement changed."""
    if items and all(isinstance(i, dict) and "Sid" in i for i in items):
        return {str(i["Sid"]): i for i in items}
    return None


def leaf_changes(path: str, old: Any, new: Any) -> list[str]:
    """The smallest parts that differ: nested keys as dotted paths, lists of names as -removed +added."""
    if isinstance(old, dict) and isinstance(new, dict):
        return [
            line
            for key in sorted({*old, *new}, key=str)
            if old.get(key) != new.get(key)
            for line in leaf_changes(f"{path}.{key}", old.get(key), new.get(key))
        ]
    if isinstance(old, list) and isinstance(new, list):
        old_sids, new_sids = _by_sid(old), _by_sid(new)
        if old_sids is not None and new_sids is not None:
            return [
                line
                for sid in sorted({*old_sids, *new_sids})
                if old_sids.get(sid) != new_sids.get(sid)
                for line in leaf_changes(f"{path}[{sid}]", old_sids.get(sid), new_sids.get(sid))
            ]
        if all(isinstance(i, str) for i in [*old, *new]):
            removed = [f"-{i}" for i in old if i not in new]
            added = [f"+{i}" for i in new if i not in old]
            return [f"{path}: {' '.join([*removed, *added])}"]
    return [f"{path}: {_value(old)} -> {_value(new)}"]


def render_step(step: Step) -> list[str]:
    r = step.resource
    lines = [f"  {_MARKS[step.action]} {step.action:<9}  {r.kind:<22} {r.name}"]
    for key, (old, new) in sorted(step.changes.items()):
        lines.extend(f"        {line}" for line in leaf_changes(key, old, new))
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
