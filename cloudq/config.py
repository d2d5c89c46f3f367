"""Settings: defaults < ``[tool.cloudq]`` in pyproject.toml (or cloudq.toml) < ``CLOUDQ_*`` < App kwargs.

Validated with pydantic so a bad value names the setting, where it came from and what is allowed.
"""

from __future__ import annotations

import json
import logging
import os
import tomllib
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, SecretStr, ValidationError, field_validator

from .backends.urls import close_match
from .errors import ConfigurationError
from .util.rates import parse_rate

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


class Settings(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, arbitrary_types_allowed=True)

    @field_validator("retry_backoff", mode="before")
    @classmethod
    def _backoff(cls, value: Any) -> Any:
        """``True``/``False`` as given (from TOML/env too); a number must be >= 0."""
        if isinstance(value, str) and value.strip().lower() in ("true", "false"):
            return value.strip().lower() == "true"
        if isinstance(value, bool):
            return value
        number = float(value)
        if number < 0:
            raise ValueError("retry_backoff must be true, false or a number of seconds >= 0")
        return number

    @field_validator("default_rate_limit")
    @classmethod
    def _rate(cls, value: Any) -> Any:
        """Celery's rate syntax, checked when the settings are read rather than at the first task."""
        try:
            parse_rate(value, "default_rate_limit")
        except ConfigurationError as exc:
            raise ValueError(str(exc).partition(": ")[2]) from None
        return value

    broker: str | None = None
    results: str | None = None
    default_queue: str = Field("default", min_length=1, pattern=r"^[A-Za-z0-9_.-]+$")
    routes: dict[str, str] = Field(default_factory=dict, description="glob on task name -> queue")
    result_expires: float = Field(86400.0, ge=0, description="seconds a result is kept; 0 keeps it forever")
    track_started: bool = False
    result_extended: bool = Field(
        False, description="keep each task's args, kwargs, queue and worker in its result record (Celery's)"
    )
    dashboard_redact: bool | list[str] = Field(
        True,
        description="cloudq dashboard: true hides every argument value (names and types shown); a list "
        "hides the values of the arguments so named; false shows them all",
    )
    visibility_timeout: float = Field(60.0, gt=0, le=43200)
    prefetch_multiplier: int = Field(4, ge=1, le=1000)
    concurrency: int | None = Field(None, ge=1, le=1024)
    pool: Literal["threads", "process", "async", "prefork", "solo"] = Field(
        "threads", description="prefork = process; solo = threads with concurrency 1 (Celery's names)"
    )
    max_tasks_per_child: int | None = Field(
        None, ge=1, description="process pool: a child is replaced after this many tasks (Celery's)"
    )
    max_memory_per_child: int | None = Field(
        None, ge=1, description="process pool: KiB of resident memory past which a child is replaced after its task"
    )
    hostname: str | None = Field(
        None, min_length=1, description="the worker's node name (self.request.hostname); default cloudq@<host>"
    )
    poll_wait: float = Field(
        1.0, gt=0, le=20, description="seconds an idle worker long-polls; also bounds how long a stop waits for it"
    )
    max_retries: int | None = Field(3, ge=0, description="retries a task may ask for; null: forever")
    retry_on: list[Any] = Field(
        default_factory=list,
        description="exception classes (or names: 'OSError', 'module.Class') every task retries on, "
        "as if each had autoretry_for=...; empty (Celery's default): tasks retry only when asked",
    )
    autoretry_for: list[Any] = Field(default_factory=list, description="alias of retry_on (Celery's name)")
    default_retry_delay: float = Field(
        180.0, ge=0, description="seconds before a retry that names no countdown/eta (Celery: 180)"
    )
    retry_backoff: bool | float = Field(
        False,
        description="false: autoretries wait default_retry_delay; true: exponential from 1 s; a number: "
        "exponential from that many seconds (0 retries at once)",
    )
    retry_backoff_max: float = Field(600.0, ge=0)
    retry_jitter: bool = True
    time_limit: float | None = Field(None, gt=0)
    disable_rate_limits: bool = Field(
        False, description="ignore every task's rate_limit (Celery's worker_disable_rate_limits)"
    )
    default_rate_limit: str | float | None = Field(
        None, description="rate_limit of every task that sets none: '10/s', '100/m', '1000/h' (per worker, Celery's)"
    )
    soft_time_limit: float | None = Field(
        None, gt=0, description="seconds; the soft limit of every task that sets none (Celery's)"
    )
    annotations: dict[str, dict[str, Any]] = Field(
        default_factory=dict,
        description="task name or '*' -> task options applied at registration (Celery's task_annotations)",
    )
    signing_key: SecretStr | None = None
    create_missing: bool = True
    eager: bool = False
    eager_propagates: bool = Field(
        False, description="eager mode: .delay()/.apply() raise the task's exception at call time (Celery's)"
    )
    exception_modules: list[str] = Field(
        default_factory=list,
        description="modules whose exception classes .get() may rebuild even when not yet imported "
        "(it imports them); classes of already-imported modules are rebuilt anyway",
    )
    revoke_check: bool = Field(
        True,
        description="read the REVOKED records of each batch of deliveries before running it (one batched "
        "read per batch: worker and Lambda; one read per push request); false: revoked tasks run",
    )
    revoke_poll: float = Field(
        5.0,
        ge=0,
        description="seconds between the worker's reads of the records of the tasks it holds, so "
        "revoke(terminate=True) reaches a running task (one batched read per poll while it holds any); 0: off",
    )
    broker_options: dict[str, Any] = Field(default_factory=dict)
    results_options: dict[str, Any] = Field(default_factory=dict)
    deploy: dict[str, Any] = Field(default_factory=dict, description="options of `cloudq deploy` (deploy/settings.py)")
    beat_schedule: dict[str, Any] = Field(
        default_factory=dict,
        description="periodic tasks, Celery's beat_schedule: name -> {task, schedule, args, kwargs, options, missed}",
    )
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"
    presence_interval: float = Field(
        30.0,
        ge=0,
        description="seconds between a worker's presence records (cloudq status / inspect); "
        "each lives 3 intervals; 0: off",
    )
    metrics_emf: bool = Field(
        False,
        description="Lambda: print CloudWatch Embedded Metric Format lines (cloudq_tasks_total...) after each "
        "invocation; no API call, but CloudWatch bills each metric it creates from them",
    )


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
    try:
        return Settings(**merged)
    except ValidationError as exc:
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
