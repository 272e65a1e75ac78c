"""Fixtures shared by the blob backend tests: S3 options and a flaky proxy in front of moto."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import pytest

from cacheness.storage.testing.flaky_proxy import FlakyProxy
from cacheness.storage.testing.services import S3Bucket, S3Endpoint

# Detailed assertion messages from the conformance suite (imported by the test modules).
pytest.register_assert_rewrite("cacheness.storage.testing.blob")

MiB = 1 << 20


class FakeClock:
    """A clock that moves only when a test says so: no real cool-downs or waits."""

    def __init__(self, start: float = 0.0) -> None:
        self.now = start

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def clock() -> FakeClock:
    """A fresh :class:`FakeClock`; advance it with ``clock.now += seconds``."""
    return FakeClock()


@pytest.fixture
def s3_options(s3_bucket: S3Bucket) -> dict[str, Any]:
    """Keyword arguments for ``S3BlobBackend`` talking straight to moto (small parts)."""
    return {
        "bucket": s3_bucket.name,
        "multipart_threshold": 5 * MiB,
        "multipart_chunksize": 5 * MiB,
        **s3_bucket.endpoint.client_options(),
    }


@pytest.fixture
def flaky_proxy(s3_endpoint: S3Endpoint) -> Iterator[FlakyProxy]:
    """A FlakyProxy in front of moto, healthy at the start of the test."""
    with FlakyProxy(s3_endpoint.endpoint_url) as proxy:
        yield proxy


@pytest.fixture
def proxied_options(s3_options: dict[str, Any], flaky_proxy: FlakyProxy) -> dict[str, Any]:
    """Like ``s3_options`` but through the flaky proxy."""
    return {**s3_options, "endpoint_url": flaky_proxy.url}


@pytest.fixture
def s3_object(s3_bucket: S3Bucket) -> Callable[[str], bytes | None]:
    """Read an object's bytes with a plain boto3 client (None if absent): ground truth."""
    client = s3_bucket.client()

    def read(key: str) -> bytes | None:
        try:
            return client.get_object(Bucket=s3_bucket.name, Key=key)["Body"].read()
        except client.exceptions.NoSuchKey:
            return None

    return read
