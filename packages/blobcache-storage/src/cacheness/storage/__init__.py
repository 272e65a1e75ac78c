"""cacheness.storage: blob and metadata storage without caching semantics.

Installed by the ``blobcache-storage`` distribution. It stores bytes in blob backends
(filesystem, memory, S3, tiered, failover) and records what was stored in metadata
backends (memory, JSON, SQLite, PostgreSQL); :class:`BlobStore` composes the two with
type-aware serialization for artifact stores, model versioning and pipeline checkpoints.

This module is the public API: names in ``__all__`` follow the compatibility promise
(changes are additive within a minor series); modules whose names start with an
underscore may change at any time. The SQL backends are imported on first access, so
``import cacheness.storage`` does not import SQLAlchemy.

Example:
    >>> import tempfile
    >>> import cacheness.storage as storage
    >>> with storage.BlobStore(tempfile.mkdtemp()) as store:
    ...     store.put({"epochs": 10}, key="config")
    ...     store.get("config")
    'config'
    {'epochs': 10}
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from cacheness.storage._blob.base import (
    BlobBackend,
    BlobInfo,
    BlobWriter,
)
from cacheness.storage._blob.failover import FailoverBlobBackend
from cacheness.storage._blob.filesystem import FilesystemBlobBackend
from cacheness.storage._blob.memory import MemoryBlobBackend
from cacheness.storage._blob.s3 import S3BlobBackend
from cacheness.storage._blob.tiered import TieredBlobBackend
from cacheness.storage._blob_store import DEFAULT_INLINE_THRESHOLD, BlobStore, Lookup
from cacheness.storage._compression import (
    CODECS,
    CodecSettings,
    compress,
    decompress,
    open_compressor,
    open_decompressor,
)
from cacheness.storage._entry import (
    MAX_KEY_LENGTH,
    Entry,
    utc_now,
    validate_key,
)
from cacheness.storage._filters import (
    Filter,
    combine_filters,
    matches,
    metadata_field,
    parse_filter,
)
from cacheness.storage._handlers.base import FormatInfo, Handler, SerializationOptions
from cacheness.storage._handlers.registry import (
    HandlerRegistry,
    default_registry,
    get_handler,
    handler_for,
    list_handlers,
    register_handler,
    unregister_handler,
)
from cacheness.storage._hashing import (
    ContentHasher,
    hash_bytes,
    hash_stream,
)
from cacheness.storage._locks import FileLocks, LockTable, ThreadLocks, advisory_lock_id, poll_until
from cacheness.storage._metadata._entries import metadata_problem
from cacheness.storage._metadata.base import MetadataBackend, PayloadInfo
from cacheness.storage._metadata.json import JsonMetadataBackend
from cacheness.storage._metadata.memory import MemoryMetadataBackend
from cacheness.storage._optional import import_optional, is_loaded
from cacheness.storage._pairing import Scope, pairing_problem
from cacheness.storage._registry import (
    get_blob_backend,
    get_blob_backend_class,
    get_metadata_backend,
    get_metadata_backend_class,
    list_blob_backends,
    list_metadata_backends,
    register_blob_backend,
    register_metadata_backend,
    unregister_blob_backend,
    unregister_metadata_backend,
)
from cacheness.storage._reports import IntegrityIssue, RepairReport
from cacheness.storage._validate import choice_problem, did_you_mean, number_problem
from cacheness.storage._version import __version__
from cacheness.storage.errors import (
    BackendUnavailableError,
    BlobExistsError,
    BlobNotFoundError,
    CacheError,
    CachenessWarning,
    CompressionError,
    ConfigError,
    EntryExistsError,
    EntryNotFoundError,
    FilterError,
    FormatVersionError,
    IntegrityError,
    InvalidBlobNameError,
    InvalidEntryError,
    InvalidKeyError,
    KeyImmutableError,
    MetadataError,
    MissingDependencyError,
    NetworkFilesystemWarning,
    NotFoundError,
    ObjectDeclinedError,
    PayloadTooLargeError,
    SerializationError,
    StaleEntryError,
    StorageError,
    StorageFullError,
)

if TYPE_CHECKING:
    from cacheness.storage._metadata.postgresql import PostgresMetadataBackend
    from cacheness.storage._metadata.sqlite import SqliteMetadataBackend

__all__ = [
    "CODECS",
    "DEFAULT_INLINE_THRESHOLD",
    "MAX_KEY_LENGTH",
    "BackendUnavailableError",
    "BlobBackend",
    "BlobExistsError",
    "BlobInfo",
    "BlobNotFoundError",
    "BlobStore",
    "BlobWriter",
    "CacheError",
    "CachenessWarning",
    "CodecSettings",
    "CompressionError",
    "ConfigError",
    "ContentHasher",
    "Entry",
    "EntryExistsError",
    "EntryNotFoundError",
    "FailoverBlobBackend",
    "FileLocks",
    "FilesystemBlobBackend",
    "Filter",
    "FilterError",
    "FormatInfo",
    "FormatVersionError",
    "Handler",
    "HandlerRegistry",
    "IntegrityError",
    "IntegrityIssue",
    "InvalidBlobNameError",
    "InvalidEntryError",
    "InvalidKeyError",
    "JsonMetadataBackend",
    "KeyImmutableError",
    "LockTable",
    "Lookup",
    "MemoryBlobBackend",
    "MemoryMetadataBackend",
    "MetadataBackend",
    "MetadataError",
    "MissingDependencyError",
    "NetworkFilesystemWarning",
    "NotFoundError",
    "ObjectDeclinedError",
    "PayloadInfo",
    "PayloadTooLargeError",
    "PostgresMetadataBackend",
    "RepairReport",
    "S3BlobBackend",
    "Scope",
    "SerializationError",
    "SerializationOptions",
    "SqliteMetadataBackend",
    "StaleEntryError",
    "StorageError",
    "StorageFullError",
    "ThreadLocks",
    "TieredBlobBackend",
    "__version__",
    "advisory_lock_id",
    "choice_problem",
    "combine_filters",
    "compress",
    "decompress",
    "default_registry",
    "did_you_mean",
    "get_blob_backend",
    "get_blob_backend_class",
    "get_handler",
    "get_metadata_backend",
    "get_metadata_backend_class",
    "handler_for",
    "hash_bytes",
    "hash_stream",
    "import_optional",
    "is_loaded",
    "list_blob_backends",
    "list_handlers",
    "list_metadata_backends",
    "matches",
    "metadata_field",
    "metadata_problem",
    "number_problem",
    "open_compressor",
    "open_decompressor",
    "pairing_problem",
    "parse_filter",
    "poll_until",
    "register_blob_backend",
    "register_handler",
    "register_metadata_backend",
    "unregister_blob_backend",
    "unregister_handler",
    "unregister_metadata_backend",
    "utc_now",
    "validate_key",
]

_LAZY = {
    "PostgresMetadataBackend": "cacheness.storage._metadata.postgresql",
    "SqliteMetadataBackend": "cacheness.storage._metadata.sqlite",
}


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is not None:  # the SQL backends import SQLAlchemy: load them on first use
        import importlib

        return getattr(importlib.import_module(module), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
