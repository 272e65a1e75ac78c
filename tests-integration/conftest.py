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
