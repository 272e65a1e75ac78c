"""Single flight: callers asking for the same gap at once make one fetcher call.

Real processes (and threads) on one database. The fetcher holds its gap until every
caller has looked at the table and found the gap missing (a gap detector that reports
to a shared file), so all of them are asking at the same time; then the fetcher count
must be one and no row may exist twice.
"""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
import threading
from datetime import date

import pandas as pd
import pytest
import sqlalchemy as sa
from sqlalchemy import Float

from cacheness import SqlCacheStatus

PROCESSES = 4
THREADS = 6

WORKER = textwrap.dedent(
    """
    import fcntl, json, os, sys, time
    from datetime import date
    import pandas as pd
    from sqlalchemy import Float
    from cacheness import SqlCache

    url, counter, detections, ready, processes, index = sys.argv[1:]

    def append(path, line):
        with open(path, "a") as out:
            fcntl.flock(out, fcntl.LOCK_EX)
            out.write(line + "\\n")
            out.flush()
            fcntl.flock(out, fcntl.LOCK_UN)

    def seen_by():
        with open(detections) as lines:
            return set(lines.read().split())

    def fetch(symbol, start_date, end_date):
        append(counter, str(os.getpid()))
        deadline = time.monotonic() + 60  # hold the gap until every process asks for it
        while len(seen_by()) < int(processes) and time.monotonic() < deadline:
            time.sleep(0.01)
        days = pd.bdate_range(start_date, end_date)
        return pd.DataFrame({"date": days, "close": [float(d.day) for d in days]})

    def detector(query_params, cached_frame, cache):
        gaps = cache.detect_gaps(query_params, cached_frame)
        if gaps:
            append(detections, str(os.getpid()))
        return gaps

    cache = SqlCache.for_timeseries(url, data_fetcher=fetch, gap_detector=detector,
                                    time_increment="1B", multiprocess=True, close=Float)
    open(os.path.join(ready, index), "w").close()
    deadline = time.monotonic() + 60  # start together
    while len(os.listdir(ready)) < int(processes) and time.monotonic() < deadline:
        time.sleep(0.01)
    result = cache.get_result(symbol="AAPL", start_date=date(2024, 1, 1),
                              end_date=date(2024, 3, 29))
    print(json.dumps({"rows": len(result.data), "status": result.status.value,
                      "fetches": len(result.fetches)}))
    cache.close()
    """
)


def count_rows(db_url: str) -> tuple[int, int]:
    engine = sa.create_engine(db_url.replace("postgresql://", "postgresql+psycopg://"))
    try:
        with engine.connect() as connection:
            return tuple(
                connection.execute(
                    sa.text(
                        "SELECT count(*), count(DISTINCT symbol || CAST(date AS VARCHAR)) "
                        "FROM timeseries_cache"
                    )
                ).one()
            )
    finally:
        engine.dispose()


@pytest.mark.skipif(sys.platform == "win32", reason="the worker counts under fcntl locks")
def test_processes_asking_for_the_same_gap_fetch_it_once(db_url, tmp_path):
    script = tmp_path / "worker.py"
    script.write_text(WORKER)
    counter, detections = tmp_path / "fetches.txt", tmp_path / "detections.txt"
    counter.touch()
    detections.touch()
    ready = tmp_path / "ready"
    ready.mkdir()
    workers = [
        subprocess.Popen(
            [
                sys.executable,
                str(script),
                db_url,
                str(counter),
                str(detections),
                str(ready),
                str(PROCESSES),
                str(index),
            ],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for index in range(PROCESSES)
    ]
    outputs = []
    for worker in workers:
        out, err = worker.communicate(timeout=180)
        assert worker.returncode == 0, err
        outputs.append(json.loads(out))
    fetched_by = counter.read_text().split()
    assert len(fetched_by) == 1  # one fetcher call for four processes
    assert set(detections.read_text().split()) == {str(worker.pid) for worker in workers}
    business_days = len(pd.bdate_range(date(2024, 1, 1), date(2024, 3, 29)))
    assert [o["rows"] for o in outputs] == [business_days] * PROCESSES
    assert sorted(o["status"] for o in outputs) == ["cached"] * (PROCESSES - 1) + ["fetched"]
    assert count_rows(db_url) == (business_days, business_days)  # no row twice


def test_threads_asking_for_the_same_gap_fetch_it_once(make_cache):
    fetches: list[int] = []
    seen: set[int] = set()
    everyone_asked = threading.Event()
    guard = threading.Lock()

    def fetch(symbol, start_date, end_date):
        with guard:
            fetches.append(threading.get_ident())
        everyone_asked.wait(timeout=60)
        days = pd.bdate_range(start_date, end_date)
        return pd.DataFrame({"date": days, "close": 1.0})

    def detector(query_params, cached_frame, cache):
        gaps = cache.detect_gaps(query_params, cached_frame)
        if gaps:
            with guard:
                seen.add(threading.get_ident())
                if len(seen) == THREADS:
                    everyone_asked.set()
        return gaps

    cache = make_cache(data_fetcher=fetch, gap_detector=detector, time_increment="1B", close=Float)
    results: list = []

    def ask() -> None:
        result = cache.get_result(
            symbol="AAPL", start_date=date(2024, 1, 1), end_date=date(2024, 1, 31)
        )
        with guard:
            results.append(result)

    threads = [threading.Thread(target=ask) for _ in range(THREADS)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    assert len(fetches) == 1
    assert len(results) == THREADS
    assert sorted(r.status for r in results) == [SqlCacheStatus.CACHED] * (THREADS - 1) + [
        SqlCacheStatus.FETCHED
    ]
    assert {len(r.data) for r in results} == {23}
    assert cache.get_cache_stats()["total_records"] == 23


def test_a_lock_not_had_in_time_is_given_up_and_the_caller_fetches(make_cache, caplog):
    inside, release = threading.Event(), threading.Event()

    def slow(symbol, start_date, end_date):
        inside.set()
        release.wait(timeout=60)
        return pd.DataFrame({"date": pd.bdate_range(start_date, end_date), "close": 1.0})

    def quick(symbol, start_date, end_date):
        return pd.DataFrame({"date": pd.bdate_range(start_date, end_date), "close": 2.0})

    patient = make_cache(data_fetcher=slow, close=Float)
    impatient = make_cache(data_fetcher=quick, lock_timeout=0, close=Float)
    span = {"symbol": "AAPL", "start_date": date(2024, 1, 2), "end_date": date(2024, 1, 3)}
    filler = threading.Thread(target=lambda: patient.get_data(**span))
    filler.start()
    try:
        assert inside.wait(timeout=60)  # the patient cache holds the gap's lock
        with caplog.at_level("WARNING", logger="cacheness._sql_cache.cache"):
            result = impatient.get_result(**span)
        assert result.status is SqlCacheStatus.FETCHED
        assert result.data["close"].tolist() == [2.0, 2.0]
        assert "fetching without waiting longer" in caplog.text
    finally:
        release.set()
        filler.join(timeout=60)
    assert patient.get_data(**span)["close"].tolist() == [1.0, 1.0]  # the last writer wins
