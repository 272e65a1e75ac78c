"""Fault tests: a flaky endpoint is retried through; a dead one trips the circuit breaker."""

from __future__ import annotations

import os

import pytest

from cacheness.storage import S3BlobBackend, hash_bytes
from cacheness.storage.errors import BackendUnavailableError
from cacheness.storage.testing.flaky_proxy import FlakyProxy
from cacheness.storage.testing.services import free_port

MiB = 1 << 20


@pytest.mark.parametrize(
    ("fault", "status"), [("drop", 503), ("error", 500), ("error", 503)], ids=["drop", "500", "503"]
)
def test_retries_get_through_a_flaky_endpoint(
    proxied_options, flaky_proxy: FlakyProxy, s3_object, fault, status
):
    blobs = S3BlobBackend(**proxied_options)
    blobs.exists("ab/warm-up")  # the bucket check is done
    flaky_proxy.reset_stats()
    flaky_proxy.fail_next(2, fault, status=status)
    info = blobs.write_bytes("survivor", b"made it")
    stats = flaky_proxy.stats()
    assert stats.faults == 2
    assert stats.forwarded == 1
    assert s3_object(info.ref) == b"made it"
    flaky_proxy.fail_next(2, fault, status=status)
    assert blobs.read_bytes(info.ref) == b"made it"
    assert blobs.circuit_breaker.consecutive_failures == 0


def test_multipart_parts_are_retried(proxied_options, flaky_proxy: FlakyProxy, s3_object):
    blobs = S3BlobBackend(**proxied_options)
    data = os.urandom(12 * MiB)
    flaky_proxy.fail_next(3, "drop", methods={"PUT"})  # three UploadPart attempts die
    info = blobs.write_bytes("big-and-flaky", data)
    assert flaky_proxy.stats().dropped == 3
    assert info.etag is not None
    assert info.etag.endswith("-3")
    assert s3_object(info.ref) == data
    flaky_proxy.fail_next(2, "error", status=503, methods={"GET"})
    assert hash_bytes(blobs.read_bytes(info.ref)) == hash_bytes(data)


def test_managed_download_is_retried(proxied_options, flaky_proxy: FlakyProxy, tmp_path):
    blobs = S3BlobBackend(**proxied_options)
    data = os.urandom(11 * MiB)
    info = blobs.write_bytes("download-me", data)
    flaky_proxy.fail_next(2, "error", status=500, methods={"GET"})
    blobs.read_to_file(info.ref, tmp_path / "out.bin")
    assert (tmp_path / "out.bin").read_bytes() == data


def test_too_many_failures_raise_backend_unavailable(proxied_options, flaky_proxy: FlakyProxy):
    blobs = S3BlobBackend(max_attempts=2, **proxied_options)
    blobs.exists("ab/warm-up")
    flaky_proxy.fail_always("error", status=503)
    with pytest.raises(BackendUnavailableError, match="HTTP 503") as raised:
        blobs.write_bytes("doomed", b"x")
    assert isinstance(raised.value, ConnectionError)
    assert flaky_proxy.stats().errors == 2  # max_attempts requests, then the error


def test_open_breaker_fails_fast_without_touching_the_network(
    proxied_options, flaky_proxy: FlakyProxy, clock
):
    blobs = S3BlobBackend(
        max_attempts=2,
        breaker_threshold=3,
        breaker_reset_timeout=30,
        clock=clock,
        **proxied_options,
    )
    info = blobs.write_bytes("precious", b"still here")
    flaky_proxy.fail_always("drop")
    for _ in range(3):
        with pytest.raises(BackendUnavailableError, match="unreachable"):
            blobs.read_bytes(info.ref)
    assert blobs.circuit_breaker.state == "open"
    reached = flaky_proxy.stats().requests
    for _ in range(20):
        with pytest.raises(BackendUnavailableError, match="failing fast"):
            blobs.read_bytes(info.ref)
    assert flaky_proxy.stats().requests == reached  # not one request was sent
    assert blobs.circuit_breaker.rejected_calls == 20

    clock.now += 31  # cool-down over: one trial call, which fails and re-opens
    with pytest.raises(BackendUnavailableError, match="unreachable"):
        blobs.read_bytes(info.ref)
    assert blobs.circuit_breaker.state == "open"
    with pytest.raises(BackendUnavailableError, match="failing fast"):
        blobs.read_bytes(info.ref)

    flaky_proxy.heal()
    clock.now += 31
    assert blobs.read_bytes(info.ref) == b"still here"  # the trial succeeds
    assert blobs.circuit_breaker.state == "closed"
    assert blobs.write_bytes("after", b"ok").size == 2


def test_endpoint_down_trips_the_breaker(s3_bucket):
    options = s3_bucket.endpoint.client_options()
    options["endpoint_url"] = f"http://127.0.0.1:{free_port()}"  # nothing listens here
    blobs = S3BlobBackend(
        s3_bucket.name, max_attempts=2, breaker_threshold=2, connect_timeout=2, **options
    )
    for _ in range(2):
        with pytest.raises(BackendUnavailableError, match="unreachable"):
            blobs.exists("ab/abc")
    with pytest.raises(BackendUnavailableError, match="2 consecutive connection failures"):
        blobs.write_bytes("abc", b"x")
    assert blobs.circuit_breaker.times_opened == 1


def test_proxy_stop_and_start_is_an_outage_and_a_recovery(
    proxied_options, flaky_proxy: FlakyProxy, clock
):
    blobs = S3BlobBackend(max_attempts=1, breaker_threshold=1, clock=clock, **proxied_options)
    info = blobs.write_bytes("outage", b"data")
    flaky_proxy.stop()
    with pytest.raises(BackendUnavailableError):
        blobs.stat(info.ref)
    flaky_proxy.start()
    clock.now += 60
    assert blobs.stat(info.ref).size == 4
