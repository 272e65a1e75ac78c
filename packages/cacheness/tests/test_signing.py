"""Signed entries through the cache: the config, misses and stats, rotation, opt-outs."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from cacheness import CacheConfig, SecurityConfig, SignatureError, cacheness
from cacheness.config import resolve_config, save_config_to_json
from cacheness.storage import ConfigError, IntegrityError

KEY = "5a" * 32
OLD_KEY = "a5" * 32


class Boom:
    def __init__(self, marker: Path) -> None:
        self.marker = str(marker)

    def __reduce__(self) -> object:
        return (open, (self.marker, "w"))


def _forge(cache: cacheness, key: str, marker: Path) -> None:
    """Rewrite ``key``'s entry as an attacker with index access would: a pickle inline."""
    attacker = cacheness(cache_dir=cache.config.cache_dir, security=SecurityConfig(
        entry_signing=False))  # fmt: skip
    evil = attacker.store.put_entry(Boom(marker), key="scratch")
    attacker.close()
    names = ("blob_ref", "handler", "format", "format_info", "codec", "size", "raw_size",
             "content_hash", "inline")  # fmt: skip
    cache.store.metadata.update(key, **{name: getattr(evil, name) for name in names})


def test_signing_is_on_by_default_with_a_per_user_key(tmp_path):
    with cacheness(cache_dir=tmp_path / "c") as cache:
        key = cache.put({"a": 1}, x=1)
        assert cache.store.get_metadata(key).signature.startswith("v1:")
    key_file = Path(os.environ["XDG_CONFIG_HOME"]) / "cacheness" / "signing.key"
    assert key_file.is_file()
    assert not any(path.name == "signing.key" for path in (tmp_path / "c").rglob("*"))


def test_a_forged_entry_is_a_counted_miss_and_never_runs(tmp_path):
    marker = tmp_path / "ran"
    cache = cacheness(cache_dir=tmp_path / "c", security=SecurityConfig(signing_key=KEY))
    key = cache.put(1 + 2j, x=1)
    cache.put("other", x=2)
    _forge(cache, key, marker)
    assert cache.get(x=1) is None
    assert not marker.exists()
    stats = cache.get_stats()
    assert (stats["invalid_signatures"], stats["errors"], stats["misses"]) == (1, 1, 1)
    assert cache.store.exists(key)  # kept: it may be valid under another key
    assert cache.get(x=2) == "other"
    cache.close()
    strict = cacheness(cache_dir=tmp_path / "c", strict=True, security=SecurityConfig(
        signing_key=KEY))  # fmt: skip
    with pytest.raises(SignatureError):
        strict.get(x=1)
    strict.close()
    deleting = cacheness(cache_dir=tmp_path / "c", security=SecurityConfig(
        signing_key=KEY, delete_invalid_signatures=True))  # fmt: skip
    assert deleting.get(x=1) is None
    assert not deleting.store.exists(key)
    assert deleting.get(x=2) == "other"
    deleting.close()
    assert not marker.exists()


def test_rotation_and_resign(tmp_path):
    with cacheness(cache_dir=tmp_path, security=SecurityConfig(signing_key=OLD_KEY)) as old:
        old.put([1, 2], name="a")
        old.put(1 + 2j, name="b")
    rotated = SecurityConfig(signing_key=KEY, signing_keys=[OLD_KEY])
    with cacheness(cache_dir=tmp_path, security=rotated) as cache:
        assert cache.get(name="a") == [1, 2]
        report = cache.resign()
        assert (report.checked, report.resigned) == (2, 2)
    with cacheness(cache_dir=tmp_path, strict=True, security=SecurityConfig(
            signing_key=KEY)) as new:  # fmt: skip
        assert new.get(name="b") == 1 + 2j


def test_older_keys_need_a_current_one(tmp_path):
    with pytest.raises(ConfigError, match="no current key"):
        cacheness(cache_dir=tmp_path, security=SecurityConfig(signing_keys=[OLD_KEY]))


def test_the_key_never_prints_nor_is_saved(tmp_path):
    config = CacheConfig(cache_dir=str(tmp_path), security=SecurityConfig(
        signing_key=KEY, signing_keys=[OLD_KEY]))  # fmt: skip
    assert KEY not in repr(config)
    assert OLD_KEY not in repr(config)
    path = save_config_to_json(config, tmp_path / "c.json")
    saved = json.loads(path.read_text())
    assert saved["security"]["signing_key"] is None
    assert saved["security"]["signing_keys"] == []
    assert KEY not in path.read_text()


def test_seed_names_are_aliases():
    config = SecurityConfig(enable_entry_signing=False, custom_signed_fields=["key"])
    assert config.entry_signing is False
    assert config.signed_fields == ["key"]
    assert SecurityConfig(use_in_memory_key=True, delete_invalid_signatures=True).signing_options()[
        "delete_invalid_signatures"
    ]


def test_names_are_validated(tmp_path):
    with pytest.raises(ConfigError, match="unsigned_fields: unknown field 'colour'"):
        cacheness(cache_dir=tmp_path, security=SecurityConfig(unsigned_fields=["colour"]))
    with pytest.raises(ConfigError, match="unknown signed field 'colour'"):
        cacheness(cache_dir=tmp_path, security=SecurityConfig(signed_fields=["colour"]))
    with pytest.raises(ConfigError, match="unsigned must be one of"):
        cacheness(cache_dir=tmp_path, security=SecurityConfig(unsigned="sometimes"))


def test_environment_variables():
    config = resolve_config(environ={
        "CACHENESS_ENTRY_SIGNING": "0",
        "CACHENESS_UNSIGNED": "reject",
        "CACHENESS_DELETE_INVALID_SIGNATURES": "yes",
    })  # fmt: skip
    assert config.security.entry_signing is False
    assert config.security.unsigned == "reject"
    assert config.security.delete_invalid_signatures is True


def test_signing_off_is_explicit(tmp_path):
    with cacheness(cache_dir=tmp_path, security=SecurityConfig(entry_signing=False)) as cache:
        assert cache.store.signer is None
        key = cache.put(1, x=1)
        assert cache.store.get_metadata(key).signature is None
        with pytest.raises(ConfigError, match="signing on"):
            cache.resign()


def test_touch_and_metadata_updates_keep_signatures_valid(tmp_path):
    with cacheness(cache_dir=tmp_path, default_ttl_seconds=60, strict=True) as cache:
        cache.put({"v": 1}, x=1)
        assert cache.touch(x=1, ttl_seconds=3600)
        assert cache.touch_batch(ttl_seconds=7200, x=1) == 1
        cache.copy({"x": 1}, {"x": 2})
        cache.move({"x": 2}, {"x": 3})
        assert cache.get(x=1) == {"v": 1}
        assert cache.get(x=3) == {"v": 1}
        signer = cache.store.signer
        assert signer is not None
        for entry in cache.store.list_entries():
            assert signer.check(entry) == "valid"


def test_an_extended_expiry_written_without_the_key_is_refused(tmp_path):
    with cacheness(cache_dir=tmp_path, default_ttl_seconds=60, strict=True) as cache:
        key = cache.put({"v": 1}, x=1)
        entry = cache.store.get_metadata(key)
        facts = dict(entry.metadata["_cacheness"], expires_at=1e12)
        cache.store.metadata.update(key, metadata={**entry.metadata, "_cacheness": facts})
        with pytest.raises(IntegrityError):
            cache.get(x=1)


def test_opting_out_of_metadata(tmp_path):
    security = SecurityConfig(unsigned_fields=["metadata"])
    with cacheness(cache_dir=tmp_path, strict=True, security=security) as cache:
        key = cache.put({"v": 1}, x=1, metadata={"note": "a"})
        entry = cache.store.get_metadata(key)
        cache.store.metadata.update(key, metadata={**entry.metadata, "note": "changed"})
        assert cache.get(x=1) == {"v": 1}  # the user's metadata is not signed
        facts = dict(entry.metadata["_cacheness"], params={"x": 2})
        cache.store.metadata.update(key, metadata={**entry.metadata, "_cacheness": facts})
        with pytest.raises(IntegrityError):  # the cache's own facts still are
            cache.get(x=1)


def test_an_in_memory_key_lives_as_long_as_the_cache_object(tmp_path):
    security = SecurityConfig(use_in_memory_key=True)
    with cacheness(cache_dir=tmp_path, security=security) as first:
        first.put([1], x=1)
        assert first.get(x=1) == [1]
    with cacheness(cache_dir=tmp_path, security=security) as second:
        assert second.get(x=1) is None
        assert second.get_stats()["invalid_signatures"] == 1
