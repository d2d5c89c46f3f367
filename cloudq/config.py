"""Settings: defaults < ``[tool.cloudq]`` in pyproject.toml (or cloudq.toml) < ``CLOUDQ_*`` < App kwargs.

Validated with pydantic (settings_schema.py) so a bad value names the setting, where it came from
and what is allowed; values that are already of their setting's type and in range need no
pydantic, so building an App does not import it.
"""

from __future__ import annotations

import json
import logging
import os
import re
import tomllib
from collections.abc import Callable, Mapping
from dataclasses import MISSING, Field, dataclass, field, fields
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar, Literal, Protocol, get_args, get_origin, get_type_hints

from .backends.urls import close_match
from .errors import ConfigurationError
from .plaintypes import Defer, check_for

if TYPE_CHECKING:
    from pydantic import ValidationError

ENV_PREFIX = "CLOUDQ_"
DEFAULT_DB = "cloudq.db"
# CLOUDQ_* variables that are not settings: the CLI's -A, the Pub/Sub push entry point's OIDC checks,
# the Lambda entry point's per-invocation concurrency
OTHER_VARIABLES = frozenset(
    {
        "CLOUDQ_APP",
        "CLOUDQ_PUSH_AUDIENCE",
        "CLOUDQ_PUSH_SERVICE_ACCOUNT",
        "CLOUDQ_LAMBDA_CONCURRENCY",
        "CLOUDQ_DASHBOARD_TOKEN",
    }
)
_warned: set[str] = set()


class Secret(Protocol):
    """A value that hides itself in reprs (pydantic's SecretStr)."""

    def get_secret_value(self) -> str: ...


@dataclass(frozen=True, slots=True, kw_only=True)
class Settings:
    """The merged settings, frozen. Each field's constraints (``metadata``) are pydantic's
    ``Field`` arguments: settings_schema.py builds the pydantic model from this one table.

    Values of a setting's exact type and in range are taken as they are, without pydantic; any
    other value (a string from the environment, a number out of range, a rate) goes through
    the pydantic model, which converts it or raises its ValidationError."""

    model_fields: ClassVar[dict[str, Field[Any]]]  # name -> its dataclass field (pydantic's name)
    broker: str | None = None
    results: str | None = None
    default_queue: str = field(default="default", metadata={"min_length": 1, "pattern": "^[A-Za-z0-9_.-]+$"})
    routes: dict[str, str] = field(default_factory=dict, metadata={"description": "glob on task name -> queue"})
    result_expires: float = field(
        default=86400.0, metadata={"ge": 0, "description": "seconds a result is kept; 0 keeps it forever"}
    )
    track_started: bool = False
    result_extended: bool = field(
        default=False,
        metadata={"description": "keep each task's args, kwargs, queue and worker in its result record (Celery's)"},
    )
    tracing: bool | None = field(
        default=None,
        metadata={
            "description": "OpenTelemetry spans and trace context (cloudq[tracing]): null (default) traces once a "
            "tracer provider is set, true always (error if opentelemetry-api is missing), false never"
        },
    )
    dashboard_redact: bool | list[str] = field(
        default=True,
        metadata={
            "description": "cloudq dashboard: true hides every argument value (names and types shown); a list "
            "hides the values of the arguments so named; false shows them all"
        },
    )
    visibility_timeout: float = field(default=60.0, metadata={"gt": 0, "le": 43200})
    prefetch_multiplier: int = field(default=4, metadata={"ge": 1, "le": 1000})
    concurrency: int | None = field(default=None, metadata={"ge": 1, "le": 1024})
    pool: Literal["threads", "process", "async", "prefork", "solo"] = field(
        default="threads",
        metadata={"description": "prefork = process; solo = threads with concurrency 1 (Celery's names)"},
    )
    max_tasks_per_child: int | None = field(
        default=None,
        metadata={"ge": 1, "description": "process pool: a child is replaced after this many tasks (Celery's)"},
    )
    max_memory_per_child: int | None = field(
        default=None,
        metadata={
            "ge": 1,
            "description": "process pool: KiB of resident memory past which a child is replaced after its task",
        },
    )
    hostname: str | None = field(
        default=None,
        metadata={
            "min_length": 1,
            "description": "the worker's node name (self.request.hostname); default cloudq@<host>",
        },
    )
    poll_wait: float = field(
        default=1.0,
        metadata={
            "gt": 0,
            "le": 20,
            "description": "seconds an idle worker long-polls; also bounds how long a stop waits for it",
        },
    )
    max_retries: int | None = field(
        default=3, metadata={"ge": 0, "description": "retries a task may ask for; null: forever"}
    )
    retry_on: list[Any] = field(
        default_factory=list,
        metadata={
            "description": "exception classes (or names: 'OSError', 'module.Class') every task retries on, as if each had autoretry_for=...; empty (Celery's default): tasks retry only when asked"
        },
    )
    autoretry_for: list[Any] = field(
        default_factory=list, metadata={"description": "alias of retry_on (Celery's name)"}
    )
    default_retry_delay: float = field(
        default=180.0,
        metadata={"ge": 0, "description": "seconds before a retry that names no countdown/eta (Celery: 180)"},
    )
    retry_backoff: bool | float = field(
        default=False,
        metadata={
            "description": "false: autoretries wait default_retry_delay; true: exponential from 1 s; a number: exponential from that many seconds (0 retries at once)"
        },
    )
    retry_backoff_max: float = field(default=600.0, metadata={"ge": 0})
    retry_jitter: bool = True
    time_limit: float | None = field(default=None, metadata={"gt": 0})
    disable_rate_limits: bool = field(
        default=False, metadata={"description": "ignore every task's rate_limit (Celery's worker_disable_rate_limits)"}
    )
    default_rate_limit: str | float | None = field(
        default=None,
        metadata={
            "description": "rate_limit of every task that sets none: '10/s', '100/m', '1000/h' (per worker, Celery's)"
        },
    )
    soft_time_limit: float | None = field(
        default=None,
        metadata={"gt": 0, "description": "seconds; the soft limit of every task that sets none (Celery's)"},
    )
    annotations: dict[str, dict[str, Any]] = field(
        default_factory=dict,
        metadata={
            "description": "task name or '*' -> task options applied at registration (Celery's task_annotations)"
        },
    )
    signing_key: Secret | None = None
    create_missing: bool = True
    eager: bool = False
    eager_propagates: bool = field(
        default=False,
        metadata={"description": "eager mode: .delay()/.apply() raise the task's exception at call time (Celery's)"},
    )
    exception_modules: list[str] = field(
        default_factory=list,
        metadata={
            "description": "modules whose exception classes .get() may rebuild even when not yet imported (it imports them); classes of already-imported modules are rebuilt anyway"
        },
    )
    revoke_check: bool = field(
        default=True,
        metadata={
            "description": "read the REVOKED records of each batch of deliveries before running it (one batched read per batch: worker and Lambda; one read per push request); false: revoked tasks run"
        },
    )
    revoke_poll: float = field(
        default=5.0,
        metadata={
            "ge": 0,
            "description": "seconds between the worker's reads of the records of the tasks it holds, so revoke(terminate=True) reaches a running task (one batched read per poll while it holds any); 0: off",
        },
    )
    broker_options: dict[str, Any] = field(default_factory=dict)
    results_options: dict[str, Any] = field(default_factory=dict)
    deploy: dict[str, Any] = field(
        default_factory=dict, metadata={"description": "options of `cloudq deploy` (deploy/settings.py)"}
    )
    beat_schedule: dict[str, Any] = field(
        default_factory=dict,
        metadata={
            "description": "periodic tasks, Celery's beat_schedule: name -> {task, schedule, args, kwargs, options, missed}"
        },
    )
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"
    presence_interval: float = field(
        default=30.0,
        metadata={
            "ge": 0,
            "description": "seconds between a worker's presence records (cloudq status / inspect); "
            "each lives 3 intervals; 0: off",
        },
    )
    metrics_emf: bool = field(
        default=False,
        metadata={
            "description": "Lambda: print CloudWatch Embedded Metric Format lines (cloudq_tasks_total...) after "
            "each invocation; no API call, but CloudWatch bills each metric it creates from them"
        },
    )

    def __post_init__(self) -> None:
        if not _plain(self):
            from .settings_schema import validate

            given = {name: getattr(self, name) for name in _FIELDS}
            for name, value in validate(given).items():
                object.__setattr__(self, name, value)

    def __repr__(self) -> str:
        shown = (f"{name}={getattr(self, name)!r}" for name in _FIELDS if name != "signing_key")
        return f"Settings({', '.join(shown)}, signing_key={'**********' if self.signing_key else None})"


Settings.model_fields = {item.name: item for item in fields(Settings)}
_FIELDS = Settings.model_fields
_CHECKS: dict[str, Any] = {}


def _check_of(name: str) -> Any:
    """The fast check of setting ``name`` (cloudq/plaintypes.py; Literal choices too), or None."""
    if name not in _CHECKS:
        hint = get_type_hints(Settings, None, {"Secret": Secret})[name]
        if get_origin(hint) is Literal:
            choices = frozenset(get_args(hint))
            _CHECKS[name] = lambda value: value if type(value) is str and value in choices else _defer()
        else:
            _CHECKS[name] = None if name in _WITH_VALIDATORS else check_for(hint)
    return _CHECKS[name]


def _defer() -> Any:
    raise Defer


_WITH_VALIDATORS = frozenset({"retry_backoff", "default_rate_limit"})  # settings_schema.py's own rules


def _plain(settings: Settings) -> bool:
    """Whether every non-default value already is what pydantic would make of it."""
    for name, item in _FIELDS.items():
        value = getattr(settings, name)
        if value is item.default or (item.default_factory is not MISSING and value == item.default_factory()):
            continue
        check = _check_of(name)
        try:
            checked = Defer if check is None else check(value)
        except Defer:
            return False
        # equal and of the same type: a float setting given 3 is made 3.0 by pydantic
        if checked != value or type(checked) is not type(value) or not _in_range(value, item.metadata):
            return False
    return True


def _in_range(value: Any, rules: Mapping[str, Any]) -> bool:
    if value is None:
        return True
    for rule, bound in rules.items():
        if rule == "ge" and not value >= bound:
            return False
        if rule == "gt" and not value > bound:
            return False
        if rule == "le" and not value <= bound:
            return False
        if rule == "min_length" and len(value) < bound:
            return False
        if rule == "pattern" and re.search(bound, value) is None:
            return False
    return True


def _read_toml(path: Path) -> dict[str, Any]:
    try:
        return tomllib.loads(path.read_text())
    except tomllib.TOMLDecodeError as exc:
        raise ConfigurationError(f"{path}: not valid TOML ({exc})") from None


def _find_file_config(start: Path) -> tuple[dict[str, Any], str]:
    """The nearest cloudq.toml or pyproject.toml with a [tool.cloudq] table."""
    for folder in (start, *start.parents):
        own = folder / "cloudq.toml"
        if own.is_file():
            data = _read_toml(own)
            return dict(data.get("tool", {}).get("cloudq", data)), str(own)
        project = folder / "pyproject.toml"
        if project.is_file():
            table = _read_toml(project).get("tool", {}).get("cloudq")
            if table is not None:
                return dict(table), f"{project} [tool.cloudq]"
            return {}, ""
    return {}, ""


def _env_config(environ: Mapping[str, str]) -> dict[str, tuple[Any, str]]:
    """Settings from ``CLOUDQ_<SETTING>`` variables; an empty variable counts as unset."""
    found: dict[str, tuple[Any, str]] = {}
    for name in Settings.model_fields:
        var = ENV_PREFIX + name.upper()
        raw = environ.get(var, "")
        if not raw.strip():
            continue
        value: Any = raw
        if isinstance(Settings.model_fields[name].default_factory, type) or raw[:1] in "[{":
            try:
                value = json.loads(raw)
            except json.JSONDecodeError:
                raise ConfigurationError(f"{var} must be JSON, got {raw!r}") from None
        found[name] = (value, var)
    _warn_unknown_variables(environ)
    return found


def _warn_unknown_variables(environ: Mapping[str, str]) -> None:
    """Log a warning, once per variable, for a ``CLOUDQ_*`` variable that cloudq does not read."""
    known = {ENV_PREFIX + name.upper() for name in Settings.model_fields} | OTHER_VARIABLES
    for var in sorted(environ):
        if var.startswith(ENV_PREFIX) and var not in known and var not in _warned:
            _warned.add(var)
            hint = close_match(var, known) or (
                f"; the settings' variables are CLOUDQ_<SETTING> for {', '.join(sorted(Settings.model_fields))}"
            )
            logging.getLogger("cloudq.config").warning("ignoring unknown environment variable %s%s", var, hint)


def load_settings(
    overrides: dict[str, Any] | None = None,
    environ: Mapping[str, str] | None = None,
    cwd: Path | None = None,
) -> Settings:
    """Merge every source; raise ConfigurationError naming the setting and its source."""
    sources: dict[str, str] = {}
    merged: dict[str, Any] = {}
    file_values, file_name = _find_file_config(cwd or Path.cwd())
    for key, value in file_values.items():
        merged[key] = value
        sources[key] = file_name
    for key, (value, var) in _env_config(os.environ if environ is None else environ).items():
        merged[key] = value
        sources[key] = var
    for key, value in (overrides or {}).items():
        if value is not None:
            merged[key] = value
            sources[key] = "App()"
    from_pydantic: Callable[[dict[str, Any]], dict[str, Any]] | None = None
    if not merged.keys() <= _FIELDS.keys():  # an unknown setting: pydantic's error names it
        from .settings_schema import validate as from_pydantic
    try:
        return Settings(**(from_pydantic(merged) if from_pydantic else merged))
    except Exception as exc:
        from pydantic import ValidationError  # loaded already when pydantic raised this

        if not isinstance(exc, ValidationError):
            raise
        raise ConfigurationError(_describe(exc, sources)) from None


def _describe(exc: ValidationError, sources: dict[str, str]) -> str:
    parts = []
    for err in exc.errors():
        key = str(err["loc"][0]) if err["loc"] else "?"
        if err["type"] == "extra_forbidden":
            allowed = ", ".join(sorted(Settings.model_fields))
            hint = close_match(key, Settings.model_fields)
            parts.append(f"unknown setting {key!r} (from {sources.get(key, '?')}){hint}; known settings: {allowed}")
        else:
            where = sources.get(key, "default")
            parts.append(f"invalid setting {key!r} (from {where}): {err['msg']}")
    return "; ".join(parts)


def default_url(kind: str) -> str:
    """The embedded default: one SQLite file in the working directory for broker and results."""
    return f"sqlite:///{Path.cwd() / DEFAULT_DB}"
