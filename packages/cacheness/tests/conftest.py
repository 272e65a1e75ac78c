"""Fixtures of the cache tests: a fake clock and caches on each backend pairing."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from cacheness import cacheness


class FakeClock:
    """A clock tests move by hand: TTL and LRU order without sleeping."""

    def __init__(self, start: datetime | None = None) -> None:
        self.now = start or datetime(2026, 1, 1, 12, 0, tzinfo=UTC)

    def __call__(self) -> datetime:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += timedelta(seconds=seconds)


PAIRINGS = ["memory", "sqlite", "postgresql+s3"]


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture(params=PAIRINGS)
def make_cache(request: pytest.FixtureRequest, tmp_path) -> Iterator[Callable[..., cacheness]]:
    """``make(**overrides) -> cacheness`` on memory, sqlite+filesystem, postgresql+s3."""
    pairing = request.param
    base: dict[str, Any] = {"cache_dir": str(tmp_path / "cache")}
    if pairing == "memory":
        base.update(metadata_backend="memory", blob_backend="memory")
    elif pairing == "postgresql+s3":
        url = request.getfixturevalue("fresh_postgres_url")
        bucket = request.getfixturevalue("s3_bucket")
        base.update(
            metadata_backend="postgresql",
            metadata_backend_options={"url": url},
            blob_backend="s3",
            blob_backend_options={"bucket": bucket.name, **bucket.endpoint.client_options()},
        )
    made: list[cacheness] = []

    def make(**overrides: Any) -> cacheness:
        cache = cacheness(**{**base, **overrides})
        made.append(cache)
        return cache

    yield make
    for cache in made:
        cache.close()
