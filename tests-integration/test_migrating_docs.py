"""docs/migrating.md runs: every row of its tables works, or raises the error it names
with a message that contains what to write now."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import cacheness
from cacheness import cached
from cacheness.storage import BlobStore, S3BlobBackend

PAGE = Path(__file__).resolve().parents[1] / "docs" / "migrating.md"
ROW = re.compile(r"^\| (?P<old>.+?) \| (?P<now>.+?) \| `(?P<code>.+?)` \| (?P<result>\w+) \|$")


def rows() -> list[dict[str, str]]:
    found = [m.groupdict() for m in map(ROW.match, PAGE.read_text().splitlines()) if m]
    return [row for row in found if row["result"] != "Result"]


def test_the_page_has_the_tables():
    results = {row["result"] for row in rows()}
    assert len(rows()) >= 60
    assert results == {"works", "TypeError", "AttributeError", "ConfigError"}


def run(row: dict[str, str], namespace: dict[str, Any]) -> str | None:
    """Run one row; return what went wrong, or None."""
    code = row["code"]
    try:
        eval(code, namespace)
    except Exception as exc:
        if row["result"] == "works":
            return f"{code}: raised {type(exc).__name__}: {exc}"
        if type(exc).__name__ != row["result"]:
            return f"{code}: raised {type(exc).__name__}, the page says {row['result']}"
        replacement = re.findall(r"`([^`]+)`", row["now"])[0]
        if replacement not in str(exc):
            return f"{code}: the message does not name {replacement!r}: {exc}"
        return None
    if row["result"] != "works":
        return f"{code}: worked, the page says {row['result']}"
    return None


def test_every_row_runs_in_page_order(tmp_path, monkeypatch):
    for name in ("CACHENESS_CONFIG", "CACHENESS_DIR"):
        monkeypatch.delenv(name, raising=False)
    cache = cacheness.cacheness(cache_dir=str(tmp_path / "cache"))
    store = BlobStore(tmp_path / "store")
    namespace = {
        "cacheness": cacheness,
        "cached": cached,
        "BlobStore": BlobStore,
        "S3BlobBackend": S3BlobBackend,
        "cache": cache,
        "store": store,
        "tmp": tmp_path,
    }
    try:
        problems = [problem for row in rows() if (problem := run(row, namespace))]
    finally:
        cache.close()
        store.close()
    assert problems == []
