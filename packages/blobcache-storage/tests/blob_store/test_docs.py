"""The code on the BlobStore docs page runs (blocks marked ``<!-- not run`` excepted)."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

PAGE = Path(__file__).resolve().parents[4] / "docs" / "blob-store.md"
BLOCK = re.compile(r"(<!-- not run[^>]*-->\n)?```python\n(.*?)```", re.S)


def runnable_blocks() -> list[str]:
    return [code for skip, code in BLOCK.findall(PAGE.read_text(encoding="utf-8")) if not skip]


def test_the_page_has_examples():
    assert len(runnable_blocks()) >= 8


def test_the_examples_run_in_order(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    namespace: dict = {"__name__": "blob_store_docs"}
    for number, code in enumerate(runnable_blocks(), start=1):
        try:
            exec(compile(code, f"{PAGE.name} block {number}", "exec"), namespace)
        except Exception as exc:
            pytest.fail(f"block {number} of {PAGE.name} failed: {exc!r}\n{code}")
    out = capsys.readouterr().out
    assert "models/resnet/v2" in out
    assert "damaged size_mismatch" in out
