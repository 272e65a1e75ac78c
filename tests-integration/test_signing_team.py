"""Signed entries in the team cache (PostgreSQL + S3), across real OS processes.

Every machine of a team gets the same key (here: ``CACHENESS_SIGNING_KEY``, set by the
fixtures and passed to the worker processes); a process with another key reads the
others' entries as misses and leaves them alone; a process with no key cannot open it.
"""

from __future__ import annotations

import sys

import pytest

from cacheness.storage import ConfigError, SigningKey

pytestmark = pytest.mark.skipif(sys.platform == "win32", reason="POSIX process control")


def test_two_processes_with_the_same_env_key_share_the_cache(team, signing_key_env):
    writer = team.serve("sections")
    reader = team.serve("env")
    try:
        writer("put", key={"run": 1}, size=300_000, version=1)  # a blob in S3
        writer("put", key={"run": 2}, size=500, version=1)  # inline in the index
        assert reader("get", key={"run": 1}) == {"version": 1}
        assert reader("get", key={"run": 2}) == {"version": 1}
        assert reader("update_data", key={"run": 2}, size=400_000, version=2) is True
        assert reader("touch", key={"run": 1}, ttl_seconds=60) is True
        assert writer("get", key={"run": 2}) == {"version": 2}
        assert writer("get", key={"run": 1}) == {"version": 1}
        assert writer("stats")["errors"] == 0
    finally:
        writer.close()
        reader.close()
    key_id = SigningKey.parse(signing_key_env).key_id
    signatures = [row[0] for row in team.sql("SELECT signature FROM cacheness_entries")]
    assert len(signatures) == 2
    assert all(signature.startswith(f"v1:{key_id}:") for signature in signatures)


def test_another_key_reads_misses_and_leaves_the_entries(team, monkeypatch):
    writer = team.serve("sections")
    try:
        writer("put", key={"run": 1}, size=300_000, version=1)
    finally:
        writer.close()
    monkeypatch.setenv("CACHENESS_SIGNING_KEY", "77" * 32)  # a machine set up wrongly
    stranger = team.serve("sections")
    try:
        assert stranger("get", key={"run": 1}) is None
        stats = stranger("stats")
        assert (stats["invalid_signatures"], stats["errors"]) == (1, 1)
    finally:
        stranger.close()
    assert team.sql("SELECT count(*) FROM cacheness_entries")[0][0] == 1  # nothing deleted


def test_a_team_cache_without_a_key_is_refused(team, monkeypatch):
    monkeypatch.delenv("CACHENESS_SIGNING_KEY")
    with pytest.raises(ConfigError, match="CACHENESS_SIGNING_KEY") as info:
        team.open_cache()
    assert "secret manager" in str(info.value)
