"""The in-process memory layer: coherent with the index, safe to mutate, bounded, exact TTL.

Two processes (a writer without the layer, a reader through it) never give a stale value
on SQLite; a hypothesis state machine runs the same operations on a cache with the layer
and one without (plus writes from another cache object on the first one's directory, and
an injected clock moving TTLs) and compares every answer.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, precondition, rule

from cacheness import MISS, cached, cacheness
from cacheness.config import CacheConfig, MemoryCacheConfig, resolve_config
from cacheness.storage import ConfigError

WRITER = Path(__file__).with_name("_memory_writer.py")


class Clock:
    """An injected clock the tests move by hand."""

    def __init__(self) -> None:
        self.now = datetime(2026, 1, 1, tzinfo=UTC)

    def __call__(self) -> datetime:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += timedelta(seconds=seconds)


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def cache(tmp_path: Path, clock: Clock) -> Iterator[cacheness]:
    with cacheness(cache_dir=str(tmp_path), enable_memory_cache=True, clock=clock) as opened:
        yield opened


@pytest.fixture
def other(tmp_path: Path, clock: Clock) -> Iterator[cacheness]:
    """Another cache object on the same directory: its own SQLite connection, as another
    process has (the two-process test does it with a real process)."""
    with cacheness(cache_dir=str(tmp_path), clock=clock) as opened:
        yield opened


# --------------------------------------------------------------------------- serving


def test_repeated_gets_are_served_from_memory(cache: cacheness) -> None:
    cache.put({"auc": 0.91}, model="a")
    assert [cache.get(model="a") for _ in range(3)] == [{"auc": 0.91}] * 3
    stats = cache.get_stats()
    assert (stats["hits"], stats["memory_hits"], stats["memory_entries"]) == (3, 2, 1)
    assert stats["memory_bytes"] > 0
    assert stats["memory_evictions"] == 0


def test_a_miss_stays_a_miss(cache: cacheness) -> None:
    assert cache.get(model="none", default=MISS) is MISS
    stats = cache.get_stats()
    assert (stats["misses"], stats["memory_hits"], stats["memory_entries"]) == (1, 0, 0)


def test_stats_leave_memory_keys_out_when_asked_or_off(tmp_path: Path) -> None:
    with cacheness(
        cache_dir=str(tmp_path / "a"), enable_memory_cache=True, memory_cache_stats=False
    ) as quiet:
        quiet.put(1, n=1)
        quiet.get(n=1)
        assert not any(name.startswith("memory_") for name in quiet.get_stats())
    with cacheness(cache_dir=str(tmp_path / "b")) as off:
        assert not any(name.startswith("memory_") for name in off.get_stats())


@pytest.mark.parametrize(
    ("value", "mutate"),
    [
        ({"rows": [1, 2], "meta": {"k": "v"}}, lambda v: (v["rows"].append(3), v.clear())),
        ([1, [2, 3]], lambda v: v[1].append(4)),
        (np.arange(1000, dtype=np.float64), lambda v: v.fill(-1)),
        ({"big": list(range(5000))}, lambda v: v["big"].clear()),  # above the inline size
    ],
    ids=["inline-dict", "inline-list", "array", "blob-dict"],
)
def test_mutating_a_returned_value_never_changes_the_next_get(
    cache: cacheness, value: Any, mutate: Any
) -> None:
    cache.put(value, v=1)
    for _ in range(3):
        got = cache.get(v=1)
        np.testing.assert_equal(got, value)
        mutate(got)
    np.testing.assert_equal(cache.get(v=1), value)


@pytest.mark.parametrize(
    "value",
    [
        {"id": 7, "name": "a", "score": -0.0, "ok": True, "none": None, "raw": b"\x00"},
        [{"deep": [[1, 2], {"k": [3.5, "x"]}]}, [], {}],
        {"big": 2**70, "negative": -(2**63) - 1},  # beyond MessagePack's integers
        {"tuple": (1, 2), "set": {1, 2}, 3: "int key"},  # not plain: decoded from storage
        [float("inf"), 2**64 - 1, -(2**63), "é"],
    ],
    ids=["atoms", "nested", "big-ints", "tuples-sets-int-keys", "edges"],
)
def test_inline_values_come_back_with_their_types(cache: cacheness, value: Any) -> None:
    cache.put(value, v=1)
    for _ in range(3):  # a read from the index, then memory hits
        got = cache.get(v=1)
        assert got == value
        assert repr(got) == repr(value)  # the same types all the way down
        if isinstance(got, dict):
            got.clear()
        else:
            got.append("mutated")
    assert cache.get_stats()["memory_hits"] == 2


def test_memory_hits_count_accesses_on_the_default_clock(tmp_path: Path) -> None:
    with cacheness(cache_dir=str(tmp_path), enable_memory_cache=True) as cache:
        cache.put({"a": [1]}, n=1)
        for _ in range(5):
            assert cache.get(n=1) == {"a": [1]}
        assert cache.get_stats()["memory_hits"] == 4
    with cacheness(cache_dir=str(tmp_path)) as again:  # close() flushed the pending counts
        assert again.get_metadata(n=1).access_count == 5


def test_pandas_frames_are_copied_per_hit(cache: cacheness) -> None:
    pd = pytest.importorskip("pandas")
    frame = pd.DataFrame({"a": [1, 2, 3], "b": ["x", "y", "z"]})
    cache.put(frame, t=1)
    cache.get(t=1)  # read from the blob (its arrays may be read-only views of Arrow's)
    served = cache.get(t=1)
    served.loc[0, "a"] = 99
    served["c"] = 0
    pd.testing.assert_frame_equal(cache.get(t=1), frame)
    assert cache.get_stats()["memory_hits"] == 2


def test_immutable_values_are_shared(cache: cacheness) -> None:
    cache.put(("a", 1, (2.5, b"x")), t=1)
    first = cache.get(t=1)
    assert cache.get(t=1) is first
    assert cache.get(t=1) is first
    assert cache.get_stats()["memory_hits"] == 2


def test_decorated_hits_use_the_layer(cache: cacheness) -> None:
    calls: list[int] = []

    @cached(cache_instance=cache)
    def double(x: int) -> dict[str, int]:
        calls.append(x)
        return {"x": 2 * x}

    assert [double(x=3) for _ in range(4)] == [{"x": 6}] * 4
    assert calls == [3]
    assert cache.get_stats()["memory_hits"] == 2  # the first hit reads the index


# --------------------------------------------------------------------------- coherence


def test_another_writer_is_never_served_stale(cache: cacheness, other: cacheness) -> None:
    cache.put({"v": 1}, k=1)
    cache.put(b"blob" * 5000, k=2)
    assert cache.get(k=1) == {"v": 1}
    assert cache.get(k=1) == {"v": 1}
    other.put({"v": 2}, k=1)  # replaced elsewhere
    assert cache.get(k=1) == {"v": 2}
    assert cache.get(k=2) == b"blob" * 5000  # unchanged: checked, still held
    other.invalidate(k=1)  # deleted elsewhere
    assert cache.get(k=1) is None
    other.clear_all()
    assert cache.get(k=2) is None


def test_unrelated_writes_keep_values_held(cache: cacheness, other: cacheness) -> None:
    cache.put(b"x" * 50_000, k=1)
    cache.get(k=1)
    read = cache.get_stats()["bytes_read"]
    other.put("unrelated", k=2)  # the token moves: k=1 is checked, not read again
    assert cache.get(k=1) == b"x" * 50_000
    stats = cache.get_stats()
    assert (stats["memory_hits"], stats["bytes_read"]) == (1, read)


def test_a_touch_elsewhere_moves_the_expiry_in_memory(
    cache: cacheness, other: cacheness, clock: Clock
) -> None:
    cache.put("v", ttl_seconds=100, k=1)
    assert cache.get(k=1) == "v"
    other.touch(ttl_seconds=10, k=1)  # a shorter TTL from now
    assert cache.get(k=1) == "v"
    clock.advance(10)
    assert cache.get(k=1) is None


def test_eviction_by_another_process_is_seen(tmp_path: Path, clock: Clock) -> None:
    with (
        cacheness(cache_dir=str(tmp_path), enable_memory_cache=True, clock=clock) as reader,
        cacheness(cache_dir=str(tmp_path), max_entries=2, clock=clock) as writer,
    ):
        writer.put("first", n=1)
        assert reader.get(n=1) == "first"
        clock.advance(1)
        writer.put("second", n=2)
        clock.advance(1)
        writer.put("third", n=3)  # evicts n=1, the least recently used
        assert not writer.exists(n=1)
        assert reader.get(n=1) is None


def test_two_processes_never_stale_on_sqlite(tmp_path: Path) -> None:
    rounds = 300
    committed = tmp_path / "committed"

    def progress() -> int:
        """The writer's last recorded step: -1 nothing yet, N version N put, -2 deleting,
        0 deleted."""
        text = committed.read_text() if committed.exists() else ""
        return int(text) if text else -1

    with cacheness(cache_dir=str(tmp_path), enable_memory_cache=True) as reader:
        child = subprocess.Popen([sys.executable, str(WRITER), str(tmp_path), str(rounds)])
        checks = 0
        try:
            while True:
                seen = progress()  # what was committed before the gets
                values = [reader.get(item=item) for item in ("int", "dict", "blob")]
                if seen == 0:
                    assert values == [None, None, None]
                    break
                if seen > 0:
                    if None in values:  # only once the writer is deleting
                        assert progress() in (-2, 0), (seen, values)
                        continue
                    number, record, blob = values
                    assert number >= seen
                    assert record["version"] >= seen
                    assert int.from_bytes(blob[:8], "big") >= seen
                    checks += 1
                if child.poll() not in (None, 0):
                    pytest.fail(f"the writer failed with status {child.returncode}")
        finally:
            child.wait(timeout=60)
        assert child.returncode == 0
        assert checks > 0
        # repeated gets with no writer: memory hits
        reader.put(1, item="still")
        hits = reader.get_stats()["memory_hits"]
        assert [reader.get(item="still") for _ in range(3)] == [1, 1, 1]
        assert reader.get_stats()["memory_hits"] == hits + 2


def test_own_writes_are_seen_at_once(cache: cacheness) -> None:
    cache.put([1], k=1)
    assert cache.get(k=1) == [1]
    cache.put([2], k=1)
    assert cache.get(k=1) == [2]
    cache.update_data([3], k=1)
    assert cache.get(k=1) == [3]
    cache.copy({"k": 1}, {"k": 2})
    cache.put([4], k=2)
    assert cache.get(k=2) == [4]
    cache.delete_matching(k=1)
    assert cache.get(k=1) is None
    assert cache.get(k=2) == [4]
    cache.clear_all()
    assert cache.get(k=2) is None


# --------------------------------------------------------------------------- TTL


def test_ttl_is_honoured_to_the_same_instant(cache: cacheness, clock: Clock) -> None:
    cache.put({"v": 1}, ttl_seconds=10, k=1)
    assert cache.get(k=1) == {"v": 1}
    clock.now += timedelta(seconds=10) - timedelta(microseconds=1)
    assert cache.get(k=1) == {"v": 1}
    assert cache.get_stats()["memory_hits"] == 1
    clock.now += timedelta(microseconds=1)
    assert cache.get(k=1, default=MISS) is MISS
    stats = cache.get_stats()
    assert (stats["expirations"], stats["entries"]) == (1, 0)


# --------------------------------------------------------------------------- bounds


def test_bounded_by_entries(tmp_path: Path) -> None:
    with cacheness(
        cache_dir=str(tmp_path), enable_memory_cache=True, memory_cache_maxsize=3
    ) as cache:
        for n in range(5):
            cache.put(f"value {n}", n=n)
            cache.get(n=n)
        cache.get(n=2)  # most recently used
        cache.put("value 5", n=5)
        cache.get(n=5)
        stats = cache.get_stats()
        assert (stats["memory_entries"], stats["memory_evictions"]) == (3, 3)
        before = cache.get_stats()["memory_hits"]
        cache.get(n=2)
        cache.get(n=4)
        assert cache.get_stats()["memory_hits"] == before + 2
        cache.get(n=3)  # evicted: read from the index
        assert cache.get_stats()["memory_hits"] == before + 2


def test_bounded_by_bytes(tmp_path: Path) -> None:
    config = CacheConfig(
        cache_dir=str(tmp_path),
        memory_cache=MemoryCacheConfig(enabled=True, max_bytes=25_000),
    )
    with cacheness(config) as cache:
        for n in range(4):
            cache.put(bytes(10_000), n=n)
            cache.get(n=n)
        stats = cache.get_stats()
        assert stats["memory_entries"] == 2
        assert stats["memory_bytes"] == 20_000
        assert stats["memory_evictions"] == 2
        cache.put(bytes(30_000), n=9)  # larger than the whole layer: never held
        cache.get(n=9)
        assert cache.get_stats()["memory_bytes"] == 20_000


def test_fifo_policy_ignores_use(tmp_path: Path) -> None:
    with cacheness(
        cache_dir=str(tmp_path),
        enable_memory_cache=True,
        memory_cache_maxsize=2,
        memory_cache_type="fifo",
    ) as cache:
        for n in range(2):
            cache.put(n, n=n)
            cache.get(n=n)
        cache.get(n=0)
        cache.put(2, n=2)
        cache.get(n=2)  # pushes out n=0, the oldest, although it was used last
        before = cache.get_stats()["memory_hits"]
        cache.get(n=0)
        assert cache.get_stats()["memory_hits"] == before


# --------------------------------------------------------------------------- other indexes


def test_json_index_asks_the_index_when_staleness_is_zero(tmp_path: Path, clock: Clock) -> None:
    options = {"cache_dir": str(tmp_path), "metadata_backend": "json", "clock": clock}
    with (
        cacheness(enable_memory_cache=True, **options) as reader,
        cacheness(**options) as writer,
    ):
        writer.put(b"a" * 10_000, k=1)
        assert reader.get(k=1) == b"a" * 10_000
        assert reader.get(k=1) == b"a" * 10_000
        assert reader.get_stats()["memory_hits"] == 1  # checked with the index, not read
        writer.put(b"b" * 10_000, k=1)
        assert reader.get(k=1) == b"b" * 10_000


def test_staleness_window_is_what_was_configured(tmp_path: Path, clock: Clock) -> None:
    options = {"cache_dir": str(tmp_path), "metadata_backend": "json", "clock": clock}
    with (
        cacheness(enable_memory_cache=True, memory_cache_ttl_seconds=30, **options) as reader,
        cacheness(**options) as writer,
    ):
        writer.put("old", k=1)
        assert reader.get(k=1) == "old"
        writer.put("new", k=1)
        clock.advance(29)
        assert reader.get(k=1) == "old"  # allowed: inside the configured window
        clock.advance(1)
        assert reader.get(k=1) == "new"


# --------------------------------------------------------------------------- configuration


def test_seed_names_are_aliases(tmp_path: Path) -> None:
    config = CacheConfig(
        cache_dir=str(tmp_path),
        enable_memory_cache=True,
        memory_cache_type="fifo",
        memory_cache_maxsize=7,
        memory_cache_ttl_seconds=2.5,
        memory_cache_stats=False,
    )
    assert config.memory_cache == MemoryCacheConfig(
        enabled=True, max_entries=7, staleness_seconds=2.5, policy="fifo", stats=False
    )
    assert config.replace(memory_cache_maxsize=9).memory_cache.max_entries == 9


def test_environment_turns_it_on() -> None:
    config = resolve_config(
        environ={"CACHENESS_MEMORY_CACHE": "yes", "CACHENESS_MEMORY_CACHE_MAX_BYTES": "1000"}
    )
    assert (config.memory_cache.enabled, config.memory_cache.max_bytes) == (True, 1000)


@pytest.mark.parametrize(
    ("settings_", "message"),
    [
        ({"memory_cache_type": "lfu"}, "memory_cache.policy must be one of lru, fifo"),
        ({"memory_cache_maxsize": 0}, "memory_cache.max_entries must be"),
        ({"memory_cache_ttl_seconds": -1}, "memory_cache.staleness_seconds must be"),
    ],
)
def test_bad_settings_are_config_errors(
    tmp_path: Path, settings_: dict[str, Any], message: str
) -> None:
    with pytest.raises(ConfigError, match=message):
        cacheness(cache_dir=str(tmp_path), enable_memory_cache=True, **settings_)


def test_an_alias_contradicting_its_section_is_an_error() -> None:
    with pytest.raises(ConfigError, match="memory_cache_maxsize=4 contradicts"):
        CacheConfig(memory_cache=MemoryCacheConfig(max_entries=3), memory_cache_maxsize=4)


# --------------------------------------------------------------------------- the model


KEYS = st.integers(0, 3)
VALUES = st.one_of(
    st.integers(),
    st.text(max_size=5),
    st.lists(st.integers(), max_size=3),
    st.dictionaries(st.text(max_size=3), st.integers(), max_size=3),
    st.binary(min_size=5000, max_size=5000),  # above the inline size: a blob
)
TTLS = st.one_of(st.none(), st.integers(1, 20))


class WithAndWithout(RuleBasedStateMachine):
    """A cache with the layer and one without, the same operations, the same answers.

    ``elsewhere`` writes on the layered cache's directory through its own connection
    (another process's view) and the same write goes to the plain cache directly.
    """

    @initialize()
    def open(self) -> None:
        import tempfile

        self.clock = Clock()
        self.dirs = [tempfile.mkdtemp(), tempfile.mkdtemp()]
        self.layered = cacheness(
            cache_dir=self.dirs[0],
            enable_memory_cache=True,
            memory_cache_maxsize=3,
            clock=self.clock,
        )
        self.elsewhere = cacheness(cache_dir=self.dirs[0], clock=self.clock)
        self.plain = cacheness(cache_dir=self.dirs[1], clock=self.clock)

    def both(self, method: str, *args: Any, **kwargs: Any) -> tuple[Any, Any]:
        return (
            getattr(self.layered, method)(*args, **kwargs),
            getattr(self.plain, method)(*args, **kwargs),
        )

    @rule(key=KEYS, value=VALUES, ttl=TTLS)
    def put(self, key: int, value: Any, ttl: int | None) -> None:
        self.both("put", value, ttl_seconds=ttl, k=key)

    @rule(key=KEYS, value=VALUES, ttl=TTLS)
    def put_elsewhere(self, key: int, value: Any, ttl: int | None) -> None:
        self.elsewhere.put(value, ttl_seconds=ttl, k=key)
        self.plain.put(value, ttl_seconds=ttl, k=key)

    @rule(key=KEYS)
    def invalidate_elsewhere(self, key: int) -> None:
        self.elsewhere.invalidate(k=key)
        self.plain.invalidate(k=key)

    @rule(key=KEYS, ttl=st.integers(1, 20))
    def touch_elsewhere(self, key: int, ttl: int) -> None:
        assert self.elsewhere.touch(ttl_seconds=ttl, k=key) == self.plain.touch(
            ttl_seconds=ttl, k=key
        )

    @rule(key=KEYS)
    def invalidate(self, key: int) -> None:
        self.both("invalidate", k=key)

    @rule(key=KEYS, mutate=st.booleans())
    def get(self, key: int, mutate: bool) -> None:
        layered, plain = self.both("get", k=key, default=MISS)
        np.testing.assert_equal(layered, plain)
        if mutate and isinstance(layered, list | dict):
            layered.clear()  # the caller's copy: the next get must not see it

    @rule(seconds=st.sampled_from([0.5, 1, 5, 10, 20]))
    def advance(self, seconds: float) -> None:
        self.clock.advance(seconds)

    @precondition(lambda self: hasattr(self, "layered"))
    @invariant()
    def same_counts(self) -> None:
        layered, plain = self.layered.get_stats(), self.plain.get_stats()
        for name in ("hits", "misses", "expirations", "entries"):
            assert layered[name] == plain[name], name

    def teardown(self) -> None:
        if hasattr(self, "layered"):
            for cache in (self.layered, self.elsewhere, self.plain):
                cache.close()
            for directory in self.dirs:
                shutil.rmtree(directory, ignore_errors=True)


TestWithAndWithout = WithAndWithout.TestCase
TestWithAndWithout.settings = settings(max_examples=40, stateful_step_count=30)


def test_the_docs_page_runs(docs_page: Any) -> None:
    docs_page("memory-cache.md").run()
