"""``cloudq status`` and ``cloudq inspect``: what the workers are doing, as Celery shows it.

Celery asks live workers over its broker (remote control, which SQS and Pub/Sub cannot carry);
cloudq reads the presence records the workers write to the result store instead
(``runtime/presence.py``), so the answer is at most one ``presence_interval`` old and costs one
store request however many workers there are. ``inspect`` with no subcommand (or ``inspect
queues``) prints the per-queue counts, as before.
"""

from __future__ import annotations

import json
import sys
import time
from collections.abc import Callable, Sequence
from typing import Any

import click

from . import states
from .app import App
from .deadletters import parse_since
from .errors import ConfigurationError
from .interfaces import Heartbeat, HeartbeatStore, TaskIndex, TaskSummary
from .runtime import series as ts

EX_UNAVAILABLE = 69  # Celery's exit code when no worker replies
SUBCOMMANDS = ("queues", "active", "reserved", "registered", "stats", "recent")


class DefaultQueues(click.Group):
    """A group that runs ``queues`` when the first argument names no subcommand, so
    ``cloudq inspect -A app`` keeps printing the per-queue counts."""

    def parse_args(self, ctx: click.Context, args: list[str]) -> list[str]:
        if not args or (args[0] not in self.commands and args[0] not in ctx.help_option_names):
            args = ["queues", *args]
        return super().parse_args(ctx, args)


def presence_of(app: App) -> HeartbeatStore:
    store = app.results
    if not isinstance(store, HeartbeatStore):
        raise ConfigurationError(
            f"the result store {type(store).__name__} keeps no worker presence: status and inspect need "
            "memory, sqlite, dynamodb or firestore results"
        )
    return store


def live_workers(app: App) -> list[Heartbeat]:
    """The live workers by name; none is an error with Celery's exit code (69)."""
    beats = sorted(presence_of(app).alive(), key=lambda beat: beat.worker_id)
    if not beats:
        interval = app.settings.presence_interval
        why = (
            "presence is off (presence_interval = 0)" if interval <= 0 else f"none wrote a record in {3 * interval:g}s"
        )
        click.echo(f"Error: no worker alive ({why}).", err=True)
        sys.exit(EX_UNAVAILABLE)
    return beats


def name_of(beat: Heartbeat) -> str:
    return str(beat.info.get("hostname") or beat.worker_id)


def stats_of(beat: Heartbeat, now: float) -> dict[str, Any]:
    """Celery's ``inspect stats`` keys where they fit (pid, pool, total...), plus cloudq's."""
    info = beat.info
    started = info.get("started_at")
    return {
        "worker_id": beat.worker_id,
        "hostname": name_of(beat),
        "pid": info.get("pid"),
        "runtime": info.get("runtime"),
        "version": info.get("version"),
        "queues": info.get("queues", []),
        "pool": {"implementation": info.get("pool"), "max-concurrency": info.get("concurrency")},
        "prefetch_count": info.get("prefetch"),
        "uptime": round(now - started, 1) if isinstance(started, int | float) else None,
        "total": dict(info.get("counts", {})),
        "active": info.get("active_count", len(info.get("active", []))),
        "reserved": info.get("reserved_count", len(info.get("reserved", []))),
        "seen": round(now - beat.seen_at, 1),
        # the last hour per queue and minute (older minutes in blocks), as the dashboard charts it
        "series": ts.figures(found) if (found := ts.decode(info.get("series"))) is not None else {},
    }


def last_hour(beat: Heartbeat) -> str:
    """One line of the worker's last hour, all queues: runs by outcome, p95 run time and wait."""
    found = ts.decode(beat.info.get("series"))
    hour = found.summed() if found is not None else ts.Minute()
    run, wait = hour.run.quantile(0.95), hour.wait.quantile(0.95)
    return (
        f"last hour: succeeded={hour.succeeded} failed={hour.failed} retried={hour.retried}"
        f" run_p95={'-' if run is None else f'{run:.3f}s'} wait_p95={'-' if wait is None else f'{wait:.3f}s'}"
    )


def echo_json(value: Any) -> None:
    click.echo(json.dumps(value, indent=2, sort_keys=True))


def echo_per_worker(beats: Sequence[Heartbeat], lines: Callable[[Heartbeat], list[str]]) -> None:
    """Celery's layout: ``-> name: OK`` then ``* item`` lines, or ``- empty -``."""
    for beat in beats:
        click.echo(f"-> {name_of(beat)} ({beat.worker_id}): OK")
        for line in lines(beat) or ["- empty -"]:
            click.echo(f"    {line}")
    click.echo(f"\n{len(beats)} node{'s' if len(beats) != 1 else ''} online.")


def task_lines(key: str, now: float) -> Callable[[Heartbeat], list[str]]:
    def lines(beat: Heartbeat) -> list[str]:
        out = []
        for task in beat.info.get(key, []):
            running = f" running {now - task['started']:.1f}s" if "started" in task else ""
            out.append(f"* {task.get('name') or '?'}[{task.get('id')}] queue={task.get('queue')}{running}")
        hidden = beat.info.get(f"{key}_count", 0) - len(beat.info.get(key, []))
        if hidden > 0:
            out.append(f"... and {hidden} more")
        return out

    return lines


def failures_first(rows: list[TaskSummary]) -> list[TaskSummary]:
    return sorted(rows, key=lambda row: (row.state != states.FAILURE, -row.updated_at))


def register(
    main: click.Group,
    app_option: Callable[[Any], Any],
    load_app: Callable[[str], Any],
    user_errors: Callable[[Any], Any],
    queue_counts: Callable[[App, bool], None],
) -> None:
    """Add ``status`` and the ``inspect`` group to ``main`` (cli.py passes its shared helpers)."""
    json_option = click.option("--json", "as_json", is_flag=True, help="Print JSON.")

    @main.command()
    @app_option
    @json_option
    @user_errors
    def status(app_path: str, as_json: bool) -> None:
        """Workers alive, one line each (from their presence records)."""
        beats = live_workers(load_app(app_path))
        if as_json:
            echo_json([{"hostname": name_of(b), "worker_id": b.worker_id, "ok": "pong"} for b in beats])
            return
        for beat in beats:
            click.echo(f"{name_of(beat)} ({beat.worker_id}): OK")
        click.echo(f"\n{len(beats)} node{'s' if len(beats) != 1 else ''} online.")

    @main.group(cls=DefaultQueues)
    def inspect() -> None:
        """Queues (the default), and Celery's active, reserved, registered, stats; and recent tasks."""

    @inspect.command("queues")
    @app_option
    @json_option
    @user_errors
    def queues(app_path: str, as_json: bool) -> None:
        """Per queue: messages ready, in flight, delayed and dead-lettered."""
        queue_counts(load_app(app_path), as_json)

    def worker_tasks(key: str, doc: str) -> None:
        @inspect.command(key, help=doc)
        @app_option
        @json_option
        @user_errors
        def command(app_path: str, as_json: bool) -> None:
            beats, now = live_workers(load_app(app_path)), time.time()
            if as_json:
                echo_json({b.worker_id: b.info.get(key, []) for b in beats})
                return
            echo_per_worker(beats, task_lines(key, now))

    worker_tasks("active", "Tasks running now on each worker.")
    worker_tasks("reserved", "Tasks each worker has leased but not started yet (its prefetch buffer).")

    @inspect.command("registered")
    @app_option
    @json_option
    @user_errors
    def registered(app_path: str, as_json: bool) -> None:
        """Task names registered in the app, with the queue each routes to."""
        app = load_app(app_path)
        tasks = {name: app.queue_for(task) for name, task in sorted(app.tasks.items())}
        if as_json:
            echo_json(tasks)
            return
        for name, queue in tasks.items():
            click.echo(f"* {name} [queue={queue}]")

    @inspect.command("stats")
    @app_option
    @json_option
    @user_errors
    def stats(app_path: str, as_json: bool) -> None:
        """Per worker: pid, pool, concurrency, uptime, counts since start and the last hour's runs
        and latencies (``--json``: per queue and minute, as the dashboard charts them)."""
        beats, now = live_workers(load_app(app_path)), time.time()
        if as_json:
            echo_json({b.worker_id: stats_of(b, now) for b in beats})
            return

        def lines(beat: Heartbeat) -> list[str]:
            s = stats_of(beat, now)
            counts = " ".join(f"{k}={v}" for k, v in sorted(s["total"].items()))
            return [
                f"pid={s['pid']} runtime={s['runtime']} version={s['version']} uptime={s['uptime']}s",
                f"pool={s['pool']['implementation']} concurrency={s['pool']['max-concurrency']} "
                f"prefetch={s['prefetch_count']} queues={','.join(s['queues'])}",
                f"active={s['active']} reserved={s['reserved']} {counts}",
                last_hour(beat),
            ]

        echo_per_worker(beats, lines)

    @inspect.command("recent")
    @app_option
    @click.option(
        "--state",
        "state_names",
        multiple=True,
        type=click.Choice(states.ALL_STATES, case_sensitive=False),
        help="Only this state (repeatable; default: all).",
    )
    @click.option("--since", help="Only written since: a duration back from now (30m, 1h, 2d) or an ISO time.")
    @click.option("--limit", type=click.IntRange(1, 1000), default=20, show_default=True)
    @json_option
    @user_errors
    def recent(app_path: str, state_names: tuple[str, ...], since: str | None, limit: int, as_json: bool) -> None:
        """Recent tasks by state, failures first, then newest first (the result store's index)."""
        app = load_app(app_path)
        store = app.results
        if not isinstance(store, TaskIndex):
            raise ConfigurationError(f"the result store {type(store).__name__} cannot list tasks (no TaskIndex)")
        try:
            when = parse_since(since, time.time()) if since else None
        except ValueError as exc:
            raise click.BadParameter(str(exc), param_hint="--since") from None
        rows = failures_first(store.recent([s.upper() for s in state_names], when, limit))
        if as_json:
            echo_json(
                [
                    {"task_id": r.task_id, "name": r.task_name, "state": r.state, "updated_at": r.updated_at}
                    for r in rows
                ]
            )
            return
        now = time.time()
        click.echo(f"{'state':<9} {'age':>8}  {'task':<32} id")
        for row in rows:
            click.echo(f"{row.state:<9} {now - row.updated_at:>7.0f}s  {row.task_name:<32} {row.task_id}")
