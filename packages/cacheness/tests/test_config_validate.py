"""validate_config: every problem found, each message says what to change."""

from __future__ import annotations

import math

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from cacheness.config import (
    EVICTION_POLICIES,
    CacheBlobConfig,
    CacheConfig,
    CacheMetadataConfig,
    CompressionConfig,
    HandlersConfig,
    SerializationConfig,
    load_config_from_dict,
    validate_config,
    validate_config_strict,
)
from cacheness.storage import (
    ConfigError,
    MemoryBlobBackend,
    MemoryMetadataBackend,
    register_blob_backend,
    register_metadata_backend,
    unregister_blob_backend,
    unregister_metadata_backend,
)

PG = "postgresql://cache@db.example.com/cache"


def problems(**fields) -> list[str]:
    return validate_config(CacheConfig(cache_dir="/c", **fields))


def one_problem(**fields) -> str:
    found = problems(**fields)
    assert len(found) == 1, found
    return found[0]


# -- valid configurations -----------------------------------------------------------------------


@pytest.mark.parametrize(
    "fields",
    [
        {},
        {"metadata_backend": "json"},
        {"metadata_backend": "memory", "blob_backend": "memory"},
        {"metadata": CacheMetadataConfig("postgresql", connection_url=PG)},
        {
            "metadata": CacheMetadataConfig("postgresql", connection_url=PG, schema="s"),
            "blob": CacheBlobConfig("s3", bucket="b", prefix="p/", shard_chars=2),
        },
        {
            "metadata_backend": "postgresql",
            "metadata_backend_options": {"connection_url": PG, "table_name": "t", "pool_size": 9},
            "blob_backend": "s3",
            "blob_backend_options": {"bucket": "b", "region": "us-west-2"},
        },
        {"metadata": CacheMetadataConfig("sqlite", connection_url="sqlite:///x/index.db")},
        {"default_ttl_seconds": 0.5, "max_cache_size_mb": 1.5, "max_entries": 1},
        {"access_update_interval_seconds": 0, "eviction_policy": "fifo", "hash_unknown": "pickle"},
        {"serialization": SerializationConfig(inline_threshold=0, mmap_mode="c")},
        {"compression": CompressionConfig(codec="blosc2", blosc2_codec="zstd", nthreads=4)},
        {"handlers": HandlersConfig(disabled=["objects"], priorities={"pandas": 99})},
    ],
)
def test_valid_configs_have_no_problems(fields):
    assert problems(**fields) == []
    validate_config_strict(CacheConfig(cache_dir="/c", **fields))


# -- backends -----------------------------------------------------------------------------------


def test_unknown_backend_names_suggest_the_close_one():
    message = one_problem(metadata_backend="postgress")
    assert message.startswith("metadata.backend: unknown metadata backend 'postgress'")
    assert "(did you mean 'postgresql'?)" in message
    assert "known: json, memory, postgresql, sqlite" in message
    message = one_problem(blob_backend="filesytem")
    assert "blob.backend: unknown blob backend 'filesytem' (did you mean 'filesystem'?)" in message


def test_backend_must_be_a_name_or_an_instance():
    message = one_problem(metadata=CacheMetadataConfig(backend=3))
    assert "metadata.backend must be a registered metadata backend name or a MetadataBackend" in (
        message
    )


def test_s3_without_a_bucket_and_postgresql_without_a_url():
    found = problems(
        metadata_backend="postgresql", blob_backend="s3", blob_backend_options={"prefix": "p/"}
    )
    assert found == [
        "metadata: the postgresql metadata backend needs 'url'; "
        "set metadata.connection_url (or CACHENESS_METADATA_URL)",
        "blob: the s3 blob backend needs 'bucket'; set blob.bucket (or CACHENESS_S3_BUCKET)",
    ]


def test_postgresql_url_of_another_database_and_sqlite_in_memory():
    message = one_problem(
        metadata=CacheMetadataConfig("postgresql", connection_url="mysql://u:pw@h/d")
    )
    assert "needs a postgresql://user@host/database URL, got mysql://u:***@h/d" in message
    message = one_problem(metadata=CacheMetadataConfig(connection_url="sqlite:///:memory:"))
    assert "use metadata backend 'memory'" in message


def test_settings_for_another_backend_name_what_the_backend_takes():
    found = problems(
        metadata=CacheMetadataConfig("json", table="t"),
        blob=CacheBlobConfig(bucket="b", endpoint_url="http://minio:9000"),
    )
    assert found == [
        "metadata.table: the json metadata backend has no option 'table'; it takes: path, "
        "fsync, reserve_mb",
        "blob.bucket: the filesystem blob backend has no option 'bucket'; it takes: root, "
        "shard_chars, durable, dir_mode, file_mode, create",
        "blob.endpoint_url: the filesystem blob backend has no option 'endpoint_url'; it takes: "
        "root, shard_chars, durable, dir_mode, file_mode, create",
    ]


def test_misspelt_options_suggest_the_close_one():
    message = one_problem(
        metadata=CacheMetadataConfig("postgresql", connection_url=PG, options={"pool_sise": 3})
    )
    assert (
        "metadata.options['pool_sise']: the postgresql metadata backend has no option " in message
    )
    assert "(did you mean 'pool_size'?)" in message


def test_one_setting_given_two_values():
    message = one_problem(metadata=CacheMetadataConfig(path="/a.db", options={"path": "/b.db"}))
    assert message == (
        "metadata.path ('/a.db') conflicts with metadata.options['path'] ('/b.db'); set only one"
    )


def test_backend_instances_are_checked_by_their_scope_and_take_no_settings():
    assert (
        problems(metadata_backend=MemoryMetadataBackend(), blob_backend=MemoryBlobBackend()) == []
    )
    message = one_problem(blob=CacheBlobConfig(MemoryBlobBackend(), shard_chars=2))
    assert message.startswith("blob.shard_chars: settings apply to a backend given by name")


def test_tiered_and_failover_parts_are_checked_too():
    found = problems(
        blob=CacheBlobConfig("failover", options={"primary": "s4", "fallback": {"root": "/x"}})
    )
    assert found[0].startswith("blob.options['primary']: unknown blob backend 's4'")
    assert found[1].startswith(
        "blob.options['fallback']: expected a blob backend name or a mapping with a 'backend' key"
    )
    found = problems(
        metadata=CacheMetadataConfig("postgresql", connection_url=PG),
        blob=CacheBlobConfig("tiered", options={"remote": {"backend": "s3", "bukcet": "b"}}),
    )
    assert len(found) == 2
    assert found[0].startswith(
        "blob.options['remote']['bukcet']: the s3 blob backend has no option 'bukcet' "
        "(did you mean 'bucket'?)"
    )
    assert found[1] == (
        "blob.options['remote']: the s3 blob backend needs 'bucket'; "
        "add 'bucket' to blob.options['remote']"
    )
    message = one_problem(blob=CacheBlobConfig("tiered"))
    assert message.startswith("blob: the tiered blob backend needs 'remote'")


def test_a_backend_whose_dependency_cannot_be_imported_is_a_problem_not_a_crash():
    register_blob_backend("ghost", "no_such_module_xyz:GhostBackend")
    try:
        message = one_problem(blob_backend="ghost")
    finally:
        unregister_blob_backend("ghost")
    assert message.startswith("blob.backend: the 'ghost' blob backend cannot be imported")


def test_backends_registered_by_users_are_checked_by_their_signature():
    class TaggedMemory(MemoryMetadataBackend):
        def __init__(self, *, tag: str, **options) -> None:
            super().__init__(**options)
            self.tag = tag

    register_metadata_backend("tagged", TaggedMemory)
    try:
        assert problems(metadata=CacheMetadataConfig("tagged", options={"tag": "x", "y": 1})) == []
        message = one_problem(metadata_backend="tagged")
        assert message == "metadata: the tagged metadata backend needs 'tag'; set " + (
            "metadata.options['tag']"
        )
    finally:
        unregister_metadata_backend("tagged")


# -- pairings (ARCHITECTURE §3) -------------------------------------------------------------------

ALLOWED = {
    ("sqlite", "filesystem"): True,
    ("sqlite", "memory"): True,
    ("sqlite", "s3"): False,
    ("json", "filesystem"): True,
    ("json", "memory"): True,
    ("json", "s3"): False,
    ("postgresql", "filesystem"): True,
    ("postgresql", "memory"): False,
    ("postgresql", "s3"): True,
    ("memory", "filesystem"): True,
    ("memory", "memory"): True,
    ("memory", "s3"): False,
}


@pytest.mark.parametrize(("metadata", "blob"), sorted(ALLOWED))
def test_pairing_table(metadata, blob):
    config = CacheConfig(
        cache_dir="/c",
        metadata_backend=metadata,
        metadata_backend_options={"url": PG} if metadata == "postgresql" else None,
        blob_backend=blob,
        blob_backend_options={"bucket": "b"} if blob == "s3" else None,
    )
    found = validate_config(config)
    if ALLOWED[metadata, blob]:
        assert found == []
    else:
        assert len(found) == 1
        assert found[0].startswith("metadata/blob pairing: ")
        assert "allow_unsafe_pairing=True" in found[0]
        assert validate_config(config.replace(allow_unsafe_pairing=True)) == []


def test_tiered_and_failover_pair_as_their_parts():
    tiered_s3 = CacheBlobConfig("tiered", options={"remote": {"backend": "s3", "bucket": "b"}})
    assert "keeps a host-local index, but tiered blobs are shared" in one_problem(blob=tiered_s3)
    assert (
        problems(metadata=CacheMetadataConfig("postgresql", connection_url=PG), blob=tiered_s3)
        == []
    )
    # failover is as shared as its narrowest part: filesystem + s3 is host-local
    failover = CacheBlobConfig(
        "failover", options={"primary": {"backend": "s3", "bucket": "b"}, "fallback": "memory"}
    )
    assert problems(blob=failover) == []
    message = one_problem(
        metadata=CacheMetadataConfig("postgresql", connection_url=PG), blob=failover
    )
    assert "failover blobs live in one process" in message


# -- values -------------------------------------------------------------------------------------


@pytest.mark.parametrize("value", [0, -1, math.nan, math.inf])
def test_ttl_and_size_must_be_positive_and_finite(value):
    assert one_problem(default_ttl_seconds=value) == (
        f"default_ttl_seconds must be a finite number > 0, got {value!r}"
    )
    assert one_problem(max_cache_size_mb=value).startswith("max_cache_size_mb must be a finite")


def test_counts_and_intervals():
    assert one_problem(max_entries=0) == "max_entries must be a finite number > 0, got 0"
    assert one_problem(access_update_interval_seconds=-0.5) == (
        "access_update_interval_seconds must be a finite number >= 0, got -0.5"
    )
    assert one_problem(serialization=SerializationConfig(inline_threshold=-1)) == (
        "serialization.inline_threshold must be a finite number >= 0, got -1"
    )


def test_choices_suggest_the_close_one():
    assert one_problem(eviction_policy="LRU") == (
        "eviction_policy must be one of lru, lfu, fifo; got 'LRU'"
    )
    assert one_problem(eviction_policy="lfuu").endswith("(did you mean 'lfu'?)")
    assert one_problem(hash_unknown="pickel") == (
        "hash_unknown must be one of error, pickle; got 'pickel' (did you mean 'pickle'?)"
    )


def test_codec_and_serialization_values_use_the_storage_checks():
    found = problems(
        compression=CompressionConfig(codec="lz5", level=99),
        serialization=SerializationConfig(dataframe_format="feather", mmap_mode="w+"),
    )
    assert len(found) == 2
    assert found[0].startswith("compression: ")
    assert found[1].startswith("serialization: ")
    assert (
        "unknown compression codec 'lz5'" in problems(compression=CompressionConfig(codec="lz5"))[0]
    )
    assert (
        "dataframe_format must be one of"
        in problems(serialization=SerializationConfig(dataframe_format="feather"))[0]
    )


def test_shard_chars_range_is_the_storage_one():
    assert one_problem(blob=CacheBlobConfig(shard_chars=7)) == (
        "blob.shard_chars: shard_chars must be 0 (no sharding) or 1-4, got 7"
    )


def test_cache_dir_that_is_a_file(tmp_path):
    target = tmp_path / "file"
    target.write_text("x")
    assert validate_config(CacheConfig(cache_dir=str(target))) == [
        f"cache_dir {str(target)!r} exists but is not a directory"
    ]
    assert validate_config(CacheConfig(cache_dir=" ")) == [
        "cache_dir must be a directory path, got an empty string"
    ]


def test_wrong_types_name_the_field():
    found = problems(max_entries="10", strict="yes", default_ttl_seconds=True)
    assert found == [
        "default_ttl_seconds: Expected `float | null`, got `bool`",
        "max_entries: Expected `int | null`, got `str`",
        "strict: Expected `bool`, got `str`",
    ]
    assert problems(metadata=CacheMetadataConfig(table=5))[0] == (
        "metadata.table: Expected `str | null`, got `int`"
    )


def test_a_section_of_the_wrong_type_stops_the_checks_there():
    config = CacheConfig(cache_dir="/c")
    config.metadata = {"backend": "sqlite"}  # a dict where a section belongs
    assert validate_config(config) == ["metadata: expected a CacheMetadataConfig, got dict"]


def test_handler_problems():
    found = problems(
        handlers=HandlersConfig(
            disabled=["objectz"],
            priorities={"pandsa": 1},
            custom=["json:loads", "not-a-path", "no_such_module_xyz:H"],
        )
    )
    assert found == [
        "handlers.custom: 'json:loads' is not a Handler class or instance",
        "handlers.custom: 'not-a-path' is not a 'module:Class' import path, "
        "e.g. 'myproject.handlers:FractionHandler'",
        "handlers.custom: cannot import 'no_such_module_xyz:H': "
        "No module named 'no_such_module_xyz'",
        "handlers.disabled: no handler named 'objectz' (did you mean 'objects'?); registered: "
        "raw, plain, numpy, pandas, arrow, polars, objects",
        "handlers.priorities: no handler named 'pandsa' (did you mean 'pandas'?); available: "
        "raw, plain, numpy, pandas, arrow, polars, objects",
    ]
    assert "handlers.priorities: no handler named 'objects'" in one_problem(
        handlers=HandlersConfig(disabled=["objects"], priorities={"objects": 5})
    )


# -- strict -----------------------------------------------------------------------------------


def test_strict_lists_every_problem():
    config = CacheConfig(
        cache_dir="/c", max_entries=-1, eviction_policy="random", blob_backend="s3"
    )
    with pytest.raises(ConfigError) as info:
        validate_config_strict(config)
    message = str(info.value)
    assert message.startswith("invalid cacheness configuration (4 problems):\n  - ")
    for problem in validate_config(config):
        assert f"  - {problem}" in message


def test_only_configs_are_validated():
    with pytest.raises(TypeError, match="takes a CacheConfig, got dict"):
        validate_config({"cache_dir": "/c"})


# -- property: whatever validates round-trips through plain data -------------------------------

finite_positive = st.floats(min_value=1e-3, max_value=1e9, allow_nan=False, allow_infinity=False)
valid_configs = st.builds(
    CacheConfig,
    cache_dir=st.just("/c"),
    default_ttl_seconds=st.none() | finite_positive,
    max_cache_size_mb=st.none() | finite_positive,
    max_entries=st.none() | st.integers(1, 10**9),
    eviction_policy=st.sampled_from(EVICTION_POLICIES),
    access_update_interval_seconds=st.floats(0, 1e6),
    strict=st.booleans(),
    metadata=st.sampled_from(
        [
            CacheMetadataConfig(),
            CacheMetadataConfig("json", path="/i.json"),
            CacheMetadataConfig("memory"),
        ]
    ),
    compression=st.builds(
        CompressionConfig,
        codec=st.sampled_from(["auto", "zstd", "gzip", "none", "blosc2"]),
        level=st.none() | st.integers(0, 9),
        blosc2_clevel=st.integers(0, 9),
    ),
    serialization=st.builds(SerializationConfig, inline_threshold=st.integers(0, 1 << 20)),
)


@settings(max_examples=60)
@given(valid_configs)
def test_valid_configs_round_trip_through_plain_data(config):
    assert validate_config(config) == []
    assert load_config_from_dict(config.to_dict()) == config
