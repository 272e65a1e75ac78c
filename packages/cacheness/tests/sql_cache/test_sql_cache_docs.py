"""The "SqlCache" docs page is right: its code runs, its tables name what exists."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
import sqlalchemy as sa

from cacheness import SqlCache, SqlCacheStatus

REPO = Path(__file__).resolve().parents[4]
DOC_DB = "postgresql://cache@db.internal/cache"
RESULTS = REPO / "benchmarks" / "results" / "sql_cache.json"


@pytest.fixture
def page(docs_page):
    return docs_page("sql-cache.md")


def test_the_examples_run_in_order(page, fresh_postgres_url):
    assert len(page.blocks()) >= 10
    try:
        namespace = page.run(
            module="sql_cache_docs", rewrite=lambda code: code.replace(DOC_DB, fresh_postgres_url)
        )
    finally:
        engine = sa.create_engine(fresh_postgres_url)
        with engine.begin() as connection:
            connection.execute(sa.text("DROP SCHEMA IF EXISTS market_data CASCADE"))
        engine.dispose()
    assert namespace["api"].calls  # the fake API was called, and counted


def test_the_builder_table_lists_every_builder(page):
    table = page.text.split("## Builders", 1)[1].split("\n## ", 1)[0]
    builders = {
        name
        for name in vars(SqlCache)
        if name.startswith(("with_", "for_")) and not name.startswith("_")
    }
    assert builders == set(re.findall(r"SqlCache\.(\w+)\(", table))


def test_the_status_table_lists_every_status(page):
    table = page.text.split("| status | meaning |", 1)[1].split("\n\n", 1)[0]
    assert {status.name for status in SqlCacheStatus} == set(re.findall(r"\| `(\w+)` \|", table))


def test_the_speed_section_quotes_the_committed_benchmark(page):
    results = json.loads(RESULTS.read_text())
    speed = page.text.split("## Speed", 1)[1]
    for backend, figures in results["results"].items():
        for workload in ("one symbol-year", "50 symbols"):
            ratio = figures[workload]["SqlCache.get_data"]["vs_read_sql"]
            assert f"{ratio:.2f}\N{MULTIPLICATION SIGN}" in speed, (backend, workload, ratio)
            assert ratio <= 1.5, (backend, workload, ratio)  # the target the page states
