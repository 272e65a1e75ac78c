"""Smoke tests: the service fixtures give real, reachable servers."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
import urllib.request
from pathlib import Path

import pytest

from cacheness.storage.testing.services import POSTGRES_URL_ENV, REQUIRE_SERVICES_ENV


def test_postgres_session_database_accepts_tables(postgres_url):
    import sqlalchemy as sa

    assert postgres_url.startswith("postgresql+psycopg://")
    engine = sa.create_engine(postgres_url)
    try:
        with engine.begin() as conn:
            conn.execute(sa.text("CREATE TABLE smoke (id int PRIMARY KEY, name text)"))
            conn.execute(sa.text("INSERT INTO smoke VALUES (1, 'one'), (2, 'two')"))
        with engine.connect() as conn:
            rows = conn.execute(sa.text("SELECT name FROM smoke ORDER BY id")).scalars().all()
            database = conn.execute(sa.text("SELECT current_database()")).scalar_one()
            conn.execute(sa.text("DROP TABLE smoke"))
            conn.commit()
    finally:
        engine.dispose()
    assert rows == ["one", "two"]
    assert database.startswith("cacheness_test_")  # a database of this session, not 'postgres'


def test_fresh_postgres_url_has_an_empty_schema_of_its_own(fresh_postgres_url):
    import sqlalchemy as sa

    engine = sa.create_engine(fresh_postgres_url)
    try:
        with engine.begin() as conn:
            schema = conn.execute(sa.text("SELECT current_schema()")).scalar_one()
            conn.execute(sa.text("CREATE TABLE t (x int)"))
            tables = (
                conn.execute(
                    sa.text(
                        "SELECT table_name FROM information_schema.tables WHERE table_schema = :s"
                    ),
                    {"s": schema},
                )
                .scalars()
                .all()
            )
    finally:
        engine.dispose()
    assert schema.startswith("t_")
    assert tables == ["t"]


def test_s3_put_and_get_over_real_http(s3_bucket):
    client = s3_bucket.client()
    client.put_object(Bucket=s3_bucket.name, Key="smoke/hello.txt", Body=b"hello over http")
    body = client.get_object(Bucket=s3_bucket.name, Key="smoke/hello.txt")["Body"].read()
    assert body == b"hello over http"

    endpoint = s3_bucket.endpoint.endpoint_url
    assert endpoint.startswith("http://127.0.0.1:")
    # The server is a real HTTP listener: fetch the object with a plain HTTP GET of a
    # presigned URL, bypassing boto3's transport entirely.
    url = client.generate_presigned_url(
        "get_object", Params={"Bucket": s3_bucket.name, "Key": "smoke/hello.txt"}, ExpiresIn=60
    )
    assert url.startswith(endpoint)
    with urllib.request.urlopen(url, timeout=30) as response:
        assert response.status == 200
        assert response.read() == b"hello over http"


def test_each_test_gets_a_fresh_bucket(s3_bucket):
    listing = s3_bucket.client().list_objects_v2(Bucket=s3_bucket.name)
    assert listing["KeyCount"] == 0


PROBE_TEST = textwrap.dedent(
    """
    def test_needs_postgres(postgres_url):
        assert postgres_url
    """
)


def _run_probe(tmp_path: Path, require: str) -> subprocess.CompletedProcess[str]:
    (tmp_path / "test_probe.py").write_text(PROBE_TEST)
    env = dict(os.environ)
    env[POSTGRES_URL_ENV] = "postgresql+psycopg://nobody@127.0.0.1:1/none"
    env[REQUIRE_SERVICES_ENV] = require
    return subprocess.run(
        [sys.executable, "-m", "pytest", "-p", "cacheness.storage.testing.services",
         "-q", "-rs", "-p", "no:cacheprovider", str(tmp_path / "test_probe.py")],
        cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120,
    )  # fmt: skip


@pytest.mark.parametrize(("require", "outcome"), [("1", "1 error"), ("", "1 skipped")])
def test_missing_service_skips_or_fails_as_the_environment_asks(tmp_path, require, outcome):
    result = _run_probe(tmp_path, require)
    assert outcome in result.stdout, result.stdout + result.stderr
    assert "unreachable" in result.stdout
    assert result.returncode == (1 if require else 0)


def test_bucket_with_more_than_a_thousand_objects_is_cleaned_up(s3_endpoint):
    from cacheness.storage.testing import services

    fixture = services.s3_bucket.__wrapped__(s3_endpoint, "00" * 32)  # the generator
    bucket = next(fixture)
    client = bucket.client()
    for index in range(1005):
        client.put_object(Bucket=bucket.name, Key=f"k/{index:04d}", Body=b"x")
    with pytest.raises(StopIteration):
        next(fixture)  # teardown
    names = [b["Name"] for b in client.list_buckets()["Buckets"]]
    assert bucket.name not in names
