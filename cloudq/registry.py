"""URL scheme -> backend factory.

Built-in schemes resolve without touching package metadata (it is slow to import); others come
from the ``cloudq.brokers`` / ``cloudq.results`` entry points that the extras register.
"""

from __future__ import annotations

from dataclasses import dataclass
from importlib import import_module
from importlib.util import find_spec
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

from .errors import ConfigurationError, MissingExtra

if TYPE_CHECKING:
    from .config import Settings
    from .interfaces import Broker, ResultStore

_BUILTIN_BROKERS = {
    "memory": "cloudq.backends.memory:MemoryBroker.from_url",
    "sqlite": "cloudq.backends.sqlite:SQLiteBroker.from_url",
}
_BUILTIN_RESULTS = {
    "memory": "cloudq.backends.memory:MemoryResultStore.from_url",
    "sqlite": "cloudq.backends.sqlite:SQLiteResultStore.from_url",
}


@dataclass(frozen=True, slots=True)
class Extra:
    """A plugin shipped as an extra of this wheel: what the core must know before importing it."""

    kind: str  # "broker", "result" (URL schemes), "runtime", "command"
    extra: str  # pip install 'cloudq[EXTRA]'
    needs: tuple[str, ...]  # SDK modules the adapter imports lazily on first use (checked with find_spec)


# The one table of provider plugins (entry point names, any group: a broker scheme is also its
# deployer's name). Adapters import their SDKs lazily, so their entry points load fine without
# them; this says, without importing anything, which pip extra brings what is missing.
EXTRAS: dict[str, Extra] = {
    "sqs": Extra("broker", "aws", ("boto3",)),
    "dynamodb": Extra("result", "aws", ("boto3",)),
    "lambda": Extra("runtime", "aws", ("boto3",)),
    "pubsub": Extra("broker", "gcp", ("google.cloud.pubsub_v1",)),
    "firestore": Extra("result", "gcp", ("google.cloud.firestore",)),
    "push_wsgi": Extra("runtime", "gcp", ("google.auth", "google.cloud.pubsub_v1")),
    "push_asgi": Extra("runtime", "gcp", ("google.auth", "google.cloud.pubsub_v1")),
    "cloud_event": Extra("runtime", "gcp", ("google.auth", "google.cloud.pubsub_v1")),
    "dashboard": Extra("command", "dashboard", ("starlette", "jinja2", "uvicorn", "python_multipart")),
    "metrics": Extra("command", "metrics", ("prometheus_client",)),
}
_EMBEDDED = {"memory", "sqlite"}  # both kinds


def extra_for(name: str) -> str:
    """The pip extra that provides plugin ``name`` ("all" when it is not one of ours)."""
    found = EXTRAS.get(name)
    return found.extra if found is not None else "all"


def schemes(kind: str) -> set[str]:
    """The URL schemes of ``kind`` ("broker" or "result") cloudq knows."""
    return _EMBEDDED | {name for name, plugin in EXTRAS.items() if plugin.kind == kind}


def _load(target: str) -> Any:
    module, _, attr = target.partition(":")
    obj: Any = import_module(module)
    for part in attr.split("."):
        obj = getattr(obj, part)
    return obj


def _missing_module(modules: tuple[str, ...]) -> str | None:
    """The first of ``modules`` that cannot be imported (found without importing it)."""
    for module in modules:
        try:
            if find_spec(module) is None:
                return module
        except ImportError:  # a parent package is missing
            return module
    return None


def require_extra(name: str, what: str, extra: str) -> None:
    """Raise MissingExtra (one line with the pip command) when plugin ``name``'s SDK is missing."""
    plugin = EXTRAS.get(name)
    missing = _missing_module(plugin.needs if plugin is not None else ())
    if missing is not None:
        raise MissingExtra(f"{what} needs {missing}, which is not installed: pip install 'cloudq[{extra}]'")


def load_plugin(group: str, name: str, what: str, extra: str) -> Any | None:
    """Entry point ``name`` of ``group``, or None when none is registered. A plugin whose SDK is
    missing, or whose import fails, raises MissingExtra naming the pip extra that provides it."""
    from importlib.metadata import entry_points

    for ep in entry_points(group=group):
        if ep.name == name:
            require_extra(name, what, extra)
            try:
                return ep.load()
            except ImportError as exc:
                raise MissingExtra(
                    f"{what} needs {exc.name or 'an optional package'}: pip install 'cloudq[{extra}]'"
                ) from None
    return None


def check_url(kind: str, url: str) -> None:
    """Fail early, without importing any adapter, on a URL that cannot work as a ``kind``
    ("broker" or "result") URL: no scheme, the other kind's scheme, or a missing extra."""
    scheme = urlsplit(url).scheme
    if not scheme:
        raise ConfigurationError(f"{kind} URL {url!r} has no scheme; expected e.g. sqlite:///cloudq.db or sqs://")
    own, other = (schemes("broker"), schemes("result")) if kind == "broker" else (schemes("result"), schemes("broker"))
    if scheme not in own and scheme in other:
        setting, other_setting = ("broker", "results") if kind == "broker" else ("results", "broker")
        raise ConfigurationError(
            f"{scheme}:// is a {other_setting.rstrip('s')} scheme, not a {kind} scheme: use it as {other_setting}=, "
            f"and give {setting}= one of {', '.join(f'{name}://' for name in sorted(own))}"
        )
    if scheme in EXTRAS:
        require_extra(scheme, f"{kind} scheme {scheme!r}", extra_for(scheme))


def _factory(kind: str, url: str, builtin: dict[str, str]) -> Any:
    check_url(kind, url)
    scheme = urlsplit(url).scheme
    if scheme in builtin:
        return _load(builtin[scheme])
    extra = extra_for(scheme)
    found = load_plugin(f"cloudq.{kind}s", scheme, f"{kind} scheme {scheme!r}", extra)
    if found is not None:
        return found
    if scheme in EXTRAS:
        raise MissingExtra(f"{kind} scheme {scheme!r} needs the {extra} extra: pip install 'cloudq[{extra}]'")
    known = sorted(schemes(kind) | set(builtin))
    raise ConfigurationError(f"unknown {kind} scheme {scheme!r} in {url!r}; known schemes: {', '.join(known)}")


def open_broker(url: str, settings: Settings) -> Broker:
    broker: Broker = _factory("broker", url, _BUILTIN_BROKERS)(url, settings)
    return broker


def open_results(url: str, settings: Settings) -> ResultStore:
    store: ResultStore = _factory("result", url, _BUILTIN_RESULTS)(url, settings)
    return store


def load_runtime(name: str) -> Any:
    """The factory of a serverless runtime (``factory(app, **options)``) from the extras; a
    missing SDK is a MissingExtra now, not on the first event."""
    extra = extra_for(name)
    found = load_plugin("cloudq.runtimes", name, f"runtime {name!r}", extra)
    if found is None:
        raise MissingExtra(f"runtime {name!r} is not installed: pip install 'cloudq[{extra}]'")
    return found
