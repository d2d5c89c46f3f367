"""The ``deploy`` table of the settings: which queues run where, and how the cloud runs them.

```toml
[tool.cloudq.deploy]
stage = "dev"                          # default for --stage
tags = { team = "payments" }           # added to every resource cloudq creates
lambda_runtime = "python3.13"          # the functions' runtime; the package is built for it
lambda_architecture = "x86_64"         # or "arm64"
log_retention_days = 30                # the functions' CloudWatch log groups
schedules = "cloud"                    # periodic tasks on the cloud's scheduler; "beat": run `cloudq beat`
scheduler_location = "us-central1"     # Cloud Scheduler's location (GCP)

[tool.cloudq.deploy.queues."*"]        # every queue (globs apply in order, then the exact name)
runtime = "container"                  # container | lambda | push

[tool.cloudq.deploy.queues.emails]
runtime = "lambda"
batch_size = 10
batching_window = 2
max_concurrency = 20
timeout = 60                           # seconds a function invocation (or a push request) may take
memory = 512

[tool.cloudq.deploy.package]
include = ["templates/**"]             # extra project files for the function (globs from the project folder)
requirements = ["httpx"]               # extra installed distributions to package
```

Validated with pydantic here (not in Settings) so ``import cloudq`` and the worker never pay for it.
"""

from __future__ import annotations

import re
from fnmatch import fnmatchcase
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from ..errors import ConfigurationError

Runtime = Literal["container", "lambda", "push"]
RUNTIMES: tuple[str, ...] = ("container", "lambda", "push")
STAGE_PATTERN = r"^[a-z][a-z0-9-]{0,15}$"
DEFAULT_STAGE = "dev"
# the Python runtimes Lambda accepts (its API's Runtime values) for the Pythons cloudq supports (>= 3.11)
LAMBDA_RUNTIMES: tuple[str, ...] = ("python3.11", "python3.12", "python3.13", "python3.14")
# the newest of them this project is tested on
DEFAULT_LAMBDA_RUNTIME = "python3.13"
LambdaArchitecture = Literal["x86_64", "arm64"]
DEFAULT_LAMBDA_ARCHITECTURE: LambdaArchitecture = "x86_64"
# the retention periods CloudWatch Logs accepts (PutRetentionPolicy)
LOG_RETENTION_DAYS: tuple[int, ...] = (
    1, 3, 5, 7, 14, 30, 60, 90, 120, 150, 180, 365, 400, 545, 731, 1096, 1827, 2192, 2557, 2922, 3288, 3653,
)  # fmt: skip
DEFAULT_LOG_RETENTION_DAYS = 30


class QueueOptions(BaseModel):
    """How one queue is deployed; unset fields fall through to broader patterns, then to defaults."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    runtime: Runtime | None = None
    visibility_timeout: float | None = Field(None, gt=0, description="lease / ack deadline, seconds")
    max_deliveries: int | None = Field(None, ge=1, description="deliveries before the service dead-letters by itself")
    delayed: bool | None = Field(None, description="tasks on this queue are sent with countdown/eta")
    batch_size: int | None = Field(None, ge=1)
    batching_window: float | None = Field(None, ge=0)
    max_concurrency: int | None = Field(None, ge=1)
    timeout: float | None = Field(None, gt=0, description="seconds one function invocation / push request may take")
    memory: int | None = Field(None, ge=128, le=10240, description="function memory, MB")
    push_endpoint: str | None = Field(None, description="HTTPS URL Pub/Sub pushes to (runtime = push)")
    service_account: str | None = Field(None, description="service account whose OIDC token signs pushes")

    def over(self, base: QueueOptions) -> QueueOptions:
        """These options, with unset fields taken from ``base``."""
        return base.model_copy(update=self.model_dump(exclude_none=True))


class PackageOptions(BaseModel):
    """What goes into a function's code archive besides the app module's package and cloudq."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    include: tuple[str, ...] = ()
    exclude: tuple[str, ...] = ()
    requirements: tuple[str, ...] = ()


class DeploySettings(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    stage: str = Field(DEFAULT_STAGE, pattern=STAGE_PATTERN)
    tags: dict[str, str] = Field(default_factory=dict)
    queues: dict[str, QueueOptions] = Field(default_factory=dict)
    package: PackageOptions = Field(default_factory=PackageOptions)
    lambda_runtime: str = DEFAULT_LAMBDA_RUNTIME
    lambda_architecture: LambdaArchitecture = DEFAULT_LAMBDA_ARCHITECTURE
    log_retention_days: int = DEFAULT_LOG_RETENTION_DAYS
    # periodic tasks: "cloud" deploys them to the cloud's scheduler, "beat" leaves them to `cloudq beat`
    schedules: Literal["cloud", "beat"] = "cloud"
    scheduler_location: str = Field("us-central1", description="Cloud Scheduler's location for the jobs (GCP)")

    @field_validator("lambda_runtime")
    @classmethod
    def _known_runtime(cls, value: str) -> str:
        if value not in LAMBDA_RUNTIMES:
            raise ValueError(
                f"{value!r} is not a Lambda runtime cloudq runs on; use one of {', '.join(LAMBDA_RUNTIMES)}"
            )
        return value

    @field_validator("log_retention_days")
    @classmethod
    def _known_retention(cls, value: int) -> int:
        if value not in LOG_RETENTION_DAYS:
            allowed = ", ".join(str(d) for d in LOG_RETENTION_DAYS)
            raise ValueError(f"CloudWatch Logs keeps logs for one of {allowed} days, not {value}")
        return value

    def for_queue(self, queue: str) -> QueueOptions:
        """Matching patterns in the order written, then the exact name (most specific wins)."""
        merged = QueueOptions()
        for pattern, options in self.queues.items():
            if pattern != queue and fnmatchcase(queue, pattern):
                merged = options.over(merged)
        exact = self.queues.get(queue)
        return exact.over(merged) if exact is not None else merged


def parse_deploy_settings(raw: dict[str, Any]) -> DeploySettings:
    """Validate the ``deploy`` table; a bad value names its path and what is allowed."""
    try:
        return DeploySettings.model_validate(raw)
    except ValidationError as exc:
        parts = []
        for err in exc.errors():
            path = ".".join(str(p) for p in err["loc"])
            if err["type"] == "extra_forbidden":
                parts.append(f"unknown deploy setting {path!r}")
            else:
                parts.append(f"invalid deploy setting {path!r}: {err['msg'].removeprefix('Value error, ')}")
        raise ConfigurationError("; ".join(parts) + " (in [tool.cloudq.deploy] or CLOUDQ_DEPLOY)") from None


def queue_table(queue: str) -> str:
    """Where a queue's options go, as a TOML table header (for messages saying what to change)."""
    key = queue if re.match(r"^[A-Za-z0-9_-]+$", queue) else f'"{queue}"'
    return f"[tool.cloudq.deploy.queues.{key}]"


def check_stage(stage: str) -> str:
    if not re.match(STAGE_PATTERN, stage):
        raise ConfigurationError(
            f"stage {stage!r} is not allowed: 1-16 lowercase letters, digits or '-', starting with a letter"
        )
    return stage
