"""Task states, named as Celery names them.

An expired task (its ``expires`` passed before it ran) is recorded as FAILURE with the
error type ``TaskExpired``.
"""

PENDING = "PENDING"
STARTED = "STARTED"
RETRY = "RETRY"
SUCCESS = "SUCCESS"
FAILURE = "FAILURE"

TERMINAL_STATES = frozenset({SUCCESS, FAILURE})
ALL_STATES = (PENDING, STARTED, RETRY, SUCCESS, FAILURE)
