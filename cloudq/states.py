"""Task states, named as Celery names them.

An expired task (its ``expires`` passed before it ran) is recorded as REVOKED, as in Celery:
``.get()`` raises ``TaskRevokedError``.
"""

PENDING = "PENDING"
STARTED = "STARTED"
RETRY = "RETRY"
SUCCESS = "SUCCESS"
FAILURE = "FAILURE"
REVOKED = "REVOKED"

TERMINAL_STATES = frozenset({SUCCESS, FAILURE, REVOKED})
READY_STATES = TERMINAL_STATES
EXCEPTION_STATES = frozenset({RETRY, FAILURE, REVOKED})
ALL_STATES = (PENDING, STARTED, RETRY, SUCCESS, FAILURE, REVOKED)
