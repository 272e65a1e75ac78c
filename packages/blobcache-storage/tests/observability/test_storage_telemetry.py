"""Storage observability: spans, metrics, S3 cost figures, pool statistics, health.

Telemetry is read with the OpenTelemetry SDK's in-memory exporters
(:mod:`cacheness.storage.testing.otel`); S3 is moto over HTTP, PostgreSQL is real.
"""

from __future__ import annotations

import random
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from cacheness.storage import (
    BackendUnavailableError,
    BlobStore,
    IntegrityError,
    PostgresMetadataBackend,
    S3BlobBackend,
    instrumentation,
)
from cacheness.storage.testing.flaky_proxy import FlakyProxy
from cacheness.storage.testing.otel import TelemetryRecorder, recording
from cacheness.storage.testing.services import S3Bucket, S3Endpoint

MiB = 1 << 20
BACKENDS = {"cacheness.metadata_backend": "sqlite", "cacheness.blob_backend": "filesystem"}


def payload(seed: int, size: int = 100_000) -> bytes:
    return random.Random(seed).randbytes(size)


@pytest.fixture
def telemetry() -> Iterator[TelemetryRecorder]:
    with recording() as recorder:
        yield recorder


@pytest.fixture
def store(tmp_path: Path) -> Iterator[BlobStore]:
    with BlobStore(tmp_path) as opened:
        yield opened


def s3_options(bucket: S3Bucket, **extra: Any) -> dict[str, Any]:
    return {
        "bucket": bucket.name,
        "multipart_threshold": 5 * MiB,
        "multipart_chunksize": 5 * MiB,
        **bucket.endpoint.client_options(),
        **extra,
    }


# -- nothing is paid for when nobody listens ---------------------------------------------


def test_no_instrumentation_without_a_provider() -> None:
    assert instrumentation() is None
    with recording():
        assert instrumentation() is not None
    assert instrumentation() is None  # the block's providers are gone with it


def test_operations_record_nothing_outside_a_recording(store: BlobStore) -> None:
    store.put(b"before", key="k")
    with recording() as telemetry:
        assert store.get("k") == b"before"
    store.get("k")
    assert telemetry.span_names() == ["cacheness.metadata.get_payload", "cacheness.storage.get"]


# -- span trees --------------------------------------------------------------------------


def test_span_tree_of_a_put(store: BlobStore, telemetry: TelemetryRecorder) -> None:
    store.put(payload(1), key="runs/1/model", metadata={"secret": "s3cr3t"})

    assert telemetry.tree("cacheness.storage.put") == {
        "cacheness.storage.put": {
            "cacheness.storage.serialize": {"cacheness.blob.write": {}},
            "cacheness.metadata.put": {},
        }
    }
    (put,) = [s for s in telemetry.spans() if s.name == "cacheness.storage.put"]
    assert dict(put.attributes) == {
        **BACKENDS,
        "cacheness.operation": "put",
        "cacheness.schema_version": "1",
        "cacheness.handler": "raw",
        "cacheness.size": 100_000,
        "cacheness.inline": False,
    }
    children = {s.name: dict(s.attributes) for s in telemetry.spans() if s is not put}
    assert children["cacheness.metadata.put"]["cacheness.backend"] == "sqlite"
    assert children["cacheness.blob.write"]["cacheness.backend"] == "filesystem"


def test_span_tree_of_a_get(store: BlobStore, telemetry: TelemetryRecorder) -> None:
    store.put(payload(2), key="runs/2/model")
    telemetry.clear_spans()

    assert store.get("runs/2/model") == payload(2)

    assert telemetry.tree("cacheness.storage.get") == {
        "cacheness.storage.get": {"cacheness.metadata.get_payload": {}, "cacheness.blob.read": {}}
    }
    get = telemetry.spans()[-1]
    assert get.attributes["cacheness.found"] is True
    assert get.attributes["cacheness.size"] == 100_000


def test_attributes_never_carry_keys_or_data(
    store: BlobStore, telemetry: TelemetryRecorder
) -> None:
    store.put("the-value-itself", key="customer-4711", metadata={"owner": "alice-smith"})
    store.get("customer-4711")
    store.get_batch(["customer-4711", "customer-0815"])
    store.delete("customer-4711")

    values = [str(v) for span in telemetry.spans() for v in span.attributes.values()]
    for name in ("cacheness.storage.operation.duration", "cacheness.storage.payload.size"):
        values += [str(v) for attrs, _ in telemetry.points(name) for v in attrs.values()]
    for secret in ("customer", "4711", "alice", "the-value-itself"):
        assert not [v for v in values if secret in v]


# -- metrics: exact counts after a scripted sequence ------------------------------------


def test_exact_metrics_after_a_scripted_sequence(
    store: BlobStore, telemetry: TelemetryRecorder
) -> None:
    store.put(payload(1), key="a")  # a blob
    store.put({"small": True}, key="b")  # inline
    store.put_batch({"c": 1, "d": 2})
    assert store.get("a") == payload(1)
    assert store.get("b") == {"small": True}
    assert store.get("missing") is None
    assert store.get_batch(["c", "d", "nope"]) == {"c": 1, "d": 2, "nope": None}
    assert store.delete("c") is True
    assert store.delete("c") is False

    def operations(name: str) -> int:
        return telemetry.count(
            "cacheness.storage.operation.duration", {**BACKENDS, "cacheness.operation": name}
        )

    assert {name: operations(name) for name in ("put", "put_batch", "get", "get_batch")} == {
        "put": 2,
        "put_batch": 1,
        "get": 3,
        "get_batch": 1,
    }
    assert operations("delete") == 2
    assert telemetry.points("cacheness.storage.errors") == []
    sizes = "cacheness.storage.payload.size"
    assert telemetry.count(sizes, {"cacheness.operation": "put"}) == 2
    assert telemetry.count(sizes, {"cacheness.operation": "get"}) == 2  # the hits
    assert telemetry.total(sizes, {"cacheness.operation": "put", "cacheness.handler": "raw"}) == (
        100_000
    )


def test_an_integrity_failure_is_an_error_span_and_counted(
    store: BlobStore, telemetry: TelemetryRecorder
) -> None:
    store.put(payload(3), key="k")
    blob = store.path / "blobs" / store.get_metadata("k").blob_ref  # type: ignore[operator]
    blob.write_bytes(payload(4))  # same size, other bytes

    with pytest.raises(IntegrityError):
        store.get("k")

    get = telemetry.spans()[-1]
    assert get.name == "cacheness.storage.get"
    assert get.status.status_code.name == "ERROR"
    assert [event.name for event in get.events] == ["exception"]
    assert get.events[0].attributes["exception.type"].endswith("IntegrityError")
    assert telemetry.value("cacheness.storage.integrity_failures", BACKENDS) == 1
    assert (
        telemetry.value(
            "cacheness.storage.errors",
            {"cacheness.operation": "get", "error.type": "IntegrityError"},
        )
        == 1
    )


def test_verify_and_repair_are_spans(store: BlobStore, telemetry: TelemetryRecorder) -> None:
    store.put(payload(5), key="k")
    assert store.verify_integrity() == []
    assert store.repair().ok

    names = telemetry.span_names()
    assert "cacheness.storage.verify_integrity" in names
    assert "cacheness.storage.repair" in names


def test_export_import_and_gc_are_spans(
    store: BlobStore, telemetry: TelemetryRecorder, tmp_path: Path
) -> None:
    store.put(payload(8), key="runs/8/model")
    archive = tmp_path / "backup.tar.zst"
    store.export(archive)
    with BlobStore(tmp_path / "copy") as target:
        assert target.import_(archive).entries == 1
        assert target.collect_garbage(min_age_seconds=0).ok

    names = telemetry.span_names()
    for operation in ("export", "import", "collect_garbage"):
        assert f"cacheness.storage.{operation}" in names, operation
    (imported,) = [s for s in telemetry.spans() if s.name == "cacheness.storage.import"]
    assert imported.attributes["cacheness.operation"] == "import"


# -- S3: request counts and bytes ---------------------------------------------------------


def test_s3_request_counts_and_bytes(s3_bucket: S3Bucket, telemetry: TelemetryRecorder) -> None:
    backend = S3BlobBackend(**s3_options(s3_bucket))
    small, large = payload(6, 1000), payload(7, 11 * MiB)  # large: 3 parts of 5 MiB

    backend.write_bytes("a", small)
    backend.write_bytes("b", large)
    with backend.open_read(backend.ref_for("a")) as source:
        assert source.read() == small
    backend.stat(backend.ref_for("a"))
    assert sorted(backend.iter_refs()) == sorted([backend.ref_for("a"), backend.ref_for("b")])
    backend.delete(backend.ref_for("a"))

    stats = backend.stats()
    sent, received = stats.pop("bytes_out"), stats.pop("bytes_in")
    assert stats == {
        "requests": 11,
        "put_requests": 1,
        "get_requests": 1,
        "head_requests": 2,  # the bucket check, then the stat
        "list_requests": 1,
        "delete_requests": 1,
        "copy_requests": 0,
        "multipart_parts": 3,
        "multipart_requests": 2,  # create and complete
        "other_requests": 0,
        "retries": 0,
        "failed_requests": 0,
    }
    assert backend.requests_by_operation() == {
        "CompleteMultipartUpload": 1,
        "CreateMultipartUpload": 1,
        "DeleteObject": 1,
        "GetObject": 1,
        "HeadBucket": 1,
        "HeadObject": 1,
        "ListObjectsV2": 1,
        "PutObject": 1,
        "UploadPart": 3,
    }
    # bodies: the payloads plus the small XML of the multipart complete
    assert len(small) + len(large) <= sent <= len(small) + len(large) + 2000
    assert received >= len(small)
    # the same figures as metrics
    requests = "cacheness.storage.s3.requests"
    assert telemetry.value(requests) == 11
    assert telemetry.value(requests, {"s3.operation": "UploadPart"}) == 3
    assert telemetry.value(requests, {"s3.request_class": "head_requests"}) == 2
    assert telemetry.value("cacheness.storage.s3.bytes", {"direction": "out"}) == sent
    assert telemetry.value("cacheness.storage.s3.bytes", {"direction": "in"}) == received

    backend.reset_stats()
    assert backend.stats()["requests"] == 0
    assert backend.requests_by_operation() == {}
    backend.close()


def test_s3_costs_without_telemetry(s3_bucket: S3Bucket) -> None:
    backend = S3BlobBackend(**s3_options(s3_bucket))
    backend.write_bytes("a", b"x" * 100)
    assert backend.stats()["put_requests"] == 1
    assert backend.stats()["bytes_out"] == 100
    backend.close()


def test_retries_and_error_spans_under_faults(
    s3_endpoint: S3Endpoint, s3_bucket: S3Bucket, tmp_path: Path, telemetry: TelemetryRecorder
) -> None:
    with FlakyProxy(s3_endpoint.endpoint_url) as proxy:
        options = s3_options(s3_bucket, endpoint_url=proxy.url, max_attempts=2)
        store = BlobStore(
            tmp_path,
            blob_backend="s3",
            blob_options={**options, "breaker_threshold": 100},
            allow_unsafe_pairing=True,
            signing=False,
            inline_threshold=0,
        )
        store.put(b"v1", key="k")
        telemetry.clear_spans()

        proxy.fail_next(1, "error", status=503, methods=["GET"])
        assert store.get("k") == b"v1"  # one retry, then served
        read = [s for s in telemetry.spans() if s.name == "cacheness.blob.read"][-1]
        assert read.attributes["cacheness.retries"] == 1
        assert [e.name for e in read.events] == ["cacheness.retry"]
        assert store.backend_stats()["blob"]["retries"] == 1
        assert store.backend_stats()["blob"]["failed_requests"] == 1

        proxy.fail_always("drop", methods=["GET"])
        with pytest.raises(BackendUnavailableError):
            store.get("k")
        spans = {s.name: s for s in telemetry.spans()}
        for name in ("cacheness.storage.get", "cacheness.blob.read"):
            assert spans[name].status.status_code.name == "ERROR"
            assert spans[name].events[-1].name == "exception"
        assert (
            telemetry.value(
                "cacheness.storage.errors",
                {"cacheness.operation": "get", "error.type": "BackendUnavailableError"},
            )
            == 1
        )
        assert telemetry.value("cacheness.storage.s3.retries", {"s3.operation": "GetObject"}) >= 2
        proxy.heal()
        store.close()


# -- PostgreSQL pool ------------------------------------------------------------------


def test_postgresql_pool_statistics(fresh_postgres_url: str, telemetry: TelemetryRecorder) -> None:
    index = PostgresMetadataBackend(
        fresh_postgres_url, pool_size=1, max_overflow=0, pool_timeout=0.2, retries=0
    )
    try:
        assert index.stats() == {
            "size": 1,
            "checked_out": 0,
            "checked_in": 1,
            "overflow": 0,
            "waits": 0,
            "timeouts": 0,
        }
        with index.named_lock("held"):  # holds the only pooled connection
            held = index.stats()
            readings = {
                name: telemetry.value(f"cacheness.storage.pool.{name}")
                for name in ("size", "checked_out", "overflow", "waits", "timeouts")
            }
            with pytest.raises(BackendUnavailableError, match="no pooled connection"):
                index.get("k")
        assert held["checked_out"] == 1
        assert readings == {"size": 1, "checked_out": 1, "overflow": 0, "waits": 0, "timeouts": 0}
        after = index.stats()
        assert (after["waits"], after["timeouts"], after["checked_out"]) == (1, 1, 0)
        assert telemetry.value("cacheness.storage.pool.waits") == 1
    finally:
        index.close()
    assert telemetry.points("cacheness.storage.pool.size") == []  # closed: no longer read


# -- health -------------------------------------------------------------------------------


def test_health_of_reachable_backends(store: BlobStore) -> None:
    report = store.health(timeout=5.0)

    assert report.healthy
    assert [(b.role, b.backend, b.reachable, b.error) for b in report.backends] == [
        ("metadata", "sqlite", True, None),
        ("blob", "filesystem", True, None),
    ]
    assert all(b.round_trip_seconds is not None for b in report.backends)
    data = report.to_dict()
    assert data["healthy"] is True
    assert data["timeout"] == 5.0
    assert data["backends"][0]["backend"] == "sqlite"


def test_health_writes_nothing(store: BlobStore) -> None:
    before = sorted(p.relative_to(store.path) for p in store.path.rglob("*"))  # type: ignore[arg-type]
    store.health()
    assert store.count() == 0
    assert sorted(p.relative_to(store.path) for p in store.path.rglob("*")) == before  # type: ignore[arg-type]


def test_health_rejects_a_bad_timeout(store: BlobStore) -> None:
    with pytest.raises(ValueError, match="timeout"):
        store.health(timeout=0)
    with pytest.raises(ValueError, match="timeout"):
        store.health(timeout=-1)


def test_health_reports_a_stopped_s3_server_down_within_its_timeout(
    tmp_path: Path,
) -> None:
    from moto.server import ThreadedMotoServer

    from cacheness.storage.testing.services import free_port

    port = free_port()
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    endpoint = S3Endpoint(f"http://127.0.0.1:{port}")
    endpoint.client().create_bucket(Bucket="health")
    store = BlobStore(
        tmp_path,
        blob_backend="s3",
        blob_options={"bucket": "health", **endpoint.client_options()},
        allow_unsafe_pairing=True,
        signing=False,
    )
    assert store.health(timeout=5.0).healthy
    server.stop()

    started = time.monotonic()
    report = store.health(timeout=2.0)
    elapsed = time.monotonic() - started

    assert not report.healthy
    metadata, blob = report.backends
    assert (metadata.backend, metadata.reachable) == ("sqlite", True)
    assert (blob.backend, blob.reachable) == ("s3", False)
    assert blob.error
    assert elapsed < 2.0 + 1.0  # the timeout holds, whatever botocore's retries would take
    store.close()


def test_health_gives_up_on_a_slow_backend_at_the_timeout(
    s3_endpoint: S3Endpoint, s3_bucket: S3Bucket, tmp_path: Path
) -> None:
    with FlakyProxy(s3_endpoint.endpoint_url) as proxy:
        store = BlobStore(
            tmp_path,
            blob_backend="s3",
            blob_options=s3_options(s3_bucket, endpoint_url=proxy.url),
            allow_unsafe_pairing=True,
            signing=False,
        )
        proxy.latency = 3.0
        report = store.health(timeout=0.5)
        proxy.latency = 0.0
        blob = report.backends[1]
        assert not blob.reachable
        assert blob.round_trip_seconds is None
        assert blob.error == "no answer within the timeout of 0.5 s"
        store.close()
