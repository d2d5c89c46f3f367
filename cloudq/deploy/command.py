"""What ``cloudq deploy`` and ``cloudq destroy`` do, behind their click definitions in cli.py.

Plans go to stdout (text, or one JSON document with ``--json``); prompts and the progress bar go
to stderr, so ``--json`` output stays parseable.
"""

from __future__ import annotations

import json
import sys
from typing import TYPE_CHECKING, Any

import click

from .model import build_model
from .plan import Plan, Step
from .registry import deployer_for
from .render import render_plan
from .runner import Outcome, apply_plan, plan_deploy, plan_destroy

if TYPE_CHECKING:
    from ..app import App
    from .base import Deployer


def _apply(deployer: Deployer, plan: Plan, show_progress: bool) -> Outcome:
    def label(step: Step | None) -> str:
        return f"{step.action} {step.resource.kind} {step.resource.name}" if step else ""

    with click.progressbar(
        plan.changes,
        label="Applying",
        file=sys.stderr,
        item_show_func=label,
        show_pos=True,
        hidden=not show_progress,
    ) as bar:
        return apply_plan(deployer, plan, bar)


def _confirm(question: str, yes: bool) -> None:
    if not yes:
        click.confirm(question, abort=True, err=True)


def _finish(outcome: Outcome, as_json: bool, done: str, extra: dict[str, Any] | None = None) -> None:
    if as_json:
        click.echo(json.dumps({**outcome.to_dict(), **(extra or {})}, indent=2))
    else:
        click.echo(done)


def deploy(
    app: App, app_path: str, stage: str | None, dry_run: bool, yes: bool, as_json: bool, emit: str | None
) -> None:
    model = build_model(app, app_path, stage)
    deployer = deployer_for(model)
    if emit:
        click.echo(deployer.emit(emit), nl=False)
        for line in deployer.info():
            click.echo(line, err=True)
        return
    plan = plan_deploy(deployer, model)
    if not as_json:
        click.echo(render_plan(plan, "deploy"))
    if dry_run or plan.is_noop:
        if as_json:
            click.echo(json.dumps({**plan.to_dict(), "dry_run": dry_run, "applied": []}, indent=2))
        return
    _confirm(f"Apply {len(plan.changes)} change(s) to stage {model.stage!r}?", yes)
    outcome = _apply(deployer, plan, show_progress=not as_json)
    _finish(outcome, as_json, f"Done: applied {len(outcome.applied)} change(s).", {"dry_run": False})


def destroy(app: App, app_path: str, stage: str | None, yes: bool, as_json: bool) -> None:
    model = build_model(app, app_path, stage)
    deployer = deployer_for(model)
    plan = plan_destroy(deployer, model)
    if not as_json:
        click.echo(render_plan(plan, "destroy"))
    if plan.is_noop:
        if as_json:
            click.echo(json.dumps({**plan.to_dict(), "applied": []}, indent=2))
        return
    _confirm(f"Delete these {len(plan.changes)} resource(s) of stage {model.stage!r}? Their data is lost.", yes)
    outcome = _apply(deployer, plan, show_progress=not as_json)
    _finish(outcome, as_json, f"Done: deleted {len(outcome.applied)} resource(s).")
