from __future__ import annotations

import math
import threading
from datetime import UTC, datetime, timedelta

import pytest

from cacheness.stats import COUNTERS, CacheStats
from cacheness.ttl import days, expiry_time, hours, minutes, seconds, validate_ttl


def test_helpers_are_seconds():
    assert (seconds(5), minutes(2), hours(1), days(2)) == (5.0, 120.0, 3600.0, 172800.0)


@pytest.mark.parametrize("bad", [0, -1, math.nan, math.inf, True, "60", timedelta(0)])
def test_bad_ttls_are_refused(bad):
    with pytest.raises(ValueError, match="ttl_seconds"):
        validate_ttl(bad)


def test_valid_ttls():
    assert validate_ttl(None) is None
    assert validate_ttl(1) == 1.0
    assert validate_ttl(timedelta(hours=1)) == 3600.0


def test_expiry_time_is_epoch_seconds():
    now = datetime(2026, 3, 1, 10, 0, tzinfo=UTC)
    assert expiry_time(now, 90.0) == now.timestamp() + 90.0
    assert expiry_time(now, None) is None


def test_stats_count_across_threads_and_reset():
    stats = CacheStats()

    def work():
        for _ in range(1000):
            stats.record_hit(bytes_read=2)
            stats.record_miss(expired=True)

    threads = [threading.Thread(target=work) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    snap = stats.snapshot()
    assert (snap["hits"], snap["misses"], snap["expirations"], snap["bytes_read"]) == (
        8000,
        8000,
        8000,
        16000,
    )
    assert snap["hit_rate"] == 0.5
    stats.reset()
    assert stats.snapshot() == {**dict.fromkeys(COUNTERS, 0), "hit_rate": 0.0}
