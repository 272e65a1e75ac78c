"""The "Backup, share and migrate" docs page is right: its examples run, in order.

The migration example is written for the team's PostgreSQL at ``db.internal`` and MinIO
at ``minio.internal:9000``; here it runs against the test's PostgreSQL schema and moto's
S3 server over HTTP. Every ``print(...)  # expected`` line must print what it says.
"""

from __future__ import annotations

import re

import pytest


@pytest.fixture
def page(docs_page):
    return docs_page("portability.md")


def test_the_examples_run_and_print_what_the_page_says(page, services, capsys):
    assert len(page.blocks()) >= 6
    page.run(module="portability_docs", rewrite=services)
    printed = capsys.readouterr().out.splitlines()
    expected = [
        comment.strip()
        for block in page.blocks()
        for comment in re.findall(r"^print\(.*\)[ \t]+#(.*)$", block, flags=re.M)
    ]
    lines_after = [
        comment.strip().removeprefix("# ")
        for block in page.blocks()
        for comment in re.findall(r"^print\(.*\)\n(# .*)$", block, flags=re.M)
    ]
    wanted = sorted([*expected, *lines_after], key=lambda line: _position(page, line))
    assert printed == wanted, (printed, wanted)


def _position(page, line: str) -> int:
    return page.text.index(line)


def test_the_speed_table_quotes_the_benchmark(page):
    import json
    from pathlib import Path

    results = json.loads(
        (Path(__file__).resolve().parents[1] / "benchmarks/results/portability.json").read_text()
    )
    for name in ("small", "array"):
        for field in ("export_zstd", "import_zstd", "migrate", "tar", "cp"):
            assert f"{results[name][field]:.1f} s" in page.text, (name, field)
