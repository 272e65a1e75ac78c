"""Health checks: can each backend of a store be reached, and how fast (public types).

:meth:`BlobStore.health` asks the metadata and the blob backend for one cheap round
trip each (their ``ping()``: a read of a probe key, a ``HeadBucket``...), nothing
written, in parallel threads; a backend that has not answered when ``timeout`` seconds
are up is reported unreachable then, whatever its own retries and timeouts would do.

Example:
    >>> from cacheness.storage import BlobStore
    >>> store = BlobStore(metadata_backend="memory", blob_backend="memory")
    >>> report = store.health(timeout=2.0)
    >>> report.healthy, [b.role for b in report.backends]
    (True, ['metadata', 'blob'])
    >>> sorted(report.to_dict())
    ['backends', 'healthy', 'timeout']
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Sequence
from typing import Any, Literal

import msgspec

log = logging.getLogger(__name__)

Role = Literal["metadata", "blob"]


class BackendHealth(msgspec.Struct, frozen=True, kw_only=True):
    """How one backend answered a health check.

    Attributes:
        role: ``"metadata"`` (the index) or ``"blob"`` (where the bytes live).
        backend: the backend's registered name (``"postgresql"``, ``"s3"``...).
        reachable: it answered, without an error, within the timeout.
        round_trip_seconds: how long the answer took (None: no answer in time).
        error: why it is unreachable (None when reachable).
    """

    role: Role
    backend: str
    reachable: bool
    round_trip_seconds: float | None
    error: str | None = None


class HealthReport(msgspec.Struct, frozen=True, kw_only=True):
    """The answer of :meth:`BlobStore.health`: one :class:`BackendHealth` per backend.

    Attributes:
        backends: metadata first, then blob.
        timeout: the seconds the check waited at most.
    """

    backends: tuple[BackendHealth, ...]
    timeout: float

    @property
    def healthy(self) -> bool:
        """True when every backend is reachable."""
        return all(backend.reachable for backend in self.backends)

    def to_dict(self) -> dict[str, Any]:
        """A JSON-able dict (``healthy`` included), e.g. for an HTTP health endpoint."""
        data: dict[str, Any] = msgspec.to_builtins(self)
        data["healthy"] = self.healthy
        return data


def check_health(
    probes: Sequence[tuple[Role, str, Callable[[], object]]], timeout: float
) -> HealthReport:
    """Run ``(role, backend name, probe)`` probes in parallel; report within ``timeout``."""
    results: dict[int, BackendHealth] = {}
    done = threading.Event()
    lock = threading.Lock()

    def run(index: int, role: Role, name: str, probe: Callable[[], object]) -> None:
        start = time.perf_counter()
        try:
            probe()
        except Exception as exc:  # noqa: BLE001 - reported as the backend's state
            result = BackendHealth(
                role=role,
                backend=name,
                reachable=False,
                round_trip_seconds=time.perf_counter() - start,
                error=f"{type(exc).__name__}: {exc}",
            )
        else:
            result = BackendHealth(
                role=role,
                backend=name,
                reachable=True,
                round_trip_seconds=time.perf_counter() - start,
            )
        with lock:
            results[index] = result
            if len(results) == len(probes):
                done.set()

    for index, (role, name, probe) in enumerate(probes):
        thread = threading.Thread(
            target=run, args=(index, role, name, probe), name=f"cacheness-health-{name}"
        )
        thread.daemon = True  # a backend that never answers must not hold the process
        thread.start()
    done.wait(timeout)
    with lock:
        backends = tuple(
            results.get(index)
            or BackendHealth(
                role=role,
                backend=name,
                reachable=False,
                round_trip_seconds=None,
                error=f"no answer within the timeout of {timeout:g} s",
            )
            for index, (role, name, _) in enumerate(probes)
        )
    for backend in backends:
        if not backend.reachable:
            log.warning(
                "health check: the %s backend %s is unreachable (%s)",
                backend.role,
                backend.backend,
                backend.error,
            )
    return HealthReport(backends=backends, timeout=timeout)
