"""Cache configuration: dataclasses, validation, files and ``CACHENESS_*`` variables.

A :class:`CacheConfig` says where the index lives (``metadata``), where the bytes go
(``blob``), how objects are compressed and serialized, which handlers are used, and the
cache policy (TTL, size limits, eviction). It can be written as sections or with the flat
shortcuts of the planning documents::

    CacheConfig(metadata=CacheMetadataConfig(backend="postgresql", connection_url=url),
                blob=CacheBlobConfig(backend="s3", bucket="team-cache", prefix="v1/"))
    CacheConfig(metadata_backend="postgresql", metadata_backend_options={"url": url},
                blob_backend="s3", blob_backend_options={"bucket": "team-cache"})

:func:`resolve_config` layers the sources, highest first: **explicit arguments >
environment variables > config file (``CACHENESS_CONFIG``) > defaults**.
:func:`validate_config` lists every problem (unknown backends with a suggestion, values
out of range, refused metadata/blob pairings, missing required options) without opening
anything.

Example:
    >>> import tempfile
    >>> from cacheness.storage import BlobStore
    >>> config = CacheConfig(cache_dir=tempfile.mkdtemp(), default_ttl_seconds=3600)
    >>> validate_config(config)
    []
    >>> with BlobStore(**config.blob_store_options()) as store:
    ...     store.put([1, 2, 3], key="numbers")
    ...     store.get("numbers")
    'numbers'
    [1, 2, 3]
    >>> validate_config(CacheConfig(metadata_backend="postgress"))  # doctest: +ELLIPSIS
    ["metadata.backend: unknown metadata backend 'postgress' (did you mean 'postgresql'?)..."]
"""

from __future__ import annotations

import logging
import os
import sys
import uuid
from collections.abc import Container, Mapping
from dataclasses import InitVar, dataclass, field, fields
from pathlib import Path
from types import MappingProxyType
from typing import TYPE_CHECKING, Any, Final, TypeAlias, get_args

import msgspec

from cacheness._config_backends import (
    Kind,
    ResolvedBackend,
    backend_problems,
    pairing_problems,
    redact_url,
    resolve_backend,
)
from cacheness._config_convert import (
    check_types,
    copy_value,
    explicit_fields,
    field_types,
    from_mapping,
    init_names,
    mark_explicit,
    overlay,
    same_backend,
    suggest_name,
    to_builtins,
    tracks_explicit,
)
from cacheness.cache_entry import RESERVED_METADATA_KEY
from cacheness.keys import HashUnknown
from cacheness.storage import (
    ConfigError,
    Handler,
    HandlerRegistry,
    SerializationOptions,
    choice_problem,
    default_registry,
    did_you_mean,
    import_optional,
    number_problem,
)

if TYPE_CHECKING:
    from cacheness.storage import BlobBackend, MetadataBackend

    MetadataBackendSpec: TypeAlias = str | MetadataBackend
    BlobBackendSpec: TypeAlias = str | BlobBackend
    HandlerSpec: TypeAlias = str | type[Handler] | Handler
    from cacheness.storage import SigningKey

    KeySpec: TypeAlias = str | bytes | SigningKey
else:  # msgspec converts these fields as-is; validate_config checks them
    MetadataBackendSpec = BlobBackendSpec = HandlerSpec = KeySpec = Any

__all__ = [
    "CONFIG_FILE_VARIABLE",
    "ENVIRONMENT_VARIABLES",
    "EVICTION_POLICIES",
    "LEGACY_ENVIRONMENT_VARIABLES",
    "CacheBlobConfig",
    "CacheConfig",
    "CacheMetadataConfig",
    "CompressionConfig",
    "HandlersConfig",
    "MemoryCacheConfig",
    "SecurityConfig",
    "SerializationConfig",
    "default_cache_dir",
    "load_config",
    "load_config_from_dict",
    "load_config_from_json",
    "load_config_from_toml",
    "load_config_from_yaml",
    "resolve_config",
    "save_config_to_json",
    "validate_config",
    "validate_config_strict",
]

log = logging.getLogger(__name__)

EVICTION_POLICIES: Final = ("lru", "lfu", "fifo")
"""Eviction policies: least recently used, least frequently used, first in first out."""

MEMORY_CACHE_POLICIES: Final = ("lru", "fifo")
"""Policies of the in-process memory layer: least recently used, first in first out."""

CONFIG_FILE_VARIABLE: Final = "CACHENESS_CONFIG"
"""The environment variable naming a config file (``.json``, ``.yaml``/``.yml``, ``.toml``)."""

ENVIRONMENT_VARIABLES: Final[Mapping[str, str]] = MappingProxyType(
    {
        "CACHENESS_DIR": "cache_dir",
        "CACHENESS_METADATA_BACKEND": "metadata.backend",
        "CACHENESS_METADATA_URL": "metadata.connection_url",
        "CACHENESS_METADATA_TABLE": "metadata.table",
        "CACHENESS_METADATA_SCHEMA": "metadata.schema",
        "CACHENESS_METADATA_PATH": "metadata.path",
        "CACHENESS_BLOB_BACKEND": "blob.backend",
        "CACHENESS_BLOB_ROOT": "blob.root",
        "CACHENESS_S3_BUCKET": "blob.bucket",
        "CACHENESS_S3_PREFIX": "blob.prefix",
        "CACHENESS_S3_ENDPOINT_URL": "blob.endpoint_url",
        "CACHENESS_S3_REGION": "blob.region",
        "CACHENESS_DEFAULT_TTL_SECONDS": "default_ttl_seconds",
        "CACHENESS_MAX_CACHE_SIZE_MB": "max_cache_size_mb",
        "CACHENESS_MAX_ENTRIES": "max_entries",
        "CACHENESS_EVICTION_POLICY": "eviction_policy",
        "CACHENESS_STRICT": "strict",
        "CACHENESS_COMPRESSION_CODEC": "compression.codec",
        "CACHENESS_VERIFY_READS": "security.verify_reads",
        "CACHENESS_ENTRY_SIGNING": "security.entry_signing",
        "CACHENESS_UNSIGNED": "security.unsigned",
        "CACHENESS_DELETE_INVALID_SIGNATURES": "security.delete_invalid_signatures",
        "CACHENESS_MEMORY_CACHE": "memory_cache.enabled",
        "CACHENESS_MEMORY_CACHE_MAX_ENTRIES": "memory_cache.max_entries",
        "CACHENESS_MEMORY_CACHE_MAX_BYTES": "memory_cache.max_bytes",
        "CACHENESS_MEMORY_CACHE_STALENESS_SECONDS": "memory_cache.staleness_seconds",
    }
)
"""Environment variable -> the config field it sets (dotted path)."""

LEGACY_ENVIRONMENT_VARIABLES: Final[Mapping[str, str]] = MappingProxyType(
    {
        "CACHENESS_MAX_SIZE_MB": "CACHENESS_MAX_CACHE_SIZE_MB",
        "CACHENESS_BACKEND": "CACHENESS_METADATA_BACKEND",
    }
)
"""Cacheness 0.4's variable -> today's name: still read (with an INFO log line)."""

_ALL_VARIABLES: Final = (
    *ENVIRONMENT_VARIABLES,
    *LEGACY_ENVIRONMENT_VARIABLES,
    CONFIG_FILE_VARIABLE,
)
_STORAGE_DEFAULTS: Final = SerializationOptions()
_OPTION_FIELDS: Final = frozenset(SerializationOptions.__struct_fields__)
_TRUE = frozenset({"1", "true", "yes", "on"})
_FALSE = frozenset({"0", "false", "no", "off"})
_NONE = frozenset({"none", "null"})
_SECRET_WORDS = ("password", "secret", "token", "credential")


def default_cache_dir(environ: Mapping[str, str] | None = None) -> str:
    """Return the default cache directory: ``$CACHENESS_DIR``, else the user cache dir.

    The user cache directory is ``$XDG_CACHE_HOME/cacheness`` or ``~/.cache/cacheness``
    on Linux, ``~/Library/Caches/cacheness`` on macOS and ``%LOCALAPPDATA%\\cacheness``
    on Windows. Nothing is created.

    Args:
        environ: the environment to read (default: ``os.environ``).

    Example:
        >>> default_cache_dir({"CACHENESS_DIR": "/srv/cache"})
        '/srv/cache'
        >>> default_cache_dir({"XDG_CACHE_HOME": "/xdg"}).replace("\\\\", "/")  # doctest: +SKIP
        '/xdg/cacheness'
    """
    env = os.environ if environ is None else environ
    explicit = env.get("CACHENESS_DIR", "").strip()
    if explicit:
        return os.path.expanduser(explicit)
    if sys.platform == "win32":
        base = env.get("LOCALAPPDATA") or os.path.expanduser(r"~\AppData\Local")
    elif sys.platform == "darwin":
        base = os.path.expanduser("~/Library/Caches")
    else:
        xdg = env.get("XDG_CACHE_HOME", "")
        base = xdg if os.path.isabs(xdg) else os.path.expanduser("~/.cache")
    return os.path.join(base, "cacheness")


def _local_path(value: Any) -> Any:
    """Return a path setting as a string with ``~`` expanded; other values unchanged."""
    if isinstance(value, os.PathLike):
        value = os.fspath(value)
    return os.path.expanduser(value) if isinstance(value, str) else value


def _redacted(options: Any) -> Any:
    if not isinstance(options, Mapping):
        return options
    shown = {}
    for key, value in options.items():
        if any(word in str(key).lower() for word in _SECRET_WORDS):
            shown[key] = "***"
        elif isinstance(value, str):
            shown[key] = redact_url(value)
        else:
            shown[key] = value
    return shown


def _section_repr(section: Any) -> str:
    parts = []
    for item in fields(section):
        value = getattr(section, item.name)
        if item.name == "options":
            value = _redacted(value)
        elif isinstance(value, str):
            value = redact_url(value)
        parts.append(f"{item.name}={value!r}")
    return f"{type(section).__name__}({', '.join(parts)})"


@tracks_explicit
@dataclass(repr=False)
class CacheMetadataConfig:
    """Where the index of entries lives: a metadata backend and its options.

    The shortcut fields fill the backend's options (``connection_url`` becomes
    ``options["url"]``); giving one setting two different values is a ``ConfigError``
    when the config is used. The repr masks passwords.

    Attributes:
        backend: a registered metadata backend name (``"sqlite"`` default, ``"json"``,
            ``"memory"``, ``"postgresql"``, or your own) or, in code, a ready
            ``MetadataBackend`` instance.
        options: keyword options for the backend (e.g. ``{"pool_size": 10}``). The names
            ``connection_url`` and ``table_name`` are accepted for ``url`` and ``table``.
        connection_url: the postgresql URL (``postgresql://user@host/db``); for sqlite a
            ``sqlite:///path`` URL also works.
        table: the table name (postgresql, sqlite); lets several caches share a database.
        schema: the postgresql schema.
        path: the sqlite or json index file; default ``<cache_dir>/index.sqlite`` (``.json``).
            ``~`` is expanded in every path setting.

    Example:
        >>> CacheMetadataConfig("postgresql", connection_url="postgresql://me:pw@db/cache")
        CacheMetadataConfig(backend='postgresql', options={}, connection_url='postgresql://me:***@db/cache', table=None, schema=None, path=None)
    """  # noqa: E501 - the doctest output is one line

    backend: MetadataBackendSpec = "sqlite"
    options: dict[str, Any] = field(default_factory=dict)
    connection_url: str | None = None
    table: str | None = None
    schema: str | None = None
    path: str | None = None

    def __post_init__(self) -> None:
        self.path = _local_path(self.path)

    def __repr__(self) -> str:
        return _section_repr(self)


@tracks_explicit
@dataclass(repr=False)
class CacheBlobConfig:
    """Where the bytes go: a blob backend and its options.

    Attributes:
        backend: a registered blob backend name (``"filesystem"`` default, ``"memory"``,
            ``"s3"``, ``"tiered"``, ``"failover"``, or your own) or, in code, a ready
            ``BlobBackend`` instance.
        options: keyword options for the backend (e.g. ``{"max_attempts": 10}`` for s3,
            ``{"remote": {"backend": "s3", "bucket": ...}}`` for tiered).
        root: the filesystem directory; default ``<cache_dir>/blobs``.
        bucket: the s3 bucket (required for s3).
        prefix: the s3 key prefix, e.g. ``"team/v1/"``.
        endpoint_url: an S3-compatible server, e.g. ``http://minio.local:9000``.
        region: the s3 region.
        shard_chars: git-style sharding of blob names (s3, filesystem: default 2).

    Example:
        >>> CacheBlobConfig("s3", bucket="team-cache", prefix="v1/").bucket
        'team-cache'
    """

    backend: BlobBackendSpec = "filesystem"
    options: dict[str, Any] = field(default_factory=dict)
    root: str | None = None
    bucket: str | None = None
    prefix: str = ""
    endpoint_url: str | None = None
    region: str | None = None
    shard_chars: int | None = None

    def __post_init__(self) -> None:
        self.root = _local_path(self.root)

    def __repr__(self) -> str:
        return _section_repr(self)


@tracks_explicit
@dataclass
class CompressionConfig:
    """How stored bytes are compressed (the codec fields of ``SerializationOptions``).

    Attributes:
        codec: ``"auto"`` (each handler's choice; small or incompressible data stays
            raw), ``"zstd"``, ``"gzip"``, ``"blosc2"`` or ``"none"``.
        level: zstd (-7..22) or gzip (0..9) level; None for the codec's default.
        blosc2_codec: Blosc2's inner codec (``lz4``, ``lz4hc``, ``zstd``, ``zlib``, ``blosclz``).
        blosc2_clevel: Blosc2 level 0..9.
        blosc2_shuffle: ``auto`` (bit shuffle for Arrow tables, byte shuffle otherwise),
            ``noshuffle``, ``shuffle`` or ``bitshuffle``.
        nthreads: compression threads; None uses every core this process may use.
        chunk_size: streaming chunk in bytes.
        auto_min_size: ``auto`` leaves payloads smaller than this uncompressed.
        auto_sample_size: bytes ``auto`` compresses to decide.
        auto_min_saving: ``auto`` compresses only if the sample shrinks by this fraction.

    Example:
        >>> CompressionConfig(codec="zstd", level=19).level
        19
    """

    codec: str = _STORAGE_DEFAULTS.codec
    level: int | None = _STORAGE_DEFAULTS.level
    blosc2_codec: str = _STORAGE_DEFAULTS.blosc2_codec
    blosc2_clevel: int = _STORAGE_DEFAULTS.blosc2_clevel
    blosc2_shuffle: str = _STORAGE_DEFAULTS.blosc2_shuffle
    nthreads: int | None = _STORAGE_DEFAULTS.nthreads
    chunk_size: int = _STORAGE_DEFAULTS.chunk_size
    auto_min_size: int = _STORAGE_DEFAULTS.auto_min_size
    auto_sample_size: int = _STORAGE_DEFAULTS.auto_sample_size
    auto_min_saving: float = _STORAGE_DEFAULTS.auto_min_saving


@tracks_explicit
@dataclass
class SerializationConfig:
    """How objects become stored bytes.

    Attributes:
        dataframe_format: ``"auto"`` (pandas, pyarrow: Arrow IPC; polars: Parquet),
            ``"arrow"`` or ``"parquet"``.
        allow_cloudpickle: fall back to cloudpickle for lambdas and closures (the bytes
            then load only under the same Python and source).
        mmap_mode: ``"r"`` or ``"c"`` to memory-map uncompressed numpy arrays on a local
            filesystem; None reads them into memory.
        inline_threshold: payloads smaller than this many bytes are kept in the index
            entry itself, with no blob (0 disables); None (default): the index's choice,
            64 KiB (4 KiB for the JSON index).
        content_addressable: name blobs by their content hash so identical values are
            stored once.

    Example:
        >>> SerializationConfig(inline_threshold=0).inline_threshold
        0
    """

    dataframe_format: str = _STORAGE_DEFAULTS.dataframe_format
    allow_cloudpickle: bool = _STORAGE_DEFAULTS.allow_cloudpickle
    mmap_mode: str | None = _STORAGE_DEFAULTS.mmap_mode
    inline_threshold: int | None = None
    content_addressable: bool = False


@tracks_explicit
@dataclass
class HandlersConfig:
    """Which serialization handlers the cache uses, in which order.

    With every field empty the cache uses the process-wide registry of
    ``cacheness.storage`` (handlers registered later with ``register_handler`` are seen);
    otherwise a copy of it, changed as below.

    Attributes:
        disabled: names of handlers to leave out (e.g. ``["objects"]`` refuses pickle).
        priorities: handler name -> priority (higher is asked first; built-ins: raw 60,
            plain 50, numpy 40, pandas 30, arrow 20, polars 10, objects -100).
        custom: handlers to add: ``"module:Class"`` import paths (config files) or, in
            code, ``Handler`` classes or instances. Their priority comes from
            ``priorities`` (default 0).

    Example:
        >>> HandlersConfig(disabled=["objects"]).disabled
        ['objects']
    """

    disabled: list[str] = field(default_factory=list)
    priorities: dict[str, int] = field(default_factory=dict)
    custom: list[HandlerSpec] = field(default_factory=list)


@tracks_explicit
@dataclass
class SecurityConfig:
    """Integrity and signing settings (see the Security page of the docs).

    Attributes:
        verify_reads: check the size and XXH3 hash of the stored bytes on every read;
            a mismatch is an ``IntegrityError`` (a miss unless the cache is strict).
            With signing on, bytes of formats that can run code (pickle) are checked
            whatever this says; with False, other blobs are not, so whoever can write
            blobs can change what a data read returns.
        entry_signing: sign every entry (HMAC-SHA256) and check the signature before
            decoding. None (default) is on whenever a handler can unpickle; False
            turns it off: then whoever can write the index can make a pickle run.
            ``enable_entry_signing`` is an alias.
        signing_key: the key (hex or base64 text, bytes or a ``SigningKey``); never
            printed, never written by ``save_config_to_json``. Prefer the
            ``CACHENESS_SIGNING_KEY`` environment variable or ``signing_key_file``.
        signing_key_file: a file holding the key, readable only by its owner.
        signing_keys: older keys still accepted after a rotation (new signatures use
            ``signing_key`` or the key found otherwise); run ``cache.resign()``.
        unsigned_fields: opt-outs from what is signed: ``"metadata"`` (the user's
            metadata) and ``"key_parameters"``; the payload fields are always signed.
        signed_fields: the exact list of signed fields instead (names of
            ``cacheness.storage.DEFAULT_SIGNED_FIELDS`` or ``"metadata.<name>"``);
            ``custom_signed_fields`` is an alias.
        unsigned: entries without a signature (written before signing was on):
            ``"reject"``, ``"accept_data_only"`` (default) or ``"accept"``.
        delete_invalid_signatures: delete an entry whose signature fails when it is
            read (otherwise it stays: it may be valid under a key this process lacks).
        use_in_memory_key: sign with a key made when the cache opens and kept in memory
            only: entries written by other cache objects, processes and earlier runs
            read as invalid (tests, throwaway caches).

    Example:
        >>> SecurityConfig().verify_reads, SecurityConfig().unsigned
        (True, 'accept_data_only')
        >>> SecurityConfig(signing_key="ab" * 32)  # doctest: +ELLIPSIS
        SecurityConfig(verify_reads=True, entry_signing=None, signing_key='***', ...)
        >>> SecurityConfig(enable_entry_signing=False).entry_signing
        False
    """

    verify_reads: bool = True
    entry_signing: bool | None = None
    signing_key: KeySpec | None = None
    signing_key_file: str | None = None
    signing_keys: list[KeySpec] = field(default_factory=list)
    unsigned_fields: list[str] = field(default_factory=list)
    signed_fields: list[str] | None = None
    unsigned: str = "accept_data_only"
    delete_invalid_signatures: bool = False
    use_in_memory_key: bool = False
    enable_entry_signing: InitVar[bool | None] = None
    custom_signed_fields: InitVar[list[str] | None] = None

    def __post_init__(
        self, enable_entry_signing: bool | None, custom_signed_fields: list[str] | None
    ) -> None:
        if enable_entry_signing is not None:
            self.entry_signing = enable_entry_signing
            mark_explicit(self, ["entry_signing"])
        if custom_signed_fields is not None:
            self.signed_fields = list(custom_signed_fields)
            mark_explicit(self, ["signed_fields"])
        if self.signing_key_file is not None:
            self.signing_key_file = _local_path(self.signing_key_file)

    def __repr__(self) -> str:
        parts = []
        for item in fields(self):
            value = getattr(self, item.name)
            if item.name == "signing_key" and value is not None:
                value = "***"
            elif item.name == "signing_keys":
                value = ["***"] * len(value)
            parts.append(f"{item.name}={value!r}")
        return f"SecurityConfig({', '.join(parts)})"

    def signing_options(self) -> dict[str, Any]:
        """Return the signing keyword arguments of ``BlobStore`` for these settings.

        The key is not looked for here unless older keys are given (the store looks:
        explicit key, ``CACHENESS_SIGNING_KEY``, key file, the per-user key).

        Raises:
            ConfigError: an unknown opt-out, or older keys without a current key.

        Example:
            >>> options = SecurityConfig(unsigned_fields=["key_parameters"]).signing_options()
            >>> "metadata" in options["signed_fields"], options["unsigned_paths"]
            (True, ['metadata._cacheness.params'])
        """
        from cacheness.storage import DEFAULT_SIGNED_FIELDS, SigningKey, resolve_signing_key

        unknown = sorted(set(self.unsigned_fields) - set(_UNSIGNABLE))
        if unknown:
            raise ConfigError(
                f"security.unsigned_fields: unknown field {unknown[0]!r}; the fields that can "
                f"be left unsigned are {', '.join(_UNSIGNABLE)} (the payload fields are "
                "always signed)"
            )
        signed = list(DEFAULT_SIGNED_FIELDS)
        if self.signed_fields is not None:
            signed = list(self.signed_fields)
        elif "metadata" in self.unsigned_fields:  # the cache's own facts stay signed
            signed = [name for name in signed if name != "metadata"]
            signed.append(f"metadata.{RESERVED_METADATA_KEY}")
        exclude = []
        if "key_parameters" in self.unsigned_fields:
            exclude.append(f"metadata.{RESERVED_METADATA_KEY}.params")
        key: Any = self.signing_key
        if self.use_in_memory_key and key is None:
            key = SigningKey.generate()
        if self.signing_keys:
            current = resolve_signing_key(key, key_file=self.signing_key_file)
            if current is None:
                raise ConfigError(
                    "security.signing_keys lists older keys, but no current key is set: set "
                    "security.signing_key, CACHENESS_SIGNING_KEY or a key file"
                )
            key = [current, *self.signing_keys]
        return {
            "signing": self.entry_signing,
            "signing_key": key,
            "signing_key_file": self.signing_key_file,
            "signed_fields": signed,
            "unsigned_paths": exclude,
            "unsigned": self.unsigned,
            "delete_invalid_signatures": self.delete_invalid_signatures,
        }


_UNSIGNABLE: Final = ("metadata", "key_parameters")
"""What ``SecurityConfig.unsigned_fields`` may name."""


@tracks_explicit
@dataclass
class MemoryCacheConfig:
    """The optional in-process memory layer in front of the index and the blobs.

    Values read by ``get`` (and ``@cached`` hits) are kept in this process, bounded by
    entries and bytes, so that the next ``get`` of the same key skips the blob read and
    the decoding. It never serves what another process replaced, deleted, expired or
    evicted on SQLite (the index tells cheaply whether anyone committed); on the other
    indexes (PostgreSQL, JSON) ``staleness_seconds`` says how long a value may be served
    without asking the index. See the "Memory layer" page of the docs.

    Attributes:
        enabled: turn the layer on (default off). Flat alias: ``enable_memory_cache``.
        max_entries: values kept at most; the least recently used go first.
            Flat alias: ``memory_cache_maxsize``.
        max_bytes: bytes kept at most (the values' uncompressed stored sizes); a value
            larger than this is never kept.
        staleness_seconds: on indexes that cannot tell cheaply whether anything changed
            (PostgreSQL, JSON), how long after it was last checked a value is served
            without asking the index; 0 (default) asks the index on every ``get`` (one
            metadata query, no blob read). SQLite and the memory index are always exact
            and ignore it. Flat alias: ``memory_cache_ttl_seconds``.
        policy: ``"lru"`` (default) or ``"fifo"``. Flat alias: ``memory_cache_type``.
        stats: report the layer's counters (``memory_hits``, ``memory_entries``,
            ``memory_bytes``, ``memory_evictions``) in ``get_stats()``.
            Flat alias: ``memory_cache_stats``.

    Example:
        >>> MemoryCacheConfig(enabled=True, max_entries=500).max_bytes
        67108864
        >>> CacheConfig(enable_memory_cache=True, memory_cache_maxsize=100).memory_cache
        MemoryCacheConfig(enabled=True, max_entries=100, max_bytes=67108864, staleness_seconds=0.0, policy='lru', stats=True)
    """  # noqa: E501 - the doctest output is one line

    enabled: bool = False
    max_entries: int = 1000
    max_bytes: int = 64 * 1024 * 1024
    staleness_seconds: float = 0.0
    policy: str = "lru"
    stats: bool = True


_SECTION_TYPES: Final[dict[str, type]] = {
    "metadata": CacheMetadataConfig,
    "blob": CacheBlobConfig,
    "compression": CompressionConfig,
    "serialization": SerializationConfig,
    "handlers": HandlersConfig,
    "security": SecurityConfig,
    "memory_cache": MemoryCacheConfig,
}


# flat shortcut -> (section, field it folds into)
_FLAT: Final = {
    "metadata_backend": ("metadata", "backend"),
    "metadata_backend_options": ("metadata", "options"),
    "backend_options": ("metadata", "options"),
    "blob_backend": ("blob", "backend"),
    "blob_backend_options": ("blob", "options"),
    # the seeds' names of the memory layer's settings
    "enable_memory_cache": ("memory_cache", "enabled"),
    "memory_cache_type": ("memory_cache", "policy"),
    "memory_cache_maxsize": ("memory_cache", "max_entries"),
    "memory_cache_ttl_seconds": ("memory_cache", "staleness_seconds"),
    "memory_cache_stats": ("memory_cache", "stats"),
}
_SHORTCUT_SECTIONS: Final = frozenset(section for section, _ in _FLAT.values())


@tracks_explicit
@dataclass
class CacheConfig:
    """Everything a cache needs: storage sections and the cache policy.

    The flat shortcuts ``metadata_backend``, ``metadata_backend_options`` (older name:
    ``backend_options``), ``blob_backend`` and ``blob_backend_options`` are folded into
    the ``metadata`` and ``blob`` sections when the config is built; read the sections
    afterwards (the shortcut attributes read as None). A shortcut that contradicts its
    section raises ``ConfigError``.

    Attributes:
        cache_dir: directory of the embedded backends (sqlite index, blob files) and of
            the cache's lock files; default ``$CACHENESS_DIR`` or the user cache dir
            (:func:`default_cache_dir`).
        metadata: the index (:class:`CacheMetadataConfig`); a mapping is converted.
        blob: the bytes (:class:`CacheBlobConfig`); a mapping is converted.
        compression: :class:`CompressionConfig`.
        serialization: :class:`SerializationConfig`.
        handlers: :class:`HandlersConfig`.
        security: :class:`SecurityConfig`.
        memory_cache: the in-process memory layer (:class:`MemoryCacheConfig`), off by
            default; the seeds' flat names (``enable_memory_cache``,
            ``memory_cache_type``, ``memory_cache_maxsize``, ``memory_cache_ttl_seconds``,
            ``memory_cache_stats``) are accepted as shortcuts into it.
        default_ttl_seconds: entries expire this many seconds after they are written;
            None (default) means never.
        max_cache_size_mb: evict when the stored bytes exceed this many MiB.
        max_entries: evict when there are more entries than this.
        eviction_policy: ``"lru"`` (default), ``"lfu"`` or ``"fifo"``.
        access_update_interval_seconds: a hit records its access time only when the
            stored one is older than this (LRU precision; 0 writes on every hit).
        strict: raise instead of turning unreadable entries into misses.
        hash_unknown: ``"error"`` (default) or ``"pickle"``: how key arguments of
            unsupported types are treated (see ``cacheness.keys.derive_key``).
        allow_unsafe_pairing: open a metadata/blob pairing that is refused by default
            (e.g. a local SQLite index over a shared S3 bucket); see the docs.
        cleanup_on_init: delete the expired entries when a cache opens (as
            Cacheness 0.4 did with this option); default False.

    Raises:
        ConfigError: a flat shortcut contradicts its section.

    Example:
        >>> config = CacheConfig(
        ...     cache_dir="/srv/cache",
        ...     metadata_backend="postgresql",
        ...     metadata_backend_options={"connection_url": "postgresql://db/cache"},
        ...     blob=CacheBlobConfig(backend="s3", bucket="team-cache"),
        ... )
        >>> config.metadata.backend, config.metadata.options
        ('postgresql', {'connection_url': 'postgresql://db/cache'})
        >>> config.replace(max_entries=1000).max_entries
        1000
    """

    cache_dir: str = field(default_factory=default_cache_dir)
    metadata: CacheMetadataConfig = field(default_factory=CacheMetadataConfig)
    blob: CacheBlobConfig = field(default_factory=CacheBlobConfig)
    compression: CompressionConfig = field(default_factory=CompressionConfig)
    serialization: SerializationConfig = field(default_factory=SerializationConfig)
    handlers: HandlersConfig = field(default_factory=HandlersConfig)
    security: SecurityConfig = field(default_factory=SecurityConfig)
    memory_cache: MemoryCacheConfig = field(default_factory=MemoryCacheConfig)
    default_ttl_seconds: float | None = None
    max_cache_size_mb: float | None = None
    max_entries: int | None = None
    eviction_policy: str = "lru"
    access_update_interval_seconds: float = 60.0
    strict: bool = False
    hash_unknown: str = "error"
    allow_unsafe_pairing: bool = False
    cleanup_on_init: bool = False
    metadata_backend: InitVar[MetadataBackendSpec | None] = None
    metadata_backend_options: InitVar[dict[str, Any] | None] = None
    blob_backend: InitVar[BlobBackendSpec | None] = None
    blob_backend_options: InitVar[dict[str, Any] | None] = None
    backend_options: InitVar[dict[str, Any] | None] = None
    enable_memory_cache: InitVar[bool | None] = None
    memory_cache_type: InitVar[str | None] = None
    memory_cache_maxsize: InitVar[int | None] = None
    memory_cache_ttl_seconds: InitVar[float | None] = None
    memory_cache_stats: InitVar[bool | None] = None

    def __post_init__(
        self,
        metadata_backend: MetadataBackendSpec | None,
        metadata_backend_options: Mapping[str, Any] | None,
        blob_backend: BlobBackendSpec | None,
        blob_backend_options: Mapping[str, Any] | None,
        backend_options: Mapping[str, Any] | None,
        enable_memory_cache: bool | None,
        memory_cache_type: str | None,
        memory_cache_maxsize: int | None,
        memory_cache_ttl_seconds: float | None,
        memory_cache_stats: bool | None,
    ) -> None:
        self.cache_dir = _local_path(self.cache_dir)
        for name, section_type in _SECTION_TYPES.items():
            value = getattr(self, name)
            if isinstance(value, Mapping):  # a section written as a dict
                setattr(self, name, from_mapping(section_type, value, name))
        shortcuts = {
            "metadata_backend": metadata_backend,
            "metadata_backend_options": metadata_backend_options,
            "backend_options": backend_options,
            "blob_backend": blob_backend,
            "blob_backend_options": blob_backend_options,
            "enable_memory_cache": enable_memory_cache,
            "memory_cache_type": memory_cache_type,
            "memory_cache_maxsize": memory_cache_maxsize,
            "memory_cache_ttl_seconds": memory_cache_ttl_seconds,
            "memory_cache_stats": memory_cache_stats,
        }
        sections = {name: getattr(self, name) for name in _SHORTCUT_SECTIONS}
        changed = _fold_shortcuts(sections, shortcuts, override=())
        for name in changed:
            setattr(self, name, sections[name])
        mark_explicit(self, changed)

    def replace(self, **changes: Any) -> CacheConfig:
        """Return a copy with ``changes`` applied: top-level fields, sections, shortcuts.

        A section passed whole replaces the old one. ``metadata_backend`` /
        ``blob_backend`` naming another backend start that section afresh (settings
        made for one backend do not carry over to another); the ``*_options`` shortcuts
        add keys to the section's options, replacing keys already there.

        Raises:
            ConfigError: an unknown field (with a suggestion), or options that are not
                a mapping.

        Example:
            >>> base = CacheConfig(cache_dir="/tmp/c", metadata_backend="json")
            >>> base.replace(metadata_backend="memory").metadata.backend
            'memory'
            >>> base.replace(max_entires=5)  # doctest: +ELLIPSIS
            Traceback (most recent call last):
            ...
            cacheness.storage.errors.ConfigError: unknown configuration field 'max_entires' (did you mean 'max_entries'?)...
        """  # noqa: E501 - the doctest output is one line
        known = init_names(CacheConfig)
        for name in changes:
            if name not in known:
                raise ConfigError(
                    f"unknown configuration field {name!r}{suggest_name(name, known)}; "
                    f"known: {', '.join(known)}"
                )
        values = {item.name: copy_value(getattr(self, item.name)) for item in fields(self)}
        shortcuts = {name: changes.pop(name) for name in _FLAT if name in changes}
        values.update((name, copy_value(value)) for name, value in changes.items())
        # a section given whole too: its shortcuts must agree with it (contradictions raise)
        _fold_shortcuts(values, shortcuts, override=_SHORTCUT_SECTIONS - set(changes))
        return CacheConfig(**values)

    def to_dict(self) -> dict[str, Any]:
        """Return the config as plain data (what :func:`save_config_to_json` writes).

        Signing keys are left out (``security.signing_key`` None, ``signing_keys``
        empty): a secret never goes into a file by accident; keep it in the
        environment, a key file or a secret manager.

        Raises:
            ConfigError: the config holds an object with no plain-data form (a backend
                instance, a handler instance).

        Example:
            >>> data = CacheConfig(cache_dir="/c").to_dict()
            >>> data["max_entries"], data["metadata"]
            (None, {'backend': 'sqlite', 'options': {}, 'connection_url': None,
                    'table': None, 'schema': None, 'path': None})
        """
        security = self.security
        if security.signing_key is None and not security.signing_keys:
            return to_builtins(self)
        clone = copy_value(self)
        clone.security.signing_key = None
        clone.security.signing_keys = []
        return to_builtins(clone)

    def serialization_options(self) -> SerializationOptions:
        """Return the ``SerializationOptions`` of the compression and serialization sections.

        Raises:
            ConfigError: a codec or serialization setting is unknown or out of range.

        Example:
            >>> CacheConfig(compression=CompressionConfig(codec="zstd")).serialization_options().codec
            'zstd'
        """  # noqa: E501 - the doctest line
        return SerializationOptions(
            **_storage_options(self.compression), **_storage_options(self.serialization)
        )

    def blob_store_options(self) -> dict[str, Any]:
        """Return the keyword arguments of ``cacheness.storage.BlobStore`` for this config.

        Default locations are resolved under ``cache_dir`` (``index.sqlite`` or
        ``index.json`` for the index, ``blobs/`` for filesystem blobs, ``tiered/`` for a
        tiered backend's local copies) and the section shortcuts are merged into the
        backends' options. Nothing is opened or created.

        Returns:
            ``path``, ``metadata_backend``, ``metadata_options``, ``blob_backend``,
            ``blob_options``, ``handlers``, ``serialization``, ``inline_threshold``,
            ``content_addressable``, ``verify_reads``, ``allow_unsafe_pairing`` and
            the signing options (:meth:`SecurityConfig.signing_options`).

        Raises:
            ConfigError: two settings contradict each other, a handler cannot be
                loaded, or a serialization setting is invalid.

        Example:
            >>> options = CacheConfig(cache_dir="/srv/cache").blob_store_options()
            >>> metadata, blobs = options["metadata_options"], options["blob_options"]
            >>> metadata["path"].as_posix(), blobs["root"].as_posix()
            ('/srv/cache/index.sqlite', '/srv/cache/blobs')
        """
        cache_dir = Path(self.cache_dir).expanduser()
        resolved = [
            resolve_backend("metadata", self.metadata, cache_dir),
            resolve_backend("blob", self.blob, cache_dir),
        ]
        problems = [problem for r in resolved for problem in r.problems]
        if problems:
            raise ConfigError("; ".join(problems))
        metadata, blob = resolved
        return {
            "path": cache_dir,
            "metadata_backend": metadata.backend,
            "metadata_options": metadata.options,
            "blob_backend": blob.backend,
            "blob_options": blob.options,
            "handlers": _handler_registry(self.handlers),
            "serialization": self.serialization_options(),
            "inline_threshold": self.serialization.inline_threshold,
            "content_addressable": self.serialization.content_addressable,
            "verify_reads": self.security.verify_reads,
            "allow_unsafe_pairing": self.allow_unsafe_pairing,
            **self.security.signing_options(),
        }


def _fold_shortcuts(
    sections: dict[str, Any], shortcuts: Mapping[str, Any], *, override: Container[str]
) -> list[str]:
    """Fold the flat shortcuts into their sections (replaced in ``sections``): THE folding.

    Backends first, then options. In a section named in ``override`` (a change made by
    :meth:`CacheConfig.replace`) a shortcut wins: a backend naming another starts the
    section afresh (settings made for one backend do not carry over to another) and
    options replace the keys they name. Elsewhere (values given together) a shortcut
    that contradicts its section raises ``ConfigError``. Returns the sections changed.
    """
    changed: list[str] = []
    for name in sorted(shortcuts, key=lambda n: _FLAT[n][1] != "backend"):
        value = shortcuts[name]
        if value is None:
            continue
        section_name, attribute = _FLAT[name]
        section = copy_value(sections[section_name])
        wins = section_name in override
        if attribute == "backend":
            if same_backend(section.backend, value):
                pass  # said explicitly, so it wins over lower layers even as the default
            elif wins:
                section = type(section)(backend=value)
            elif same_backend(section.backend, type(section)().backend):
                section.backend = value
            else:
                raise ConfigError(
                    f"{name}={value!r} contradicts {section_name}.backend={section.backend!r}; "
                    "set the backend in one place"
                )
        elif attribute != "options":  # a plain setting (the memory layer's)
            current = getattr(section, attribute)
            if not wins and attribute in explicit_fields(section) and current != value:
                raise ConfigError(
                    f"{name}={value!r} contradicts {section_name}.{attribute}={current!r}; "
                    "set it in one place"
                )
            setattr(section, attribute, value)
        else:
            for key, option in _options_mapping(name, value).items():
                if not wins and key in section.options and section.options[key] != option:
                    raise ConfigError(
                        f"{name}[{key!r}] contradicts {section_name}.options[{key!r}]; "
                        "set the option in one place"
                    )
                section.options[key] = copy_value(option)
        mark_explicit(section, [attribute])
        sections[section_name] = section
        if section_name not in changed:
            changed.append(section_name)
    return changed


def _options_mapping(name: str, value: Any) -> Mapping[str, Any]:
    if not isinstance(value, Mapping):
        raise ConfigError(f"{name} must be a mapping of backend options, got {value!r}")
    return value


# --------------------------------------------------------------------------- handlers


def _handler_registry(config: HandlersConfig) -> HandlerRegistry:
    """Return the handler registry ``config`` describes (the process-wide one if empty)."""
    if config == HandlersConfig():
        return default_registry()
    registry = default_registry().copy()
    for name in config.disabled:
        registry.unregister(name)
    for spec in config.custom:
        try:
            registry.register(spec)
        except (ConfigError, TypeError) as exc:
            raise ConfigError(f"handlers.custom: {exc}") from exc
    for name, priority in config.priorities.items():
        registry.set_priority(name, priority)
    return registry


def _handler_problems(config: HandlersConfig) -> list[str]:
    problems = []
    known = default_registry().list()
    custom_names = []
    scratch = HandlerRegistry()
    for spec in config.custom:
        try:
            custom_names.append(scratch.register(spec).name)
        except (ConfigError, TypeError) as exc:
            problems.append(f"handlers.custom: {exc}")
    for name in config.disabled:
        if name not in known:
            problems.append(
                f"handlers.disabled: no handler named {name!r}{did_you_mean(name, known)}; "
                f"registered: {', '.join(known)}"
            )
    usable = [n for n in [*known, *custom_names] if n not in config.disabled]
    for name in config.priorities:
        if name not in usable:
            problems.append(
                f"handlers.priorities: no handler named {name!r}{did_you_mean(name, usable)}; "
                f"available: {', '.join(usable)}"
            )
    if not problems:
        try:
            _handler_registry(config)
        except ConfigError as exc:
            problems.append(str(exc))
    return problems


# --------------------------------------------------------------------------- validation


def _value_problems(config: CacheConfig) -> list[str]:
    problems = [
        number_problem("default_ttl_seconds", config.default_ttl_seconds),
        number_problem("max_cache_size_mb", config.max_cache_size_mb),
        number_problem("max_entries", config.max_entries, integer=True),
        number_problem(
            "access_update_interval_seconds", config.access_update_interval_seconds, zero=True
        ),
        number_problem(
            "serialization.inline_threshold",
            config.serialization.inline_threshold,
            integer=True,
            zero=True,
        ),
        choice_problem("eviction_policy", config.eviction_policy, EVICTION_POLICIES),
        choice_problem("hash_unknown", config.hash_unknown, get_args(HashUnknown)),
        number_problem("memory_cache.max_entries", config.memory_cache.max_entries, integer=True),
        number_problem("memory_cache.max_bytes", config.memory_cache.max_bytes, integer=True),
        number_problem(
            "memory_cache.staleness_seconds", config.memory_cache.staleness_seconds, zero=True
        ),
        choice_problem("memory_cache.policy", config.memory_cache.policy, MEMORY_CACHE_POLICIES),
    ]
    cache_dir = config.cache_dir
    if isinstance(cache_dir, str):
        if not cache_dir.strip():
            problems.append("cache_dir must be a directory path, got an empty string")
        elif os.path.exists(os.path.expanduser(cache_dir)) and not os.path.isdir(
            os.path.expanduser(cache_dir)
        ):
            problems.append(f"cache_dir {cache_dir!r} exists but is not a directory")
    shard_chars = config.blob.shard_chars
    if isinstance(shard_chars, int) and not isinstance(shard_chars, bool):
        try:
            from cacheness.storage import MemoryBlobBackend

            MemoryBlobBackend(shard_chars=shard_chars)  # the storage's own range check
        except ConfigError as exc:
            problems.append(f"blob.shard_chars: {exc}")
    return [problem for problem in problems if problem is not None]


def _storage_options(section: CompressionConfig | SerializationConfig) -> dict[str, Any]:
    """The values of ``section``'s fields that are ``SerializationOptions`` fields, by name."""
    return {f.name: getattr(section, f.name) for f in fields(section) if f.name in _OPTION_FIELDS}


def _serialization_problems(config: CacheConfig) -> list[str]:
    problems = []
    for name in ("compression", "serialization"):
        try:
            SerializationOptions(**_storage_options(getattr(config, name)))
        except (ConfigError, TypeError, ValueError) as exc:
            problems.append(f"{name}: {exc}")
    return problems


def validate_config(config: CacheConfig) -> list[str]:
    """Return every problem of ``config`` as an actionable message (empty: valid).

    Checks value types, ranges (TTL, sizes, eviction policy, codecs), backend names
    (with a suggestion for typos) and the options each backend takes, required options
    (s3 without a bucket, postgresql without a URL), handler names, and the
    metadata/blob pairing. Backend classes are imported to read their options; nothing
    is opened, connected or created.

    Args:
        config: the configuration to check.

    Returns:
        The problems, each starting with the field it concerns.

    Raises:
        TypeError: ``config`` is not a ``CacheConfig``.

    Example:
        >>> validate_config(CacheConfig(cache_dir="/c", eviction_policy="lruu", max_entries=0))
        ['max_entries must be a finite number > 0, got 0', "eviction_policy must be one of lru, lfu, fifo; got 'lruu' (did you mean 'lru'?)"]
        >>> validate_config(CacheConfig(cache_dir="/c", blob_backend="s3"))  # doctest: +ELLIPSIS
        ["blob: the s3 blob backend needs 'bucket'; set blob.bucket (or CACHENESS_S3_BUCKET)", ...]
    """  # noqa: E501 - doctest output lines
    if not isinstance(config, CacheConfig):
        raise TypeError(f"validate_config() takes a CacheConfig, got {type(config).__name__}")
    problems = check_types(config)
    if any(not isinstance(getattr(config, name), cls) for name, cls in _SECTION_TYPES.items()):
        return problems  # a section is not even a section: the type problems say which
    problems += _value_problems(config)
    problems += _serialization_problems(config)
    problems += _handler_problems(config.handlers)
    cache_dir = Path(os.path.expanduser(str(config.cache_dir)))
    resolved: list[ResolvedBackend] = []
    kinds: tuple[tuple[Kind, Any], ...] = (("metadata", config.metadata), ("blob", config.blob))
    for kind, section in kinds:
        backend = resolve_backend(kind, section, cache_dir)
        problems += backend_problems(backend)
        resolved.append(backend)
    if not config.allow_unsafe_pairing:
        problems += pairing_problems(*resolved)
    return problems


def validate_config_strict(config: CacheConfig) -> None:
    """Raise ``ConfigError`` listing every problem of ``config``; return None if valid.

    Raises:
        ConfigError: the config has problems (all of them are in the message).
        TypeError: ``config`` is not a ``CacheConfig``.

    Example:
        >>> validate_config_strict(CacheConfig(cache_dir="/c", default_ttl_seconds=-1))
        Traceback (most recent call last):
        ...
        cacheness.storage.errors.ConfigError: invalid cacheness configuration (1 problem):
          - default_ttl_seconds must be a finite number > 0, got -1
    """
    problems = validate_config(config)
    if problems:
        count = f"{len(problems)} problem{'s' if len(problems) > 1 else ''}"
        listing = "\n".join(f"  - {problem}" for problem in problems)
        raise ConfigError(f"invalid cacheness configuration ({count}):\n{listing}")


# --------------------------------------------------------------------------- files


def load_config_from_dict(data: Mapping[str, Any]) -> CacheConfig:
    """Build a :class:`CacheConfig` from plain data (a parsed file, a dict in code).

    Keys are the field names; sections are nested mappings; the flat shortcuts work too.
    Missing keys take their defaults. Values are converted to the fields' types (an int
    for a float field is fine; a string for a number is not).

    Raises:
        ConfigError: an unknown key (with a suggestion), a value of the wrong type (the
            message names the field), or a shortcut contradicting its section.

    Example:
        >>> config = load_config_from_dict(
        ...     {"cache_dir": "/c", "metadata": {"backend": "memory"}, "max_entries": 100}
        ... )
        >>> config.metadata.backend, config.max_entries
        ('memory', 100)
        >>> load_config_from_dict({"metadata": {"bakend": "memory"}})  # doctest: +ELLIPSIS
        Traceback (most recent call last):
        ...
        cacheness.storage.errors.ConfigError: unknown configuration key metadata.bakend (did you mean 'backend'?)...
        >>> load_config_from_dict({"max_entries": "100"})
        Traceback (most recent call last):
        ...
        cacheness.storage.errors.ConfigError: max_entries: Expected `int | null`, got `str`
    """  # noqa: E501 - doctest output lines
    return from_mapping(CacheConfig, data, "")


def _read(path: str | os.PathLike[str]) -> bytes:
    try:
        return Path(path).expanduser().read_bytes()
    except FileNotFoundError as exc:
        raise ConfigError(f"config file {os.fspath(path)!r} does not exist") from exc
    except OSError as exc:
        raise ConfigError(f"cannot read config file {os.fspath(path)!r}: {exc}") from exc


def _from_document(document: Any, path: str | os.PathLike[str]) -> CacheConfig:
    try:
        return load_config_from_dict(document)
    except ConfigError as exc:
        raise ConfigError(f"{os.fspath(path)}: {exc}") from None


def load_config_from_json(path: str | os.PathLike[str]) -> CacheConfig:
    """Load a :class:`CacheConfig` from a JSON file (an object of settings).

    Raises:
        ConfigError: the file is missing or unreadable, not valid JSON, or holds an
            invalid setting; the message names the file.

    Example:
        >>> import json, tempfile, pathlib
        >>> path = pathlib.Path(tempfile.mkdtemp()) / "cache.json"
        >>> _ = path.write_text(json.dumps({"default_ttl_seconds": 60}))
        >>> load_config_from_json(path).default_ttl_seconds
        60.0
    """
    data = _read(path)
    try:
        document = msgspec.json.decode(data)
    except msgspec.DecodeError as exc:
        raise ConfigError(f"{os.fspath(path)} is not valid JSON: {exc}") from None
    return _from_document(document, path)


def load_config_from_yaml(path: str | os.PathLike[str]) -> CacheConfig:
    """Load a :class:`CacheConfig` from a YAML file (needs PyYAML: ``cacheness[yaml]``).

    Raises:
        MissingDependencyError: PyYAML is not installed.
        ConfigError: the file is missing or unreadable, not valid YAML, or holds an
            invalid setting; the message names the file.

    Example:
        >>> import tempfile, pathlib
        >>> path = pathlib.Path(tempfile.mkdtemp()) / "cache.yaml"
        >>> _ = path.write_text("metadata:\\n  backend: memory\\neviction_policy: lfu\\n")
        >>> config = load_config_from_yaml(path)
        >>> config.metadata.backend, config.eviction_policy
        ('memory', 'lfu')
    """
    yaml = import_optional(
        "yaml", extra="yaml", distribution="cacheness", purpose="YAML configuration files"
    )
    data = _read(path)
    try:
        document = msgspec.yaml.decode(data)
    except (msgspec.DecodeError, yaml.YAMLError) as exc:
        raise ConfigError(f"{os.fspath(path)} is not valid YAML: {exc}") from None
    return _from_document(document, path)


def load_config_from_toml(path: str | os.PathLike[str], *, table: str | None = None) -> CacheConfig:
    """Load a :class:`CacheConfig` from a TOML file, e.g. ``pyproject.toml``.

    Args:
        path: the file.
        table: dotted name of the table holding the settings. Default: the
            ``[tool.cacheness]`` table if the file has one (a ``pyproject.toml`` must),
            else the whole document.

    Raises:
        ConfigError: the file is missing or unreadable, not valid TOML, lacks the
            table, or holds an invalid setting; the message names the file.

    Example:
        >>> import tempfile, pathlib
        >>> path = pathlib.Path(tempfile.mkdtemp()) / "pyproject.toml"
        >>> _ = path.write_text('[project]\\nname = "x"\\n[tool.cacheness]\\nmax_entries = 10\\n')
        >>> load_config_from_toml(path).max_entries
        10
    """
    import tomllib  # only TOML files need it

    data = _read(path)
    try:
        document = msgspec.toml.decode(data)
    except (msgspec.DecodeError, tomllib.TOMLDecodeError) as exc:
        raise ConfigError(f"{os.fspath(path)} is not valid TOML: {exc}") from None
    tool = document.get("tool") if isinstance(document, dict) else None
    if table is None and isinstance(tool, dict) and "cacheness" in tool:
        table = "tool.cacheness"
    elif table is None and Path(path).name == "pyproject.toml":
        raise ConfigError(f"{os.fspath(path)} has no [tool.cacheness] table")
    for part in table.split(".") if table else ():
        if not isinstance(document, dict) or part not in document:
            raise ConfigError(f"{os.fspath(path)} has no [{table}] table")
        document = document[part]
    return _from_document(document, path)


_LOADERS = {
    ".json": load_config_from_json,
    ".yaml": load_config_from_yaml,
    ".yml": load_config_from_yaml,
    ".toml": load_config_from_toml,
}


def load_config(path: str | os.PathLike[str]) -> CacheConfig:
    """Load a config file, choosing the format by extension (.json, .yaml/.yml, .toml).

    Raises:
        ConfigError: an unknown extension, or the errors of the format's loader.
        MissingDependencyError: a YAML file without PyYAML installed.

    Example:
        >>> import tempfile, pathlib
        >>> path = pathlib.Path(tempfile.mkdtemp()) / "cache.toml"
        >>> _ = path.write_text('eviction_policy = "fifo"\\n')
        >>> load_config(path).eviction_policy
        'fifo'
    """
    suffix = Path(path).suffix.lower()
    loader = _LOADERS.get(suffix)
    if loader is None:
        raise ConfigError(
            f"cannot tell the format of config file {os.fspath(path)!r} from its extension; "
            f"use one of {', '.join(_LOADERS)}"
        )
    return loader(path)


def save_config_to_json(
    config: CacheConfig, path: str | os.PathLike[str], *, indent: int = 2
) -> Path:
    """Write ``config`` to ``path`` as JSON (atomically) and return the path.

    Every field is written, so the file loads back to an equal config with
    :func:`load_config_from_json`. Passwords in URLs are written as given: prefer
    ``CACHENESS_METADATA_URL`` for secrets.

    Raises:
        ConfigError: the config holds an object with no plain-data form (a backend or
            handler instance); nothing is written.
        OSError: the file cannot be written.

    Example:
        >>> import tempfile, pathlib
        >>> path = pathlib.Path(tempfile.mkdtemp()) / "cache.json"
        >>> config = CacheConfig(cache_dir="/c", max_entries=5)
        >>> load_config_from_json(save_config_to_json(config, path)) == config
        True
    """
    encoded = msgspec.json.format(msgspec.json.encode(config.to_dict()), indent=indent)
    target = Path(path).expanduser()
    target.parent.mkdir(parents=True, exist_ok=True)
    temporary = target.with_name(f".{target.name}.{uuid.uuid4().hex}.tmp")
    try:
        temporary.write_bytes(encoded + b"\n")
        os.replace(temporary, target)
    except BaseException:
        temporary.unlink(missing_ok=True)
        raise
    return target


# --------------------------------------------------------------------------- layering


def _parse_env(variable: str, raw: str, hint: Any) -> Any:
    text = raw.strip()
    if text.lower() in _NONE:
        try:
            return msgspec.convert(None, hint)
        except msgspec.ValidationError:
            log.debug("%s=%r: the field cannot be None; reading it as a value", variable, raw)
    if hint is bool or hint == bool | None:  # none/null was handled above
        if text.lower() in _TRUE | _FALSE:
            return text.lower() in _TRUE
        raise ConfigError(f"{variable}={raw!r}: expected one of 1/0, true/false, yes/no, on/off")
    try:
        return msgspec.convert(text, hint, strict=False)
    except msgspec.ValidationError as exc:
        raise ConfigError(f"{variable}={raw!r}: {exc}") from None


def _apply_env(config: CacheConfig, environ: Mapping[str, str]) -> CacheConfig:
    """Return ``config`` with the ``CACHENESS_*`` variables of ``environ`` applied."""
    for name in environ:
        if name.startswith("CACHENESS_") and name not in _ALL_VARIABLES:
            # only near misses: other tools use CACHENESS_* names of their own
            suggestion = did_you_mean(name, _ALL_VARIABLES, cutoff=0.85)
            if suggestion:
                log.warning(
                    "environment variable %s is not a cacheness setting%s", name, suggestion
                )
    environ = _renamed_variables(environ)
    result = copy_value(config)
    # backends first: naming another backend starts its section afresh
    ordered = sorted(
        ENVIRONMENT_VARIABLES.items(), key=lambda item: not item[1].endswith(".backend")
    )
    for variable, target in ordered:
        raw = environ.get(variable)
        if raw is None or not raw.strip():
            continue
        section_name, _, attribute = target.rpartition(".")
        owner: Any = getattr(result, section_name) if section_name else result
        value = _parse_env(variable, raw, field_types(type(owner))[attribute])
        if attribute == "backend" and not same_backend(owner.backend, value):
            setattr(result, section_name, type(owner)(backend=value))
        else:
            setattr(owner, attribute, value)
        log.debug("config: %s set from %s", target, variable)
    return copy_value(result)  # rebuilt, so paths from the environment are expanded too


def _renamed_variables(environ: Mapping[str, str]) -> Mapping[str, str]:
    """``environ`` with Cacheness 0.4's variable names read as today's.

    Raises:
        ConfigError: an old and a new name both set, to different values.
    """
    old_names = [name for name in LEGACY_ENVIRONMENT_VARIABLES if environ.get(name, "").strip()]
    if not old_names:
        return environ
    renamed = dict(environ)
    for old in old_names:
        new = LEGACY_ENVIRONMENT_VARIABLES[old]
        current = renamed.get(new, "").strip()
        if current and current != renamed[old].strip():
            raise ConfigError(
                f"{old}={renamed[old]!r} (Cacheness 0.4's name) and {new}={current!r} disagree;"
                f" set only {new}"
            )
        log.info("environment variable %s is read as %s (its name now)", old, new)
        renamed[new] = renamed[old]
    return renamed


def resolve_config(
    config: CacheConfig | Mapping[str, Any] | str | os.PathLike[str] | None = None,
    *,
    environ: Mapping[str, str] | None = None,
    **overrides: Any,
) -> CacheConfig:
    """Return the effective config: explicit arguments > environment > file > defaults.

    The layers, lowest first:

    1. the defaults (``cache_dir`` from ``CACHENESS_DIR`` or the user cache dir);
    2. the file named by ``CACHENESS_CONFIG`` (.json, .yaml/.yml or .toml);
    3. the ``CACHENESS_*`` variables (:data:`ENVIRONMENT_VARIABLES`);
    4. ``config``: every value that differs from the default wins (a backend section
       naming another backend than the lower layers replaces their section whole);
    5. ``overrides``: always win (the semantics of :meth:`CacheConfig.replace`).

    Empty variables count as unset; ``none`` sets an optional value to None.
    The result is not validated: call :func:`validate_config_strict` on it.

    Args:
        config: a ``CacheConfig``, a mapping (as :func:`load_config_from_dict`), a
            config file path, or None.
        environ: the environment to read (default ``os.environ``).
        **overrides: top-level fields, sections or flat shortcuts of ``CacheConfig``.

    Raises:
        ConfigError: an unknown override (with a suggestion), an unparsable variable
            (the message names it), or a config file that cannot be loaded.

    Example:
        >>> env = {"CACHENESS_DIR": "/srv/cache", "CACHENESS_MAX_ENTRIES": "500",
        ...        "CACHENESS_EVICTION_POLICY": "lfu"}
        >>> config = resolve_config(CacheConfig(eviction_policy="fifo"), environ=env,
        ...                         max_entries=10)
        >>> config.cache_dir, config.eviction_policy, config.max_entries
        ('/srv/cache', 'fifo', 10)
    """
    env = os.environ if environ is None else environ
    if isinstance(config, str | os.PathLike):
        config = load_config(config)
    elif isinstance(config, Mapping):
        config = load_config_from_dict(config)
    elif config is not None and not isinstance(config, CacheConfig):
        raise ConfigError(
            f"config must be a CacheConfig, a mapping, a file path or None; "
            f"got {type(config).__name__}"
        )
    reference = CacheConfig()
    result = CacheConfig(cache_dir=default_cache_dir(env))
    config_file = env.get(CONFIG_FILE_VARIABLE, "").strip()
    if config_file:
        try:
            from_file = load_config(config_file)
        except ConfigError as exc:
            raise ConfigError(f"{CONFIG_FILE_VARIABLE}={config_file!r}: {exc}") from exc
        result = overlay(result, from_file, reference)
        log.debug("config: loaded %s", config_file)
    result = _apply_env(result, env)
    if config is not None:
        result = overlay(result, config, reference)
    if overrides:
        result = result.replace(**overrides)
    return result
