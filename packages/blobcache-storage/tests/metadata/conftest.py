"""Shared helpers of the metadata backend tests: ground truth read around the backends."""

from __future__ import annotations

import base64
import json
import os
import sqlite3
import threading
import warnings
from collections.abc import Callable, Mapping
from contextlib import closing
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from cacheness.storage import Entry

EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
FIELDS = Entry.__struct_fields__


def entry_from_row(row: Mapping[str, Any]) -> Entry:
    """Decode a raw SQL row with plain ``json`` and integer microseconds (no backend code)."""
    values = dict(row)
    for name in ("created_at", "updated_at", "accessed_at"):
        values[name] = EPOCH + timedelta(microseconds=values[name])
    if values.get("metadata_text") is not None:  # PostgreSQL's exact text of the jsonb
        values["metadata"] = values["metadata_text"]
    for name in ("metadata", "format_info"):
        if isinstance(values[name], str):
            values[name] = json.loads(values[name])
    if values["inline"] is not None:
        values["inline"] = bytes(values["inline"])
    return Entry(**{name: values[name] for name in FIELDS})


def read_sqlite(path: Path, table: str = "cacheness_entries") -> dict[str, Entry]:
    with closing(sqlite3.connect(path)) as conn:
        conn.row_factory = sqlite3.Row
        rows = conn.execute(f'SELECT * FROM "{table}"').fetchall()
    return {row["key"]: entry_from_row(row) for row in rows}


def read_json_file(path: Path) -> dict[str, Entry]:
    if not path.exists():
        return {}
    document = json.loads(path.read_text(encoding="utf-8"))
    assert document["format"] == "cacheness.storage.metadata"
    assert document["version"] == 1
    entries = {}
    for item in document["entries"]:
        for name in ("created_at", "updated_at", "accessed_at"):
            item[name] = datetime.fromisoformat(item[name])
        if item["inline"] is not None:
            item["inline"] = base64.b64decode(item["inline"])
        entries[item["key"]] = Entry(**item)
    return entries


def exit_code_in_fork(work: Callable[[], bool]) -> int:
    """Run ``work`` in a forked child; return its exit code (0 when ``work`` returned True)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)  # fork with threads (3.12+)
        pid = os.fork()
    if pid == 0:  # the child
        code = 1
        try:
            code = 0 if work() else 2
        finally:
            os._exit(code)
    _, status = os.waitpid(pid, 0)
    return os.waitstatus_to_exitcode(status)


def open_concurrently(count: int, open_backend: Callable[[], Any]) -> None:
    """Open ``count`` backends at once from threads, each writing ``k<i>``; re-raise errors."""
    barrier = threading.Barrier(count)
    errors: list[BaseException] = []

    def open_and_write(index: int) -> None:
        try:
            barrier.wait()
            with open_backend() as backend:
                backend.put(Entry.new(f"k{index}"))
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=open_and_write, args=(i,)) for i in range(count)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    if errors:
        raise errors[0]


@pytest.fixture
def concurrently() -> Callable[[int, Callable[[], Any]], None]:
    return open_concurrently


@pytest.fixture
def in_fork() -> Callable[[Callable[[], bool]], int]:
    if not hasattr(os, "fork"):
        pytest.skip("needs os.fork")
    return exit_code_in_fork


@pytest.fixture
def sqlite_reader() -> Callable[[Path], dict[str, Entry]]:
    return read_sqlite


@pytest.fixture
def json_reader() -> Callable[[Path], dict[str, Entry]]:
    return read_json_file


@pytest.fixture
def row_decoder() -> Callable[[Mapping[str, Any]], Entry]:
    return entry_from_row
