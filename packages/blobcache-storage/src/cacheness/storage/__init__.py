"""cacheness.storage: blob and metadata storage without caching semantics.

Installed by the ``blobcache-storage`` distribution. It stores bytes in blob backends
(filesystem, memory, S3) and records what was stored in metadata backends (memory,
JSON, SQLite, PostgreSQL); ``BlobStore`` composes the two with type-aware
serialization for artifact stores, model versioning and pipeline checkpoints.

This module is the public API: names in ``__all__`` follow the compatibility promise
(changes are additive within a minor series); modules whose names start with an
underscore may change at any time.

Example:
    >>> import cacheness.storage as storage
    >>> storage.__version__
    '0.1.0'
"""

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
    IntegrityError,
    InvalidBlobNameError,
    InvalidKeyError,
    KeyImmutableError,
    MetadataError,
    MissingDependencyError,
    NetworkFilesystemWarning,
    NotFoundError,
    SerializationError,
    StorageError,
)

__all__ = [
    "BackendUnavailableError",
    "BlobExistsError",
    "BlobNotFoundError",
    "CacheError",
    "CachenessWarning",
    "CompressionError",
    "ConfigError",
    "EntryExistsError",
    "EntryNotFoundError",
    "FilterError",
    "IntegrityError",
    "InvalidBlobNameError",
    "InvalidKeyError",
    "KeyImmutableError",
    "MetadataError",
    "MissingDependencyError",
    "NetworkFilesystemWarning",
    "NotFoundError",
    "SerializationError",
    "StorageError",
    "__version__",
]
