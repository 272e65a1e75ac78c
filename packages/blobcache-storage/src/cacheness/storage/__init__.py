"""cacheness.storage: blob and metadata storage without caching semantics.

Installed by the ``blobcache-storage`` distribution. It stores bytes in blob backends
(filesystem, memory, S3, tiered, failover) and records what was stored in metadata
backends (memory, JSON, SQLite, PostgreSQL); :class:`BlobStore` composes the two with
type-aware serialization for artifact stores, model versioning and pipeline checkpoints.

This module is the public API: names in ``__all__`` follow the compatibility promise
(changes are additive within a minor series); modules whose names start with an
underscore may change at any time. Names are imported on first access (the errors and
``__version__`` excepted), so ``import cacheness.storage`` costs almost nothing: no
backend, handler, SQLAlchemy or optional library is loaded before it is used.

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

import importlib
from typing import TYPE_CHECKING, Any

from cacheness.storage._version import __version__
from cacheness.storage.errors import (
    BackendUnavailableError,
    BlobExistsError,
    BlobNotFoundError,
    CacheError,
    CachenessWarning,
    CompressionError,
    ConfigError,
    CustomSchemaError,
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
    SignatureError,
    StaleEntryError,
    StorageError,
    StorageFullError,
)

if TYPE_CHECKING:
    from cacheness.storage._blob.base import BlobBackend, BlobInfo, BlobWriter
    from cacheness.storage._blob.failover import FailoverBlobBackend
    from cacheness.storage._blob.filesystem import FilesystemBlobBackend
    from cacheness.storage._blob.memory import MemoryBlobBackend
    from cacheness.storage._blob.s3 import S3BlobBackend
    from cacheness.storage._blob.tiered import TieredBlobBackend
    from cacheness.storage._blob_store import BlobStore, Lookup
    from cacheness.storage._compression import (
        CODECS,
        CodecSettings,
        compress,
        decompress,
        open_compressor,
        open_decompressor,
    )
    from cacheness.storage._custom import (
        CustomMetadataBase,
        custom_metadata_model,
        get_custom_model,
        list_custom_models,
        unregister_custom_model,
    )
    from cacheness.storage._entry import MAX_KEY_LENGTH, Entry, utc_now, validate_key
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
    from cacheness.storage._hashing import ContentHasher, hash_bytes, hash_stream
    from cacheness.storage._health import BackendHealth, HealthReport
    from cacheness.storage._locks import (
        FileLocks,
        LockTable,
        ThreadLocks,
        advisory_lock_id,
        poll_until,
    )
    from cacheness.storage._metadata._entries import metadata_problem
    from cacheness.storage._metadata.base import (
        DEFAULT_INLINE_THRESHOLD,
        MetadataBackend,
        PayloadInfo,
    )
    from cacheness.storage._metadata.json import JsonMetadataBackend
    from cacheness.storage._metadata.memory import MemoryMetadataBackend
    from cacheness.storage._metadata.postgresql import PostgresMetadataBackend
    from cacheness.storage._metadata.sqlite import SqliteMetadataBackend
    from cacheness.storage._optional import import_optional, is_loaded
    from cacheness.storage._pairing import Scope, pairing_problem
    from cacheness.storage._portability.transfer import migrate
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
    from cacheness.storage._reports import (
        IntegrityIssue,
        RepairReport,
        ResignReport,
        TransferIssue,
        TransferProgress,
        TransferReport,
    )
    from cacheness.storage._signing import (
        DEFAULT_SIGNED_FIELDS,
        UNSIGNED_POLICIES,
        EntrySigner,
        SigningKey,
        resolve_signing_key,
        user_key_path,
    )
    from cacheness.storage._telemetry import (
        SCHEMA_VERSION,
        Instrumentation,
        instrumentation,
        traced,
    )
    from cacheness.storage._validate import (
        choice_problem,
        did_you_mean,
        number_problem,
        suggest_keywords,
    )

__all__ = [
    "CODECS",
    "DEFAULT_INLINE_THRESHOLD",
    "DEFAULT_SIGNED_FIELDS",
    "MAX_KEY_LENGTH",
    "SCHEMA_VERSION",
    "UNSIGNED_POLICIES",
    "BackendHealth",
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
    "CustomMetadataBase",
    "CustomSchemaError",
    "Entry",
    "EntryExistsError",
    "EntryNotFoundError",
    "EntrySigner",
    "FailoverBlobBackend",
    "FileLocks",
    "FilesystemBlobBackend",
    "Filter",
    "FilterError",
    "FormatInfo",
    "FormatVersionError",
    "Handler",
    "HandlerRegistry",
    "HealthReport",
    "Instrumentation",
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
    "ResignReport",
    "S3BlobBackend",
    "Scope",
    "SerializationError",
    "SerializationOptions",
    "SignatureError",
    "SigningKey",
    "SqliteMetadataBackend",
    "StaleEntryError",
    "StorageError",
    "StorageFullError",
    "ThreadLocks",
    "TieredBlobBackend",
    "TransferIssue",
    "TransferProgress",
    "TransferReport",
    "__version__",
    "advisory_lock_id",
    "choice_problem",
    "combine_filters",
    "compress",
    "custom_metadata_model",
    "decompress",
    "default_registry",
    "did_you_mean",
    "get_blob_backend",
    "get_blob_backend_class",
    "get_custom_model",
    "get_handler",
    "get_metadata_backend",
    "get_metadata_backend_class",
    "handler_for",
    "hash_bytes",
    "hash_stream",
    "import_optional",
    "instrumentation",
    "is_loaded",
    "list_blob_backends",
    "list_custom_models",
    "list_handlers",
    "list_metadata_backends",
    "matches",
    "metadata_field",
    "metadata_problem",
    "migrate",
    "number_problem",
    "open_compressor",
    "open_decompressor",
    "pairing_problem",
    "parse_filter",
    "poll_until",
    "register_blob_backend",
    "register_handler",
    "register_metadata_backend",
    "resolve_signing_key",
    "suggest_keywords",
    "traced",
    "unregister_blob_backend",
    "unregister_custom_model",
    "unregister_handler",
    "unregister_metadata_backend",
    "user_key_path",
    "utc_now",
    "validate_key",
]

_LAZY: dict[str, str] = {
    "BlobBackend": "cacheness.storage._blob.base",
    "BlobInfo": "cacheness.storage._blob.base",
    "BlobWriter": "cacheness.storage._blob.base",
    "FailoverBlobBackend": "cacheness.storage._blob.failover",
    "FilesystemBlobBackend": "cacheness.storage._blob.filesystem",
    "MemoryBlobBackend": "cacheness.storage._blob.memory",
    "S3BlobBackend": "cacheness.storage._blob.s3",
    "TieredBlobBackend": "cacheness.storage._blob.tiered",
    "BlobStore": "cacheness.storage._blob_store",
    "DEFAULT_INLINE_THRESHOLD": "cacheness.storage._metadata.base",
    "Lookup": "cacheness.storage._blob_store",
    "CODECS": "cacheness.storage._compression",
    "CodecSettings": "cacheness.storage._compression",
    "compress": "cacheness.storage._compression",
    "decompress": "cacheness.storage._compression",
    "open_compressor": "cacheness.storage._compression",
    "open_decompressor": "cacheness.storage._compression",
    "CustomMetadataBase": "cacheness.storage._custom",
    "custom_metadata_model": "cacheness.storage._custom",
    "get_custom_model": "cacheness.storage._custom",
    "list_custom_models": "cacheness.storage._custom",
    "unregister_custom_model": "cacheness.storage._custom",
    "Entry": "cacheness.storage._entry",
    "MAX_KEY_LENGTH": "cacheness.storage._entry",
    "utc_now": "cacheness.storage._entry",
    "validate_key": "cacheness.storage._entry",
    "Filter": "cacheness.storage._filters",
    "combine_filters": "cacheness.storage._filters",
    "matches": "cacheness.storage._filters",
    "metadata_field": "cacheness.storage._filters",
    "parse_filter": "cacheness.storage._filters",
    "BackendHealth": "cacheness.storage._health",
    "HealthReport": "cacheness.storage._health",
    "FormatInfo": "cacheness.storage._handlers.base",
    "Handler": "cacheness.storage._handlers.base",
    "SerializationOptions": "cacheness.storage._handlers.base",
    "HandlerRegistry": "cacheness.storage._handlers.registry",
    "default_registry": "cacheness.storage._handlers.registry",
    "get_handler": "cacheness.storage._handlers.registry",
    "handler_for": "cacheness.storage._handlers.registry",
    "list_handlers": "cacheness.storage._handlers.registry",
    "register_handler": "cacheness.storage._handlers.registry",
    "unregister_handler": "cacheness.storage._handlers.registry",
    "ContentHasher": "cacheness.storage._hashing",
    "hash_bytes": "cacheness.storage._hashing",
    "hash_stream": "cacheness.storage._hashing",
    "FileLocks": "cacheness.storage._locks",
    "LockTable": "cacheness.storage._locks",
    "ThreadLocks": "cacheness.storage._locks",
    "advisory_lock_id": "cacheness.storage._locks",
    "poll_until": "cacheness.storage._locks",
    "metadata_problem": "cacheness.storage._metadata._entries",
    "MetadataBackend": "cacheness.storage._metadata.base",
    "PayloadInfo": "cacheness.storage._metadata.base",
    "JsonMetadataBackend": "cacheness.storage._metadata.json",
    "MemoryMetadataBackend": "cacheness.storage._metadata.memory",
    "PostgresMetadataBackend": "cacheness.storage._metadata.postgresql",
    "SqliteMetadataBackend": "cacheness.storage._metadata.sqlite",
    "import_optional": "cacheness.storage._optional",
    "is_loaded": "cacheness.storage._optional",
    "Scope": "cacheness.storage._pairing",
    "pairing_problem": "cacheness.storage._pairing",
    "get_blob_backend": "cacheness.storage._registry",
    "get_blob_backend_class": "cacheness.storage._registry",
    "get_metadata_backend": "cacheness.storage._registry",
    "get_metadata_backend_class": "cacheness.storage._registry",
    "list_blob_backends": "cacheness.storage._registry",
    "list_metadata_backends": "cacheness.storage._registry",
    "register_blob_backend": "cacheness.storage._registry",
    "register_metadata_backend": "cacheness.storage._registry",
    "unregister_blob_backend": "cacheness.storage._registry",
    "unregister_metadata_backend": "cacheness.storage._registry",
    "IntegrityIssue": "cacheness.storage._reports",
    "RepairReport": "cacheness.storage._reports",
    "TransferIssue": "cacheness.storage._reports",
    "TransferProgress": "cacheness.storage._reports",
    "TransferReport": "cacheness.storage._reports",
    "migrate": "cacheness.storage._portability.transfer",
    "ResignReport": "cacheness.storage._reports",
    "DEFAULT_SIGNED_FIELDS": "cacheness.storage._signing",
    "UNSIGNED_POLICIES": "cacheness.storage._signing",
    "EntrySigner": "cacheness.storage._signing",
    "SigningKey": "cacheness.storage._signing",
    "resolve_signing_key": "cacheness.storage._signing",
    "user_key_path": "cacheness.storage._signing",
    "Instrumentation": "cacheness.storage._telemetry",
    "SCHEMA_VERSION": "cacheness.storage._telemetry",
    "instrumentation": "cacheness.storage._telemetry",
    "traced": "cacheness.storage._telemetry",
    "choice_problem": "cacheness.storage._validate",
    "did_you_mean": "cacheness.storage._validate",
    "suggest_keywords": "cacheness.storage._validate",
    "number_problem": "cacheness.storage._validate",
}
"""Public name -> the private module that defines it, imported on first access."""


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value  # the next access is a plain attribute lookup
    return value


def __dir__() -> list[str]:
    return sorted({*globals(), *__all__})
