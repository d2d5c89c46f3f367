"""URL scheme -> backend factory.

Built-in schemes resolve without touching package metadata (it is slow to import); others come
from the ``cloudq.brokers`` / ``cloudq.results`` entry points that the extras register.
"""

from __future__ import annotations

from importlib import import_module
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
# schemes whose adapters live in an extra: what to install when the entry point is missing
_EXTRAS = {"sqs": "aws", "dynamodb": "aws", "pubsub": "gcp", "firestore": "gcp"}
# serverless runtimes (entry point group cloudq.runtimes) and their extras
_RUNTIME_EXTRAS = {"lambda": "aws", "push_wsgi": "gcp", "push_asgi": "gcp", "cloud_event": "gcp"}


def _load(target: str) -> Any:
    module, _, attr = target.partition(":")
    obj: Any = import_module(module)
    for part in attr.split("."):
        obj = getattr(obj, part)
    return obj


def load_plugin(group: str, name: str, what: str, extra: str) -> Any | None:
    """Entry point ``name`` of ``group``, or None when none is registered. An entry point whose
    import fails raises MissingExtra naming the pip extra that provides what it needs."""
    from importlib.metadata import entry_points

    for ep in entry_points(group=group):
        if ep.name == name:
            try:
                return ep.load()
            except ImportError as exc:
                raise MissingExtra(
                    f"{what} needs {exc.name or 'an optional package'}: pip install 'cloudq[{extra}]'"
                ) from None
    return None


def _factory(kind: str, url: str, builtin: dict[str, str]) -> Any:
    scheme = urlsplit(url).scheme
    if not scheme:
        raise ConfigurationError(f"{kind} URL {url!r} has no scheme; expected e.g. sqlite:///cloudq.db or sqs://")
    if scheme in builtin:
        return _load(builtin[scheme])
    extra = _EXTRAS.get(scheme, "all")
    found = load_plugin(f"cloudq.{kind}s", scheme, f"{kind} scheme {scheme!r}", extra)
    if found is not None:
        return found
    if scheme in _EXTRAS:
        raise MissingExtra(f"{kind} scheme {scheme!r} needs the {extra} extra: pip install 'cloudq[{extra}]'")
    known = sorted({*builtin, *_EXTRAS})
    raise ConfigurationError(f"unknown {kind} scheme {scheme!r} in {url!r}; known schemes: {', '.join(known)}")


def open_broker(url: str, settings: Settings) -> Broker:
    broker: Broker = _factory("broker", url, _BUILTIN_BROKERS)(url, settings)
    return broker


def open_results(url: str, settings: Settings) -> ResultStore:
    store: ResultStore = _factory("result", url, _BUILTIN_RESULTS)(url, settings)
    return store


def load_runtime(name: str) -> Any:
    """The factory of a serverless runtime (``factory(app, **options)``) from the extras."""
    extra = _RUNTIME_EXTRAS.get(name, "all")
    found = load_plugin("cloudq.runtimes", name, f"runtime {name!r}", extra)
    if found is None:
        raise MissingExtra(f"runtime {name!r} is not installed: pip install 'cloudq[{extra}]'")
    return found
