"""Fixtures of the integration tests: the team-cache harness.

``_team_worker.py`` (the program the worker processes run) and ``_team_support.py``
(configs, worker control, ground truth) sit beside the tests. pytest runs in importlib
mode, which puts no test directory on ``sys.path``, so they are imported here by path,
once, and the tests reach them through the ``support`` and ``team`` fixtures.
"""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

HERE = Path(__file__).resolve().parent


def _import_beside(name: str) -> ModuleType:
    """Import ``tests-integration/<name>.py`` as module ``name`` (once per session)."""
    if name in sys.modules:
        return sys.modules[name]
    spec = importlib.util.spec_from_file_location(name, HERE / f"{name}.py")
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


_import_beside("_team_worker")  # _team_support uses it
_support = _import_beside("_team_support")


@pytest.fixture(scope="session")
def support() -> ModuleType:
    """The ``_team_support`` module."""
    return _support


@pytest.fixture
def team(fresh_postgres_url: str, s3_bucket: Any, tmp_path: Path) -> Any:
    """A team cache (PostgreSQL index, S3 blobs) whose workers run in other processes."""
    return _support.Team(fresh_postgres_url, s3_bucket, tmp_path)


# The service names the docs pages are written for, and the fixture pointing them at the
# test's real PostgreSQL and S3 server.
DOC_DB = "postgresql://cache:secret@db.internal:5432/cache"
DOC_DB_NO_PASSWORD = "postgresql://cache@db.internal:5432/cache"
DOC_S3 = "http://minio.internal:9000"


@pytest.fixture
def services(fresh_postgres_url, s3_bucket, tmp_path, monkeypatch):
    """Point the page's names at the real services; return a function rewriting text."""
    key = __import__("os").environ["CACHENESS_SIGNING_KEY"]  # the team's key (fixtures)
    for name in list(__import__("os").environ):
        if name.startswith("CACHENESS_") and name != "CACHENESS_SIGNING_KEY":
            monkeypatch.delenv(name)
    endpoint = s3_bucket.endpoint
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", endpoint.access_key_id)
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", endpoint.secret_access_key)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    monkeypatch.setenv("HOME", str(tmp_path / "home"))

    def rewrite(text: str) -> str:
        for old, new in (
            (DOC_DB, fresh_postgres_url),
            (DOC_DB_NO_PASSWORD, fresh_postgres_url),
            (DOC_S3, endpoint.endpoint_url),
            ('"team-cache"', f'"{s3_bucket.name}"'),
            ("=team-cache\n", f"={s3_bucket.name}\n"),
            ("CACHENESS_SIGNING_KEY=...\n", f"CACHENESS_SIGNING_KEY={key}\n"),
        ):
            text = text.replace(old, new)
        return text

    return rewrite
