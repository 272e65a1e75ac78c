"""The docs claim only what exists: each page says what it needs, the README and the home
page run, the reference covers the whole public surface of both packages."""

from __future__ import annotations

import importlib.util
import re
from pathlib import Path

import pytest
import yaml

import cacheness
import cacheness.storage
from cacheness.storage import errors

REPO = Path(__file__).resolve().parents[1]
DOCS = REPO / "docs"
README = (REPO / "README.md").read_text(encoding="utf-8")


def nav_pages() -> list[str]:
    config = yaml.load((REPO / "mkdocs.yml").read_text(), Loader=yaml.BaseLoader)

    def walk(items: list) -> list[str]:
        found: list[str] = []
        for item in items:
            for value in item.values():
                found += walk(value) if isinstance(value, list) else [value]
        return found

    return walk(config["nav"])


def test_every_page_is_in_the_nav():
    pages = {str(p.relative_to(DOCS)) for p in DOCS.rglob("*.md")}
    assert pages == set(nav_pages())


@pytest.mark.parametrize("page", nav_pages())
def test_every_page_says_what_it_needs(page):
    text = (DOCS / page).read_text(encoding="utf-8")
    before_code = text.split("```", 1)[0]
    if page == "reference/errors.md":
        before_code = text  # one mkdocstrings block: the package is named in the title
        assert "cacheness" in before_code
        return
    assert re.search(r"^Needs: .*`", before_code, re.M), page


@pytest.mark.parametrize("page", [p for p in nav_pages() if p.endswith(".md")])
def test_blocks_that_need_services_say_so(page):
    text = (DOCS / page).read_text(encoding="utf-8")
    for block in re.findall(r"```python\n(.*?)```", text, re.S):
        if re.search(r"db\.internal|minio\.internal", block):
            assert block.startswith("# needs:"), block[:200]


def test_no_cli_is_claimed_unless_there_is_one():
    pyproject = (REPO / "packages" / "cacheness" / "pyproject.toml").read_text()
    modules = ("cacheness.cli", "cacheness._cli", "cacheness.__main__")
    has_cli = "[project.scripts]" in pyproject or any(
        importlib.util.find_spec(module) is not None for module in modules
    )
    for text in (README, (DOCS / "index.md").read_text(encoding="utf-8")):
        table = text.split("\n\n", 2)[1:3]
        assert has_cli or "CLI" not in " ".join(table)
    assert "SqlCache" in README  # it exists: cacheness[sql]
    assert importlib.util.find_spec("cacheness._sql_cache") is not None


def test_readme_installs_from_a_clone_and_times_the_suite():
    assert 'pip install ./packages/blobcache-storage "./packages/cacheness[cloud]"' in README
    assert 'pip install "cacheness[cloud]"' in README
    assert re.search(r"about\s+\d+ minutes on 2 cores", README)


def test_readme_example_runs(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (block,) = re.findall(r"```python\n(.*?)```", README, re.S)
    namespace: dict = {"__name__": "readme"}
    exec(compile(block, "README.md", "exec"), namespace)
    assert namespace["train"].cache_info().misses == 1
    namespace["cache"].close()


def test_home_page_examples_run(docs_page):
    namespace = docs_page("index.md").run(module="home")
    assert namespace["train"].cache_info().hits == 1
    assert len(docs_page("index.md").blocks()) == 2
    for code in docs_page("index.md").blocks():
        assert len(code.strip().splitlines()) <= 12


@pytest.mark.parametrize(
    ("module", "page"), [(cacheness, "cacheness.md"), (cacheness.storage, "storage.md")]
)
def test_the_reference_covers_the_public_surface(module, page):
    text = (DOCS / "reference" / page).read_text(encoding="utf-8")
    documented = set(re.findall(r"^::: [\w.]+\.(\w+)$", text, re.M))
    documented |= set(re.findall(r"^- \[`(\w+)`\]\(storage\.md#[\w.]+\)$", text, re.M))
    error_names = set(dir(errors))
    public = {name for name in module.__all__ if not name.startswith("__")} - error_names
    assert public == documented
    assert "::: cacheness.storage.errors" in (DOCS / "reference" / "errors.md").read_text()


def test_cache_page_examples_run(tmp_path, monkeypatch, docs_page):
    monkeypatch.chdir(tmp_path)
    namespace = docs_page("cache.md").run(module="cache_docs")
    assert namespace["double"](2) == 4
