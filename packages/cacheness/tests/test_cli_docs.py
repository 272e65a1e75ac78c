"""The "Command line" docs page shows real output: every command on it runs here.

The page's Python block fills a cache; each ``$ cacheness ...`` line of its console
blocks then runs as a subprocess, in order, and its output must be what the page shows,
ages, times, round trips and blob names aside (they differ from run to run).
"""

from __future__ import annotations

import os
import re
import shlex
import subprocess
import sys
from pathlib import Path

import pytest

pytest.importorskip("click")
pytest.importorskip("rich")

DOC_DIR = "/home/ana/caches/demo"
FAILING = {"clear": 2, "--config nope.toml stats": 2}
_AGE = re.compile(r"\b(\d+ (s|min|h|d|y) ago|in \d+ (s|min|h|d|y)|now)\b")
_TIME = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?\+00:00")
_REF = re.compile(r"\b[0-9a-f]{2}/[0-9a-f]{32}\b")
_MS = re.compile(r"\b\d+\.\d ms\b")


def normalized(text: str) -> str:
    text = _TIME.sub("TIME", text)
    text = _AGE.sub("AGE", text)
    text = _REF.sub("REF", text)
    text = _MS.sub("MS", text)
    text = re.sub(r"([━─]+)", "━", text)
    return "\n".join(re.sub(r" +", " ", line).strip() for line in text.strip().splitlines())


def commands(page) -> list[tuple[str, str]]:
    """(command, expected output) for every ``$ cacheness`` line of the page, in order."""
    found = []
    for block in page.blocks("console"):
        pieces = re.split(r"^\$ cacheness (.*)$", block, flags=re.M)[1:]
        found += [(pieces[i], pieces[i + 1]) for i in range(0, len(pieces), 2)]
    return found


def test_every_command_on_the_page_prints_what_the_page_shows(docs_page, tmp_path, monkeypatch):
    page = docs_page("cli.md")
    cache_dir = tmp_path / "demo"
    env = {k: v for k, v in os.environ.items() if not k.startswith("CACHENESS_")}
    env.update(CACHENESS_DIR=str(cache_dir), COLUMNS="200")  # wider than the page: no folding
    for name in [n for n in os.environ if n.startswith("CACHENESS_")]:
        monkeypatch.delenv(name)
    monkeypatch.setenv("CACHENESS_DIR", str(cache_dir))
    page.run(module="cli_docs")  # fills the cache
    listed = commands(page)
    assert {command.split()[0] for command, _ in listed} >= {
        "ls", "info", "stats", "verify", "gc", "rm", "clear", "export", "migrate", "config",
    }  # fmt: skip
    for command, expected in listed:
        result = subprocess.run(
            [sys.executable, "-m", "cacheness", *shlex.split(command)],
            stdout=subprocess.PIPE, stderr=subprocess.STDOUT,  # as on a terminal: 2>&1
            text=True, check=False, cwd=tmp_path, env=env,
        )  # fmt: skip
        assert result.returncode == FAILING.get(command, 0), (command, result.stdout)
        shown = result.stdout.replace(str(cache_dir), DOC_DIR)
        assert normalized(shown) == normalized(expected), command
    assert Path(tmp_path / "resnet.tar.zst").exists()
