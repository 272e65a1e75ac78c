"""CacheConfig: sections, flat shortcuts, copies, and the BlobStore it opens for real."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from dataclasses import fields
from pathlib import Path

import psycopg
import pytest
import sqlalchemy as sa

from cacheness.config import (
    CONFIG_FILE_VARIABLE,
    ENVIRONMENT_VARIABLES,
    CacheBlobConfig,
    CacheConfig,
    CacheMetadataConfig,
    CompressionConfig,
    HandlersConfig,
    SecurityConfig,
    SerializationConfig,
    default_cache_dir,
    load_config,
    validate_config,
)
from cacheness.storage import (
    BlobStore,
    CodecSettings,
    ConfigError,
    MemoryBlobBackend,
    MemoryMetadataBackend,
    SerializationError,
    SerializationOptions,
    default_registry,
)


def files_under(root: Path) -> list[Path]:
    return sorted(p for p in root.rglob("*") if p.is_file())


def conninfo(url: str) -> str:
    return (
        sa.engine.make_url(url).set(drivername="postgresql").render_as_string(hide_password=False)
    )


# -- defaults and the default directory -----------------------------------------------------


def test_defaults_are_the_embedded_sqlite_and_filesystem_store():
    config = CacheConfig(cache_dir="/c")
    assert config.metadata == CacheMetadataConfig(backend="sqlite")
    assert config.blob == CacheBlobConfig(backend="filesystem")
    assert (config.default_ttl_seconds, config.max_cache_size_mb, config.max_entries) == (
        None,
        None,
        None,
    )
    assert config.eviction_policy == "lru"
    assert config.security.verify_reads is True
    assert config.serialization.inline_threshold is None  # the index decides: 64 KiB
    assert validate_config(config) == []


def test_default_cache_dir_comes_from_cacheness_dir(monkeypatch):
    monkeypatch.setenv("CACHENESS_DIR", "/srv/team-cache")
    assert CacheConfig().cache_dir == "/srv/team-cache"
    assert default_cache_dir({"CACHENESS_DIR": "~/c"}) == os.path.expanduser("~/c")


def test_default_cache_dir_without_cacheness_dir_is_the_user_cache_dir(monkeypatch):
    monkeypatch.setattr(sys, "platform", "linux")
    assert default_cache_dir({"XDG_CACHE_HOME": "/xdg"}) == "/xdg/cacheness"
    # a relative XDG_CACHE_HOME is ignored, as the XDG spec says
    home_cache = os.path.expanduser("~/.cache/cacheness")
    assert default_cache_dir({"XDG_CACHE_HOME": "rel"}) == home_cache
    assert default_cache_dir({"CACHENESS_DIR": "   "}) == home_cache
    monkeypatch.setattr(sys, "platform", "darwin")
    assert default_cache_dir({}) == os.path.expanduser("~/Library/Caches/cacheness")
    monkeypatch.setattr(sys, "platform", "win32")
    assert default_cache_dir({"LOCALAPPDATA": "/appdata"}) == os.path.join("/appdata", "cacheness")


def test_path_values_become_strings(tmp_path):
    config = CacheConfig(
        cache_dir=tmp_path,
        metadata=CacheMetadataConfig(path=tmp_path / "i.sqlite"),
        blob=CacheBlobConfig(root=tmp_path / "b"),
    )
    assert config.cache_dir == str(tmp_path)
    assert config.metadata.path == str(tmp_path / "i.sqlite")
    assert config.blob.root == str(tmp_path / "b")


# -- the two ways of writing a team config (issue 7) ----------------------------------------


def test_sections_and_flat_shortcuts_give_the_same_store_options():
    url = "postgresql://cache@db.example.com/cache"
    sections = CacheConfig(
        cache_dir="/c",
        metadata=CacheMetadataConfig(backend="postgresql", connection_url=url, table="team_a"),
        blob=CacheBlobConfig(
            backend="s3",
            bucket="team-cache",
            prefix="cache/v1/",
            endpoint_url="http://minio.local:9000",
            region="us-east-1",
            shard_chars=2,
        ),
    )
    flat = CacheConfig(
        cache_dir="/c",
        metadata_backend="postgresql",
        metadata_backend_options={"connection_url": url, "table_name": "team_a"},
        blob_backend="s3",
        blob_backend_options={
            "bucket": "team-cache",
            "prefix": "cache/v1/",
            "endpoint_url": "http://minio.local:9000",
            "region": "us-east-1",
            "shard_chars": 2,
        },
    )
    a, b = sections.blob_store_options(), flat.blob_store_options()
    for name in ("metadata_backend", "metadata_options", "blob_backend", "blob_options"):
        assert a[name] == b[name], name
    assert a["metadata_options"] == {"url": url, "table": "team_a"}
    assert a["blob_options"] == {
        "bucket": "team-cache",
        "prefix": "cache/v1/",
        "endpoint_url": "http://minio.local:9000",
        "region": "us-east-1",
        "shard_chars": 2,
    }
    assert validate_config(sections) == validate_config(flat) == []


def test_the_older_backend_options_name_is_the_metadata_options():
    config = CacheConfig(metadata_backend="postgresql", backend_options={"pool_size": 20})
    assert config.metadata.options == {"pool_size": 20}


def test_flat_shortcuts_are_folded_and_read_as_none():
    config = CacheConfig(metadata_backend="json", blob_backend="memory")
    assert (config.metadata.backend, config.blob.backend) == ("json", "memory")
    assert config.metadata_backend is None
    assert config.blob_backend_options is None
    assert "metadata_backend" not in {f.name for f in fields(config)}


def test_a_shortcut_agreeing_with_its_section_is_fine():
    config = CacheConfig(
        metadata=CacheMetadataConfig(backend="json", options={"fsync": False}),
        metadata_backend="json",
        metadata_backend_options={"fsync": False},
    )
    assert config.metadata == CacheMetadataConfig(backend="json", options={"fsync": False})


def test_a_shortcut_contradicting_its_section_raises():
    with pytest.raises(
        ConfigError, match=r"metadata_backend='memory' contradicts metadata\.backend"
    ):
        CacheConfig(metadata=CacheMetadataConfig(backend="json"), metadata_backend="memory")
    with pytest.raises(ConfigError, match=r"blob_backend_options\['root'\] contradicts"):
        CacheConfig(
            blob=CacheBlobConfig(options={"root": "/a"}), blob_backend_options={"root": "/b"}
        )
    with pytest.raises(ConfigError, match="must be a mapping"):
        CacheConfig(blob_backend_options=["bucket"])


def test_folding_does_not_change_the_section_passed_in():
    section = CacheMetadataConfig(options={"fsync": True})
    CacheConfig(metadata=section, metadata_backend="json", metadata_backend_options={"x": 1})
    assert section == CacheMetadataConfig(options={"fsync": True})


def test_repr_masks_passwords_but_keeps_them_for_use():
    url = "postgresql://alice:s3cr3t@db/cache"
    config = CacheConfig(
        cache_dir="/c",
        metadata=CacheMetadataConfig("postgresql", connection_url=url),
        blob=CacheBlobConfig("s3", bucket="b", options={"aws_secret_access_key": "AKIA-SECRET"}),
    )
    shown = repr(config)
    assert "s3cr3t" not in shown
    assert "AKIA-SECRET" not in shown
    assert "postgresql://alice:***@db/cache" in shown
    assert config.blob_store_options()["metadata_options"]["url"] == url


# -- replace ----------------------------------------------------------------------------------


def test_replace_changes_top_level_fields_and_leaves_the_original_alone():
    base = CacheConfig(cache_dir="/c", blob_backend_options={"shard_chars": 1})
    changed = base.replace(max_entries=10, cache_dir="/d")
    assert (changed.max_entries, changed.cache_dir) == (10, "/d")
    assert (base.max_entries, base.cache_dir) == (None, "/c")
    changed.blob.options["shard_chars"] = 3
    assert base.blob.options == {"shard_chars": 1}


def test_replace_switching_backend_starts_the_section_afresh():
    base = CacheConfig(
        metadata=CacheMetadataConfig("postgresql", connection_url="postgresql://db/x", table="t")
    )
    switched = base.replace(metadata_backend="sqlite")
    assert switched.metadata == CacheMetadataConfig(backend="sqlite")
    same = base.replace(metadata_backend="postgresql")
    assert same.metadata == base.metadata


def test_replace_options_add_to_the_section():
    base = CacheConfig(blob=CacheBlobConfig("s3", bucket="b", options={"max_attempts": 3}))
    changed = base.replace(blob_backend_options={"max_attempts": 10, "retry_mode": "adaptive"})
    assert changed.blob.options == {"max_attempts": 10, "retry_mode": "adaptive"}
    assert changed.blob.bucket == "b"
    fresh = base.replace(blob_backend="memory", blob_backend_options={"shard_chars": 1})
    assert fresh.blob == CacheBlobConfig("memory", options={"shard_chars": 1})


def test_replace_with_a_section_and_its_shortcut_checks_they_agree():
    config = CacheConfig()
    with pytest.raises(ConfigError, match="contradicts"):
        config.replace(metadata=CacheMetadataConfig("json"), metadata_backend="memory")
    agreed = config.replace(metadata=CacheMetadataConfig("json"), metadata_backend="json")
    assert agreed.metadata.backend == "json"


def test_replace_refuses_unknown_fields_with_a_suggestion():
    with pytest.raises(
        ConfigError, match=r"'default_ttl' \(did you mean 'default_ttl_seconds'\?\)"
    ):
        CacheConfig().replace(default_ttl=5)


# -- plain data -------------------------------------------------------------------------------


def test_to_dict_is_json_data_without_the_shortcuts():
    config = CacheConfig(cache_dir="/c", metadata_backend="memory", default_ttl_seconds=60)
    data = config.to_dict()
    assert json.loads(json.dumps(data)) == data
    assert data["metadata"]["backend"] == "memory"
    assert data["default_ttl_seconds"] == 60
    assert "metadata_backend" not in data
    assert set(data) == {f.name for f in fields(CacheConfig)}


def test_to_dict_writes_handler_classes_as_import_paths_and_refuses_instances():
    from cacheness.storage._handlers.raw import RawHandler

    data = CacheConfig(handlers=HandlersConfig(custom=[RawHandler])).to_dict()
    assert data["handlers"]["custom"] == ["cacheness.storage._handlers.raw:RawHandler"]
    with pytest.raises(ConfigError, match="configure backends and handlers by name"):
        CacheConfig(metadata_backend=MemoryMetadataBackend()).to_dict()


# -- compression and serialization settings ----------------------------------------------------


def test_compression_section_covers_every_codec_setting_with_the_storage_defaults():
    codec_fields = set(CodecSettings.__struct_fields__) | {"codec"}
    assert {f.name for f in fields(CompressionConfig)} == codec_fields
    defaults = SerializationOptions()
    for item in fields(CompressionConfig):
        assert getattr(CompressionConfig(), item.name) == getattr(defaults, item.name), item.name
    # the two sections together hold every option, each once: built by name, never by hand
    serialization_fields = {f.name for f in fields(SerializationConfig)}
    assert codec_fields | serialization_fields >= set(SerializationOptions.__struct_fields__)
    assert codec_fields.isdisjoint(serialization_fields)


def test_serialization_options_carry_every_setting():
    config = CacheConfig(
        compression=CompressionConfig(codec="zstd", level=19, nthreads=2, auto_min_saving=0.2),
        serialization=SerializationConfig(
            dataframe_format="parquet", allow_cloudpickle=True, mmap_mode="r"
        ),
    )
    options = config.serialization_options()
    assert (options.codec, options.level, options.nthreads, options.auto_min_saving) == (
        "zstd",
        19,
        2,
        0.2,
    )
    assert (options.dataframe_format, options.allow_cloudpickle, options.mmap_mode) == (
        "parquet",
        True,
        "r",
    )
    with pytest.raises(ConfigError, match="unknown compression codec 'lz5'"):
        CacheConfig(compression=CompressionConfig(codec="lz5")).serialization_options()


# -- blob_store_options -----------------------------------------------------------------------


def test_store_options_resolve_default_locations_under_cache_dir():
    options = CacheConfig(cache_dir="~/my-cache").blob_store_options()
    home = Path("~/my-cache").expanduser()
    assert options["path"] == home
    assert options["metadata_options"] == {"path": home / "index.sqlite"}
    assert options["blob_options"] == {"root": home / "blobs"}
    json_options = CacheConfig(cache_dir="/c", metadata_backend="json").blob_store_options()
    assert json_options["metadata_options"] == {"path": Path("/c/index.json")}
    tiered = CacheConfig(
        cache_dir="/c", blob=CacheBlobConfig("tiered", options={"remote": "memory"})
    ).blob_store_options()
    assert tiered["blob_options"] == {"remote": "memory", "cache_dir": Path("/c/tiered")}


def test_store_options_keep_explicit_locations():
    config = CacheConfig(
        cache_dir="/c",
        metadata=CacheMetadataConfig(path="/elsewhere/i.sqlite", table="mine"),
        blob=CacheBlobConfig(root="/blobs", shard_chars=0),
    )
    options = config.blob_store_options()
    assert options["metadata_options"] == {"path": "/elsewhere/i.sqlite", "table": "mine"}
    assert options["blob_options"] == {"root": "/blobs", "shard_chars": 0}


def test_store_options_take_a_sqlite_url_as_the_index_path():
    config = CacheConfig(metadata=CacheMetadataConfig("sqlite", connection_url="sqlite:///x/i.db"))
    assert config.blob_store_options()["metadata_options"] == {"path": "x/i.db"}
    bad = CacheConfig(metadata=CacheMetadataConfig("sqlite", connection_url="postgresql://h/d"))
    with pytest.raises(ConfigError, match="the sqlite metadata backend takes a file"):
        bad.blob_store_options()


def test_store_options_refuse_one_setting_given_twice_differently():
    config = CacheConfig(blob=CacheBlobConfig("s3", bucket="a", options={"bucket": "b"}))
    with pytest.raises(ConfigError, match=r"blob\.bucket \('a'\) conflicts with blob\.options"):
        config.blob_store_options()
    seed_alias = CacheConfig(
        metadata=CacheMetadataConfig(
            "postgresql",
            connection_url="postgresql://a/x",
            options={"connection_url": "postgresql://b/x"},
        )
    )
    with pytest.raises(ConfigError, match="conflicts"):
        seed_alias.blob_store_options()


def test_store_options_pass_backend_instances_through():
    metadata, blobs = MemoryMetadataBackend(), MemoryBlobBackend()
    options = CacheConfig(metadata_backend=metadata, blob_backend=blobs).blob_store_options()
    assert options["metadata_backend"] is metadata
    assert options["blob_backend"] is blobs
    assert options["metadata_options"] == options["blob_options"] == {}
    with BlobStore(**options) as store:
        store.put({"a": 1}, key="k")
    assert metadata.get("k") is not None
    with pytest.raises(ConfigError, match="settings apply to a backend given by name"):
        CacheConfig(blob=CacheBlobConfig(blobs, root="/x")).blob_store_options()


def test_store_options_create_nothing(tmp_path):
    cache_dir = tmp_path / "not-yet"
    config = CacheConfig(cache_dir=str(cache_dir))
    config.blob_store_options()
    validate_config(config)
    assert not cache_dir.exists()


def test_default_config_opens_a_store_with_its_files_under_cache_dir(tmp_path):
    config = CacheConfig(cache_dir=str(tmp_path / "cache"))
    payload = os.urandom(100_000)  # incompressible, above the inline threshold: a blob file
    with BlobStore(**config.blob_store_options()) as store:
        store.put(payload, key="payload")
        assert store.get("payload") == payload
    cache_dir = tmp_path / "cache"
    assert (cache_dir / "index.sqlite").is_file()
    blob_files = files_under(cache_dir / "blobs")
    assert len(blob_files) == 1
    assert blob_files[0].stat().st_size > 0


def test_json_index_at_a_chosen_path(tmp_path):
    config = CacheConfig(
        cache_dir=str(tmp_path / "cache"),
        metadata=CacheMetadataConfig("json", path=str(tmp_path / "index" / "cache.json")),
    )
    with BlobStore(**config.blob_store_options()) as store:
        store.put([1, 2], key="k", metadata={"project": "x"})
    index = json.loads((tmp_path / "index" / "cache.json").read_text())
    assert "k" in json.dumps(index)
    assert not (tmp_path / "cache" / "index.sqlite").exists()


def test_serialization_settings_reach_the_stored_entries(tmp_path):
    compressible = b"abc" * 10_000
    config = CacheConfig(
        cache_dir=str(tmp_path),
        compression=CompressionConfig(codec="zstd", level=5),
        serialization=SerializationConfig(inline_threshold=0),
        security=SecurityConfig(verify_reads=False),
    )
    with BlobStore(**config.blob_store_options()) as store:
        assert store.verify_reads is False
        store.put(compressible, key="big")
        store.put(b"x", key="tiny")
        big, tiny = store.get_metadata("big"), store.get_metadata("tiny")
    assert big.codec == "zstd"
    assert big.size < len(compressible)
    assert tiny.blob_ref  # inline_threshold=0: even one byte gets a blob
    assert len(files_under(tmp_path / "blobs")) == 2


def test_content_addressable_setting_stores_identical_values_once(tmp_path):
    config = CacheConfig(
        cache_dir=str(tmp_path), serialization=SerializationConfig(content_addressable=True)
    )
    payload = os.urandom(80_000)
    with BlobStore(**config.blob_store_options()) as store:
        store.put(payload, key="a")
        store.put(payload, key="b")
        assert store.get("b") == payload
    assert len(files_under(tmp_path / "blobs")) == 1


# -- handlers ---------------------------------------------------------------------------------


def test_empty_handlers_section_uses_the_live_process_wide_registry():
    assert CacheConfig().blob_store_options()["handlers"] is default_registry()


def test_disabled_handlers_are_left_out(tmp_path):
    config = CacheConfig(cache_dir=str(tmp_path), handlers=HandlersConfig(disabled=["objects"]))
    registry = config.blob_store_options()["handlers"]
    assert "objects" not in registry
    assert "objects" in default_registry()  # the process-wide registry is untouched
    with BlobStore(**config.blob_store_options()) as store:
        store.put({"plain": [1, 2]}, key="ok")
        with pytest.raises(SerializationError, match="no registered handler"):
            store.put(object(), key="refused")
        assert not store.exists("refused")


def test_priorities_and_custom_handlers_by_import_path():
    config = CacheConfig(
        handlers=HandlersConfig(
            custom=["cacheness.storage._handlers.raw:RawHandler"],
            priorities={"pandas": 99, "raw": 5},
        )
    )
    registry = config.blob_store_options()["handlers"]
    assert registry.priority("pandas") == 99
    assert registry.priority("raw") == 5
    assert registry.list()[0] == "pandas"
    assert default_registry().priority("pandas") != 99


def test_a_handler_that_cannot_be_imported_is_a_config_error():
    config = CacheConfig(handlers=HandlersConfig(custom=["no_such_module_xyz:Handler"]))
    with pytest.raises(ConfigError, match="cannot import 'no_such_module_xyz:Handler'"):
        config.blob_store_options()


# -- real servers: the team cache from issue 7 ------------------------------------------------


def s3_credentials(s3_bucket) -> dict[str, str]:
    options = s3_bucket.endpoint.client_options()
    return {k: options[k] for k in ("aws_access_key_id", "aws_secret_access_key")}


def test_team_config_opens_postgresql_and_s3(fresh_postgres_url, s3_bucket, tmp_path):
    config = CacheConfig(
        cache_dir=str(tmp_path),
        metadata=CacheMetadataConfig(
            backend="postgresql", connection_url=fresh_postgres_url, table="team_a"
        ),
        blob=CacheBlobConfig(
            backend="s3",
            bucket=s3_bucket.name,
            prefix="cache/v1/",
            endpoint_url=s3_bucket.endpoint.endpoint_url,
            region="us-east-1",
            shard_chars=2,
            options=s3_credentials(s3_bucket),
        ),
    )
    assert validate_config(config) == []
    payload = os.urandom(100_000)
    with BlobStore(**config.blob_store_options()) as store:
        store.put(payload, key="model", metadata={"experiment": "exp_001"})
        entry = store.get_metadata("model")
        assert store.get("model") == payload
    # ground truth around the store: the row in the named table, the object in the bucket
    with psycopg.connect(conninfo(fresh_postgres_url)) as conn:
        rows = conn.execute("SELECT key, blob_ref FROM team_a").fetchall()
    assert rows == [("model", entry.blob_ref)]
    listed = s3_bucket.client().list_objects_v2(Bucket=s3_bucket.name)["Contents"]
    keys = [item["Key"] for item in listed]
    assert keys == [f"cache/v1/{entry.blob_ref}"]
    assert entry.blob_ref[:2] == entry.blob_ref.split("/")[-1][:2]  # sharded by 2 chars
    assert not any(tmp_path.iterdir())  # nothing local for a team cache


def test_two_caches_share_one_database_through_table_names(fresh_postgres_url, tmp_path):
    configs = [
        CacheConfig(
            cache_dir=str(tmp_path / name),
            metadata_backend="postgresql",
            metadata_backend_options={"connection_url": fresh_postgres_url, "table_name": name},
        )
        for name in ("cache_a", "cache_b")
    ]
    for config, value in zip(configs, ("a", "b"), strict=True):
        with BlobStore(**config.blob_store_options()) as store:
            store.put(value, key="same-key")
    for config, value in zip(configs, ("a", "b"), strict=True):
        with BlobStore(**config.blob_store_options()) as store:
            assert store.get("same-key") == value
    with psycopg.connect(conninfo(fresh_postgres_url)) as conn:
        for table in ("cache_a", "cache_b"):
            assert conn.execute(f"SELECT count(*) FROM {table}").fetchone() == (1,)


def test_unsafe_pairing_opt_out_reaches_the_store(s3_bucket, tmp_path):
    config = CacheConfig(
        cache_dir=str(tmp_path),
        blob=CacheBlobConfig(
            "s3",
            bucket=s3_bucket.name,
            endpoint_url=s3_bucket.endpoint.endpoint_url,
            region="us-east-1",
            options=s3_credentials(s3_bucket),
        ),
    )
    assert any("pairing" in problem for problem in validate_config(config))
    with pytest.raises(ConfigError, match="host-local index, but s3 blobs are shared"):
        BlobStore(**config.blob_store_options())
    allowed = config.replace(allow_unsafe_pairing=True)
    assert validate_config(allowed) == []
    with BlobStore(**allowed.blob_store_options()) as store:
        store.put(os.urandom(80_000), key="k")
    assert len(s3_bucket.client().list_objects_v2(Bucket=s3_bucket.name)["Contents"]) == 1


# -- the documentation page -------------------------------------------------------------------


def test_docs_examples_run(docs_page):
    page = docs_page("configuration.md")
    assert len(page.blocks()) >= 6
    page.run(module="docs_configuration")


def test_docs_yaml_and_toml_examples_load(tmp_path, docs_page):
    page = docs_page("configuration.md")
    for language, suffix in (("yaml", ".yaml"), ("toml", ".toml")):
        (block,) = page.blocks(language)
        path = tmp_path / f"example{suffix}"
        path.write_text(block)
        assert validate_config(load_config(path).replace(cache_dir=str(tmp_path))) == []


def test_docs_list_every_environment_variable(docs_page):
    text = docs_page("configuration.md").text
    for variable, target in ENVIRONMENT_VARIABLES.items():
        assert f"| `{variable}` | `{target}` |" in text
    assert f"| `{CONFIG_FILE_VARIABLE}` |" in text


def test_sections_may_be_written_as_mappings():
    config = CacheConfig(
        metadata={"backend": "json", "path": "/i.json"}, blob={"backend": "memory"}
    )
    assert config.metadata == CacheMetadataConfig("json", path="/i.json")
    assert config.blob == CacheBlobConfig("memory")
    assert CacheConfig().replace(blob={"backend": "memory"}).blob == CacheBlobConfig("memory")
    with pytest.raises(ConfigError, match=r"unknown configuration key metadata\.bakend"):
        CacheConfig(metadata={"bakend": "json"})


def test_home_is_expanded_in_every_path_setting():
    config = CacheConfig(
        cache_dir="~/c",
        metadata=CacheMetadataConfig(path="~/i.db"),
        blob=CacheBlobConfig(root="~/b"),
    )
    home = os.path.expanduser("~")
    assert (config.cache_dir, config.metadata.path, config.blob.root) == (
        os.path.join(home, "c"),
        os.path.join(home, "i.db"),
        os.path.join(home, "b"),
    )


def test_import_and_validation_stay_light():
    probe = (
        "import sys, json\n"
        "from cacheness.config import CacheConfig, validate_config\n"
        "config = CacheConfig(cache_dir='/c', metadata_backend='postgresql',\n"
        "    metadata_backend_options={'url': 'postgresql://db/x'}, blob_backend='s3',\n"
        "    blob_backend_options={'bucket': 'b'})\n"
        "assert validate_config(config) == [], validate_config(config)\n"
        "config.blob_store_options()\n"
        "print(json.dumps(sorted(sys.modules)))\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", probe], check=True, capture_output=True, text=True
    ).stdout
    heavy = {"numpy", "pandas", "pyarrow", "polars", "blosc2", "boto3", "botocore", "psycopg"}
    assert sorted(set(json.loads(out)) & heavy) == []
