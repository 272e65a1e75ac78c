"""Cache export, import and migration: TTL, expiry, key parameters and statistics survive."""

from __future__ import annotations

import random

import pytest

import cacheness as cn
from cacheness import cacheness


def fill(cache: cacheness) -> None:
    cache.put({"auc": 0.91}, model="resnet", epochs=10, ttl_seconds=3600, metadata={"owner": "ana"})
    cache.put(random.Random(0).randbytes(120_000), model="vit", epochs=1)
    cache.put([1, 2, 3], dataset="iris", ttl_seconds=60)
    cache.get(model="resnet", epochs=10)
    cache.get(model="resnet", epochs=10)


def described(cache: cacheness) -> dict[str, dict]:
    rows = cache.list_entries(include_expired=True)
    return {
        e.cache_key: {
            k: v
            for k, v in e.to_dict().items()
            if k not in ("blob_ref", "location", "etag", "version_id")
        }
        for e in rows
    }


def test_export_import_keeps_ttl_expiry_params_and_statistics(
    signing_key_env, make_cache, tmp_path, clock
):  # one key for both caches (a memory cache otherwise signs with a per-process key)
    source = make_cache(clock=clock)
    fill(source)
    archive = tmp_path / "cache.tar.zst"
    report = source.export_to_file(archive)
    assert (report.entries, report.ok) == (3, True)
    target = cacheness(cache_dir=str(tmp_path / "other"), clock=clock)
    assert target.import_from_file(archive).entries == 3
    assert described(target) == described(source)
    entry = target.get_metadata(model="resnet", epochs=10)
    assert entry.ttl_seconds == 3600.0
    assert entry.metadata == {"owner": "ana"}
    assert entry.access_count == 2
    assert entry.params == {"model": "resnet", "epochs": 10}
    assert target.get(model="resnet", epochs=10) == {"auc": 0.91}
    clock.advance(120)  # the imported expiry still applies
    assert target.get(dataset="iris") is None
    target.close()


def test_filtered_export_by_key_parameters_and_expired_entries(tmp_path, clock):
    cache = cacheness(cache_dir=str(tmp_path / "a"), clock=clock)
    fill(cache)
    assert (
        cache.export_to_file(tmp_path / "resnet.tar", key_params={"model": "resnet"}).entries == 1
    )
    assert (
        cache.export_to_file(tmp_path / "owned.tar", filter={"metadata.owner": "ana"}).entries == 1
    )
    clock.advance(120)
    assert cache.export_to_file(tmp_path / "live.tar").entries == 2
    assert cache.export_to_file(tmp_path / "all.tar", include_expired=True).entries == 3
    other = cacheness(cache_dir=str(tmp_path / "b"), clock=clock)
    other.import_from_file(tmp_path / "resnet.tar")
    assert [e.params for e in other.list_entries()] == [{"model": "resnet", "epochs": 10}]
    cache.close()
    other.close()


def test_migrate_between_caches_resumes_and_keeps_the_source(make_cache, tmp_path, clock):
    source = cacheness(cache_dir=str(tmp_path / "laptop"), clock=clock)
    fill(source)
    team = make_cache(clock=clock)
    seen = []
    report = cn.migrate(source, team, progress=seen.append)
    assert (report.entries, report.damaged) == (3, [])
    assert seen[-1].done == 3
    assert described(team) == described(source)
    assert cn.migrate(source, team).entries == 0  # resumable: all present
    assert cn.migrate(source.store, team.store).entries == 0  # stores work too
    assert source.count() == 3
    with pytest.raises(cn.ConfigError, match="caches"):
        cn.migrate(source, "elsewhere")  # type: ignore[arg-type]
    source.close()


def test_pickled_values_need_a_signature_or_trust_on_import(tmp_path):
    from fractions import Fraction

    cache = cacheness(cache_dir=str(tmp_path / "a"))
    cache.put(Fraction(1, 3), n=1)
    data = cache.export_to_dict()
    other = cacheness(cache_dir=str(tmp_path / "b"))
    assert other.import_from_dict(data).entries == 1  # signed with the key both use
    for item in data["entries"]:
        item["entry"]["signature"] = None
    third = cacheness(cache_dir=str(tmp_path / "c"))
    report = third.import_from_dict(data)
    assert [i.problem for i in report.damaged] == ["refused"]
    assert third.import_from_dict(data, trust_pickles=True).entries == 1
    assert third.get(n=1) == Fraction(1, 3)
    for each in (cache, other, third):
        each.close()


def test_dicts_predicates_and_compression_by_file_name(tmp_path):
    cache = cacheness(cache_dir=str(tmp_path / "a"))
    fill(cache)
    other = cacheness(cache_dir=str(tmp_path / "b"))
    assert other.import_from_dict(cache.export_to_dict()).entries == 3
    assert described(other) == described(cache)
    only = cache.export_to_dict(filter=lambda entry: (entry.params or {}).get("model") == "vit")
    assert [item["entry"]["size"] for item in only["entries"]] == [120_000]
    assert (
        cache.export_to_file(
            tmp_path / "owned.tar", filter=lambda e: e.metadata == {"owner": "ana"}
        ).entries
        == 1
    )
    cache.export_to_file(tmp_path / "a.tar.gz")
    cache.export_to_file(tmp_path / "a.tar")
    cache.export_to_file(tmp_path / "a.tar.zst")
    cache.export_to_file(tmp_path / "plain.tar.gz", compress=False)
    assert (tmp_path / "a.tar.gz").read_bytes()[:2] == b"\x1f\x8b"
    assert (tmp_path / "a.tar.zst").read_bytes()[:4] == b"\x28\xb5\x2f\xfd"
    assert (tmp_path / "a.tar").read_bytes()[257:262] == b"ustar"
    assert (tmp_path / "plain.tar.gz").read_bytes()[257:262] == b"ustar"
    cache.close()
    other.close()


def test_an_import_keeps_a_limited_cache_within_its_limits(tmp_path, clock):
    source = cacheness(cache_dir=str(tmp_path / "a"), clock=clock)
    for n in range(6):
        source.put(n, n=n)
        clock.advance(1)
    small = cacheness(cache_dir=str(tmp_path / "b"), max_entries=4, clock=clock)
    report = small.import_from_dict(source.export_to_dict())
    assert report.entries == 6
    assert small.count() <= 4
    stats = small.get_stats()
    assert stats["puts"] == 6
    assert stats["evictions"] == 6 - small.count()
    source.export_to_file(tmp_path / "all.tar")
    from_file = cacheness(cache_dir=str(tmp_path / "d"), max_entries=3, clock=clock)
    assert from_file.import_from_file(tmp_path / "all.tar").entries == 6
    assert from_file.count() <= 3
    from_file.close()
    limited = cacheness(cache_dir=str(tmp_path / "c"), max_entries=4, clock=clock)
    cn.migrate(source, limited)
    assert limited.count() <= 4
    for cache in (source, small, limited):
        cache.close()
