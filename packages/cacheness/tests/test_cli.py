"""The ``cacheness`` command line, run as a subprocess for every command.

It is the storage command line with a cache behind it: opened by ``--cache-dir``,
``--config`` or ``CACHENESS_*`` variables; filters are key parameters; ``gc`` removes
expired entries too. The ``blobcache`` tests cover the shared machinery in depth.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from cacheness import cacheness

pytest.importorskip("click")
pytest.importorskip("rich")


def run(
    *args: str, stdin: str | None = None, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    clean = {k: v for k, v in os.environ.items() if not k.startswith("CACHENESS_")}
    return subprocess.run(
        [sys.executable, "-m", "cacheness", *args],
        capture_output=True, text=True, input=stdin, check=False,
        env={**clean, "COLUMNS": "160", **(env or {})},
    )  # fmt: skip


def ok_json(*args: str, env: dict[str, str] | None = None) -> Any:
    result = run("--json", *args, env=env)
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


@pytest.fixture
def cache_dir(tmp_path: Path) -> str:
    directory = str(tmp_path / "cache")
    past = [datetime.now(UTC) - timedelta(hours=3)]
    with cacheness(cache_dir=directory, clock=lambda: past[0]) as cache:
        cache.put({"auc": 0.9}, model="resnet", epochs=10, ttl_seconds=60)  # expired now
        cache.put(b"w" * 50_000, model="resnet", epochs=20)
        cache.put([1, 2], dataset="iris", ttl_seconds=86_400)
    return directory


def test_ls_info_stats(cache_dir):
    listed = ok_json("--cache-dir", cache_dir, "ls")
    assert sorted(json.dumps(e["params"], sort_keys=True) for e in listed) == sorted(
        [
            '{"epochs": 10, "model": "resnet"}',
            '{"epochs": 20, "model": "resnet"}',
            '{"dataset": "iris"}',
        ]
    )
    assert len(ok_json("--cache-dir", cache_dir, "ls", "model=resnet")) == 2
    assert len(ok_json("--cache-dir", cache_dir, "ls", "model=resnet", "epochs=20")) == 1
    human = run("--cache-dir", cache_dir, "ls")
    assert human.returncode == 0
    assert "model='resnet'" in human.stdout
    assert "3 h ago" in human.stdout
    assert "in 20 h" in human.stdout
    info = ok_json("--cache-dir", cache_dir, "info", "dataset=iris")
    assert (info["params"], info["ttl_seconds"]) == ({"dataset": "iris"}, 86_400.0)
    by_key = ok_json("--cache-dir", cache_dir, "info", info["cache_key"])
    assert by_key["cache_key"] == info["cache_key"]
    assert (
        ok_json("--cache-dir", cache_dir, "info", "model=resnet,epochs=20")["params"]["epochs"]
        == 20
    )
    stats = ok_json("--cache-dir", cache_dir, "stats")
    assert (stats["entries"], stats["metadata_backend"]) == (3, "sqlite")


def test_environment_and_config_file_open_the_cache(cache_dir, tmp_path):
    assert ok_json("stats", env={"CACHENESS_DIR": cache_dir})["entries"] == 3
    config = tmp_path / "cacheness.json"
    config.write_text(json.dumps({"cache_dir": cache_dir}))
    assert ok_json("--config", str(config), "stats")["entries"] == 3
    assert ok_json("stats", env={"CACHENESS_CONFIG": str(config)})["entries"] == 3
    shown = ok_json("--config", str(config), "config", "show")
    assert shown["cache_dir"] == cache_dir
    assert ok_json("--config", str(config), "config", "validate")["valid"] is True
    bad = tmp_path / "bad.json"
    bad.write_text(
        json.dumps({"cache_dir": cache_dir, "max_entries": -5, "eviction_policy": "lfru"})
    )
    result = run("--json", "--config", str(bad), "config", "validate")
    assert result.returncode == 2
    assert len(json.loads(result.stdout)["problems"]) == 2
    result = run("--config", str(bad), "stats")
    assert result.returncode == 2
    assert "Traceback" not in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1


def test_verify_repair_gc_rm_clear(cache_dir):
    assert ok_json("--cache-dir", cache_dir, "verify", "--deep")["issues"] == []
    assert ok_json("--cache-dir", cache_dir, "repair", "--dry-run")["issues"] == []
    dry = ok_json("--cache-dir", cache_dir, "gc", "--dry-run")
    assert dry["expired_removed"] == 1
    assert ok_json("--cache-dir", cache_dir, "gc")["expired_removed"] == 1
    assert len(ok_json("--cache-dir", cache_dir, "ls")) == 2
    result = run("--cache-dir", cache_dir, "rm", "model=resnet", stdin="y\n")
    assert result.returncode == 0
    assert "removed 1 entry" in result.stdout
    assert run("--cache-dir", cache_dir, "clear").returncode == 2
    assert ok_json("--cache-dir", cache_dir, "clear", "--yes") == {"removed": 1}


def test_export_import_migrate(cache_dir, tmp_path):
    archive = str(tmp_path / "a.tar.zst")
    assert ok_json("--cache-dir", cache_dir, "export", archive, "model=resnet")["entries"] == 2
    other = str(tmp_path / "other")
    assert ok_json("--cache-dir", other, "import", archive)["entries"] == 2
    with cacheness(cache_dir=other) as cache:
        assert cache.get(model="resnet", epochs=20) == b"w" * 50_000
    moved = ok_json("--cache-dir", cache_dir, "migrate", "--to-dir", str(tmp_path / "moved"))
    assert moved["entries"] == 3
    again = run("--cache-dir", cache_dir, "migrate", "--to-dir", str(tmp_path / "moved"))
    assert again.returncode == 0
    assert "migrated 0 entries" in again.stdout
    assert run("--cache-dir", cache_dir, "migrate").returncode == 2


def test_the_console_script_is_installed():
    script = Path(sys.executable).parent / "cacheness"
    result = subprocess.run([str(script), "--help"], capture_output=True, text=True, check=False)
    assert result.returncode == 0
    for command in (
        "ls",
        "info",
        "stats",
        "verify",
        "repair",
        "gc",
        "rm",
        "clear",
        "export",
        "import",
        "migrate",
        "config",
    ):
        assert command in result.stdout
