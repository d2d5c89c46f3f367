"""Broker URL scheme -> deployer: the ``cloudq.deployers`` entry points, else the built-in adapters."""

from __future__ import annotations

from typing import Any
from urllib.parse import urlsplit

from ..errors import ConfigurationError, MissingExtra
from ..registry import extra_for, load_plugin, schemes
from .base import Deployer
from .model import AppModel

ENTRY_POINT_GROUP = "cloudq.deployers"
_EMBEDDED = {"memory", "sqlite"}


def deployer_factory(scheme: str) -> Any:
    what = f"deploying a {scheme}:// broker"
    extra = extra_for(scheme)
    found = load_plugin(ENTRY_POINT_GROUP, scheme, what, extra)
    if found is not None:
        return found
    deployable = schemes("broker") - _EMBEDDED
    if scheme in deployable:
        raise MissingExtra(f"{what} needs the {extra} extra: pip install 'cloudq[{extra}]'")
    known = ", ".join(sorted(deployable))
    raise ConfigurationError(f"cloudq deploy does not know broker scheme {scheme!r}; it deploys: {known}")


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


def scheduler_for(broker_url: str) -> str:
    """What runs the periodic tasks of an app on this broker: its deployer's cloud scheduler
    (``scheduler`` attribute) once deployed, else ``cloudq beat``."""
    scheme = urlsplit(broker_url).scheme
    if scheme in _EMBEDDED:
        return "cloudq beat"
    try:
        name = getattr(deployer_factory(scheme), "scheduler", None)
    except ConfigurationError:
        name = None
    return f"{name} (cloudq deploy) or cloudq beat" if name else "cloudq beat"
