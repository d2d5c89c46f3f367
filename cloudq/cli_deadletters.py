"""``cloudq dead-letters``: list, show, redrive and purge a queue's dead letters.

A group whose default is ``list``, so ``cloudq dead-letters QUEUE`` keeps working; the actions
are subcommands (``cloudq dead-letters redrive QUEUE ...``), each with its own options, as in
the AWS CLI. A queue named like a subcommand is listed with ``cloudq dead-letters list NAME``.
"""

from __future__ import annotations

import json
import sys
import time
from collections.abc import Callable, Sequence
from typing import Any, TypeVar

import click

from . import deadletters as dl
from .interfaces import DeadLetter

F = TypeVar("F", bound=Callable[..., Any])
REASON_WIDTH = 60


class DefaultList(click.Group):
    """A group that runs ``list`` when the first argument names no subcommand."""

    def parse_args(self, ctx: click.Context, args: list[str]) -> list[str]:
        if args and args[0] not in self.commands and args[0] not in ctx.help_option_names:
            args = ["list", *args]
        return super().parse_args(ctx, args)


def selection_options(fn: F) -> F:
    """The filters every subcommand that acts on several dead letters takes."""
    for option in reversed(
        [
            click.option(
                "--error-type",
                help="Only reasons starting with this exception type (ValueError matches a.b.ValueError).",
            ),
            click.option("--task", "task_name", help="Only messages of this task name."),
            click.option(
                "--since", help="Only dead-lettered since: a duration back from now (30m, 1h, 2d) or an ISO time."
            ),
        ]
    ):
        fn = option(fn)
    return fn


def selection(ids: Sequence[str], error_type: str | None, task_name: str | None, since: str | None) -> dl.Selection:
    when = None
    if since is not None:
        try:
            when = dl.parse_since(since, time.time())
        except ValueError as exc:
            raise click.BadParameter(str(exc), param_hint="--since") from None
    return dl.Selection(frozenset(ids) if ids else None, error_type, task_name, when)


def register(
    main: click.Group,
    app_option: Callable[[Any], Any],
    load_app: Callable[[str], Any],
    user_errors: Callable[[Any], Any],
) -> None:
    """Add the ``dead-letters`` group to ``main`` (cli.py passes its shared helpers)."""

    @main.group("dead-letters", cls=DefaultList)
    def dead_letters() -> None:
        """Dead-lettered messages: list (the default), show, redrive, purge."""

    @dead_letters.command("list")
    @app_option
    @click.argument("queue")
    @click.option(
        "--limit", type=click.IntRange(1, dl.SCAN_LIMIT), default=20, show_default=True, help="List at most this many."
    )
    @selection_options
    @click.option("--json", "as_json", is_flag=True, help="Print a JSON array with every field.")
    @user_errors
    def list_(
        app_path: str,
        queue: str,
        limit: int,
        error_type: str | None,
        task_name: str | None,
        since: str | None,
        as_json: bool,
    ) -> None:
        """List dead-lettered messages of QUEUE with their reasons, oldest first."""
        app = load_app(app_path)
        chosen = selection((), error_type, task_name, since)
        scan = limit if chosen == dl.Selection() else dl.SCAN_LIMIT
        letters = dl.select(app, queue, chosen, scan)[:limit]
        if as_json:
            click.echo(json.dumps([dl.describe(letter) for letter in letters], indent=2))
        else:
            table(letters)

    @dead_letters.command("show")
    @app_option
    @click.argument("queue")
    @click.argument("message_id")
    @click.option("--json", "as_json", is_flag=True, help="Print JSON.")
    @user_errors
    def show(app_path: str, queue: str, message_id: str, as_json: bool) -> None:
        """One dead letter of QUEUE (by message id or task id): envelope, reason, attempts and
        the traceback from the result store."""
        app = load_app(app_path)
        letter = dl.find(app, queue, message_id)
        if letter is None:
            raise click.ClickException(f"no dead letter of {queue!r} has message id or task id {message_id!r}")
        shown = dl.describe(letter, dl.record_of(app, letter))
        if as_json:
            click.echo(json.dumps(shown, indent=2))
            return
        body, trace = shown.pop("body"), shown.pop("traceback", None)
        for key, value in shown.items():
            click.echo(f"{key + ':':<15} {'-' if value is None else value}")
        click.echo("envelope:")
        click.echo(json.dumps(body, indent=2) if isinstance(body, dict) else body)
        if trace:
            click.echo("traceback:")
            click.echo(trace.rstrip())

    def action(name: str, summary: str, verbs: tuple[str, str], ask: str, act: Act) -> None:
        """A subcommand acting on a selection: ``summary`` is its one-line result (``{verb}``
        ``{count}`` ``{queue}``), ``verbs`` (done, would do), ``ask`` the confirmation."""

        @dead_letters.command(name, help=ACTION_HELP[name])
        @app_option
        @click.argument("queue")
        @click.argument("ids", nargs=-1)
        @selection_options
        @click.option("--all", "everything", is_flag=True, help="Every dead letter of QUEUE (without ids or filters).")
        @click.option("--dry-run", is_flag=True, help="Show what it would act on; change nothing.")
        @click.option("--yes", is_flag=True, help="Do not ask for confirmation.")
        @user_errors
        def command(
            app_path: str,
            queue: str,
            ids: tuple[str, ...],
            error_type: str | None,
            task_name: str | None,
            since: str | None,
            everything: bool,
            dry_run: bool,
            yes: bool,
        ) -> None:
            app = load_app(app_path)
            letters = chosen(app, queue, ids, error_type, task_name, since, everything)
            if dry_run or not letters:
                table(letters)
                click.echo(summary.format(verb=verbs[1] if dry_run else verbs[0], count=len(letters), queue=queue))
                return
            if not yes:
                click.confirm(ask.format(count=len(letters), queue=queue), abort=True)
            count = act(app, queue, letters)
            click.echo(summary.format(verb=verbs[0], count=count, queue=queue))

    action(
        "redrive",
        "{verb} {count} message(s) to {queue}",
        ("redrove", "would redrive"),
        "Redrive {count} dead letter(s) back to {queue!r}?",
        lambda app, queue, letters: with_progress(len(letters), lambda step: dl.redrive(app, queue, letters, step)),
    )
    action(
        "purge",
        "{verb} {count} dead letter(s) of {queue}",
        ("deleted", "would delete"),
        "Delete {count} dead letter(s) of {queue!r} for good?",
        dl.delete,
    )


Act = Callable[[Any, str, list[DeadLetter]], int]
ACTION_HELP = {
    "redrive": "Put dead letters of QUEUE back on it (by message or task IDS, by filter, or --all) with their "
    "attempts reset; a crash part-way leaves each one in the dead letters or on the queue (possibly both).",
    "purge": "Delete dead letters of QUEUE for good (by message or task IDS, by filter, or --all).",
}


def chosen(
    app: Any,
    queue: str,
    ids: Sequence[str],
    error_type: str | None,
    task_name: str | None,
    since: str | None,
    everything: bool,
) -> list[DeadLetter]:
    """The dead letters an action applies to; an action needs ids, a filter or --all, and every
    id given must name a dead letter (else nothing is done)."""
    wanted = selection(ids, error_type, task_name, since)
    if wanted == dl.Selection() and not everything:
        raise click.UsageError("say which dead letters: message or task IDS, --error-type/--task/--since, or --all")
    dl.admin(app)  # fail before reading anything when the broker cannot act
    letters = dl.select(app, queue, wanted)
    if ids:
        found = {letter.message_id for letter in letters} | {dl.task_id(letter) for letter in letters}
        missing = [i for i in ids if i not in found]
        if missing:
            raise click.ClickException(f"no dead letter of {queue!r} matches {', '.join(missing[:5])} (nothing done)")
    return letters


def with_progress(total: int, run: Callable[[Callable[[int], None]], int]) -> int:
    """``run(step)`` under a progress bar on stderr that ``step(n)`` advances."""
    with click.progressbar(length=total, label="redriving", file=sys.stderr) as bar:
        return run(bar.update)


def table(letters: Sequence[DeadLetter]) -> None:
    click.echo(f"{'message id':<34} {'task':<28} {'dead at':<20} reason")
    for letter in letters:
        shown = dl.describe(letter)
        reason = letter.reason.splitlines()[0] if letter.reason else ""
        if len(reason) > REASON_WIDTH:
            reason = reason[: REASON_WIDTH - 3] + "..."
        when = (shown["dead_at"] or "-")[:19]
        click.echo(f"{letter.message_id:<34} {shown['task'] or '-':<28} {when:<20} {reason}")
