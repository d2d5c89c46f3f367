"""The pydantic model of Settings (config.py), built from its one table of fields: the slow path
that converts values (strings from the environment, ints for floats) and explains bad ones."""

from __future__ import annotations

from dataclasses import MISSING
from typing import Any, get_type_hints

from pydantic import ConfigDict, Field, SecretStr, create_model, field_validator

from .config import Secret, Settings
from .errors import ConfigurationError
from .util.rates import parse_rate


def _backoff(cls: Any, value: Any) -> Any:
    """``True``/``False`` as given (from TOML/env too); a number must be >= 0."""
    if isinstance(value, str) and value.strip().lower() in ("true", "false"):
        return value.strip().lower() == "true"
    if isinstance(value, bool):
        return value
    number = float(value)
    if number < 0:
        raise ValueError("retry_backoff must be true, false or a number of seconds >= 0")
    return number


def _rate(cls: Any, value: Any) -> Any:
    """Celery's rate syntax, checked when the settings are read rather than at the first task."""
    try:
        parse_rate(value, "default_rate_limit")
    except ConfigurationError as exc:
        raise ValueError(str(exc).partition(": ")[2]) from None
    return value


def _model() -> Any:
    hints = get_type_hints(Settings, None, {"Secret": Secret})
    specs: dict[str, Any] = {}
    for name, item in Settings.model_fields.items():
        annotation = SecretStr | None if name == "signing_key" else hints[name]
        if item.default_factory is not MISSING:
            specs[name] = (annotation, Field(default_factory=item.default_factory, **item.metadata))
        else:
            specs[name] = (annotation, Field(item.default, **item.metadata))
    return create_model(  # type: ignore[call-overload]
        "Settings",
        __config__=ConfigDict(extra="forbid", frozen=True, arbitrary_types_allowed=True),
        __validators__={
            "_backoff": field_validator("retry_backoff", mode="before")(classmethod(_backoff)),  # type: ignore[dict-item]
            "_rate": field_validator("default_rate_limit")(classmethod(_rate)),  # type: ignore[dict-item]
        },
        **specs,
    )


SettingsModel = _model()


def validate(values: dict[str, Any]) -> dict[str, Any]:
    """Every setting's value after pydantic's conversions; raises its ValidationError."""
    model = SettingsModel(**values)
    return {name: getattr(model, name) for name in Settings.model_fields}
