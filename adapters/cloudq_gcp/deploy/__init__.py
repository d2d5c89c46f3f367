"""``cloudq deploy`` on Google Cloud (the ``pubsub`` deployer entry point): see deployer.py."""

from .deployer import GCPDeployer

__all__ = ["GCPDeployer"]
