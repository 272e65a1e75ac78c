"""Calls that used to do something else than they said: empty bulk selectors, key
parameters named like options or holding dots and quotes, huge TTLs and odd rows,
malformed batch input and clocks, metadata values that PostgreSQL changed.

Each test runs on the memory, sqlite+filesystem and postgresql+s3 pairings where the
backend matters, and reads what is stored back through the cache.
"""

from __future__ import annotations

import math
from datetime import UTC, datetime, timedelta

import pytest

from cacheness import cacheness
from cacheness.storage import ConfigError

# --------------------------------------------------------------------------- empty selectors


@pytest.mark.parametrize(
    "call",
    [
        lambda cache: cache.delete_matching(),
        lambda cache: cache.delete_matching(key_params={}),
        lambda cache: cache.delete_by_prefix(),
        lambda cache: cache.delete_where({}),
        lambda cache: cache.delete_where(None),
    ],
    ids=["delete_matching", "delete_matching-empty", "delete_by_prefix", "where-{}", "where-None"],
)
def test_destructive_bulk_calls_with_an_empty_selector_refuse_naming_clear_all(make_cache, call):
    cache = make_cache()
    cache.put(1, project="ml")
    with pytest.raises(TypeError, match=r"clear_all\(\)"):
        call(cache)
    assert cache.count() == 1
    assert cache.clear_all() == 1


def test_touch_batch_needs_a_selector(make_cache):
    cache = make_cache()
    cache.put(1, ttl_seconds=60, project="ml")
    with pytest.raises(TypeError, match="needs key parameters or filter="):
        cache.touch_batch(ttl_seconds=120)
    assert cache.get_metadata(project="ml").ttl_seconds == 60
    assert cache.touch_batch(ttl_seconds=120, project="ml") == 1


# --------------------------------------------------------------------------- parameter names

ODD_NAMES = ["lr.max", 'say "hi"', "back\\slash", "a.b\\.c", "tab\there", "ünï.x"]


@pytest.mark.parametrize("name", ODD_NAMES)
def test_every_parameter_name_put_accepts_is_queryable_by_name(make_cache, name):
    cache = make_cache()
    key = cache.put("v", key_params={name: "exp_001", "run": 1})
    other = cache.put("w", key_params={name: "other", "run": 2})
    assert cache.get_metadata(cache_key=key).params == {name: "exp_001", "run": 1}
    assert [e.cache_key for e in cache.query_meta(key_params={name: "exp_001"})] == [key]
    assert [e.cache_key for e in cache.query_meta(**{name: "exp_001"})] == [key]
    assert cache.touch_batch(ttl_seconds=60, key_params={name: "exp_001"}) == 1
    assert cache.get_metadata(cache_key=key).ttl_seconds == 60
    assert cache.delete_by_prefix(key_params={name: "exp_"}) == 1
    assert cache.exists(cache_key=other)
    assert cache.delete_matching(key_params={name: "other"}) == 1
    assert cache.count() == 0


@pytest.mark.parametrize(
    ("call", "method"),
    [
        (lambda cache: cache.get(ttl_seconds=60, x=1), "get"),
        (lambda cache: cache.get_with_metadata(ttl_seconds=60, x=1), "get_with_metadata"),
        (lambda cache: cache.exists(ttl_seconds=60, x=1), "exists"),
        (lambda cache: cache.put(1, default=3, x=1), "put"),
        (lambda cache: cache.put(1, check_expiration=False, x=1), "put"),
        (lambda cache: cache.get_metadata(max_age_seconds=3, x=1), "get_metadata"),
        (lambda cache: cache.invalidate(deep=True, x=1), "invalidate"),
        (lambda cache: cache.touch(filter={}, x=1), "touch"),
        (lambda cache: cache.verify(data=1, x=1), "verify"),
        (lambda cache: cache.update_data(2, metadata={}, x=1), "update_data"),
        (lambda cache: cache.key_for(default=1, x=1), "key_for"),
        (lambda cache: cache.query_meta(ttl_seconds=60), "query_meta"),
        (lambda cache: cache.delete_matching(default=1), "delete_matching"),
        (lambda cache: cache.delete_by_prefix(cache_key="x"), "delete_by_prefix"),
        (lambda cache: cache.touch_batch(metadata=1), "touch_batch"),
    ],
)
def test_option_names_never_silently_become_key_parameters(make_cache, call, method):
    cache = make_cache()
    cache.put(1, x=1)
    with pytest.raises(TypeError, match=rf"{method}\(\) takes no option .*key_params=") as info:
        call(cache)
    if method.startswith("get") and "ttl_seconds" in str(info.value):
        assert "max_age_seconds" in str(info.value)
    assert cache.get(x=1) == 1


def test_key_parameters_named_like_options_go_through_key_params(make_cache):
    from cacheness.cache import OPTION_NAMES

    cache = make_cache()
    params = {name: i for i, name in enumerate(sorted(OPTION_NAMES))}
    key = cache.put("value", key_params=params)
    assert cache.get(key_params=params) == "value"
    assert cache.get_metadata(key_params=params).params == params
    found = cache.query_meta(key_params={"ttl_seconds": params["ttl_seconds"]})
    assert [e.cache_key for e in found] == [key]
    assert cache.delete_matching(key_params={"default": params["default"]}) == 1


def test_exists_check_expiration_and_get_max_age_seconds(make_cache, clock):
    cache = make_cache(clock=clock)
    cache.put("old", ttl_seconds=10, job=1)
    cache.put("fresh", job=2)
    clock.advance(11)
    assert cache.exists(job=1) is False
    assert cache.exists(job=1, check_expiration=False) is True
    assert cache.exists(job=3, check_expiration=False) is False
    clock.advance(100)
    cache.put("new", job=3)
    assert cache.get(job=2, max_age_seconds=60) is None  # stored 111 s ago: too old here
    assert cache.get(job=2) == "fresh"  # still there for readers without the limit
    assert cache.get(job=3, max_age_seconds=timedelta(minutes=1)) == "new"
    assert cache.get_with_metadata(job=2, max_age_seconds=60) is None
    assert cache.get_with_metadata(job=3, max_age_seconds=60)[0] == "new"
    cache.touch(job=2)  # touched: fresh again
    assert cache.get(job=2, max_age_seconds=60) == "fresh"
    with pytest.raises(ValueError, match="max_age_seconds"):
        cache.get(job=2, max_age_seconds=-1)


# --------------------------------------------------------------------------- TTLs and odd rows


@pytest.mark.parametrize(
    "ttl", [1e12, 1e20, 1e300, 10**400], ids=["1e12", "1e20", "1e300", "10**400"]
)
def test_a_ttl_too_large_to_reach_never_expires_and_breaks_nothing(make_cache, clock, ttl):
    cache = make_cache(clock=clock)
    key = cache.put("forever", ttl_seconds=ttl, run="huge")
    cache.put("normal", ttl_seconds=60, run="normal")
    entry = cache.get_metadata(run="huge")
    assert entry.expires_at is None  # past the year 9999: never
    assert entry.ttl_seconds == (1.7976931348623157e308 if isinstance(ttl, int) else ttl)
    assert {e.cache_key for e in cache.list_entries()} == {key, cache.key_for(run="normal")}
    assert cache.delete_where(lambda e: e.params == {"run": "nothing"}) == 0
    assert cache.touch(ttl_seconds=ttl, run="huge")
    cache.copy({"run": "huge"}, {"run": "copy"})
    assert cache.get_metadata(run="copy").expires_at is None
    clock.advance(10**9)
    assert cache.cleanup_expired() == 1  # only the 60-second one
    assert cache.get(run="huge") == "forever"
    assert cache.get(run="copy") == "forever"


ODD_EXPIRIES = [1e12, -1e12, "tomorrow", None, True, [1], {"at": 1}]


@pytest.mark.parametrize("expires_at", ODD_EXPIRIES, ids=repr)
def test_one_odd_row_never_breaks_listing_or_querying_the_rest(make_cache, clock, expires_at):
    cache = make_cache(clock=clock)
    good = cache.put("good", project="ml", run=1)
    odd = cache.put("odd", ttl_seconds=60, project="ml", run=2)
    facts = dict(cache.store.get_metadata(odd).metadata["_cacheness"])
    facts.update(expires_at=expires_at, ttl="sixty", params=["not", "a", "dict"], prefix=5)
    cache.store.update_metadata(odd, {"_cacheness": facts})  # as an older version or a hand
    everything = cache.list_entries(include_expired=True)
    assert {e.cache_key for e in everything} == {good, odd}
    described = cache.get_metadata(cache_key=odd, check_expiration=False)
    assert (described.params, described.prefix, described.ttl_seconds) == (None, None, None)
    live = {e.cache_key for e in cache.list_entries()}
    never = isinstance(expires_at, float) and expires_at > 0
    assert live == ({good, odd} if never else {good})
    assert cache.exists(cache_key=odd) is never
    assert [e.cache_key for e in cache.query_meta(project="ml", run=1)] == [good]
    assert cache.delete_where(lambda e: e.cache_key == "nothing") == 0
    assert cache.cleanup_expired() == (0 if never else 1)
    assert cache.get(cache_key=odd) == ("odd" if never else None)
    assert cache.get(cache_key=good) == "good"


def test_expiry_helpers_read_odd_values_without_raising():
    from cacheness.cache_entry import expiry_datetime, expiry_seconds

    assert expiry_seconds({"expires_at": float("nan")}) == -math.inf
    assert expiry_datetime({"expires_at": -1e300}) == datetime.min.replace(tzinfo=UTC)
    assert expiry_datetime({"expires_at": 253402300799}).year == 9999
    assert expiry_datetime({"expires_at": 253402300800}) is None


# --------------------------------------------------------------------------- malformed input


@pytest.mark.parametrize(
    ("call", "hint"),
    [
        (lambda c: c.get_batch("str"), r"get_batch\(\) takes a list of key parameter mappings"),
        (lambda c: c.get_batch(["abc"]), r"get_batch\(\) takes key parameter mappings"),
        (lambda c: c.get_batch(None), r"get_batch\(\) takes a list"),
        (lambda c: c.get_batch({"x": 1}), r"get_batch\(\) takes a list"),
        (lambda c: c.delete_batch("x"), r"delete_batch\(\) takes a list"),
        (lambda c: c.update_batch("x"), r"update_batch\(\) takes a list of \(key parameters"),
        (lambda c: c.update_batch([1]), r"takes \(key parameters, data\) pairs"),
        (lambda c: c.copy("a", {"x": 2}), r"copy\(\) takes key parameter mappings"),
        (lambda c: c.move({"x": 1}, 2), r"move\(\) takes key parameter mappings"),
        (lambda c: c.put(1, key_params=[("x", 1)]), "key_params must be a mapping"),
        (lambda c: c.get(key_params="x=1"), "key_params must be a mapping"),
        (lambda c: c.compute_lock("k", timeout="soon"), "timeout must be a number"),
    ],
)
def test_malformed_call_shapes_are_type_errors_saying_what_to_pass(make_cache, call, hint):
    cache = make_cache()
    cache.put(1, x=1)
    with pytest.raises(TypeError, match=hint):
        call(cache)
    assert cache.get(x=1) == 1


@pytest.mark.parametrize(
    ("clock", "hint"),
    [
        (lambda: 1_700_000_000.0, "returned float"),
        (lambda: datetime(2026, 1, 1), "returned datetime"),
        (5, "clock must be a callable"),
    ],
    ids=["float", "naive", "not-callable"],
)
def test_a_bad_clock_is_a_config_error_at_construction(tmp_path, clock, hint):
    with pytest.raises(ConfigError, match=hint):
        cacheness(cache_dir=str(tmp_path / "c"), clock=clock)
    assert not (tmp_path / "c").exists()


def test_a_clock_that_goes_bad_later_is_a_config_error_at_first_use(tmp_path):
    readings = iter([datetime(2026, 1, 1, tzinfo=UTC)])
    with (
        cacheness(cache_dir=str(tmp_path), clock=lambda: next(readings, 0.0)) as cache,
        pytest.raises(ConfigError, match="must return an aware datetime"),
    ):
        cache.put(1, x=1)


# --------------------------------------------------------------------------- exact values


def test_parameters_and_metadata_round_trip_exactly_on_every_backend(make_cache):
    cache = make_cache()
    params = {"loss": 1e20, "negz": -0.0, "huge": 1e300, "tiny": 5e-324, "n": 2**63 - 1}
    key = cache.put("v", metadata={"score": 1e20, "neg": -0.0}, ttl_seconds=1e20, **params)
    entry = cache.get_metadata(cache_key=key)
    assert sorted((k, type(v).__name__, repr(v)) for k, v in entry.params.items()) == sorted(
        (k, type(v).__name__, repr(v)) for k, v in params.items()
    )
    assert repr(entry.metadata["score"]) == "1e+20"
    assert repr(entry.metadata["neg"]) == "-0.0"
    assert entry.ttl_seconds == 1e20
    assert [e.cache_key for e in cache.query_meta(loss=1e20, n=2**63 - 1)] == [key]
    assert cache.touch(ttl_seconds=1e20, cache_key=key)
    assert cache.update_data("w", cache_key=key)
    cache.copy({"cache_key": key}, {"copy": 1})
    assert repr(cache.get_metadata(copy=1).metadata["score"]) == "1e+20"
    store = cache.store
    assert store.update_metadata(key, {"more": 1.5}, merge=True)
    again = store.get_metadata(key).metadata
    store.put("re-put", key="reput", metadata=again)  # what was read back can be written
    assert repr(store.get_metadata("reput").metadata["neg"]) == "-0.0"
