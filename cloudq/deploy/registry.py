"""Broker URL scheme -> deployer: the ``cloudq.deployers`` entry points, else the built-in adapters."""

from __future__ import annotations

from importlib import import_module
from typing import Any
from urllib.parse import urlsplit

from ..errors import ConfigurationError, MissingExtra
from .base import Deployer
from .model import AppModel

ENTRY_POINT_GROUP = "cloudq.deployers"
_BUILTIN = {
    "sqs": ("cloudq_aws.deploy:AWSDeployer", "aws"),
    "pubsub": ("cloudq_gcp.deploy:GCPDeployer", "gcp"),
}
_EMBEDDED = {"memory", "sqlite"}


def _load(target: str) -> Any:
    module, _, attr = target.partition(":")
    return getattr(import_module(module), attr)


def deployer_factory(scheme: str) -> Any:
    from importlib.metadata import entry_points

    for ep in entry_points(group=ENTRY_POINT_GROUP):
        if ep.name == scheme:
            return ep.load()
    target, extra = _BUILTIN.get(scheme, (None, None))
    if target is None:
        known = ", ".join(sorted(_BUILTIN))
        raise ConfigurationError(f"cloudq deploy does not know broker scheme {scheme!r}; it deploys: {known}")
    try:
        return _load(target)
    except ImportError as exc:
        raise MissingExtra(
            f"deploying a {scheme}:// broker needs {exc.name or 'an optional package'}: pip install 'cloudq[{extra}]'"
        ) from None


def deployer_for(model: AppModel) -> Deployer:
    """The deployer for the app's broker."""
    scheme = urlsplit(model.broker_url).scheme
    if scheme in _EMBEDDED:
        raise ConfigurationError(
            f"app {model.app!r} uses the embedded {scheme}:// broker, which needs no cloud resources: "
            "configure broker='sqs://' or broker='pubsub://PROJECT' (or CLOUDQ_BROKER) to deploy"
        )
    deployer: Deployer = deployer_factory(scheme)(model)
    return deployer
