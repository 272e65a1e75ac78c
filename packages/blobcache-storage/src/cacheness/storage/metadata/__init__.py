"""Metadata backends: the queryable index of stored entries.

* :class:`~cacheness.storage.metadata.base.MetadataBackend`: the ABC (six primitives,
  batch methods with defaults).
* ``memory`` (:class:`MemoryMetadataBackend`), ``json`` (:class:`JsonMetadataBackend`),
  ``sqlite`` (:class:`SqliteMetadataBackend`, the default) and ``postgresql``
  (:class:`PostgresMetadataBackend`); the last two share
  :class:`SqlMetadataBackend`.

Backends are usually created by name through :mod:`cacheness.storage.registry`
(``get_metadata_backend("sqlite", path=...)``). The SQL backends are imported on first
access, so importing this package does not import SQLAlchemy.

Example:
    >>> from cacheness.storage.metadata import MemoryMetadataBackend
    >>> MemoryMetadataBackend().count()
    0
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from cacheness.storage.metadata.base import MetadataBackend, Scope
from cacheness.storage.metadata.json import JsonMetadataBackend
from cacheness.storage.metadata.memory import MemoryMetadataBackend

if TYPE_CHECKING:
    from cacheness.storage.metadata.sql import (
        PostgresMetadataBackend,
        SqliteMetadataBackend,
        SqlMetadataBackend,
    )

__all__ = [
    "JsonMetadataBackend",
    "MemoryMetadataBackend",
    "MetadataBackend",
    "PostgresMetadataBackend",
    "Scope",
    "SqlMetadataBackend",
    "SqliteMetadataBackend",
]

_LAZY = {"PostgresMetadataBackend", "SqlMetadataBackend", "SqliteMetadataBackend"}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        return getattr(importlib.import_module("cacheness.storage.metadata.sql"), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
