"""Config files: JSON, YAML and TOML in, JSON out, with errors that name file and field."""

from __future__ import annotations

import json
import sys

import pytest

from cacheness.config import (
    CacheBlobConfig,
    CacheConfig,
    CacheMetadataConfig,
    CompressionConfig,
    HandlersConfig,
    load_config,
    load_config_from_dict,
    load_config_from_json,
    load_config_from_toml,
    load_config_from_yaml,
    save_config_to_json,
)
from cacheness.storage import ConfigError, MemoryBlobBackend, MissingDependencyError

TEAM = CacheConfig(
    cache_dir="/srv/cache",
    metadata=CacheMetadataConfig("postgresql", connection_url="postgresql://db/cache", table="t"),
    blob=CacheBlobConfig("s3", bucket="team", prefix="v1/", shard_chars=2),
    compression=CompressionConfig(codec="zstd", level=9),
    handlers=HandlersConfig(disabled=["objects"], priorities={"pandas": 99}),
    default_ttl_seconds=3600,
    max_cache_size_mb=512.5,
    eviction_policy="lfu",
)

TEAM_YAML = """\
cache_dir: /srv/cache
metadata:
  backend: postgresql
  connection_url: postgresql://db/cache
  table: t
blob:
  backend: s3
  bucket: team
  prefix: v1/
  shard_chars: 2
compression:
  codec: zstd
  level: 9
handlers:
  disabled: [objects]
  priorities: {pandas: 99}
default_ttl_seconds: 3600
max_cache_size_mb: 512.5
eviction_policy: lfu
"""

TEAM_TOML = """\
cache_dir = "/srv/cache"
default_ttl_seconds = 3600
max_cache_size_mb = 512.5
eviction_policy = "lfu"

[metadata]
backend = "postgresql"
connection_url = "postgresql://db/cache"
table = "t"

[blob]
backend = "s3"
bucket = "team"
prefix = "v1/"
shard_chars = 2

[compression]
codec = "zstd"
level = 9

[handlers]
disabled = ["objects"]
priorities = { pandas = 99 }
"""


# -- dicts ------------------------------------------------------------------------------------


def test_dict_with_sections_and_with_flat_shortcuts():
    sections = load_config_from_dict(
        {"metadata": {"backend": "json", "options": {"fsync": False}}, "max_entries": 3}
    )
    flat = load_config_from_dict(
        {"metadata_backend": "json", "metadata_backend_options": {"fsync": False}, "max_entries": 3}
    )
    assert sections == flat
    assert sections.metadata == CacheMetadataConfig("json", options={"fsync": False})


def test_missing_keys_take_defaults_and_ints_are_fine_for_floats():
    config = load_config_from_dict({"cache_dir": "/c", "default_ttl_seconds": 60})
    assert config == CacheConfig(cache_dir="/c", default_ttl_seconds=60.0)
    assert isinstance(config.default_ttl_seconds, float)


@pytest.mark.parametrize(
    ("data", "message"),
    [
        ({"max_entires": 1}, "unknown configuration key max_entires (did you mean 'max_entries'?)"),
        (
            {"blob": {"buckt": "b"}},
            "unknown configuration key blob.buckt (did you mean 'bucket'?); known keys of blob: ",
        ),
        ({"max_entries": "10"}, "max_entries: Expected `int | null`, got `str`"),
        ({"strict": 1}, "strict: Expected `bool`, got `int`"),
        ({"metadata": {"options": []}}, "metadata.options: Expected `object`, got `array`"),
        ({"handlers": {"priorities": {"pandas": "high"}}}, "handlers.priorities: Expected `int`"),
        ({"metadata": "postgresql"}, "metadata must be a mapping of settings, got str"),
        ({1: 2}, "unknown configuration key 1"),
        (
            {"metadata": {"backend": "json"}, "metadata_backend": "memory"},
            "metadata_backend='memory' contradicts metadata.backend='json'",
        ),
    ],
)
def test_dict_errors_name_the_key(data, message):
    with pytest.raises(ConfigError) as info:
        load_config_from_dict(data)
    assert message in str(info.value)


def test_top_level_must_be_a_mapping():
    with pytest.raises(ConfigError, match="must be a mapping of settings, got list"):
        load_config_from_dict([("cache_dir", "/c")])


# -- JSON -------------------------------------------------------------------------------------


def test_json_round_trip(tmp_path):
    path = save_config_to_json(TEAM, tmp_path / "nested" / "cache.json")
    assert path == tmp_path / "nested" / "cache.json"
    assert load_config_from_json(path) == TEAM
    written = json.loads(path.read_text())
    assert written["metadata"]["connection_url"] == "postgresql://db/cache"
    assert written["blob"]["bucket"] == "team"
    assert path.read_text().endswith("}\n")
    assert [p.name for p in path.parent.iterdir()] == ["cache.json"]  # no temp file left


def test_save_replaces_an_existing_file(tmp_path):
    path = tmp_path / "cache.json"
    save_config_to_json(TEAM, path)
    save_config_to_json(TEAM.replace(max_entries=7), path)
    assert load_config_from_json(path).max_entries == 7


def test_save_refuses_objects_and_leaves_the_old_file(tmp_path):
    path = tmp_path / "cache.json"
    save_config_to_json(TEAM, path)
    before = path.read_bytes()
    with pytest.raises(ConfigError, match="cannot write a MemoryBlobBackend object"):
        save_config_to_json(CacheConfig(blob_backend=MemoryBlobBackend()), path)
    assert path.read_bytes() == before
    assert [p.name for p in tmp_path.iterdir()] == ["cache.json"]


def test_json_null_for_optional_values(tmp_path):
    path = tmp_path / "c.json"
    path.write_text('{"default_ttl_seconds": null, "max_entries": 5}')
    config = load_config_from_json(path)
    assert (config.default_ttl_seconds, config.max_entries) == (None, 5)


def test_json_errors_name_the_file(tmp_path):
    missing = tmp_path / "missing.json"
    with pytest.raises(ConfigError, match=r"config file '.*missing\.json' does not exist"):
        load_config_from_json(missing)
    broken = tmp_path / "broken.json"
    broken.write_text('{"cache_dir": "/c",,}')
    with pytest.raises(ConfigError, match=r"broken\.json is not valid JSON: "):
        load_config_from_json(broken)
    wrong = tmp_path / "wrong.json"
    wrong.write_text('{"metadata": {"backend": "sqlite", "tabel": "x"}}')
    with pytest.raises(ConfigError) as info:
        load_config_from_json(wrong)
    assert str(info.value).startswith(f"{wrong}: unknown configuration key metadata.tabel")
    assert "(did you mean 'table'?)" in str(info.value)
    directory = tmp_path / "dir.json"
    directory.mkdir()
    with pytest.raises(ConfigError, match="cannot read config file"):
        load_config_from_json(directory)


# -- YAML -------------------------------------------------------------------------------------


def test_yaml_team_config(tmp_path):
    path = tmp_path / "cache.yaml"
    path.write_text(TEAM_YAML)
    assert load_config_from_yaml(path) == TEAM


def test_yaml_errors(tmp_path):
    broken = tmp_path / "broken.yaml"
    broken.write_text("metadata: [unclosed\n")
    with pytest.raises(ConfigError, match=r"broken\.yaml is not valid YAML"):
        load_config_from_yaml(broken)
    empty = tmp_path / "empty.yaml"
    empty.write_text("")
    with pytest.raises(ConfigError, match="must be a mapping of settings, got NoneType"):
        load_config_from_yaml(empty)


def test_yaml_without_pyyaml_names_the_extra(tmp_path, monkeypatch):
    path = tmp_path / "cache.yaml"
    path.write_text("max_entries: 1\n")
    monkeypatch.setitem(sys.modules, "yaml", None)  # what an environment without PyYAML does
    with pytest.raises(MissingDependencyError, match=r'pip install "cacheness\[yaml\]"'):
        load_config_from_yaml(path)


# -- TOML -------------------------------------------------------------------------------------


def test_toml_team_config(tmp_path):
    path = tmp_path / "cache.toml"
    path.write_text(TEAM_TOML)
    assert load_config_from_toml(path) == TEAM


def test_pyproject_tool_table_is_found(tmp_path):
    path = tmp_path / "pyproject.toml"
    path.write_text('[project]\nname = "demo"\n\n[tool.cacheness]\neviction_policy = "fifo"\n')
    assert load_config_from_toml(path).eviction_policy == "fifo"
    path.write_text('[project]\nname = "demo"\n')
    with pytest.raises(ConfigError, match=r"pyproject\.toml has no \[tool\.cacheness\] table"):
        load_config_from_toml(path)


def test_explicit_table(tmp_path):
    path = tmp_path / "settings.toml"
    path.write_text("[caches.main]\nmax_entries = 3\n[caches.scratch]\nmax_entries = 4\n")
    assert load_config_from_toml(path, table="caches.scratch").max_entries == 4
    with pytest.raises(ConfigError, match=r"has no \[caches\.other\] table"):
        load_config_from_toml(path, table="caches.other")


def test_toml_errors(tmp_path):
    broken = tmp_path / "broken.toml"
    broken.write_text("max_entries = \n")
    with pytest.raises(ConfigError, match=r"broken\.toml is not valid TOML"):
        load_config_from_toml(broken)


# -- by extension -----------------------------------------------------------------------------


def test_load_config_chooses_the_format_by_extension(tmp_path):
    (tmp_path / "a.yml").write_text("max_entries: 1\n")
    (tmp_path / "a.toml").write_text("max_entries = 2\n")
    (tmp_path / "a.JSON").write_text('{"max_entries": 3}')
    assert [load_config(tmp_path / n).max_entries for n in ("a.yml", "a.toml", "a.JSON")] == [
        1,
        2,
        3,
    ]
    with pytest.raises(ConfigError, match=r"use one of \.json, \.yaml, \.yml, \.toml"):
        load_config(tmp_path / "a.ini")
