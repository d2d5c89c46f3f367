import pytest

from cloudq import Retry, RetryPolicy


def test_full_jitter_is_bounded_by_the_exponential_ceiling():
    policy = RetryPolicy(max_retries=10, backoff=2.0, backoff_max=100.0, retry_on=(Exception,))
    assert policy.next_delay(1, ValueError(), rand=lambda: 1.0) == 2.0
    assert policy.next_delay(3, ValueError(), rand=lambda: 1.0) == 8.0
    assert policy.next_delay(3, ValueError(), rand=lambda: 0.25) == 2.0
    assert policy.next_delay(10, ValueError(), rand=lambda: 1.0) == 100.0  # capped


def test_no_jitter_gives_the_ceiling():
    policy = RetryPolicy(max_retries=5, backoff=1.0, jitter=False, retry_on=(Exception,))
    assert [policy.next_delay(a, ValueError()) for a in (1, 2, 3)] == [1.0, 2.0, 4.0]


def test_retries_stop_after_max_retries():
    policy = RetryPolicy(max_retries=2, backoff=1.0, retry_on=(Exception,))
    assert policy.next_delay(2, ValueError(), rand=lambda: 0.5) is not None
    assert policy.next_delay(3, ValueError()) is None


def test_exceptions_outside_retry_on_are_not_retried():
    policy = RetryPolicy(retry_on=(ConnectionError,), backoff=True)
    assert policy.next_delay(1, ValueError()) is None
    assert policy.next_delay(1, ConnectionResetError(), rand=lambda: 1.0) == 1.0


def test_explicit_retry_uses_its_countdown_but_respects_max_retries():
    policy = RetryPolicy(max_retries=1, retry_on=(ConnectionError,))
    assert policy.next_delay(1, Retry(countdown=7)) == 7
    assert policy.next_delay(2, Retry(countdown=7)) is None


@pytest.mark.parametrize("attempt", range(1, 8))
def test_delay_is_never_negative(attempt):
    assert RetryPolicy(max_retries=10, retry_on=(Exception,), backoff=True).next_delay(attempt, ValueError()) >= 0
