"""The team cache under faults: a flaky S3, killed PostgreSQL connections, killed workers.

Faults come from real parts wherever one can produce them: the loopback
:class:`~cacheness.storage.testing.flaky_proxy.FlakyProxy` between the workers and moto
(HTTP 500/503, dropped connections, a stalled upload), ``pg_terminate_backend`` from a
separate admin connection, a row lock held by the test, and ``SIGKILL``. After each
scenario the ground truth around the cache is checked (``_team_support.Team.check``):
no entry points at a missing blob, orphans are exactly what ``find_orphaned_blobs``
reports, and every value reads back intact.
"""

from __future__ import annotations

import sys

import pytest

from cacheness.storage.testing.flaky_proxy import FlakyProxy

pytestmark = pytest.mark.skipif(sys.platform == "win32", reason="POSIX process control")

UNAVAILABLE = "BackendUnavailableError"
BLOCKED_BY = "SELECT pid FROM pg_stat_activity WHERE %s = ANY(pg_blocking_pids(pid))"


@pytest.fixture
def proxy(s3_endpoint):
    with FlakyProxy(s3_endpoint.endpoint_url) as proxy:
        yield proxy


@pytest.fixture
def flaky_team(support, team, proxy):
    """The same team cache, its workers reaching S3 through the flaky proxy."""
    return support.Team(
        team.url,
        team.bucket,
        team.scratch,
        endpoint_url=proxy.url,
        blob_options={"max_attempts": 3, "connect_timeout": 5, "read_timeout": 30},
    )


# --------------------------------------------------------------------------- S3 faults


def test_s3_errors_and_dropped_connections_are_retried_or_reported(flaky_team, team, proxy):
    worker = flaky_team.serve()
    try:
        model = {"model": "resnet"}
        worker("put", key=model, size=200_000, version=1)  # the bucket check is done
        for version, (fault, status) in enumerate(
            [("error", 500), ("error", 503), ("drop", 503)], start=2
        ):
            proxy.reset_stats()
            proxy.fail_next(1, fault, status=status, methods={"PUT"})
            worker("put", key=model, size=150_000, version=version)
            proxy.fail_next(2 if fault == "drop" else 1, fault, status=status, methods={"GET"})
            assert worker("get", key=model) == {"version": version}
            assert proxy.stats().faults >= 2  # each call met its fault, then was retried

        # beyond the retries: BackendUnavailableError, and nothing half-written
        proxy.fail_always("error", status=503, methods={"PUT"})
        failed_put = worker.call("put", key={"model": "vgg"}, size=150_000, version=10)
        failed_update = worker.call("update_data", key=model, size=150_000, version=11)
        proxy.heal()
        assert (failed_put["ok"], failed_put["error"]) == (False, UNAVAILABLE)
        assert "HTTP 503" in failed_put["message"]
        assert (failed_update["ok"], failed_update["error"]) == (False, UNAVAILABLE)
        assert worker("get", key={"model": "vgg"}) is None
        assert worker("get", key=model) == {"version": 4}  # the last stored value

        # an unreachable S3 on read is an error, not a miss: the entry is kept
        proxy.fail_always("drop", methods={"GET"})
        failed_get = worker.call("get", key=model)
        proxy.heal()
        assert (failed_get["ok"], failed_get["error"]) == (False, UNAVAILABLE)
        assert worker("get", key=model) == {"version": 4}
        blob = worker("metadata", key=model)["blob_ref"]

        # the entry goes first; a blob S3 refuses to delete stays behind as an orphan
        proxy.fail_always("error", status=500, methods={"POST", "DELETE"})
        assert worker("invalidate", key=model) is True
        proxy.heal()
        assert worker("get", key=model) is None
    finally:
        worker.close()
    assert "they are orphans now" in worker.worker.stderr
    assert team.check() == {blob}
    with team.open_cache() as cache:
        report = cache.store.repair(dry_run=False, orphan_min_age_seconds=0)
    assert report.orphans_removed == [blob]
    assert team.check() == set()


def test_flaky_s3_under_load_never_leaves_an_entry_without_its_blob(flaky_team, team, proxy):
    workers = flaky_team.group(
        "mixed", 4, ops=250, keys=40, seed=11, tolerate=[UNAVAILABLE], announce=True
    )
    workers.started(4)  # caches open: faults now hit operations
    faults = [("error", 503), ("drop", 503), ("error", 500)]
    rounds = 0
    while workers.running():
        fault, status = faults[rounds % len(faults)]
        proxy.fail_for(0.4, fault, status=status)  # a fault window, then 0.6 s of health
        rounds += 1
        workers.wait(timeout=1.0)
    proxy.heal()
    reports = workers.reports(4)

    assert proxy.stats().faults > 0
    done = sum(sum(report["ops"].values()) for report in reports)
    failed = sum(sum(report["failed"].values()) for report in reports)
    assert done + failed == 4 * 250
    assert done > failed  # retries carried most operations through the fault windows
    team.check()


# --------------------------------------------------------------------------- PostgreSQL


def test_killed_postgresql_connections_are_replaced_on_the_next_operation(team):
    worker = team.serve()
    try:
        report = {"report": "q3"}
        worker("put", key=report, size=80_000, version=1)
        assert team.terminate_cache_connections() >= 1
        assert worker("get", key=report) == {"version": 1}
        assert team.terminate_cache_connections() >= 1
        worker("put", key={"report": "q4"}, size=2_000, version=1)
        assert team.terminate_cache_connections() >= 1
        assert worker("update_data", key=report, size=90_000, version=2) is True
        assert team.terminate_cache_connections() >= 1
        assert worker("touch", key=report, ttl_seconds=600) is True
        assert team.terminate_cache_connections() >= 1
        assert worker("count") == 2
        assert team.terminate_cache_connections() >= 1
        assert worker("invalidate", key={"report": "q4"}) is True
        assert worker("get", key=report) == {"version": 2}
    finally:
        worker.close()
    assert team.check() == set()


def test_connection_killed_inside_a_transaction_is_retried(support, team):
    import psycopg

    worker = team.serve()
    try:
        model = {"model": "bert"}
        key = worker("put", key=model, size=60_000, version=1)
        with psycopg.connect(support.worker_module.libpq(team.url)) as admin:
            admin.execute(f"SELECT 1 FROM {team.table} WHERE key = %s FOR UPDATE", (key,))
            worker.send("update_data", key=model, size=70_000, version=2)
            admin_pid = admin.info.backend_pid
            (blocked,) = support.wait_for(
                lambda: team.sql(BLOCKED_BY, (admin_pid,)), "the update to wait on the row"
            )[0]
            team.sql("SELECT pg_terminate_backend(%s)", (blocked,))  # mid-transaction
            admin.rollback()
        assert worker.receive() == {"ok": True, "result": True}  # retried on a new connection
        assert worker("get", key=model) == {"version": 2}
    finally:
        worker.close()
    assert team.check() == set()


def test_killed_postgresql_connections_under_load_keep_the_index_consistent(team):
    workers = team.group(
        "mixed", 4, ops=250, keys=40, seed=13, tolerate=[UNAVAILABLE], announce=True
    )
    workers.started(4)
    kills = 0
    while workers.running():
        kills += team.terminate_cache_connections()
        workers.wait(timeout=0.3)
    reports = workers.reports(4)

    assert kills > 4
    for report in reports:
        assert sum(report["ops"].values()) + sum(report["failed"].values()) == 250
        # an operation that lost its connection mid-commit may fail; the next one works
        assert report["longest_failure_streak"] <= 1, report["failures"]
    team.check()


# --------------------------------------------------------------------------- SIGKILL


def test_worker_killed_mid_put_leaves_only_orphans(support, team, proxy):
    import psycopg

    others = team.group("mixed", 3, ops=250, keys=40, seed=17, announce=True)
    victim = team.serve()
    stalled = support.Team(team.url, team.bucket, team.scratch, endpoint_url=proxy.url).serve()
    try:
        others.started(3)
        # 1. killed after its blob was uploaded, before the entry was committed: the test
        #    holds the entry's row, so the commit waits until the process is gone
        model = {"victim": "model"}
        key = victim("put", key=model, size=120_000, version=1)
        first_blob = victim("metadata", key=model)["blob_ref"]
        with psycopg.connect(support.worker_module.libpq(team.url)) as admin:
            admin.execute(f"SELECT 1 FROM {team.table} WHERE key = %s FOR UPDATE", (key,))
            victim.send("put", key=model, size=300_000, version=2)
            admin_pid = admin.info.backend_pid
            support.wait_for(lambda: team.sql(BLOCKED_BY, (admin_pid,)), "the commit to wait")
            victim.worker.kill()
            admin.rollback()

        # 2. killed in the middle of an upload: the proxy holds the request body
        proxy.latency = 3.0
        stalled.send("put", key={"victim": "upload"}, size=3_000_000, version=1)
        support.wait_for(
            lambda: [r for r in proxy.history if r.method == "PUT" and "/team/" in r.path],
            "the upload to start",
        )
        stalled.worker.kill()
        proxy.latency = 0.0

        reports = others.reports(3)  # the others never noticed
    finally:
        for worker in (victim.worker, stalled.worker):
            if worker.running():
                worker.kill()
    assert all(sum(report["ops"].values()) == 250 for report in reports)

    orphans = team.check()
    assert len(orphans) == 1  # the blob of the put that never committed
    assert first_blob not in orphans
    with team.open_cache() as cache:
        value = cache.get(key_params=model)
        assert support.worker_module.check_value("victim=model", value) == 1
        assert cache.get(key_params={"victim": "upload"}) is None
        assert cache.store.repair(dry_run=False, orphan_min_age_seconds=0).orphans_removed == [
            *orphans
        ]
    assert team.check() == set()
