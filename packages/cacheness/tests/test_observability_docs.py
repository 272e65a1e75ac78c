"""The "Observability" docs page is right: its examples run, its reference is complete.

Python blocks run in order in one namespace (those marked ``# needs:`` or ``# runs in
the service`` need a package or a port of their own and are only compiled); the metric
and span names of the reference tables are the ones the code records.
"""

from __future__ import annotations

import logging
import re
import tempfile
from pathlib import Path
from typing import Any

import pytest

from cacheness import cacheness
from cacheness.storage.testing.otel import isolated_providers, recording

REPO = Path(__file__).resolve().parents[3]
PAGE = (REPO / "docs/observability.md").read_text(encoding="utf-8")
SOURCES = [
    *(REPO / "packages/blobcache-storage/src/cacheness/storage").rglob("*.py"),
    *(REPO / "packages/cacheness/src/cacheness").rglob("*.py"),
]


def python_blocks() -> list[str]:
    return re.findall(r"```python\n(.*?)```", PAGE, flags=re.DOTALL)


def documented(prefix: str) -> set[str]:
    """The metric names of the reference tables (rows typed counter, histogram or gauge)."""
    rows = re.findall(
        rf"^\| `({re.escape(prefix)}[a-z0-9_.]+)` \| (counter|histogram|gauge)",
        PAGE,
        flags=re.MULTILINE,
    )
    return {name for name, _ in rows}


def test_the_examples_run(caplog: pytest.LogCaptureFixture) -> None:
    namespace: dict[str, Any] = {}
    with isolated_providers():
        for block in python_blocks():
            code = compile(block, "docs/observability.md", "exec")
            if block.startswith(("# needs:", "# runs in the service")):
                continue
            exec(code, namespace)
            if "cache" in namespace and namespace["cache"]._closed:
                namespace["cache"] = cacheness(cache_dir=tempfile.mkdtemp())
    logger = logging.getLogger("cacheness")
    for handler in list(logger.handlers):  # the JSON example's handler
        if type(handler.formatter).__name__ == "JsonFormatter":
            logger.removeHandler(handler)
    logger.setLevel(logging.NOTSET)
    namespace["cache"].close()


def test_every_documented_metric_is_recorded_by_the_code() -> None:
    source = "\n".join(path.read_text(encoding="utf-8") for path in SOURCES)
    metrics = documented("cacheness.cache.") | documented("cacheness.storage.")
    assert len(metrics) == 23
    # names are built from a layer prefix and a suffix in places: look for the suffix
    missing = {m for m in metrics if m not in source and m.rsplit(".", 1)[-1] not in source}
    assert missing == set()


def test_what_a_session_records_is_documented(tmp_path: Path) -> None:
    with recording() as telemetry:
        cache = cacheness(cache_dir=tmp_path / "c", max_entries=2)
        for n in range(4):
            cache.put(n, n=n)
        cache.get(n=3)
        cache.get(n=99)
        cache.cleanup_expired()
        cache.close()
        recorded = {
            metric.name
            for resource in telemetry._reader.get_metrics_data().resource_metrics
            for scope in resource.scope_metrics
            for metric in scope.metrics
        }
        spans = set(telemetry.span_names())
    assert recorded <= documented("cacheness.cache.") | documented("cacheness.storage.")
    layers = {re.sub(r"\.[a-z_]+$", "", name) for name in spans}
    assert layers <= {
        "cacheness.cache",
        "cacheness.storage",
        "cacheness.metadata",
        "cacheness.blob",
    }
    for name in spans:
        assert name.rsplit(".", 1)[-1] in PAGE


def test_the_page_quotes_the_latest_benchmark_results() -> None:
    import json

    results = json.loads((REPO / "benchmarks/results/observability.json").read_text())
    section = PAGE.split("## What it costs", 1)[1]
    medians = results["median_us"]
    for mode, figures in medians.items():
        row = next(line for line in section.splitlines() if line.startswith(f"| {mode} |"))
        for value in figures.values():
            assert f"{value:.1f}" in row, (mode, value)
