"""The ``cloudq`` command line (click).

A user mistake prints one clear line and exits non-zero; tracebacks are for bugs only.
"""

from __future__ import annotations

import json
import logging
import os
import signal
import sys
import threading
import time
from collections.abc import Callable
from functools import wraps
from typing import Any, TypeVar

import click

from . import cli_dashboard, cli_deadletters, cli_inspect
from .app import App
from .app import load_app as import_app
from .config import ENV_PREFIX
from .errors import CloudqError, ConfigurationError

F = TypeVar("F", bound=Callable[..., Any])
APP_HELP = "The app as module:attribute (e.g. proj.tasks:app); default from CLOUDQ_APP."


def load_app(path: str) -> App:
    """The app at ``module:attribute``, importable from the working directory."""
    if os.getcwd() not in sys.path:
        sys.path.insert(0, os.getcwd())
    try:
        return import_app(path)
    except ConfigurationError as exc:
        raise click.ClickException(str(exc)) from None


def user_errors(fn: F) -> F:
    """Turn cloudq's errors into one-line messages with exit code 1."""

    @wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return fn(*args, **kwargs)
        except CloudqError as exc:
            raise click.ClickException(f"{type(exc).__name__}: {exc}") from None

    return wrapper  # type: ignore[return-value]


def _json_arg(value: str | None, what: str, kind: type) -> Any:
    if value is None:
        return kind()
    try:
        parsed = json.loads(value)
    except json.JSONDecodeError as exc:
        raise click.BadParameter(f"not valid JSON ({exc.msg} at position {exc.pos})", param_hint=what) from None
    if not isinstance(parsed, kind):
        raise click.BadParameter(f"must be a JSON {'array' if kind is list else 'object'}", param_hint=what)
    return parsed


loglevel_option = click.option(
    "-l",
    "--loglevel",
    type=click.Choice(["DEBUG", "INFO", "WARNING", "ERROR"], case_sensitive=False),
    help="Log level.",
)
json_option = click.option("--json", "as_json", is_flag=True, help="Print JSON instead of a table.")
app_option = click.option("-A", "--app", "app_path", envvar="CLOUDQ_APP", required=True, help=APP_HELP)


def seconds_option(flag: str, default: float, help: str) -> Callable[[F], F]:
    """A duration option: seconds, at least 0, default shown in --help."""
    return click.option(flag, type=click.FloatRange(0), default=default, show_default=True, help=help)


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="cloudq")
def main() -> None:
    """cloudq: Celery-style background tasks for serverless cloud infrastructure."""


@main.command()
@app_option
@click.option("-Q", "--queues", help="Comma-separated queues to consume (default: every queue the app routes to).")
@click.option("-c", "--concurrency", type=click.IntRange(1, 1024), help="Tasks run at once (default: CPU count).")
@click.option(
    "-P",
    "--pool",
    type=click.Choice(["threads", "process", "async", "prefork", "solo"]),
    help="How tasks run (default: threads). Celery's prefork = process; solo = one task at a time "
    "(one pool thread, concurrency 1).",
)
@click.option(
    "-n",
    "--hostname",
    help="Node name, Celery's: name@host with %h (host), %n (host's first label), %d (domain) expanded; "
    "self.request.hostname and the start log line (default: cloudq@%h).",
)
@click.option(
    "--max-tasks-per-child",
    type=click.IntRange(1),
    help="Process pool: replace a child after it ran N tasks (between tasks, never mid-task); "
    "setting max_tasks_per_child (Celery's worker_max_tasks_per_child).",
)
@click.option(
    "--max-memory-per-child",
    type=click.IntRange(1),
    help="Process pool: replace a child after a task leaves it above this resident size in KiB (Linux); "
    "setting max_memory_per_child.",
)
@click.option(
    "--autoscale",
    metavar="MAX,MIN",
    help="Threads/process pools: run MIN to MAX tasks at once, growing while messages wait, "
    "shrinking when idle (instead of -c).",
)
@click.option(
    "-E",
    "--task-events",
    is_flag=True,
    help="Accepted for Celery compatibility and ignored: cloudq has no event stream. Each task logs one "
    "line per event (logger cloudq.task) and fires cloudq.signals; monitor with those and `cloudq inspect`.",
)
@click.option("--prefetch-multiplier", type=click.IntRange(1, 1000), help="Messages leased per unit of concurrency.")
@click.option("--burst", is_flag=True, help="Process until the queues are empty, then exit 0.")
@seconds_option(
    "--max-wait",
    60.0,
    "--burst: seconds an idle worker waits for delayed work (retries, ETAs) due within it; "
    "then it exits 0 and logs what is left.",
)
@seconds_option(
    "--unreachable-timeout",
    60.0,
    "--burst: seconds receives may fail (backend unreachable) before the worker exits 1; "
    "without --burst the worker keeps retrying.",
)
@click.option(
    "--poll-wait",
    type=click.FloatRange(0, 20, min_open=True),
    help="Seconds an idle worker long-polls (default: the poll_wait setting, 1 s; use 10-20 on SQS to cut idle requests).",
)
@seconds_option("--grace", 30.0, "Seconds running tasks get to finish on shutdown.")
@loglevel_option
@click.option(
    "--beat", "with_beat", is_flag=True, help="Also run the periodic tasks' beat (replica-safe) in this process."
)
@click.option(
    "--metrics-port",
    type=click.IntRange(0, 65535),
    default=0,
    help="Serve Prometheus metrics on this port (cloudq[metrics]); 0: off.",
)
@click.option("--metrics-host", default="127.0.0.1", show_default=True, help="Address the metrics endpoint binds.")
@user_errors
def worker(
    app_path: str,
    queues: str | None,
    concurrency: int | None,
    pool: str | None,
    hostname: str | None,
    max_tasks_per_child: int | None,
    max_memory_per_child: int | None,
    autoscale: str | None,
    task_events: bool,
    prefetch_multiplier: int | None,
    burst: bool,
    max_wait: float,
    unreachable_timeout: float,
    poll_wait: float | None,
    grace: float,
    loglevel: str | None,
    with_beat: bool,
    metrics_port: int,
    metrics_host: str,
) -> None:
    """Run a worker that consumes the app's queues."""
    from .runtime.autoscale import parse_autoscale
    from .runtime.nodename import node_name

    scale = parse_autoscale(autoscale, "--autoscale") if autoscale else None
    if scale is not None and concurrency is not None:
        raise click.UsageError("give --autoscale MAX,MIN or -c/--concurrency, not both")
    if pool == "solo" and concurrency is None:
        concurrency = 1
    if scale is not None:
        concurrency = scale[0]  # clients are sized for the most tasks that may run at once
    # before the app is built, so its settings (and the clients they size, and pool children) see them
    if concurrency is not None:
        os.environ[f"{ENV_PREFIX}CONCURRENCY"] = str(concurrency)
    if hostname is not None:
        os.environ[f"{ENV_PREFIX}HOSTNAME"] = node_name(hostname)
    app = load_app(app_path)
    from .runtime.pools import LOG_FORMAT
    from .runtime.worker import Worker

    logging.basicConfig(level=(loglevel or app.settings.log_level).upper(), format=LOG_FORMAT)
    if task_events:
        logging.getLogger("cloudq.worker").info(
            "-E: cloudq has no event stream; task events are log lines (cloudq.task) and cloudq.signals"
        )

    names = [q.strip() for q in queues.split(",") if q.strip()] if queues else None
    stop_beat = threading.Event()
    if with_beat:
        from .beat import run_in_thread

        run_in_thread(app, stop_beat)
    running = Worker(
        app,
        queues=names,
        concurrency=concurrency,
        pool=pool or app.settings.pool,
        prefetch_multiplier=prefetch_multiplier,
        burst=burst,
        grace=grace,
        app_path=app_path,
        poll_wait_s=poll_wait,
        max_wait_s=max_wait,
        unreachable_timeout_s=unreachable_timeout,
        max_tasks_per_child=max_tasks_per_child,
        max_memory_per_child=max_memory_per_child,
        autoscale=scale,
    )
    if metrics_port:
        from .observability.metrics import PrometheusMetrics

        bound = PrometheusMetrics(running).serve(metrics_host, metrics_port)
        logging.getLogger("cloudq.worker").info("metrics: http://%s:%d/metrics", metrics_host, bound)
    code = running.run()
    stop_beat.set()
    sys.exit(code)


@main.command()
@app_option
@click.option("--dry-run", is_flag=True, help="Print the next run times of each periodic task and exit.")
@click.option(
    "-n", "--count", type=click.IntRange(1, 1000), default=5, show_default=True, help="--dry-run: runs shown."
)
@seconds_option("--late-after", 60.0, "missed='skip': a run reached later than this after its due time is skipped.")
@loglevel_option
@user_errors
def beat(app_path: str, dry_run: bool, count: int, late_after: float, loglevel: str | None) -> None:
    """Send the app's periodic tasks when due. Safe on every replica: each run is claimed in the
    result store first, so exactly one beat sends it."""
    from .beat import Beat
    from .schedules import iso, next_runs

    app = load_app(app_path)
    entries = app.periodic_tasks
    if dry_run:
        now = time.time()
        for name, item in entries.items():
            runs = ", ".join(iso(t) for t in next_runs(item.schedule, now, count))
            click.echo(f"{name} ({item.task}, {item.schedule.describe()}): {runs}")
        if not entries:
            click.echo("no periodic tasks")
        return
    from .runtime.pools import LOG_FORMAT

    logging.basicConfig(level=(loglevel or app.settings.log_level).upper(), format=LOG_FORMAT)
    if not entries:
        raise click.ClickException(f"app {app.name!r} declares no periodic tasks: nothing to schedule")
    stop = threading.Event()
    for signum in (signal.SIGINT, signal.SIGTERM):
        signal.signal(signum, lambda *_: stop.set())
    Beat(app, late_after_s=late_after).run(stop)


@main.command()
@app_option
@json_option
@user_errors
def schedules(app_path: str, as_json: bool) -> None:
    """The periodic tasks: schedule, next run, last run sent, and what runs them."""
    from .beat import last_runs
    from .deploy.registry import scheduler_for
    from .schedules import iso

    app = load_app(app_path)
    entries = app.periodic_tasks
    last = last_runs(app, list(entries)) if entries else {}
    where = scheduler_for(app.broker_url)
    now = time.time()
    rows = [
        {
            "name": name,
            "task": item.task,
            "schedule": item.schedule.describe(),
            "missed": item.missed,
            "next_run": iso(item.schedule.next_after(now)),
            "last_run": iso(last[name]) if name in last else None,
            "runs_on": where,
        }
        for name, item in entries.items()
    ]
    if as_json:
        click.echo(json.dumps(rows, indent=2))
        return
    if not rows:
        click.echo("no periodic tasks")
        return
    click.echo(f"{'name':<24} {'schedule':<36} {'next run':<21} {'last run':<21} runs on")
    for row in rows:
        last_text = row["last_run"] or "never"
        click.echo(f"{row['name']:<24} {row['schedule']:<36} {row['next_run']:<21} {last_text:<21} {row['runs_on']}")


@main.command()
@app_option
@click.argument("task_name")
@click.option("--args", "args_json", help='Positional arguments as a JSON array, e.g. "[1, 2]".')
@click.option("--kwargs", "kwargs_json", help="Keyword arguments as a JSON object, e.g. '{\"b\": 2}'.")
@click.option("--countdown", type=click.FloatRange(0), help="Seconds to wait before running.")
@click.option("--queue", help="Queue to send to (default: the task's route).")
@click.option("--wait", "wait_s", type=click.FloatRange(0), help="Wait up to this many seconds and print the result.")
@user_errors
def send(
    app_path: str,
    task_name: str,
    args_json: str | None,
    kwargs_json: str | None,
    countdown: float | None,
    queue: str | None,
    wait_s: float | None,
) -> None:
    """Send TASK_NAME with JSON arguments; prints the task id."""
    app = load_app(app_path)
    args = _json_arg(args_json, "--args", list)
    kwargs = _json_arg(kwargs_json, "--kwargs", dict)
    result = app.send_task(task_name, args, kwargs, countdown=countdown, queue=queue)
    click.echo(result.id)
    if wait_s is not None:
        click.echo(json.dumps(result.get(timeout=wait_s)))


@main.command()
@app_option
@click.argument("task_id")
@click.option("--wait", "wait_s", type=click.FloatRange(0), help="Wait up to this many seconds for the outcome.")
@user_errors
def result(app_path: str, task_id: str, wait_s: float | None) -> None:
    """Print the state and outcome of TASK_ID as JSON."""
    app = load_app(app_path)
    handle = app.AsyncResult(task_id)
    if wait_s is not None:
        handle.get(timeout=wait_s, propagate=False)
    record = handle.record
    click.echo(json.dumps(record.to_dict() if record else {"task_id": task_id, "state": handle.status}, indent=2))


def queue_counts(app: App, as_json: bool) -> None:
    """``cloudq inspect [queues]``: per queue, messages ready, in flight, delayed, dead-lettered."""
    rows = [app.broker.stats(queue) for queue in app.queues()]
    if as_json:
        click.echo(json.dumps([_stats(row) for row in rows], indent=2))
        return
    click.echo(f"{'queue':<24} {'ready':>8} {'in flight':>10} {'delayed':>8} {'dead':>8}")
    for row in rows:
        ready, in_flight, delayed, dead = (_count(getattr(row, n)) for n in _COUNTS)
        click.echo(f"{row.queue:<24} {ready:>8} {in_flight:>10} {delayed:>8} {dead:>8}")
    if any(getattr(row, n) < 0 for row in rows for n in _COUNTS):
        click.echo("? = the service does not report this count")


_COUNTS = ("ready", "in_flight", "delayed", "dead_lettered")


def _count(value: int) -> str:
    return "?" if value < 0 else str(value)


def _stats(row: Any) -> dict[str, Any]:
    counts = {name: (None if getattr(row, name) < 0 else getattr(row, name)) for name in _COUNTS}
    return {"queue": row.queue, **counts}


@main.command()
@app_option
@click.argument("queue")
@click.option("--yes", is_flag=True, help="Do not ask for confirmation.")
@user_errors
def purge(app_path: str, queue: str, yes: bool) -> None:
    """Delete every waiting message in QUEUE."""
    app = load_app(app_path)
    if not yes:
        click.confirm(f"Delete every waiting message in {queue!r}?", abort=True)
    count = app.broker.purge(queue)
    click.echo(f"purged {count} message(s) from {queue}")


cli_deadletters.register(main, app_option, load_app, user_errors)
cli_inspect.register(main, app_option, load_app, user_errors, queue_counts)
cli_dashboard.register(main, app_option, load_app, user_errors)


@main.command()
def schema() -> None:
    """Print the JSON Schema of the message envelope."""
    from .envelope import json_schema

    click.echo(json.dumps(json_schema(), indent=2))


stage_option = click.option(
    "--stage",
    help="Stage to act on, e.g. dev or prod (default: [tool.cloudq.deploy] stage, else dev); "
    "it is in the tags of everything created and in the names of functions and roles.",
)


@main.command()
@app_option
@stage_option
@click.option("--dry-run", is_flag=True, help="Print the plan and change nothing.")
@click.option("--yes", is_flag=True, help="Apply without asking for confirmation.")
@click.option("--json", "as_json", is_flag=True, help="Print the plan and the result as one JSON document (for CI).")
@click.option(
    "--emit",
    type=click.Choice(["cloudformation"]),
    help="Print an equivalent infrastructure-as-code template instead of deploying.",
)
@user_errors
def deploy(app_path: str, stage: str | None, dry_run: bool, yes: bool, as_json: bool, emit: str | None) -> None:
    """Create or update the app's cloud resources: plan first, then apply."""
    from .deploy import command

    command.deploy(load_app(app_path), app_path, stage, dry_run, yes, as_json, emit)


@main.command()
@app_option
@stage_option
@click.option("--yes", is_flag=True, help="Delete without asking for confirmation.")
@click.option("--json", "as_json", is_flag=True, help="Print the plan and the result as one JSON document.")
@user_errors
def destroy(app_path: str, stage: str | None, yes: bool, as_json: bool) -> None:
    """Delete the resources `cloudq deploy` created for the app and stage (only those)."""
    from .deploy import command

    command.destroy(load_app(app_path), app_path, stage, yes, as_json)
