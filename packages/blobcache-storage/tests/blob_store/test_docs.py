"""The code on the BlobStore docs page runs (blocks marked ``<!-- not run`` excepted)."""

from __future__ import annotations


def test_the_examples_run_in_order(tmp_path, monkeypatch, capsys, docs_page):
    monkeypatch.chdir(tmp_path)
    page = docs_page("blob-store.md")
    assert len(page.blocks()) >= 8
    page.run(module="blob_store_docs")
    out = capsys.readouterr().out
    assert "models/resnet/v2" in out
    assert "damaged size_mismatch" in out
