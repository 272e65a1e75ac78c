"""The circuit breaker, driven by a fake clock: no real cool-downs."""

from __future__ import annotations

import pytest

from cacheness.storage._blob._circuit_breaker import CircuitBreaker
from cacheness.storage.errors import BackendUnavailableError, ConfigError


def test_opens_after_consecutive_failures_only(clock):
    breaker = CircuitBreaker(failure_threshold=3, reset_timeout=10, clock=clock)
    for _ in range(2):
        breaker.record_failure(ConnectionError("refused"))
    breaker.record_success()  # resets the count
    for _ in range(2):
        breaker.record_failure(ConnectionError("refused"))
    assert breaker.state == "closed"
    breaker.before_call()
    breaker.record_failure(ConnectionError("refused"))
    assert breaker.state == "open"
    assert breaker.consecutive_failures == 3


def test_open_breaker_rejects_then_allows_one_trial(clock):
    breaker = CircuitBreaker(failure_threshold=1, reset_timeout=10, clock=clock, name="S3 x")
    breaker.record_failure(ConnectionError("refused"))
    with pytest.raises(BackendUnavailableError, match=r"S3 x is unavailable.*another 10\.0 s"):
        breaker.before_call()
    clock.now = 9.9
    with pytest.raises(BackendUnavailableError):
        breaker.before_call()
    clock.now = 10.0
    assert breaker.state == "half_open"
    breaker.before_call()  # the trial
    with pytest.raises(BackendUnavailableError, match="trial call is in progress"):
        breaker.before_call()  # everyone else still fails fast
    breaker.record_success()
    assert breaker.state == "closed"
    breaker.before_call()
    assert breaker.rejected_calls == 3


def test_failed_trial_reopens_for_a_full_cool_down(clock):
    breaker = CircuitBreaker(failure_threshold=2, reset_timeout=5, clock=clock)
    breaker.record_failure(OSError("a"))
    breaker.record_failure(OSError("b"))
    clock.now = 5
    breaker.before_call()
    breaker.record_failure(OSError("still down"))
    assert breaker.state == "open"
    assert breaker.times_opened == 2
    clock.now = 9.9
    with pytest.raises(BackendUnavailableError, match="still down"):
        breaker.before_call()


def test_a_local_error_during_the_trial_frees_it(clock):
    breaker = CircuitBreaker(failure_threshold=1, reset_timeout=1, clock=clock)
    breaker.record_failure(OSError("down"))
    clock.now = 1
    breaker.before_call()
    breaker.record_neutral()  # e.g. the local spool file could not be read
    breaker.before_call()  # the next call may be the trial
    breaker.record_success()
    assert breaker.state == "closed"


@pytest.mark.parametrize(
    "options", [{"failure_threshold": 0}, {"failure_threshold": 1.5}, {"reset_timeout": -1}]
)
def test_bad_settings(options):
    with pytest.raises(ConfigError):
        CircuitBreaker(**options)
