"""The "Custom metadata tables" docs page is right: its examples run, in order.

The local examples run on a temporary SQLite cache; the team set-up is written for a
PostgreSQL server at ``db.internal`` and MinIO at ``minio.internal:9000``, replaced here
by the test's PostgreSQL schema and moto's S3 server over HTTP.
"""

from __future__ import annotations

import sqlalchemy as sa

DOC_DB = "postgresql://cache:secret@db.internal:5432/cache"
DOC_S3 = "http://minio.internal:9000"


def test_the_examples_run_in_order(
    docs_page, fresh_postgres_url, s3_bucket, monkeypatch, tmp_path, capsys
):
    endpoint = s3_bucket.endpoint
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", endpoint.access_key_id)
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", endpoint.secret_access_key)
    monkeypatch.chdir(tmp_path)

    def rewrite(code: str) -> str:
        return (
            code.replace(DOC_DB, fresh_postgres_url)
            .replace(DOC_S3, endpoint.endpoint_url)
            .replace('"team-cache"', f'"{s3_bucket.name}"')
        )

    page = docs_page("custom-metadata.md")
    assert len(page.blocks()) >= 7
    namespace = page.run(module="custom_metadata_docs", rewrite=rewrite)
    out = capsys.readouterr().out
    assert "('exp_001', 'xgboost'), ('exp_002', 'lightgbm')" in out
    assert "{'lightgbm': 0.91, 'xgboost': 0.885" in out

    engine = sa.create_engine(
        sa.engine.make_url(fresh_postgres_url).set(drivername="postgresql+psycopg")
    )
    with engine.connect() as conn:
        tables = set(sa.inspect(conn).get_table_names())
        rows = conn.exec_driver_sql("SELECT experiment_id FROM custom_experiments").all()
    engine.dispose()
    assert {"cacheness_entries", "custom_experiments"} <= tables
    assert rows == [("exp_100",)]
    listing = s3_bucket.client().list_objects_v2(Bucket=s3_bucket.name)
    assert listing.get("KeyCount", 0) == 1
    assert namespace["team"] is not None


def test_the_page_quotes_the_benchmark_and_is_in_the_nav(docs_page):
    page = docs_page("custom-metadata.md")
    assert "benchmarks/custom_metadata.py" in page.text
    assert "custom-metadata.md" in (page.path.parent.parent / "mkdocs.yml").read_text()
