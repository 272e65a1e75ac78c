"""A small circuit breaker for remote backends (private).

After ``failure_threshold`` consecutive connection failures the breaker *opens*: calls
fail at once with :class:`BackendUnavailableError` instead of waiting for timeouts and
retries. After ``reset_timeout`` seconds one trial call is let through (*half-open*);
its success closes the breaker, its failure opens it for another cool-down. The clock
is injectable so tests never sleep through a cool-down.

Example:
    >>> now = [0.0]
    >>> breaker = CircuitBreaker(failure_threshold=2, reset_timeout=10, clock=lambda: now[0])
    >>> breaker.record_failure(OSError("refused")); breaker.record_failure(OSError("refused"))
    >>> breaker.state
    'open'
    >>> breaker.before_call()  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    cacheness.storage.errors.BackendUnavailableError: backend is unavailable: 2 consecutive ...
    >>> now[0] = 10.0
    >>> breaker.before_call()  # the trial call
    >>> breaker.record_success()
    >>> breaker.state
    'closed'
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from typing import Literal

from cacheness.storage._validate import check_int
from cacheness.storage.errors import BackendUnavailableError, ConfigError

log = logging.getLogger(__name__)

CircuitState = Literal["closed", "open", "half_open"]


class CircuitBreaker:
    """Fail fast after repeated connection failures; probe again after a cool-down.

    Args:
        failure_threshold: consecutive failures that open the breaker (≥ 1).
        reset_timeout: seconds the breaker stays open before one trial call.
        clock: monotonic clock in seconds (injectable for tests).
        name: what is guarded, for messages (e.g. ``"S3 endpoint http://..."``).

    Raises:
        ConfigError: a threshold below 1 or a negative timeout.
    """

    def __init__(
        self,
        *,
        failure_threshold: int = 5,
        reset_timeout: float = 30.0,
        clock: Callable[[], float] = time.monotonic,
        name: str = "backend",
    ) -> None:
        check_int("failure_threshold", failure_threshold, 1)
        if reset_timeout < 0:
            raise ConfigError(f"reset_timeout must not be negative, got {reset_timeout}")
        self.failure_threshold = failure_threshold
        self.reset_timeout = float(reset_timeout)
        self.name = name
        self._clock = clock
        self._lock = threading.Lock()
        self._failures = 0
        self._opened_at: float | None = None
        self._trial_in_flight = False
        self._last_error = ""
        self.times_opened = 0
        """How often the breaker has opened since it was made."""
        self.rejected_calls = 0
        """Calls refused without touching the network while open."""

    @property
    def state(self) -> CircuitState:
        """``"closed"`` (calls pass), ``"open"`` (calls fail fast) or ``"half_open"``."""
        with self._lock:
            if self._opened_at is None:
                return "closed"
            if self._trial_in_flight or self._clock() - self._opened_at >= self.reset_timeout:
                return "half_open"
            return "open"

    @property
    def consecutive_failures(self) -> int:
        """Connection failures since the last success."""
        with self._lock:
            return self._failures

    def before_call(self) -> None:
        """Let a call through, or raise because the breaker is open.

        Raises:
            BackendUnavailableError: open and cooling down, or half-open with the trial
                call still running.
        """
        with self._lock:
            if self._opened_at is None:
                return
            remaining = self._opened_at + self.reset_timeout - self._clock()
            if remaining <= 0 and not self._trial_in_flight:
                self._trial_in_flight = True
                log.info("%s: circuit half-open, sending one trial call", self.name)
                return
            self.rejected_calls += 1
            wait = (
                "a trial call is in progress"
                if self._trial_in_flight
                else f"failing fast for another {max(remaining, 0):.1f} s, then one trial call"
            )
            raise BackendUnavailableError(
                f"{self.name} is unavailable: {self._failures} consecutive connection "
                f"failures (last: {self._last_error}); {wait}. Check that the server is "
                "reachable; stored data is not affected."
            )

    def record_success(self) -> None:
        """Note a call that reached the server (whatever it answered); closes the breaker."""
        with self._lock:
            if self._opened_at is not None:
                log.info("%s: circuit closed again after a successful call", self.name)
            self._failures = 0
            self._opened_at = None
            self._trial_in_flight = False

    def record_failure(self, error: BaseException) -> None:
        """Note a connection failure; opens the breaker at the threshold."""
        with self._lock:
            self._failures += 1
            self._last_error = f"{type(error).__name__}: {error}"
            reopen = self._trial_in_flight
            if reopen or (self._opened_at is None and self._failures >= self.failure_threshold):
                self._opened_at = self._clock()
                self._trial_in_flight = False
                self.times_opened += 1
                log.warning(
                    "%s: circuit open after %d consecutive connection failures (last: %s); "
                    "calls fail fast for %.1f s",
                    self.name,
                    self._failures,
                    self._last_error,
                    self.reset_timeout,
                )

    def record_neutral(self) -> None:
        """Note a call that failed before reaching the network (a local error).

        Counters are unchanged; a half-open breaker lets the next call be the trial.
        """
        with self._lock:
            self._trial_in_flight = False

    def reset(self) -> None:
        """Close the breaker and forget past failures."""
        self.record_success()
