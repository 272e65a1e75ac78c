"""Cache observability on SQLite + files: metrics, spans, health, backend statistics.

Read with the OpenTelemetry SDK's in-memory exporters; PostgreSQL + S3 are in
``tests-integration/test_observability.py``.
"""

from __future__ import annotations

import logging
import random
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from urllib.parse import urlsplit
from urllib.request import url2pathname

import pytest

from cacheness import IntegrityError, cacheness
from cacheness.storage.testing.otel import TelemetryRecorder, recording

BACKENDS = {"cacheness.metadata_backend": "sqlite", "cacheness.blob_backend": "filesystem"}
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


class Clock:
    def __init__(self) -> None:
        self.now = datetime(2026, 1, 1, tzinfo=UTC)

    def __call__(self) -> datetime:
        return self.now


@pytest.fixture
def telemetry() -> Iterator[TelemetryRecorder]:
    with recording() as recorder:
        yield recorder


def blob_file(cache: cacheness, **params: int) -> Path:
    entry = cache.get_metadata(**params)
    assert entry is not None
    return Path(url2pathname(urlsplit(entry.location).path))


def metric_counts(telemetry: TelemetryRecorder) -> dict[str, int]:
    return {name: int(telemetry.value(f"cacheness.cache.{name}", BACKENDS)) for name in COUNTERS}


def test_exact_counts_after_a_scripted_sequence(
    tmp_path: Path, telemetry: TelemetryRecorder
) -> None:
    clock = Clock()
    cache = cacheness(cache_dir=tmp_path / "c", clock=clock)
    big = random.Random(0).randbytes(100_000)
    cache.put("small", n=1)
    cache.put(big, n=2)
    cache.put({"a": 1}, n=3, ttl_seconds=10)
    assert cache.get(n=1) == "small"  # hit
    assert cache.get(n=2) == big  # hit
    assert cache.get(n=99) is None  # absent
    clock.now += timedelta(seconds=11)
    assert cache.get(n=3) is None  # expired
    blob = blob_file(cache, n=2)
    blob.write_bytes(random.Random(1).randbytes(len(blob.read_bytes())))
    assert cache.get(n=2) is None  # unreadable: a miss, counted as an integrity failure

    assert metric_counts(telemetry) == {
        "hits": 2,
        "misses": 3,
        "puts": 3,
        "evictions": 0,
        "expirations": 1,
        "errors": 1,
        "integrity_failures": 1,
        "invalid_signatures": 0,
    }
    misses = "cacheness.cache.misses"
    for reason in ("absent", "expired", "error"):
        assert telemetry.value(misses, {"cacheness.miss_reason": reason}) == 1
    assert telemetry.value("cacheness.cache.hits", {"cacheness.handler": "raw"}) == 2
    assert telemetry.value("cacheness.cache.puts", {"cacheness.handler": "raw"}) == 2
    assert telemetry.count("cacheness.cache.payload.size", {"cacheness.operation": "get"}) == 2
    durations = "cacheness.cache.operation.duration"
    assert telemetry.count(durations, {"cacheness.operation": "get"}) == 5
    assert telemetry.count(durations, {"cacheness.operation": "put"}) == 3
    # the metrics and get_stats() count the same events
    stats = cache.get_stats()
    assert {name: stats[name] for name in COUNTERS} == metric_counts(telemetry)
    cache.close()


def test_evictions_and_cleanup_are_counted(tmp_path: Path, telemetry: TelemetryRecorder) -> None:
    clock = Clock()
    cache = cacheness(cache_dir=tmp_path / "c", clock=clock, max_entries=3)
    for n in range(6):
        cache.put(n, n=n, ttl_seconds=5 if n == 5 else None)
        clock.now += timedelta(seconds=1)
    clock.now += timedelta(seconds=10)
    removed = cache.cleanup_expired()

    stats = cache.get_stats()
    assert stats["evictions"] > 0
    assert telemetry.value("cacheness.cache.evictions", BACKENDS) == stats["evictions"]
    assert telemetry.value("cacheness.cache.expirations", BACKENDS) == removed == 1
    cache.close()


def test_span_tree_of_a_cache_put_and_get(tmp_path: Path, telemetry: TelemetryRecorder) -> None:
    cache = cacheness(cache_dir=tmp_path / "c")
    cache.put(random.Random(2).randbytes(100_000), key_prefix="train", model="secret-model")
    assert cache.get(key_prefix="train", model="secret-model") is not None

    assert telemetry.tree("cacheness.cache.put") == {
        "cacheness.cache.put": {
            "cacheness.storage.put": {
                "cacheness.storage.serialize": {"cacheness.blob.write": {}},
                "cacheness.metadata.put": {},
            }
        }
    }
    assert telemetry.tree("cacheness.cache.get") == {
        "cacheness.cache.get": {
            "cacheness.storage.lookup": {
                "cacheness.metadata.get_payload": {},
                "cacheness.blob.read": {},
            }
        }
    }
    get = next(s for s in telemetry.spans() if s.name == "cacheness.cache.get")
    assert dict(get.attributes) == {
        **BACKENDS,
        "cacheness.operation": "get",
        "cacheness.key_prefix": "train",
        "cacheness.schema_version": "1",
        "cacheness.hit": True,
    }
    everything = [str(v) for span in telemetry.spans() for v in span.attributes.values()]
    assert not [value for value in everything if "secret" in value]
    cache.close()


def test_a_miss_is_on_the_span(tmp_path: Path, telemetry: TelemetryRecorder) -> None:
    cache = cacheness(cache_dir=tmp_path / "c")
    assert cache.get(q=1) is None
    get = telemetry.spans()[-1]
    assert get.name == "cacheness.cache.get"
    assert (get.attributes["cacheness.hit"], get.attributes["cacheness.miss_reason"]) == (
        False,
        "absent",
    )
    cache.close()


def test_a_failing_operation_is_an_error_span(tmp_path: Path, telemetry: TelemetryRecorder) -> None:
    cache = cacheness(cache_dir=tmp_path / "c", strict=True)
    cache.put(random.Random(3).randbytes(100_000), n=1)
    blob = blob_file(cache, n=1)
    blob.write_bytes(b"")
    with pytest.raises(IntegrityError):
        cache.get(n=1)
    get = telemetry.spans()[-1]
    assert get.name == "cacheness.cache.get"
    assert get.status.status_code.name == "ERROR"
    assert (
        telemetry.value(
            "cacheness.cache.errors", {"cacheness.operation": "get", "error.type": "IntegrityError"}
        )
        == 1
    )
    cache.close()


def test_nothing_recorded_without_a_provider(tmp_path: Path) -> None:
    cache = cacheness(cache_dir=tmp_path / "c")
    cache.put(1, n=1)
    assert cache.get(n=1) == 1
    with recording() as telemetry:
        pass
    assert telemetry.spans() == []
    cache.close()


def test_health_and_backend_stats(tmp_path: Path) -> None:
    cache = cacheness(cache_dir=tmp_path / "c")
    report = cache.health(timeout=3.0)
    assert report.healthy
    assert [(b.role, b.backend, b.reachable) for b in report.backends] == [
        ("metadata", "sqlite", True),
        ("blob", "filesystem", True),
    ]
    assert cache.count() == 0  # the check wrote nothing
    assert cache.backend_stats() == {"metadata": {}, "blob": {}}
    cache.close()


def test_json_logs_with_the_standard_library(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """The recipe of docs/observability.md: one JSON object per record."""
    import json

    class JsonFormatter(logging.Formatter):
        def format(self, record: logging.LogRecord) -> str:
            return json.dumps(
                {
                    "level": record.levelname,
                    "logger": record.name,
                    "message": record.getMessage(),
                }
            )

    cache = cacheness(cache_dir=tmp_path / "c", strict=False)
    cache.put(random.Random(4).randbytes(100_000), n=1)
    blob_file(cache, n=1).write_bytes(b"")
    with caplog.at_level(logging.DEBUG, logger="cacheness"):
        cache.get(n=1)
    lines = [json.loads(JsonFormatter().format(record)) for record in caplog.records]
    warning = next(line for line in lines if line["level"] == "WARNING")
    assert warning["logger"] == "cacheness.cache"
    assert "cannot be read back" in warning["message"]
    cache.close()
