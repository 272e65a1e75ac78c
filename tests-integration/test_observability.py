"""A team cache (PostgreSQL + S3, real services) seen through OpenTelemetry.

Exact metric counts after a scripted sequence, the S3 cost figures of the same
sequence, the pool statistics and the health report.
"""

from __future__ import annotations

import random
from collections.abc import Iterator
from typing import Any

import pytest

from cacheness.storage.testing.otel import TelemetryRecorder, recording

BACKENDS = {"cacheness.metadata_backend": "postgresql", "cacheness.blob_backend": "s3"}
COUNTERS = (
    "hits",
    "misses",
    "puts",
    "evictions",
    "expirations",
    "errors",
    "integrity_failures",
    "invalid_signatures",
)


@pytest.fixture
def telemetry() -> Iterator[TelemetryRecorder]:
    with recording() as recorder:
        yield recorder


def test_team_cache_counts_and_costs(team: Any, telemetry: TelemetryRecorder) -> None:
    with team.open_cache() as cache:
        run_scripted_sequence(cache, telemetry)


def run_scripted_sequence(cache: Any, telemetry: TelemetryRecorder) -> None:
    big = random.Random(0).randbytes(100_000)  # a blob (an S3 object)
    cache.put(big, run=1)
    cache.put({"tiny": True}, run=2)  # inline: in the index only
    assert cache.get(run=1) == big
    assert cache.get(run=2) == {"tiny": True}
    assert cache.get(run=3) is None
    cache.invalidate(run=1)

    counts = {name: int(telemetry.value(f"cacheness.cache.{name}", BACKENDS)) for name in COUNTERS}
    assert counts == {
        "hits": 2,
        "misses": 1,
        "puts": 2,
        "evictions": 0,
        "expirations": 0,
        "errors": 0,
        "integrity_failures": 0,
        "invalid_signatures": 0,
    }
    stats = cache.get_stats()
    assert {name: stats[name] for name in COUNTERS} == counts

    s3 = cache.backend_stats()["blob"]
    assert (s3["put_requests"], s3["get_requests"], s3["delete_requests"]) == (1, 1, 1)
    assert s3["head_requests"] == 1  # the bucket check of the first write
    assert s3["multipart_parts"] == s3["retries"] == s3["failed_requests"] == 0
    assert len(big) <= s3["bytes_out"] <= len(big) + 1000  # + the XML of the batch delete
    assert s3["bytes_in"] >= len(big)
    assert telemetry.value("cacheness.storage.s3.requests", {"s3.operation": "PutObject"}) == 1
    assert telemetry.value("cacheness.storage.s3.bytes", {"direction": "out"}) == s3["bytes_out"]

    pool = cache.backend_stats()["metadata"]
    assert pool["size"] == 2  # the team's pool_size
    assert pool["checked_out"] == 0
    assert pool["timeouts"] == 0

    get = next(s for s in telemetry.spans() if s.name == "cacheness.cache.get")
    assert telemetry.tree("cacheness.cache.get", which=0)["cacheness.cache.get"] == {
        "cacheness.storage.lookup": {
            "cacheness.metadata.get_payload": {},
            "cacheness.blob.read": {},
        }
    }
    assert get.attributes["cacheness.metadata_backend"] == "postgresql"


def test_team_cache_health(team: Any) -> None:
    with team.open_cache() as cache:
        report = cache.health(timeout=5.0)
        assert cache.count() == 0
    assert report.healthy
    assert [(b.role, b.backend, b.reachable) for b in report.backends] == [
        ("metadata", "postgresql", True),
        ("blob", "s3", True),
    ]
    assert team.objects() == {}  # nothing written to the bucket
