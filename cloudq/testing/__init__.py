"""Contract test suites every backend must pass, importable by adapters and by users' own brokers.

``from cloudq.testing import BrokerContract, BurstContract, ResultStoreContract``, subclass, and
provide the ``broker`` / ``burst_env`` / ``store`` fixture. Needs pytest (the ``dev`` extra).
"""

import pytest

# before the imports below, so their asserts report values like a test module's would
pytest.register_assert_rewrite(
    "cloudq.testing.broker_contract", "cloudq.testing.burst_contract", "cloudq.testing.result_contract"
)

from .broker_contract import BrokerContract, assert_nothing_arrives, receive_until, unique_queue  # noqa: E402
from .burst_contract import BurstContract  # noqa: E402
from .result_contract import ResultStoreContract  # noqa: E402

__all__ = [
    "BrokerContract",
    "BurstContract",
    "ResultStoreContract",
    "assert_nothing_arrives",
    "receive_until",
    "unique_queue",
]
