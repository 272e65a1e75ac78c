"""resolve_config: explicit arguments > CACHENESS_* variables > CACHENESS_CONFIG file > defaults."""

from __future__ import annotations

import json
import logging
import os

import pytest

from cacheness.config import (
    CONFIG_FILE_VARIABLE,
    ENVIRONMENT_VARIABLES,
    CacheBlobConfig,
    CacheConfig,
    CacheMetadataConfig,
    default_cache_dir,
    resolve_config,
)
from cacheness.storage import ConfigError


@pytest.fixture(autouse=True)
def _no_process_settings(monkeypatch):
    """The process environment of the test run must not leak into these tests."""
    for name in [*ENVIRONMENT_VARIABLES, CONFIG_FILE_VARIABLE]:
        monkeypatch.delenv(name, raising=False)


def write_json(path, data) -> str:
    path.write_text(json.dumps(data))
    return str(path)


# -- each variable ----------------------------------------------------------------------------

SAMPLES = {
    "CACHENESS_DIR": ("/srv/cache", "/srv/cache"),
    "CACHENESS_METADATA_BACKEND": ("postgresql", "postgresql"),
    "CACHENESS_METADATA_URL": ("postgresql://db/cache", "postgresql://db/cache"),
    "CACHENESS_METADATA_TABLE": ("team_a", "team_a"),
    "CACHENESS_METADATA_SCHEMA": ("caches", "caches"),
    "CACHENESS_METADATA_PATH": ("/idx/cache.sqlite", "/idx/cache.sqlite"),
    "CACHENESS_BLOB_BACKEND": ("s3", "s3"),
    "CACHENESS_BLOB_ROOT": ("/blobs", "/blobs"),
    "CACHENESS_S3_BUCKET": ("team-cache", "team-cache"),
    "CACHENESS_S3_PREFIX": ("v1/", "v1/"),
    "CACHENESS_S3_ENDPOINT_URL": ("http://minio:9000", "http://minio:9000"),
    "CACHENESS_S3_REGION": ("eu-west-1", "eu-west-1"),
    "CACHENESS_DEFAULT_TTL_SECONDS": ("3600", 3600.0),
    "CACHENESS_MAX_CACHE_SIZE_MB": ("512.5", 512.5),
    "CACHENESS_MAX_ENTRIES": ("10000", 10000),
    "CACHENESS_EVICTION_POLICY": ("lfu", "lfu"),
    "CACHENESS_STRICT": ("true", True),
    "CACHENESS_COMPRESSION_CODEC": ("zstd", "zstd"),
    "CACHENESS_VERIFY_READS": ("off", False),
    "CACHENESS_ENTRY_SIGNING": ("off", False),
    "CACHENESS_UNSIGNED": ("reject", "reject"),
    "CACHENESS_DELETE_INVALID_SIGNATURES": ("yes", True),
    "CACHENESS_MEMORY_CACHE": ("on", True),
    "CACHENESS_MEMORY_CACHE_MAX_ENTRIES": ("5000", 5000),
    "CACHENESS_MEMORY_CACHE_MAX_BYTES": ("1048576", 1048576),
    "CACHENESS_MEMORY_CACHE_STALENESS_SECONDS": ("2.5", 2.5),
}


def test_every_variable_has_a_sample():
    assert set(SAMPLES) == set(ENVIRONMENT_VARIABLES)


@pytest.mark.parametrize("variable", sorted(ENVIRONMENT_VARIABLES))
def test_each_variable_sets_its_field(variable):
    raw, expected = SAMPLES[variable]
    config = resolve_config(environ={variable: raw})
    owner = config
    *sections, attribute = ENVIRONMENT_VARIABLES[variable].split(".")
    for section in sections:
        owner = getattr(owner, section)
    assert getattr(owner, attribute) == expected
    assert type(getattr(owner, attribute)) is type(expected)
    others = CacheConfig(cache_dir=config.cache_dir)
    changed = [
        name for name in ("metadata", "blob", "compression", "security") if name not in sections
    ]
    for name in changed:  # nothing else moved
        assert getattr(config, name) == getattr(others, name)


def test_team_cache_entirely_from_the_environment():
    config = resolve_config(
        environ={
            "CACHENESS_METADATA_BACKEND": "postgresql",
            "CACHENESS_METADATA_URL": "postgresql://db/cache",
            "CACHENESS_BLOB_BACKEND": "s3",
            "CACHENESS_S3_BUCKET": "team-cache",
            "CACHENESS_S3_PREFIX": "v1/",
        }
    )
    options = config.blob_store_options()
    assert options["metadata_options"] == {"url": "postgresql://db/cache"}
    assert options["blob_options"] == {"bucket": "team-cache", "prefix": "v1/"}


def test_no_variables_means_the_defaults():
    assert resolve_config(environ={}) == CacheConfig(cache_dir=default_cache_dir({}))


def test_the_process_environment_is_the_default(monkeypatch):
    monkeypatch.setenv("CACHENESS_MAX_ENTRIES", "42")
    assert resolve_config().max_entries == 42


# -- values -----------------------------------------------------------------------------------


def test_empty_variables_are_unset_and_none_clears_an_optional_value(tmp_path):
    path = write_json(tmp_path / "c.json", {"default_ttl_seconds": 60, "max_entries": 5})
    config = resolve_config(
        environ={
            CONFIG_FILE_VARIABLE: path,
            "CACHENESS_DEFAULT_TTL_SECONDS": "None",
            "CACHENESS_MAX_ENTRIES": "  ",
        }
    )
    assert (config.default_ttl_seconds, config.max_entries) == (None, 5)


@pytest.mark.parametrize(
    ("raw", "expected"),
    [("1", True), ("YES", True), ("on", True), ("0", False), ("false", False), ("Off", False)],
)
def test_booleans(raw, expected):
    assert resolve_config(environ={"CACHENESS_STRICT": raw}).strict is expected


@pytest.mark.parametrize(
    ("variable", "raw", "message"),
    [
        ("CACHENESS_MAX_ENTRIES", "ten", "CACHENESS_MAX_ENTRIES='ten': Expected `int | null`"),
        ("CACHENESS_MAX_ENTRIES", "1.5", "CACHENESS_MAX_ENTRIES='1.5'"),
        ("CACHENESS_DEFAULT_TTL_SECONDS", "1h", "CACHENESS_DEFAULT_TTL_SECONDS='1h'"),
        ("CACHENESS_STRICT", "maybe", "expected one of 1/0, true/false, yes/no, on/off"),
    ],
)
def test_unparsable_values_name_the_variable(variable, raw, message):
    with pytest.raises(ConfigError) as info:
        resolve_config(environ={variable: raw})
    assert message in str(info.value)


def test_a_misspelt_variable_is_logged_and_other_tools_variables_are_not(caplog):
    caplog.set_level(logging.WARNING, logger="cacheness.config")
    resolve_config(
        environ={"CACHENESS_S3_BUKET": "b", "CACHENESS_REQUIRE_SERVICES": "1", "CACHENESS_X": ""}
    )
    messages = [record.getMessage() for record in caplog.records]
    assert messages == [
        "environment variable CACHENESS_S3_BUKET is not a cacheness setting "
        "(did you mean 'CACHENESS_S3_BUCKET'?)"
    ]


# -- the config file --------------------------------------------------------------------------


def test_config_file_from_the_environment(tmp_path):
    path = write_json(tmp_path / "c.json", {"metadata_backend": "json", "max_entries": 9})
    config = resolve_config(environ={CONFIG_FILE_VARIABLE: path})
    assert (config.metadata.backend, config.max_entries) == ("json", 9)
    yaml_path = tmp_path / "c.yaml"
    yaml_path.write_text("eviction_policy: fifo\n")
    assert resolve_config(environ={CONFIG_FILE_VARIABLE: str(yaml_path)}).eviction_policy == "fifo"


def test_config_file_errors_name_the_variable(tmp_path):
    with pytest.raises(ConfigError, match=r"CACHENESS_CONFIG='/no/such\.toml': config file"):
        resolve_config(environ={CONFIG_FILE_VARIABLE: "/no/such.toml"})
    bad = write_json(tmp_path / "bad.json", {"max_entris": 1})
    with pytest.raises(ConfigError, match=r"CACHENESS_CONFIG=.*did you mean 'max_entries'"):
        resolve_config(environ={CONFIG_FILE_VARIABLE: bad})


def test_config_file_without_cache_dir_keeps_the_cacheness_dir_default(tmp_path):
    path = write_json(tmp_path / "c.json", {"max_entries": 1})
    config = resolve_config(environ={CONFIG_FILE_VARIABLE: path, "CACHENESS_DIR": "/env/dir"})
    assert config.cache_dir == "/env/dir"


# -- precedence -------------------------------------------------------------------------------


def test_precedence_explicit_over_environment_over_file_over_defaults(tmp_path):
    path = write_json(tmp_path / "c.json", {"max_entries": 1, "eviction_policy": "fifo"})
    env = {CONFIG_FILE_VARIABLE: path}
    assert resolve_config(environ={}).max_entries is None  # defaults
    assert resolve_config(environ=env).max_entries == 1  # file
    env["CACHENESS_MAX_ENTRIES"] = "2"
    assert resolve_config(environ=env).max_entries == 2  # environment over file
    config = resolve_config(CacheConfig(max_entries=3), environ=env)
    assert config.max_entries == 3  # explicit config over environment
    assert config.eviction_policy == "fifo"  # what the layers above left alone comes through
    assert resolve_config(CacheConfig(max_entries=3), environ=env, max_entries=4).max_entries == 4


def test_explicit_values_left_at_their_default_do_not_hide_the_environment():
    env = {"CACHENESS_EVICTION_POLICY": "lfu", "CACHENESS_DIR": "/env"}
    config = resolve_config(CacheConfig(max_entries=3), environ=env)
    assert (config.eviction_policy, config.cache_dir, config.max_entries) == ("lfu", "/env", 3)
    assert resolve_config(CacheConfig(cache_dir="/code"), environ=env).cache_dir == "/code"
    # keyword overrides always win, even when they name the default
    assert resolve_config(None, environ=env, eviction_policy="lru").eviction_policy == "lru"


def test_environment_naming_another_backend_starts_the_section_afresh(tmp_path):
    path = write_json(
        tmp_path / "c.json",
        {"metadata": {"backend": "postgresql", "connection_url": "postgresql://f/d", "table": "t"}},
    )
    env = {CONFIG_FILE_VARIABLE: path, "CACHENESS_METADATA_BACKEND": "sqlite"}
    assert resolve_config(environ=env).metadata == CacheMetadataConfig("sqlite")


def test_environment_refines_the_file_section_of_the_same_backend(tmp_path):
    path = write_json(
        tmp_path / "c.json",
        {"metadata": {"backend": "postgresql", "connection_url": "postgresql://f/d", "table": "t"}},
    )
    env = {
        CONFIG_FILE_VARIABLE: path,
        "CACHENESS_METADATA_BACKEND": "postgresql",
        "CACHENESS_METADATA_URL": "postgresql://env/d",
    }
    metadata = resolve_config(environ=env).metadata
    assert (metadata.connection_url, metadata.table) == ("postgresql://env/d", "t")


def test_explicit_section_with_its_backend_left_at_default_merges_field_by_field():
    env = {"CACHENESS_BLOB_BACKEND": "s3", "CACHENESS_S3_BUCKET": "env-bucket"}
    config = resolve_config(CacheConfig(blob=CacheBlobConfig(prefix="code/")), environ=env)
    assert config.blob == CacheBlobConfig("s3", bucket="env-bucket", prefix="code/")


def test_explicit_section_naming_another_backend_replaces_the_lower_section():
    env = {"CACHENESS_BLOB_BACKEND": "s3", "CACHENESS_S3_BUCKET": "env-bucket"}
    config = resolve_config(CacheConfig(blob_backend="memory"), environ=env)
    assert config.blob == CacheBlobConfig("memory")


def test_explicit_options_merge_over_file_options(tmp_path):
    path = write_json(
        tmp_path / "c.json",
        {
            "blob": {
                "backend": "s3",
                "bucket": "b",
                "options": {"max_attempts": 3, "retry_mode": "adaptive"},
            }
        },
    )
    config = resolve_config(
        CacheConfig(blob=CacheBlobConfig("s3", options={"max_attempts": 10})),
        environ={CONFIG_FILE_VARIABLE: path},
    )
    assert config.blob.options == {"max_attempts": 10, "retry_mode": "adaptive"}
    assert config.blob.bucket == "b"


def test_overrides_use_replace_semantics():
    env = {"CACHENESS_METADATA_BACKEND": "postgresql", "CACHENESS_METADATA_URL": "postgresql://e/d"}
    config = resolve_config(environ=env, metadata_backend="memory", cache_dir="/kw")
    assert (config.metadata, config.cache_dir) == (CacheMetadataConfig("memory"), "/kw")
    same = resolve_config(environ=env, metadata_backend_options={"pool_size": 2})
    assert same.metadata.connection_url == "postgresql://e/d"
    assert same.metadata.options == {"pool_size": 2}
    with pytest.raises(ConfigError, match=r"'max_entires' \(did you mean 'max_entries'\?\)"):
        resolve_config(environ={}, max_entires=1)


# -- what config may be -----------------------------------------------------------------------


def test_config_may_be_a_mapping_or_a_file(tmp_path):
    assert resolve_config({"max_entries": 8}, environ={}).max_entries == 8
    path = write_json(tmp_path / "c.json", {"max_entries": 9})
    assert resolve_config(path, environ={}).max_entries == 9
    assert resolve_config(tmp_path / "c.json", environ={}).max_entries == 9
    with pytest.raises(ConfigError, match="config must be a CacheConfig, a mapping, a file path"):
        resolve_config(42, environ={})


def test_resolving_leaves_the_given_config_alone():
    given = CacheConfig(cache_dir="/c", blob=CacheBlobConfig("s3", options={"max_attempts": 1}))
    before = given.to_dict()
    resolved = resolve_config(given, environ={"CACHENESS_S3_BUCKET": "b"}, max_entries=1)
    resolved.blob.options["max_attempts"] = 99
    assert given.to_dict() == before


def test_paths_from_the_environment_are_expanded():
    config = resolve_config(environ={"CACHENESS_DIR": "~/env-cache", "CACHENESS_BLOB_ROOT": "~/b"})
    assert config.cache_dir == os.path.expanduser("~/env-cache")
    assert config.blob.root == os.path.expanduser("~/b")


def test_a_value_set_in_code_wins_over_the_environment_even_when_it_is_the_default(tmp_path):
    env = {"CACHENESS_EVICTION_POLICY": "lfu", "CACHENESS_DEFAULT_TTL_SECONDS": "60"}
    config = resolve_config(CacheConfig(eviction_policy="lru"), environ=env)
    assert config.eviction_policy == "lru"  # said in code
    assert config.default_ttl_seconds == 60.0  # not said in code: the environment's
    unset = resolve_config(CacheConfig(default_ttl_seconds=None), environ=env)
    assert unset.default_ttl_seconds is None
    # a section naming the default backend explicitly keeps it
    env = {"CACHENESS_METADATA_BACKEND": "postgresql", "CACHENESS_METADATA_URL": "postgresql://e/d"}
    code = CacheConfig(metadata=CacheMetadataConfig(backend="sqlite"))
    assert resolve_config(code, environ=env).metadata == CacheMetadataConfig("sqlite")
    assert resolve_config(CacheConfig(metadata_backend="sqlite"), environ=env).metadata == (
        CacheMetadataConfig("sqlite")
    )
    # file < environment < code, for a value equal to the default at every layer but one
    path = write_json(tmp_path / "c.json", {"eviction_policy": "fifo", "strict": True})
    env = {CONFIG_FILE_VARIABLE: path, "CACHENESS_STRICT": "false"}
    layered = resolve_config(CacheConfig(eviction_policy="lru"), environ=env)
    assert (layered.eviction_policy, layered.strict) == ("lru", False)
    assert resolve_config(environ=env).eviction_policy == "fifo"
