"""The team cache (PostgreSQL index + S3 blobs) shared by real OS processes.

Every worker is a separate Python process (``_team_worker.py``) with its own cache
object, talking to the real PostgreSQL server and to moto's S3 server over HTTP. The
checks read the ground truth around the cache: the entries table with plain SQL and
the bucket with a plain boto3 client (see ``_team_support.Team.check``).
"""

from __future__ import annotations

import sys

import pytest

pytestmark = pytest.mark.skipif(sys.platform == "win32", reason="POSIX process control")

PROCESSES = 8
OPERATIONS = 1000
KEYS = 200


def test_two_processes_share_writes_updates_and_deletes(team):
    writer = team.serve("sections")
    reader = team.serve("flat")
    try:
        big = {"dataset": "iris", "split": "train"}
        small = {"dataset": "iris", "split": "test"}
        key = writer("put", key=big, size=300_000, version=1, metadata={"owner": "ana"})
        writer("put", key=small, size=1_000, version=1)  # inline in the index
        for experiment in ("exp_001", "exp_002", "baseline"):
            writer("put", key={"experiment": experiment}, size=100_000, version=1)

        # the other process reads what the first wrote, then replaces it
        assert reader("get", key=big) == {"version": 1}
        assert reader("get", key=small) == {"version": 1}
        seen = reader("metadata", key=big)
        assert seen["cache_key"] == key
        assert seen["metadata"] == {"owner": "ana"}
        assert seen["location"] == f"s3://{team.bucket.name}/team/{seen['blob_ref']}"
        assert reader("update_data", key=big, size=600_000, version=2) is True
        assert reader("touch", key=small, ttl_seconds=7200) is True

        # ...and the first sees the new value, the new blob and the new TTL
        assert writer("get", key=big) == {"version": 2}
        updated = writer("metadata", key=big)
        assert updated["blob_ref"] != seen["blob_ref"]
        assert updated["size"] > seen["size"]
        assert writer("metadata", key=small)["ttl_seconds"] == 7200

        # the first deletes by prefix; the other no longer finds those entries
        assert writer("delete_by_prefix", experiment="exp_") == 2
        assert reader("get", key={"experiment": "exp_001"}) is None
        assert reader("get", key={"experiment": "exp_002"}) is None
        assert reader("get", key={"experiment": "baseline"}) == {"version": 1}
        assert reader("invalidate", key=small) is True
        assert writer("get", key=small) is None
        assert writer("count") == reader("count") == 2
    finally:
        writer.close()
        reader.close()

    # ground truth: two rows, each pointing at its own object, and nothing else stored
    rows = team.rows()
    assert len(rows) == 2
    assert rows[key][0] == updated["blob_ref"]
    assert set(team.objects()) == {ref for ref, _, _, _ in rows.values()}
    assert team.check() == set()


def test_every_config_form_opens_the_same_team_cache(support, team):
    first = team.serve("sections")
    try:
        first("put", key={"report": "q3"}, size=50_000, version=7)
        expected = first("config")
    finally:
        first.close()
    assert expected == {
        "metadata": "postgresql",
        "table": support.TABLE,
        "blobs": "s3",
        "bucket": team.bucket.name,
        "prefix": "team/",
        "endpoint": team.endpoint,
        "shard_chars": 2,
    }
    others = [team.serve(form) for form in ("flat", "env", "file")]
    try:
        for other in others:
            assert other("config") == expected
            assert other("get", key={"report": "q3"}) == {"version": 7}
    finally:
        for other in others:
            other.close()


def test_eight_processes_of_mixed_operations_keep_index_and_bucket_consistent(team):
    reports = team.run_all("mixed", PROCESSES, ops=OPERATIONS, keys=KEYS, seed=7)

    assert len({report["pid"] for report in reports}) == PROCESSES
    for report in reports:  # no exception escaped (a worker would have exited 1)
        assert sum(report["ops"].values()) == OPERATIONS
        assert not any(report["failed"].values())
    done = {op: sum(r["ops"][op] for r in reports) for op in reports[0]["ops"]}
    assert all(count > 300 for count in done.values()), done
    hits = sum(report["hits"] for report in reports)
    assert hits > 1000  # the processes read each other's values (checked on every read)

    rows = team.rows()
    assert 0 < len(rows) <= KEYS
    assert any(inline for _, _, _, inline in rows.values())  # small values stay inline
    assert any(not inline for _, _, _, inline in rows.values())
    orphans = team.check()
    # a value being read can be replaced or deleted underneath; that read is a logged,
    # counted miss (never a wrong value); nothing is leaked by operations that finished
    assert orphans == set()


def test_stampede_of_eight_processes_computes_once(team):
    team.sql("CREATE TABLE stampede_runs (pid int NOT NULL)")
    reports = team.run_all(
        "stampede", PROCESSES, runs_url=team.url, hold="waiters", processes=PROCESSES
    )

    runs = team.sql("SELECT pid FROM stampede_runs")
    assert len(runs) == 1
    computed_by = runs[0][0]
    holders = [report for report in reports if report["misses"] == 1]
    assert [holder["pid"] for holder in holders] == [computed_by]
    # while the body ran, the seven others queued on the PostgreSQL advisory lock
    assert holders[0]["waiters_seen"] == PROCESSES - 1
    # every process got the one computed value: the others read it after the lock
    assert all(report["result"] == {"x": 42, "by": computed_by} for report in reports)
    assert sum(report["hits"] for report in reports) == PROCESSES - 1
    assert not any(report["errors"] for report in reports)


def test_stampede_waiters_compute_anyway_after_lock_timeout_and_log_it(support, team):
    team.sql("CREATE TABLE stampede_runs (pid int NOT NULL)")
    # the first process computes and keeps the key until a second computation happened
    slow = team.spawn("stampede", runs_url=team.url, hold="runs", runs=2)
    support.wait_for(lambda: team.sql("SELECT pid FROM stampede_runs"), "the first run")
    impatient = team.spawn("stampede", runs_url=team.url, hold="runs", runs=2, lock_timeout=0.5)
    second, first = impatient.report(), slow.report()

    runs = [pid for (pid,) in team.sql("SELECT pid FROM stampede_runs")]
    assert runs == [slow.pid, impatient.pid]
    assert first["result"]["by"] == slow.pid
    assert second["result"]["by"] == impatient.pid  # it did not wait for the slow one
    assert second["misses"] == 1
    assert "waited lock_timeout=0.5s for another caller computing" in impatient.stderr


def test_stampede_lock_of_a_killed_process_is_released_by_the_server(support, team):
    team.sql("CREATE TABLE stampede_runs (pid int NOT NULL)")
    doomed = team.spawn("stampede", runs_url=team.url, hold="forever")
    support.wait_for(lambda: team.sql("SELECT pid FROM stampede_runs"), "the first run")
    waiter = team.spawn("stampede", runs_url=team.url, hold="runs", runs=2)
    support.wait_for(
        lambda: team.sql(
            "SELECT 1 FROM pg_locks l JOIN pg_database d ON d.oid = l.database "
            "WHERE l.locktype = 'advisory' AND NOT l.granted AND d.datname = current_database()"
        ),
        "the second process to queue on the advisory lock",
    )
    doomed.kill()  # SIGKILL while computing: its session, and the lock, end with it

    report = waiter.report()
    assert report["result"] == {"x": 42, "by": waiter.pid}
    runs = [pid for (pid,) in team.sql("SELECT pid FROM stampede_runs")]
    assert runs == [doomed.pid, waiter.pid]
    with team.open_cache() as cache:
        assert cache.count() == 1  # the survivor's value, stored once
