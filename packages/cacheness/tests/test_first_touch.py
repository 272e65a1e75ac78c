"""First touch: habits of joblib/diskcache users, the upgrade path from Cacheness 0.4
(the seeds' API), and errors that say what to type (issue 18)."""

from __future__ import annotations

import logging
import sys
from pathlib import Path

import pytest

import cacheness as package
from cacheness import (
    CacheConfig,
    ConfigError,
    MissingDependencyError,
    SerializationError,
    cached,
    cacheness,
    load_config_from_dict,
    resolve_config,
    save_config_to_json,
)
from cacheness.cache import LEGACY_OPTIONS, RETIRED_METHODS

# ---------------------------------------------------------------- old option names


@pytest.mark.parametrize(
    ("name", "replacement"),
    [
        ("prefix", "key_prefix"),
        ("hash_key", "cache_key"),
        ("description", "metadata={'description'"),
        ("on", "key_params"),
    ],
)
@pytest.mark.parametrize("method", ["put", "get", "exists", "touch", "invalidate", "get_metadata"])
def test_old_option_names_are_never_hashed(make_cache, name, replacement, method):
    cache = make_cache()
    call = getattr(cache, method)
    args = ("value",) if method == "put" else ()
    with pytest.raises(TypeError) as caught:
        call(*args, **{name: "p"}, x=1)
    message = str(caught.value)
    assert f"{method}()" in message
    assert replacement in message
    assert f"key_params={{{name!r}: ...}}" in message
    assert len(cache) == 0  # nothing stored under a key that hashed the old option


def test_a_key_parameter_named_like_an_old_option_goes_through_key_params(make_cache):
    cache = make_cache()
    key = cache.put("v", key_params={"prefix": "p"}, x=1)
    assert cache.get(key_params={"prefix": "p"}, x=1) == "v"
    assert cache.get(cache_key=key) == "v"


def test_the_prefix_upgrade_hits_with_the_new_name(make_cache):
    cache = make_cache()
    with pytest.raises(TypeError, match="key_prefix"):
        cache.put("v", prefix="p", x=1)
    cache.put("v", key_prefix="p", x=1)
    assert cache.get(x=1, key_prefix="p") == "v"
    assert cache.get(x=1) is None


def test_legacy_options_table_is_what_the_docs_say():
    assert set(LEGACY_OPTIONS) == {"prefix", "hash_key", "description", "on"}


@pytest.mark.parametrize("name", sorted(RETIRED_METHODS))
def test_retired_methods_name_their_replacement(tmp_path, name):
    with cacheness(tmp_path) as cache, pytest.raises(AttributeError) as caught:
        getattr(cache, name)
    assert RETIRED_METHODS[name] in str(caught.value)


def test_unknown_attributes_get_the_closest_name(tmp_path):
    with cacheness(tmp_path) as cache:
        with pytest.raises(AttributeError, match=r"did you mean 'clear'"):
            cache.clearr  # noqa: B018
        with pytest.raises(AttributeError, match=r"did you mean 'invalidate'"):
            cache.invaldate  # noqa: B018


def test_module_names_that_moved():
    with pytest.raises(AttributeError, match=r"cacheness\.cached\.for_api"):
        package.for_api  # noqa: B018
    with pytest.raises(AttributeError, match=r"did you mean 'cached'"):
        package.cachd  # noqa: B018


def test_cached_ignore_errors(tmp_path):
    with cacheness(tmp_path) as cache:

        @cached(cache_instance=cache, ignore_errors=True)
        def double(x):
            return 2 * x

        assert double(2) == double(2) == 4
        assert double.cache_info().hits == 1
        with pytest.raises(TypeError, match="strict=True"):
            cached(cache_instance=cache, ignore_errors=False)


def test_cleanup_on_init_removes_expired_entries(tmp_path, clock):
    with cacheness(tmp_path, clock=clock) as cache:
        cache.put("old", ttl_seconds=10, n=1)
        cache.put("kept", n=2)
    clock.advance(11)
    with cacheness(tmp_path, clock=clock, cleanup_on_init=True) as cache:
        assert cache.count(include_expired=True) == 1
        assert cache.get(n=2) == "kept"
    with cacheness(CacheConfig(cache_dir=str(tmp_path), cleanup_on_init=True)) as cache:
        assert cache.config.cleanup_on_init is True


def test_old_environment_variables_are_read():
    env = {"CACHENESS_MAX_SIZE_MB": "12", "CACHENESS_BACKEND": "json", "CACHENESS_DIR": "/c"}
    config = resolve_config(environ=env)
    assert config.max_cache_size_mb == 12
    assert config.metadata.backend == "json"
    with pytest.raises(ConfigError, match="set only CACHENESS_MAX_CACHE_SIZE_MB"):
        resolve_config(environ={"CACHENESS_MAX_SIZE_MB": "1", "CACHENESS_MAX_CACHE_SIZE_MB": "2"})
    same = {"CACHENESS_MAX_SIZE_MB": "2", "CACHENESS_MAX_CACHE_SIZE_MB": "2"}
    assert resolve_config(environ=same).max_cache_size_mb == 2


# ---------------------------------------------------------------- joblib / diskcache habits


def test_a_positional_folder_opens_a_cache_there(tmp_path):
    folder = tmp_path / "my cache"
    with cacheness(str(folder)) as cache:
        cache.put(1, n=1)
        assert cache.config.cache_dir == str(folder)
    assert (folder / "index.sqlite").exists()
    with cacheness(folder) as cache:  # a Path too, and the data is there
        assert cache.get(n=1) == 1
    dotted = tmp_path / "cache.v2"
    with cacheness(dotted) as cache:
        assert cache.config.cache_dir == str(dotted)
    with pytest.raises(TypeError, match="given twice"):
        cacheness(str(folder), cache_dir=str(folder))


def test_a_positional_config_file_is_still_a_config_file(tmp_path):
    path = tmp_path / "cache.json"
    save_config_to_json(load_config_from_dict({"cache_dir": str(tmp_path / "d")}), path)
    with cacheness(str(path)) as cache:
        assert cache.config.cache_dir == str(tmp_path / "d")


def test_clear_len_and_in(make_cache):
    cache = make_cache()
    key = cache.put("a", run=1)
    cache.put("b", run=2)
    assert len(cache) == 2
    assert key in cache
    assert {"run": 1} in cache
    assert {"run": 3} not in cache
    assert "not a key!" not in cache
    with pytest.raises(TypeError, match="cache key"):
        _ = 3 in cache
    assert cache.clear() == 2
    assert len(cache) == 0
    assert key not in cache


def test_len_and_in_skip_expired_entries(tmp_path, clock):
    with cacheness(tmp_path, clock=clock) as cache:
        key = cache.put("a", ttl_seconds=5, run=1)
        clock.advance(6)
        assert len(cache) == 0
        assert key not in cache


def test_decorators_bound_to_the_cache(make_cache):
    cache = make_cache()
    calls: list[int] = []

    @cache.memoize
    def square(x):
        calls.append(x)
        return x * x

    @cache.cached(ttl_seconds=60, key_prefix="cube")
    def cube(x):
        calls.append(x)
        return x**3

    @cached(cache_instance=cache)
    def plain(x):
        calls.append(x)
        return x

    assert [square(3), square(3), cube(2), cube(2), plain(5), plain(5)] == [9, 9, 8, 8, 5, 5]
    assert calls == [3, 2, 5]
    assert cube.cache_parameters()["ttl_seconds"] == 60
    assert len(cache) == 3
    with pytest.raises(TypeError, match="leave out cache_instance"):
        cache.cached(cache_instance=cache)
    with pytest.raises(TypeError, match="did you mean 'ttl_seconds'"):
        cache.memoize(ttl=5)


def test_verbose_shows_a_line_per_hit_miss_and_put(tmp_path, caplog):
    with cacheness(tmp_path, verbose=1) as cache:

        @cache.memoize
        def double(x):
            return 2 * x

        with caplog.at_level(logging.INFO, logger="cacheness.activity"):
            double(4)
            double(4)
            cache.put("v", run=1)
            cache.get(run=1)
            cache.get(run=2)
    lines = [r.getMessage() for r in caplog.records if r.name == "cacheness.activity"]
    events = [line.split()[:2] for line in lines]
    name = f"{__name__}.test_verbose_shows_a_line_per_hit_miss_and_put.<locals>.double"
    assert events == [
        ["miss", name],
        ["put", name],
        ["hit", name],
        ["put", "cache.put"],
        ["hit", "cache.get"],
        ["miss", "cache.get"],
    ]
    assert all(" key=" in line and line.endswith(" ms") for line in lines)


def test_verbose_output_goes_to_stderr_and_nothing_by_default(tmp_path, capsys):
    with cacheness(tmp_path / "quiet") as cache:
        cache.put(1, n=1)
        cache.get(n=1)
    assert capsys.readouterr() == ("", "")
    activity = logging.getLogger("cacheness.activity")
    try:
        with cacheness(tmp_path / "loud", verbose=1) as cache:
            cache.put(1, n=1)
            cache.get(n=1)
        err = capsys.readouterr().err.splitlines()
        assert [line.split(" key=")[0] for line in err] == [
            "[cacheness] put cache.put",
            "[cacheness] hit cache.get",
        ]
        # logging configured to print on stderr: each line shows once, through it
        console = logging.StreamHandler(sys.stderr)
        logging.getLogger().addHandler(console)
        try:
            with cacheness(tmp_path / "logged", verbose=True) as cache:
                cache.put(1, n=1)
            lines = capsys.readouterr().err.splitlines()
            assert len(lines) == 1
            assert lines[0].startswith("put cache.put key=")
        finally:
            logging.getLogger().removeHandler(console)
    finally:
        for handler in activity.handlers[:]:
            activity.removeHandler(handler)
        activity.setLevel(logging.NOTSET)
    with pytest.raises(TypeError, match="verbose must be an int"):
        cacheness(tmp_path, verbose="yes")


def test_cache_level_maintenance(tmp_path):
    with cacheness(tmp_path) as cache:
        cache.put(b"x" * 50_000, n=1)
        assert cache.verify_integrity() == []
        assert cache.find_orphaned_blobs() == []
        report = cache.repair(dry_run=True)
        assert report.ok
        assert report.dry_run
        stray = tmp_path / "blobs" / "zz"
        stray.mkdir(parents=True)
        (stray / "zzstray").write_bytes(b"left")
        assert len(cache.find_orphaned_blobs(min_age_seconds=0)) == 1
        dry = cache.repair(dry_run=True, orphan_min_age_seconds=0)
        assert dry.orphans_removed == ["zz/zzstray"]
        assert cache.find_orphaned_blobs(min_age_seconds=0) == ["zz/zzstray"]  # dry run
        assert len(cache.repair(dry_run=False, orphan_min_age_seconds=0).orphans_removed) == 1
        assert cache.find_orphaned_blobs(min_age_seconds=0) == []


# ---------------------------------------------------------------- errors that say what to type


def test_put_without_key_parameters_speaks_of_put(tmp_path):
    with cacheness(tmp_path) as cache:
        with pytest.raises(TypeError, match=r"cache\.put\(data, model='a'\)"):
            cache.put({"x": 1})
        with pytest.raises(TypeError, match=r"cache\.get\(model='a'\)"):
            cache.get()


def test_unknown_config_names_get_the_closest_match(tmp_path):
    with pytest.raises(ConfigError, match="did you mean 'default_ttl_seconds'"):
        cacheness(cache_dir=str(tmp_path), ttl=3600)
    with pytest.raises(ConfigError, match="did you mean 'max_cache_size_mb'"):
        cacheness(cache_dir=str(tmp_path), max_size_mb=10)
    with pytest.raises(TypeError, match="did you mean 'default_ttl_seconds'"):
        CacheConfig(ttl=5)  # type: ignore[call-arg]
    with pytest.raises(TypeError, match="did you mean 'max_entries'"):
        CacheConfig(max_entires=5)  # type: ignore[call-arg]
    with pytest.raises(ConfigError, match="did you mean 'default_ttl_seconds'"):
        load_config_from_dict({"ttl": 5})


def test_unknown_decorator_options_get_the_closest_match():
    with pytest.raises(TypeError, match="did you mean 'ttl_seconds'"):
        cached(ttl=60)
    with pytest.raises(TypeError, match="did you mean 'key_prefix'"):
        cached(key_prefx="a")
    with pytest.raises(TypeError, match="did you mean 'ttl_seconds'"):
        cached.for_api(ttl=60)  # type: ignore[attr-defined]


def test_a_lambda_says_where_allow_cloudpickle_goes(tmp_path):
    where = r"serialization=\{'allow_cloudpickle': True\}"
    with cacheness(tmp_path / "a") as cache, pytest.raises(SerializationError, match=where):
        cache.put(lambda x: x + 1, fn="inc")
    with cacheness(tmp_path / "b", serialization={"allow_cloudpickle": True}) as cache:
        cache.put(lambda x: x + 1, fn="inc")
        assert cache.get(fn="inc")(1) == 2


@pytest.mark.parametrize("missing", [["psycopg"], ["boto3"], ["psycopg", "boto3"]])
def test_a_team_cache_names_everything_missing_at_once(tmp_path, monkeypatch, missing):
    for module in missing:
        monkeypatch.setitem(sys.modules, module, None)
    with pytest.raises(MissingDependencyError) as caught:
        cacheness(
            cache_dir=str(tmp_path),
            metadata_backend="postgresql",
            metadata_backend_options={"url": "postgresql://nobody@127.0.0.1:1/none"},
            blob_backend="s3",
            blob_backend_options={"bucket": "b"},
        )
    message = str(caught.value)
    assert 'pip install "cacheness[cloud]"' in message
    assert all(module in message for module in missing)


def test_a_team_cache_repr_shows_its_table_bucket_and_prefix(make_cache, request):
    cache = make_cache()
    text = repr(cache)
    if cache.store.metadata_backend_name == "sqlite":
        assert "cache_dir=" in text
        return
    assert "cache_dir" not in text
    if cache.store.metadata_backend_name == "postgresql":
        assert "table=" in text
        assert "s3://" in text


def test_seeds_constructor_names_of_the_blob_store(tmp_path):
    from cacheness.storage import BlobStore

    with BlobStore(cache_dir=tmp_path, backend="sqlite", compression="lz4") as store:
        store.put(b"\0" * 50_000, key="models/a")
        store.put(1, key="data/b")
        assert store.path == Path(tmp_path)
        assert store.serialization.codec == "blosc2"
        assert store.serialization.blosc2_codec == "lz4"
        assert store.list() == ["data/b", "models/a"]
        assert store.list(prefix="models/") == ["models/a"]
        assert [e.key for e in store.list_entries(prefix="models/")] == ["models/a"]
    with BlobStore(tmp_path / "z", compression="zstd") as store:
        assert store.serialization.codec == "zstd"
    with pytest.raises(ConfigError, match="did you mean 'lz4'"):
        BlobStore(tmp_path, compression="lz5")
    with pytest.raises(TypeError, match="older name of metadata_backend"):
        BlobStore(tmp_path, backend="json", metadata_backend="memory")


@pytest.mark.parametrize(
    ("call", "meant"),
    [
        (lambda c: c.put(1, ttl=60, x=1), "ttl_seconds"),
        (lambda c: c.put(1, expire=60, x=1), "ttl_seconds"),
        (lambda c: c.get(ttl=60, x=1), "max_age_seconds"),
        (lambda c: c.get(max_age=60, x=1), "max_age_seconds"),
        (lambda c: c.touch(ttl=60, x=1), "ttl_seconds"),
    ],
)
def test_other_caches_option_names_are_refused_with_ours(tmp_path, call, meant):
    with cacheness(tmp_path) as cache:
        with pytest.raises(TypeError, match=f"did you mean '{meant}'"):
            call(cache)
        assert len(cache) == 0
        cache.put(1, key_params={"ttl": 60}, x=1)  # a key parameter really named ttl
        assert cache.get(key_params={"ttl": 60}, x=1) == 1


def test_misspelt_keywords_of_methods_name_the_closest(tmp_path):
    from cacheness.storage import BlobStore

    with cacheness(tmp_path / "c") as cache:
        closest = r"list_entries\(\) .* 'filtr' \(did you mean 'filter'\?\)"
        with pytest.raises(TypeError, match=closest):
            cache.list_entries(filtr={"size": 1})
        with pytest.raises(TypeError, match="did you mean 'dry_run'"):
            cache.repair(dryrun=False)
        with pytest.raises(TypeError, match="did you mean 'min_age_seconds'"):
            cache.find_orphaned_blobs(min_age=0)
    with BlobStore(tmp_path / "s") as store:
        with pytest.raises(TypeError, match="did you mean 'metadata_filter'"):
            store.list(metadata_filters={"a": 1})
        with pytest.raises(TypeError, match="did you mean 'overwrite'"):
            store.copy("a", "b", overwite=True)


def test_a_type_error_raised_inside_a_method_is_left_as_it_is():
    from cacheness.storage import suggest_keywords

    @suggest_keywords
    class Service:
        def call(self, value: int) -> int:
            return inner(unexpected=value)

    def inner(**kwargs: int) -> int:
        raise TypeError("got an unexpected keyword argument 'unexpected' (inner)")

    with pytest.raises(TypeError, match=r"\(inner\)$"):
        Service().call(value=1)
    with pytest.raises(TypeError, match="did you mean 'value'"):
        Service().call(valeu=1)  # type: ignore[call-arg]
