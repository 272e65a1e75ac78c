"""The ``blobcache`` command line, run as a subprocess for every command.

Exit codes (0 ok, 1 problems, 2 usage), ``--json`` output parsed and checked against
the store, one-line errors (a traceback only with ``--debug``), and once under a
pseudo-terminal to see the progress bar drawn.
"""

from __future__ import annotations

import json
import os
import pty
import random
import select
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from cacheness.storage import BlobStore

pytest.importorskip("click")
pytest.importorskip("rich")


def blobcache(
    *args: str, stdin: str | None = None, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "cacheness.storage", *args],
        capture_output=True,
        text=True,
        input=stdin,
        check=False,
        env={**os.environ, "COLUMNS": "120", **(env or {})},
    )


def ok_json(*args: str) -> Any:
    result = blobcache("--json", *args)
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


@pytest.fixture
def store_dir(tmp_path: Path) -> str:
    with BlobStore(tmp_path / "store") as store:
        store.put(
            random.Random(1).randbytes(100_000), key="runs/1/weights", metadata={"project": "ml"}
        )
        store.put({"lr": 0.1}, key="runs/1/config", metadata={"project": "ml"})
        store.put("hello", key="docs/readme", metadata={"project": "web"})
    return str(tmp_path / "store")


def test_ls_filters_sort_limit_and_json(store_dir):
    listed = ok_json("--store", store_dir, "ls")
    assert [e["key"] for e in listed] == ["docs/readme", "runs/1/config", "runs/1/weights"]
    assert (
        ok_json("--store", store_dir, "ls", "project=ml", "--sort", "-size")[0]["key"]
        == "runs/1/weights"
    )
    assert [e["key"] for e in ok_json("--store", store_dir, "ls", "--prefix", "docs/")] == [
        "docs/readme"
    ]
    where = json.dumps({"size": {"$gt": 1000}})
    assert [e["key"] for e in ok_json("--store", store_dir, "ls", "--where", where)] == [
        "runs/1/weights"
    ]
    assert len(ok_json("--store", store_dir, "ls", "--limit", "1")) == 1
    human = blobcache("--store", store_dir, "ls")
    assert human.returncode == 0
    assert "97.7 KiB" in human.stdout
    assert "3 entries" in human.stdout
    assert "ago" in human.stdout


def test_info_stats_verify_repair_gc(store_dir):
    info = ok_json("--store", store_dir, "info", "runs/1/weights")
    assert (info["key"], info["size"], info["metadata"]) == (
        "runs/1/weights",
        100_000,
        {"project": "ml"},
    )
    assert blobcache("--store", store_dir, "info", "nope").returncode == 1
    stats = ok_json("--store", store_dir, "stats")
    assert (stats["entries"], stats["metadata_backend"]) == (3, "sqlite")
    assert ok_json("--store", store_dir, "verify", "--deep") == {"checked": 3, "issues": []}
    assert ok_json("--store", store_dir, "repair", "--dry-run")["issues"] == []
    gc = ok_json("--store", store_dir, "gc", "--min-age", "0")
    assert gc == {
        "dry_run": False,
        "expired_removed": 0,
        "orphans_removed": 0,
        "temp_files_removed": 0,
    }

    # damage a blob: verify finds it (exit 1), repair removes it (exit 1: problems found)
    with BlobStore(store_dir) as store:
        ref = store.get_metadata("runs/1/weights").blob_ref
        store.blobs.write_bytes(store.blobs.name_for(ref), b"x" * 100_000)
        store.blobs.write_bytes("stray", b"orphan")
    result = blobcache("--store", store_dir, "verify", "--deep")
    assert result.returncode == 1
    assert "runs/1/weights: hash_mismatch" in result.stdout
    assert "verify: 3/3" in result.stderr  # plain progress lines off a terminal
    result = blobcache("--json", "--store", store_dir, "repair", "--min-age", "0")
    assert result.returncode == 1
    assert json.loads(result.stdout)["entries_removed"] == ["runs/1/weights"]
    assert ok_json("--store", store_dir, "verify")["issues"] == []


def test_health_reports_each_backend_and_exits_1_when_one_is_down(store_dir, tmp_path):
    report = ok_json("--store", store_dir, "health")
    assert report["healthy"] is True
    assert [(b["role"], b["backend"], b["reachable"]) for b in report["backends"]] == [
        ("metadata", "sqlite", True),
        ("blob", "filesystem", True),
    ]
    shown = blobcache("--store", store_dir, "health")
    assert shown.returncode == 0, shown.stderr
    assert shown.stdout.splitlines()[0].startswith("metadata (sqlite): ok in ")

    # an S3 endpoint nobody listens on: the blob backend is reported down, exit 1
    config = tmp_path / "down.json"
    config.write_text(
        json.dumps(
            {
                "path": str(tmp_path / "index"),
                "blob_backend": "s3",
                "blob_options": {
                    "bucket": "b",
                    "endpoint_url": "http://127.0.0.1:9",
                    "region": "us-east-1",
                },
                "signing": False,
                "allow_unsafe_pairing": True,
            }
        )
    )
    keys = {"AWS_ACCESS_KEY_ID": "x", "AWS_SECRET_ACCESS_KEY": "y"}
    result = blobcache("--json", "--config", str(config), "health", "--timeout", "5", env=keys)
    assert result.returncode == 1, result.stderr
    report = json.loads(result.stdout)
    assert report["healthy"] is False
    metadata, blob = report["backends"]
    assert (metadata["reachable"], blob["backend"], blob["reachable"]) == (True, "s3", False)
    assert "unreachable" in blob["error"]


def test_rm_asks_unless_yes_and_clear_needs_yes(store_dir):
    result = blobcache("--store", store_dir, "rm", "--prefix", "runs/", stdin="n\n")
    assert result.returncode == 1
    assert "delete 2 entries?" in result.stderr
    assert len(ok_json("--store", store_dir, "ls")) == 3
    result = blobcache("--store", store_dir, "rm", "--prefix", "runs/", stdin="y\n")
    assert result.returncode == 0
    assert "removed 2 entries" in result.stdout
    assert ok_json("--store", store_dir, "rm", "project=web", "--yes") == {"removed": 1}
    assert blobcache("--store", store_dir, "rm").returncode == 2  # no selection
    result = blobcache("--store", store_dir, "clear")
    assert result.returncode == 2
    assert "--yes" in result.stderr
    assert ok_json("--store", store_dir, "clear", "--yes") == {"removed": 0}


def test_export_import_migrate(store_dir, tmp_path):
    archive = str(tmp_path / "backup.tar.zst")
    report = ok_json("--store", store_dir, "export", archive, "project=ml")
    assert (report["entries"], report["ok"]) == (2, True)
    target = str(tmp_path / "target")
    assert ok_json("--store", target, "import", archive)["entries"] == 2
    again = ok_json("--store", target, "import", archive)
    assert (again["entries"], [i["problem"] for i in again["skipped"]]) == (
        0,
        ["present", "present"],
    )
    moved = ok_json("--store", store_dir, "migrate", "--to-dir", str(tmp_path / "moved"))
    assert moved["entries"] == 3
    with BlobStore(tmp_path / "moved") as moved_store, BlobStore(store_dir) as source:
        assert moved_store.get("runs/1/weights") == source.get("runs/1/weights")
    # export to stdout, import from stdin
    piped = subprocess.run(
        f"{sys.executable} -m cacheness.storage --store {store_dir} export - --compression gzip | "
        f"{sys.executable} -m cacheness.storage --json --store {tmp_path / 'piped'} import -",
        shell=True, capture_output=True, text=True, check=True,
    )  # fmt: skip
    assert json.loads(piped.stdout)["entries"] == 3
    (tmp_path / "junk").write_bytes(b"junk" * 100)
    result = blobcache("--store", target, "import", str(tmp_path / "junk"))
    assert result.returncode == 1
    assert result.stderr.strip().count("\n") == 0
    assert result.stderr.startswith("error: IntegrityError")


def test_config_show_and_validate(tmp_path, store_dir):
    config = tmp_path / "store.json"
    url = "postgresql://ana:hunter2@db.example/cache"
    options = {"url": url, "password": "hunter2"}
    config.write_text(json.dumps({"metadata_backend": "postgresql", "metadata_options": options}))
    shown = ok_json("--config", str(config), "config", "show")  # shown without connecting
    assert shown["metadata_options"] == {
        "url": "postgresql://ana:***@db.example/cache",
        "password": "***",
    }
    assert ok_json("--store", store_dir, "config", "validate") == {"valid": True, "problems": []}
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps({"path": store_dir, "inline_threshold": -1}))
    result = blobcache("--json", "--config", str(bad), "config", "validate")
    assert result.returncode == 2
    assert "inline_threshold" in json.loads(result.stdout)["problems"][0]
    assert (
        json.loads(blobcache("--json", "stats", env={"BLOBCACHE_STORE": store_dir}).stdout)[
            "entries"
        ]
        == 3
    )


def test_errors_are_one_line_unless_debug(tmp_path):
    result = blobcache("stats")
    assert result.returncode == 2
    assert result.stderr.strip() == (
        "error: ConfigError: name a store: --store DIR or --config FILE (or set BLOBCACHE_STORE)"
    )
    result = blobcache("--store", str(tmp_path), "ls", "--where", "{not json")
    assert result.returncode == 2
    assert "Traceback" not in result.stderr
    result = blobcache("--store", str(tmp_path), "ls", "--sort", "nonsense")
    assert result.returncode == 2
    assert "Traceback" not in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1
    result = blobcache("--debug", "--store", str(tmp_path), "ls", "--sort", "nonsense")
    assert result.returncode == 2
    assert "Traceback" in result.stderr
    assert blobcache("--store", str(tmp_path), "frobnicate").returncode == 2
    assert blobcache("--help").returncode == 0


def run_in_pty(args: list[str]) -> tuple[int, str]:
    """Run a command with stdout and stderr on a pseudo-terminal; return (exit code, output)."""
    main, child = pty.openpty()
    process = subprocess.Popen(
        args,
        stdin=child,
        stdout=child,
        stderr=child,
        env={**os.environ, "COLUMNS": "100", "TERM": "xterm"},
    )
    os.close(child)
    chunks = []
    while True:
        ready, _, _ = select.select([main], [], [], 60)
        if not ready:
            break
        try:
            data = os.read(main, 65536)
        except OSError:  # EIO: the child closed the terminal
            break
        if not data:
            break
        chunks.append(data)
    os.close(main)
    return process.wait(timeout=60), b"".join(chunks).decode("utf-8", "replace")


def test_a_progress_bar_is_drawn_on_a_terminal(store_dir, tmp_path):
    code, output = run_in_pty(
        [
            sys.executable,
            "-m",
            "cacheness.storage",
            "--store",
            store_dir,
            "export",
            str(tmp_path / "a.tar"),
        ]
    )
    assert code == 0, output
    assert "━" in output  # rich's bar
    assert "3/3" in output
    assert "exported 3 entries" in output
