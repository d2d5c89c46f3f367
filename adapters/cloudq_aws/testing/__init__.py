"""Test helpers for code on AWS: a local moto server (server.py) and the pytest fixtures every AWS
test folder shares (fixtures.py: ``fixtures.register(config)`` from a conftest). Importing this
package needs neither moto nor pytest; starting the server needs ``moto[server]``."""

from .server import MotoServer, RequestCounts, free_port, stop_process

__all__ = ["MotoServer", "RequestCounts", "free_port", "stop_process"]
