__path__ = __import__("pkgutil").extend_path(__path__, __name__)
# The line above must stay first: it lets `cacheness.storage` (installed by the
# blobcache-storage distribution) be found on another sys.path entry.

__doc__ = """cacheness: a persistent cache for Python data and ML work.

Results of expensive functions are stored under keys derived from their keyword
arguments, in SQLite + local files by default, or PostgreSQL + S3 for a team.
Storage itself comes from the separately installable ``blobcache-storage``
distribution (``cacheness.storage``).

The public API is this module's ``__all__``: the cache class :class:`cacheness`
(alias ``UnifiedCache``), configuration (:class:`CacheConfig` and friends), key
derivation, TTL helpers, the whole error hierarchy of ``cacheness.storage``, and
:class:`SqlCache` (a pull-through cache of tabular data, ``cacheness[sql]``). Every
name but the errors and ``__version__`` is imported on first access (module
``__getattr__``), so ``import cacheness`` stays cheap: a short script pays only for
what it uses, and never for SQLAlchemy or pandas unless it uses SqlCache.

Example:
    >>> import tempfile
    >>> import cacheness
    >>> with cacheness.cacheness(cache_dir=tempfile.mkdtemp()) as cache:
    ...     _ = cache.put([1, 2, 3], dataset="iris")
    ...     cache.get(dataset="iris")
    [1, 2, 3]
    >>> cacheness.__version__ == cacheness.version_info()["cacheness"]
    True
"""

import importlib
from typing import TYPE_CHECKING, Any

from cacheness._version import __version__, version_info
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
    from cacheness._global import get_cache, reset_cache, set_default_cache
    from cacheness._sql_cache import (
        FetcherError,
        InvalidFetchedDataError,
        InvalidQueryError,
        SqlCache,
        SqlCacheAdapter,
        SqlCacheError,
        SqlCacheResult,
        SqlCacheStatus,
    )
    from cacheness.cache import MISS, UnifiedCache, cacheness, migrate
    from cacheness.cache_entry import CacheEntry
    from cacheness.config import (
        CacheBlobConfig,
        CacheConfig,
        CacheMetadataConfig,
        CompressionConfig,
        HandlersConfig,
        MemoryCacheConfig,
        SecurityConfig,
        SerializationConfig,
        default_cache_dir,
        load_config,
        load_config_from_dict,
        load_config_from_json,
        load_config_from_toml,
        load_config_from_yaml,
        resolve_config,
        save_config_to_json,
        validate_config,
        validate_config_strict,
    )
    from cacheness.decorators import CachedFunction, CacheInfo, cache_if, cached
    from cacheness.keys import (
        KEY_SCHEMA_VERSION,
        UnsupportedKeyValueError,
        derive_key,
        describe_params,
    )
    from cacheness.storage import CustomMetadataBase, custom_metadata_model
    from cacheness.ttl import days, hours, minutes, seconds

__all__ = [
    "KEY_SCHEMA_VERSION",
    "MISS",
    "BackendUnavailableError",
    "BlobExistsError",
    "BlobNotFoundError",
    "CacheBlobConfig",
    "CacheConfig",
    "CacheEntry",
    "CacheError",
    "CacheInfo",
    "CacheMetadataConfig",
    "CachedFunction",
    "CachenessWarning",
    "CompressionConfig",
    "CompressionError",
    "ConfigError",
    "CustomMetadataBase",
    "CustomSchemaError",
    "EntryExistsError",
    "EntryNotFoundError",
    "FetcherError",
    "FilterError",
    "HandlersConfig",
    "IntegrityError",
    "InvalidBlobNameError",
    "InvalidEntryError",
    "InvalidFetchedDataError",
    "InvalidKeyError",
    "InvalidQueryError",
    "KeyImmutableError",
    "MemoryCacheConfig",
    "MetadataError",
    "MissingDependencyError",
    "NetworkFilesystemWarning",
    "NotFoundError",
    "ObjectDeclinedError",
    "PayloadTooLargeError",
    "SecurityConfig",
    "SerializationConfig",
    "SerializationError",
    "SignatureError",
    "SqlCache",
    "SqlCacheAdapter",
    "SqlCacheError",
    "SqlCacheResult",
    "SqlCacheStatus",
    "StaleEntryError",
    "StorageError",
    "StorageFullError",
    "UnifiedCache",
    "UnsupportedKeyValueError",
    "__version__",
    "cache_if",
    "cached",
    "cacheness",
    "custom_metadata_model",
    "days",
    "default_cache_dir",
    "derive_key",
    "describe_params",
    "get_cache",
    "hours",
    "load_config",
    "load_config_from_dict",
    "load_config_from_json",
    "load_config_from_toml",
    "load_config_from_yaml",
    "migrate",
    "minutes",
    "reset_cache",
    "resolve_config",
    "save_config_to_json",
    "seconds",
    "set_default_cache",
    "validate_config",
    "validate_config_strict",
    "version_info",
]

_LAZY: dict[str, str] = {
    "get_cache": "cacheness._global",
    "reset_cache": "cacheness._global",
    "set_default_cache": "cacheness._global",
    "FetcherError": "cacheness._sql_cache",
    "InvalidFetchedDataError": "cacheness._sql_cache",
    "InvalidQueryError": "cacheness._sql_cache",
    "SqlCache": "cacheness._sql_cache",
    "SqlCacheAdapter": "cacheness._sql_cache",
    "SqlCacheError": "cacheness._sql_cache",
    "SqlCacheResult": "cacheness._sql_cache",
    "SqlCacheStatus": "cacheness._sql_cache",
    "MISS": "cacheness.cache",
    "migrate": "cacheness.cache",
    "UnifiedCache": "cacheness.cache",
    "cacheness": "cacheness.cache",
    "CacheEntry": "cacheness.cache_entry",
    "CacheBlobConfig": "cacheness.config",
    "CacheConfig": "cacheness.config",
    "CacheMetadataConfig": "cacheness.config",
    "CompressionConfig": "cacheness.config",
    "HandlersConfig": "cacheness.config",
    "MemoryCacheConfig": "cacheness.config",
    "SecurityConfig": "cacheness.config",
    "SerializationConfig": "cacheness.config",
    "default_cache_dir": "cacheness.config",
    "load_config": "cacheness.config",
    "load_config_from_dict": "cacheness.config",
    "load_config_from_json": "cacheness.config",
    "load_config_from_toml": "cacheness.config",
    "load_config_from_yaml": "cacheness.config",
    "resolve_config": "cacheness.config",
    "save_config_to_json": "cacheness.config",
    "validate_config": "cacheness.config",
    "validate_config_strict": "cacheness.config",
    "CacheInfo": "cacheness.decorators",
    "CachedFunction": "cacheness.decorators",
    "cache_if": "cacheness.decorators",
    "cached": "cacheness.decorators",
    "KEY_SCHEMA_VERSION": "cacheness.keys",
    "UnsupportedKeyValueError": "cacheness.keys",
    "derive_key": "cacheness.keys",
    "describe_params": "cacheness.keys",
    "CustomMetadataBase": "cacheness.storage",
    "custom_metadata_model": "cacheness.storage",
    "days": "cacheness.ttl",
    "hours": "cacheness.ttl",
    "minutes": "cacheness.ttl",
    "seconds": "cacheness.ttl",
}
"""Public name -> the module that defines it, imported on first access."""


MOVED: dict[str, str] = {
    "for_api": "cacheness.cached.for_api(...)",
    "register_handler": "cacheness.storage.register_handler(...)",
    "register_blob_backend": "cacheness.storage.register_blob_backend(...)",
    "register_metadata_backend": "cacheness.storage.register_metadata_backend(...)",
    "HandlerConfig": "cacheness.HandlersConfig",
    "BlobStore": "cacheness.storage.BlobStore",
    "CacheHandler": "cacheness.storage.Handler",
}
"""Top-level names of Cacheness 0.4 (the seeds' API) -> where they are now."""


def __getattr__(name: str) -> Any:
    """Import a public name's module on first access (SqlCache's imports SQLAlchemy)."""
    module = _LAZY.get(name)
    if module is None:
        moved = MOVED.get(name)
        if moved is not None:
            raise AttributeError(
                f"module 'cacheness' has no attribute {name!r} (Cacheness 0.4): use {moved}"
            )
        from cacheness.storage import did_you_mean

        hint = did_you_mean(name, __all__) if not name.startswith("_") else ""
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}{hint}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value  # the next access is a plain attribute lookup
    return value


def __dir__() -> list[str]:
    return sorted({*globals(), *__all__})
