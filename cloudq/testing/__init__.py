"""Contract test suites every backend must pass, importable by adapters and by users' own brokers.

``from cloudq.testing import BrokerContract, BurstContract, ResultStoreContract``, subclass, and
provide the ``broker`` / ``burst_env`` / ``store`` fixture (``CanvasContract``, and ``ChordContract`` its chord cases: ``chord_app``).
Needs pytest (the ``dev`` extra).
Shared helpers: ``wait_for`` / ``eventually`` / ``poll`` (waiting.py), ``run_burst`` and
``run_worker_process`` (workers.py), ``FaultProxy`` (netfault.py), ``HookScenario`` and
``SignalRecorder`` (hooks.py: the same hooks and signals in every runtime).
"""

import pytest

# before the imports below, so their asserts report values like a test module's would
pytest.register_assert_rewrite(
    "cloudq.testing.broker_contract",
    "cloudq.testing.burst_contract",
    "cloudq.testing.canvas_contract",
    "cloudq.testing.chord_contract",
    "cloudq.testing.redrive_contract",
    "cloudq.testing.result_contract",
)

from .broker_contract import BrokerContract, assert_nothing_arrives, receive_until, unique_queue  # noqa: E402
from .burst_contract import BurstContract  # noqa: E402
from .canvas_contract import CanvasContract  # noqa: E402
from .chord_contract import ChordContract  # noqa: E402
from .hooks import HookScenario, SignalRecorder  # noqa: E402
from .redrive_contract import RedriveContract  # noqa: E402
from .result_contract import ResultStoreContract  # noqa: E402
from .waiting import eventually, poll, wait_for  # noqa: E402

__all__ = [
    "BrokerContract",
    "BurstContract",
    "CanvasContract",
    "ChordContract",
    "HookScenario",
    "RedriveContract",
    "ResultStoreContract",
    "SignalRecorder",
    "assert_nothing_arrives",
    "eventually",
    "poll",
    "receive_until",
    "unique_queue",
    "wait_for",
]
