"""A cache directory written by the first release still gives hits under the same keys.

``cache_store/`` was written once by ``make_golden_cache.py`` (see its docstring). The
tests open a *copy* (the committed files are never modified) with the current code and a
clock one hour after the writes, and ask for every value again with the key parameters of
``cache_values.py``: live entries are hits under the keys recorded in ``manifest.json``,
the expired one is a miss, a decorated function finds its results without running, and
the cache's own facts under ``_cacheness`` (format version, parameters, prefix, TTL,
expiry) read back as they were written.

A failure means cache keys or the cache's facts changed meaning: that needs a
``KEY_SCHEMA_VERSION`` or ``FORMAT_VERSION`` bump (old entries become misses), stated
here, not a rewritten golden directory.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import importlib.util
import json
import shutil
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from cacheness import KEY_SCHEMA_VERSION, cached, cacheness
from cacheness.cache_entry import FORMAT_VERSION, RESERVED_METADATA_KEY

GOLDEN = Path(__file__).resolve().parent
STORE = GOLDEN / "cache_store"


def _load_values() -> Any:
    name = "cacheness_golden_cache_values"
    if name not in sys.modules:
        spec = importlib.util.spec_from_file_location(name, GOLDEN / "cache_values.py")
        assert spec is not None
        assert spec.loader is not None
        module = importlib.util.module_from_spec(spec)
        sys.modules[name] = module
        spec.loader.exec_module(module)
    return sys.modules[name]


values = _load_values()
MANIFEST: dict[str, Any] = json.loads((STORE / "manifest.json").read_text(encoding="utf-8"))


def _digest() -> dict[str, str]:
    return {
        str(p.relative_to(STORE)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(STORE.rglob("*"))
        if p.is_file()
    }


@pytest.fixture(scope="module", autouse=True)
def committed_store_stays_untouched() -> Iterator[None]:
    before = _digest()
    yield
    assert _digest() == before


@pytest.fixture
def cache(tmp_path: Path) -> Iterator[cacheness]:
    root = tmp_path / "cache_store"
    shutil.copytree(STORE, root)
    with cacheness(cache_dir=root, clock=lambda: values.READ_AT, **values.CONFIG) as opened:
        yield opened


def lookup(call: Any) -> dict[str, Any]:
    """The arguments that name ``call``'s entry (as ``put`` was given them)."""
    found: dict[str, Any] = {"key_params": call.params()}
    for name in ("cache_key", "key_prefix"):
        if name in call.options:
            found[name] = call.options[name]
    return found


def assert_same(actual: Any, expected: Any, what: str) -> None:
    assert type(actual) is type(expected), what
    module = type(expected).__module__.split(".")[0]
    if module == "numpy":
        assert (actual.dtype, actual.shape) == (expected.dtype, expected.shape), what
        assert actual.tobytes() == expected.tobytes(), what
    elif module == "pandas":
        import pandas.testing as pdt

        pdt.assert_frame_equal(actual, expected, check_exact=True)
    else:
        assert actual == expected, what


def test_the_format_and_key_versions_are_those_of_the_golden_store() -> None:
    assert FORMAT_VERSION == 1
    assert KEY_SCHEMA_VERSION == 1
    facts = [entry["metadata"][RESERVED_METADATA_KEY] for entry in MANIFEST["entries"].values()]
    assert {fact["v"] for fact in facts} == {FORMAT_VERSION}


def test_keys_derive_as_they_did(cache: cacheness) -> None:
    for call in values.CALLS:
        recorded = MANIFEST["calls"][call.name]
        if "cache_key" in call.options:
            assert recorded == call.options["cache_key"]
        else:
            prefix = call.options.get("key_prefix")
            assert cache.key_for(key_prefix=prefix, key_params=call.params()) == recorded, call.name


def test_every_live_entry_is_a_hit_with_its_original_value(cache: cacheness) -> None:
    live = [call for call in values.CALLS if call.live]
    for call in live:
        assert_same(cache.get(**lookup(call)), call.value(), call.name)
    stats = cache.get_stats()
    assert (stats["hits"], stats["misses"]) == (len(live), 0)


def test_the_expired_entry_is_a_miss(cache: cacheness) -> None:
    (expired,) = [call for call in values.CALLS if not call.live]
    info = cache.get_metadata(**lookup(expired), check_expiration=False)
    assert info is not None
    assert info.expires_at is not None
    assert info.expires_at < values.READ_AT
    assert cache.get_metadata(**lookup(expired)) is None
    assert cache.get(**lookup(expired)) is None
    assert cache.get_stats()["misses"] == 1
    # the miss removed it
    assert cache.get_metadata(**lookup(expired), check_expiration=False) is None


def test_the_cache_facts_read_back_as_written(cache: cacheness) -> None:
    for call in values.CALLS:
        key = MANIFEST["calls"][call.name]
        recorded = MANIFEST["entries"][key]
        facts = recorded["metadata"][RESERVED_METADATA_KEY]
        entry = cache.store.get_metadata(key)
        assert entry is not None
        assert entry.metadata == recorded["metadata"], call.name
        info = cache.get_metadata(**lookup(call), check_expiration=False)
        assert info is not None
        assert info.cache_key == key
        assert info.params == facts.get("params")
        assert info.prefix == facts.get("prefix") == call.options.get("key_prefix")
        assert info.ttl_seconds == facts.get("ttl")
        expires = facts.get("expires_at")
        assert info.expires_at == (
            None if expires is None else dt.datetime.fromtimestamp(expires, dt.UTC)
        )
        user = {k: v for k, v in recorded["metadata"].items() if k != RESERVED_METADATA_KEY}
        assert info.metadata == user == call.options.get("metadata", {})
        assert (info.handler, info.size, info.content_hash) == (
            recorded["handler"],
            recorded["size"],
            recorded["content_hash"],
        )


def test_the_touched_entry_keeps_its_new_ttl(cache: cacheness) -> None:
    info = cache.get_metadata(job="weekly")
    assert info is not None
    assert info.ttl_seconds == 2 * 86_400
    assert info.expires_at is not None
    assert values.CLOCK_START < info.expires_at - dt.timedelta(days=2) < values.READ_AT


def test_the_decorated_function_finds_its_results_without_running(cache: cacheness) -> None:
    @cached(
        cache_instance=cache,
        key_prefix=values.DECORATED_PREFIX,
        version=values.DECORATED_VERSION,
    )
    def train(dataset: str, epochs: int = 3) -> dict[str, Any]:
        raise AssertionError(f"recomputed train({dataset!r}, {epochs!r}): the entry was missed")

    for (args, kwargs), key in zip(values.DECORATED_CALLS, MANIFEST["decorated"], strict=True):
        assert train.cache_key(*args, **kwargs) == key
        bound = dict(zip(("dataset", "epochs"), args, strict=False)) | kwargs
        assert train(*args, **kwargs) == values.train_result(bound["dataset"], bound["epochs"])
    assert train.cache_info().hits == len(values.DECORATED_CALLS)


def test_queries_by_key_parameters_and_listing(cache: cacheness) -> None:
    model = next(call for call in values.CALLS if call.name == "model")
    (found,) = cache.query_meta(model="resnet", epochs=10)
    assert found.cache_key == MANIFEST["calls"]["model"]
    assert found.metadata == {"owner": "ana", "stage": "dev"}
    assert found.access_count == 1  # the read made while writing, flushed on close
    assert cache.query_meta(model="resnet", epochs=11) == []
    assert [e.cache_key for e in cache.query_meta(dataset="iris")] == [MANIFEST["decorated"][0]]
    everything = len(MANIFEST["entries"])
    assert cache.count(include_expired=True) == everything
    assert cache.count() == everything - 1  # the expired one
    assert len(cache.list_entries(filter={"metadata.owner": "ana"})) == 1
    assert cache.verify(**lookup(model), deep=True)
    assert cache.store.verify_integrity() == []
    assert cache.cleanup_expired() == 1
    assert cache.count(include_expired=True) == everything - 1
