"""The ``cacheness`` cache class: values stored under keys derived from keyword arguments.

``cacheness`` adds caching semantics to a :class:`cacheness.storage.BlobStore`: keys
derived from key parameters (:mod:`cacheness.keys`), TTL (:mod:`cacheness.ttl`),
size/count limits with LRU/LFU/FIFO eviction (:mod:`cacheness.eviction`), statistics
(:mod:`cacheness.stats`), and misses instead of crashes for entries that cannot be read
back. The embedded default is a SQLite index with files under the cache directory;
PostgreSQL + S3 serve a team (see the configuration docs).

Key parameters are given as keyword arguments (``cache.get(model="resnet", epochs=10)``)
or as a mapping (``key_params={...}``). The names of the methods' own options
(:data:`OPTION_NAMES`: ``default``, ``cache_key``, ``key_prefix``, ``key_params``,
``ttl_seconds``, ``max_age_seconds``, ``metadata``, ``custom_metadata``,
``check_expiration``, ``data``, ``deep``, ``filter``) are reserved: a method that does
not take one of them raises ``TypeError`` instead of silently using it as a key
parameter; key parameters with those names go through ``key_params=``. Every method
also accepts ``cache_key=`` instead of key parameters.

Example:
    >>> import tempfile
    >>> from cacheness import cacheness
    >>> with cacheness(cache_dir=tempfile.mkdtemp()) as cache:
    ...     key = cache.put({"auc": 0.91}, model="resnet", epochs=10)
    ...     cache.get(model="resnet", epochs=10)
    ...     cache.get(model="resnet", epochs=11) is None
    ...     cache.get_stats()["hits"]
    {'auc': 0.91}
    True
    1
"""

from __future__ import annotations

import functools
import logging
import os
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Mapping
from contextlib import AbstractContextManager, contextmanager
from contextvars import ContextVar
from datetime import UTC, datetime, timedelta
from pathlib import Path
from types import TracebackType
from typing import (
    TYPE_CHECKING,
    Any,
    BinaryIO,
    Final,
    Literal,
    ParamSpec,
    Self,
    TypeVar,
    cast,
    overload,
)

from cacheness._memory import Held, MemoryLayer, same_value
from cacheness._telemetry import CACHE, cache_operation, span_attributes
from cacheness.cache_entry import (
    FORMAT_VERSION,
    RESERVED_METADATA_KEY,
    CacheEntry,
    cache_facts,
    expiry_seconds,
    ttl_of,
)
from cacheness.config import CacheConfig, resolve_config, validate_config_strict
from cacheness.eviction import Evictor
from cacheness.keys import HashUnknown, derive_key, describe_params, remembered_key
from cacheness.stats import CacheStats
from cacheness.storage import (
    BlobStore,
    ConfigError,
    Entry,
    EntryNotFoundError,
    Filter,
    FilterError,
    IntegrityError,
    IntegrityIssue,
    InvalidBlobNameError,
    InvalidEntryError,
    InvalidKeyError,
    Lookup,
    MissingDependencyError,
    PayloadInfo,
    PayloadTooLargeError,
    RepairReport,
    ResignReport,
    SerializationError,
    SignatureError,
    StorageError,
    StorageFullError,
    TransferProgress,
    TransferReport,
    combine_filters,
    did_you_mean,
    instrumentation,
    matches,
    metadata_field,
    suggest_keywords,
    utc_now,
    validate_key,
)
from cacheness.ttl import expiry_time, validate_ttl

if TYPE_CHECKING:
    from sqlalchemy.orm import Query

    from cacheness.decorators import CachedFunction
    from cacheness.storage import CustomMetadataBase, HealthReport

M = TypeVar("M", bound="CustomMetadataBase")
P = ParamSpec("P")
R = TypeVar("R")

__all__ = [
    "LEGACY_OPTIONS",
    "MISS",
    "MISTAKEN_OPTIONS",
    "OPTION_NAMES",
    "RETIRED_METHODS",
    "UnifiedCache",
    "cacheness",
    "migrate",
]

log = logging.getLogger(__name__)
activity_log = logging.getLogger("cacheness.activity")
"""One INFO line per hit, miss and put (``verbose=1``, or this logger set to INFO)."""

_ACTIVITY_NAME: ContextVar[str | None] = ContextVar("cacheness_activity_name", default=None)
"""The name activity lines give (a decorated function's), instead of the method's."""

_EXPIRES: Final = f"metadata.{RESERVED_METADATA_KEY}.expires_at"
_MAX_PENDING_ACCESS: Final = 10_000

OPTION_NAMES: Final = frozenset(
    {
        "cache_key",
        "check_expiration",
        "custom_metadata",
        "data",
        "deep",
        "default",
        "filter",
        "key_params",
        "key_prefix",
        "max_age_seconds",
        "metadata",
        "ttl_seconds",
    }
)
"""Names the cache methods take as options: never read as key parameters (use ``key_params``)."""

LEGACY_OPTIONS: Final = {
    "prefix": "key_prefix='...'",
    "hash_key": "cache_key='...'",
    "description": "metadata={'description': ...}",
    "on": "key_params={...} (or the key parameters as keyword arguments)",
}
"""Option names of Cacheness 0.4 (the seeds' API) and what to write now: a method given
one raises ``TypeError`` naming the replacement instead of hashing it as a key parameter."""

MISTAKEN_OPTIONS: Final = {
    "ttl": "ttl_seconds",
    "expire": "ttl_seconds",
    "max_age": "max_age_seconds",
}
"""Other caches' spellings of the options (diskcache's ``expire=``...): refused, never hashed
as key parameters, with the option meant."""

_CHECKED_NAMES: Final = OPTION_NAMES | LEGACY_OPTIONS.keys() | MISTAKEN_OPTIONS.keys()

RETIRED_METHODS: Final = {
    "invalidate_by_cache_key": "invalidate(cache_key=key)",
    "delete": "invalidate(**key_params) or invalidate(cache_key=key)",
    "replace": "update_data(data, **key_params)",
    "update": "update_data(data, **key_params)",
    "find_orphaned_files": "find_orphaned_blobs()",
    "cleanup_orphaned_files": "repair(dry_run=False)",
    "verify_cache_coherence": "verify_integrity()",
    "list_keys": "[entry.cache_key for entry in cache.list_entries()]",
    "get_entry": "get_metadata(**key_params)",
    "touch_entry": "touch(**key_params)",
}
"""Methods of Cacheness 0.4 (the seeds' API) that are gone, and what to call instead."""

_CONFIG_SUFFIXES: Final = frozenset({".json", ".yaml", ".yml", ".toml"})

_READ_OPTION_HINT: Final = {
    "ttl_seconds": "; to accept only values stored less than N seconds ago pass max_age_seconds=N",
}


def _param_field(name: str) -> str:
    """The filter field of key parameter ``name`` (any name: dots and quotes escaped)."""
    return metadata_field(RESERVED_METADATA_KEY, "params", name)


def _refuse_options(method: str, params: Mapping[str, Any]) -> None:
    """Raise ``TypeError`` for option names given to a method that does not take them.

    Cacheness 0.4's option names (:data:`LEGACY_OPTIONS`) raise with their replacement.
    """
    legacy = sorted(LEGACY_OPTIONS.keys() & params.keys())
    if legacy:
        name = legacy[0]
        raise TypeError(
            f"{method}() takes no option {name!r}: Cacheness 0.4's {name}= is now "
            f"{LEGACY_OPTIONS[name]}; it is not hashed as a key parameter. A key parameter "
            f"really named {name!r} goes through key_params={{{name!r}: ...}}"
        )
    mistaken = sorted(MISTAKEN_OPTIONS.keys() & params.keys())
    if mistaken:
        name = mistaken[0]
        meant = MISTAKEN_OPTIONS[name]
        if method.startswith(("get", "exists")) and meant == "ttl_seconds":
            meant = "max_age_seconds"  # a read's freshness limit
        raise TypeError(
            f"{method}() got {name!r} (did you mean {meant!r}?); it is not hashed as a key "
            f"parameter. A key parameter really named {name!r} goes through "
            f"key_params={{{name!r}: ...}}"
        )
    clash = sorted(OPTION_NAMES.intersection(params))
    if not clash:
        return
    name = clash[0]
    hint = _READ_OPTION_HINT.get(name, "") if method.startswith(("get", "exists")) else ""
    raise TypeError(
        f"{method}() takes no option {name!r}: it would silently become a key parameter. "
        f"Pass key parameters named like the cache's options through key_params="
        f"{{{name!r}: ...}}{hint}"
    )


def _check_clock(clock: Any) -> Callable[[], datetime]:
    """Return ``clock`` wrapped so that each reading is checked; raise ``ConfigError`` now
    when it is not a callable giving an aware datetime."""
    if not callable(clock):
        raise ConfigError(
            f"clock must be a callable returning the current time as an aware UTC datetime "
            f"(e.g. lambda: datetime.now(timezone.utc)), got {type(clock).__name__} {clock!r}"
        )

    def checked() -> datetime:
        now = clock()
        if not isinstance(now, datetime) or now.utcoffset() is None:
            raise ConfigError(
                f"the cache's clock must return an aware datetime (e.g. "
                f"datetime.now(timezone.utc)), it returned {type(now).__name__} {now!r}"
            )
        return now

    checked()
    return checked


class _Miss:
    """The type of :data:`MISS`."""

    _instance: _Miss | None = None

    def __new__(cls) -> _Miss:
        if cls._instance is None:
            cls._instance = super().__new__(cls)
        return cls._instance

    def __repr__(self) -> str:
        return "MISS"

    def __bool__(self) -> bool:
        return False

    def __reduce__(self) -> str:
        return "MISS"


MISS: Final = _Miss()
"""Returned by ``get(default=MISS, ...)`` on a miss: unlike None, it is never a stored value."""

Predicate = Callable[[CacheEntry], bool]


@suggest_keywords
class cacheness:  # noqa: N801 - the product's name, as users write it
    """A persistent cache of Python objects under keys derived from keyword arguments.

    Args:
        config: a :class:`~cacheness.config.CacheConfig`; None uses the defaults,
            ``CACHENESS_*`` environment variables and ``CACHENESS_CONFIG`` (a file).
            A path opens a cache in that directory, as ``joblib.Memory("dir")`` and
            ``diskcache.Cache("dir")`` do (``cache_dir=``); a path ending in ``.json``,
            ``.yaml``, ``.yml`` or ``.toml`` that is not a directory is a config file.
        verbose: 1 or more shows one line per hit, miss and put (the method or the
            decorated function, the key, the time taken) through the
            ``cacheness.activity`` logger, printed on stderr (once: not again when a
            logging handler prints them already); setting that logger to INFO sends
            them to your logging configuration. 0 (default) prints nothing.
        clock: returns the current time as an aware datetime; tests inject one to move
            time without sleeping (TTL, LRU order). It is called once here and its every
            reading is checked: anything else than an aware datetime is a ``ConfigError``.
        **overrides: top-level or flat-shortcut fields of ``CacheConfig``
            (``cache_dir=``, ``default_ttl_seconds=``, ``max_cache_size_mb=``,
            ``metadata_backend=``...); explicit arguments win over the environment,
            which wins over a config file.

    Raises:
        ConfigError: the configuration is invalid (the message lists every problem), or
            ``clock`` is not a callable returning an aware datetime.
        MissingDependencyError: a configured backend needs an extra that is not installed.

    Example:
        >>> import tempfile
        >>> cache = cacheness(cache_dir=tempfile.mkdtemp(), default_ttl_seconds=3600)
        >>> cache.put([1, 2, 3], dataset="iris", split="train") == cache.key_for(
        ...     dataset="iris", split="train")
        True
        >>> cache.get_metadata(dataset="iris", split="train").ttl_seconds
        3600.0
        >>> cache.close()
    """

    def __init__(
        self,
        config: CacheConfig | str | os.PathLike[str] | None = None,
        *,
        verbose: int = 0,
        clock: Callable[[], datetime] | None = None,
        **overrides: Any,
    ) -> None:
        self._clock = utc_now if clock is None else _check_clock(clock)
        if isinstance(config, str | os.PathLike) and _is_cache_dir(config):
            if "cache_dir" in overrides:
                raise TypeError(
                    f"cacheness({os.fspath(config)!r}, cache_dir=...): the directory is "
                    "given twice; pass one"
                )
            overrides = {**overrides, "cache_dir": os.fspath(config)}
            config = None
        self.config = resolve_config(config, **overrides)
        if not isinstance(verbose, int) or verbose < 0:
            raise TypeError(
                f"verbose must be an int >= 0 (0: silent, 1: a line per call), got {verbose!r}"
            )
        self.verbose = int(verbose)
        if verbose:
            _show_activity()
        validate_config_strict(self.config)
        options = self.config.blob_store_options()
        _check_cloud_modules(options)
        try:
            self._store = BlobStore(**options, clock=self._clock)
        except MissingDependencyError as exc:
            raise MissingDependencyError(f"{exc} (with cacheness: {_CLOUD_HINT})") from exc
        max_bytes = (
            None
            if self.config.max_cache_size_mb is None
            else int(self.config.max_cache_size_mb * 1024 * 1024)
        )
        self._max_item_bytes = max_bytes
        self._evictor = Evictor(
            self._store,
            max_bytes=max_bytes,
            max_entries=self.config.max_entries,
            policy=self.config.eviction_policy,
        )
        self._where = f"{self._store.metadata_backend_name} + {self._store.blob_backend_name}"
        """The backends, as log messages name them."""
        self._stats = CacheStats(
            labels={
                "cacheness.metadata_backend": self._store.metadata_backend_name,
                "cacheness.blob_backend": self._store.blob_backend_name,
            }
        )
        self._access_interval = timedelta(seconds=self.config.access_update_interval_seconds)
        self._access_seconds = float(self.config.access_update_interval_seconds)
        self._pending_access: dict[str, int] = {}
        self._access_lock = threading.Lock()
        memory = self.config.memory_cache
        self._memory = MemoryLayer(memory, self._store) if memory.enabled else None
        self._closed = False
        if self.config.cleanup_on_init:
            removed = self.cleanup_expired()
            log.info("cleanup_on_init: removed %d expired entries", removed)

    # ------------------------------------------------------------------ keys

    @property
    def store(self) -> BlobStore:
        """The storage this cache runs on (a :class:`cacheness.storage.BlobStore`)."""
        return self._store

    def key_for(
        self,
        *,
        key_prefix: str | None = None,
        key_params: Mapping[str, Any] | None = None,
        **params: Any,
    ) -> str:
        """Return the cache key the key parameters map to (see :func:`cacheness.keys.derive_key`).

        Raises:
            UnsupportedKeyValueError: a parameter value cannot be hashed stably (a
                ``TypeError`` saying what to do).
        """
        return self._resolve(None, key_prefix, key_params, params, "key_for")[0]

    def _resolve(
        self,
        cache_key: str | None,
        key_prefix: str | None,
        key_params: Mapping[str, Any] | None,
        params: Mapping[str, Any],
        method: str,
    ) -> tuple[str, dict[str, Any]]:
        if params and not _CHECKED_NAMES.isdisjoint(params):
            _refuse_options(method, params)
        if key_params is not None and not isinstance(key_params, Mapping):
            raise TypeError(
                f"{method}(): key_params must be a mapping of key parameters such as "
                f"{{'model': 'a'}}, got {type(key_params).__name__} {key_params!r}"
            )
        if key_params:
            clash = key_params.keys() & params.keys()
            if clash:
                raise TypeError(f"key parameter(s) given twice: {', '.join(sorted(clash))}")
            merged = {**key_params, **params}
        else:  # the common call: keyword arguments only
            merged = dict(params)
        if cache_key is not None:
            return validate_key(cache_key), merged
        if not merged and not key_prefix:
            example = "data, model='a'" if method == "put" else "model='a'"
            raise TypeError(
                f"{method}() needs key parameters to derive the key from (e.g. "
                f"cache.{method}({example})) "
                f"or cache_key=..."
            )
        # hash_unknown is one of HashUnknown's values: validate_config_strict checked it
        hash_unknown = cast(HashUnknown, self.config.hash_unknown)
        return derive_key(merged, prefix=key_prefix, hash_unknown=hash_unknown), merged

    # ------------------------------------------------------------------ writing

    @cache_operation("put")
    def put(
        self,
        data: Any,
        *,
        ttl_seconds: float | timedelta | None = None,
        metadata: Mapping[str, Any] | None = None,
        custom_metadata: CustomMetadataBase | Iterable[CustomMetadataBase] | None = None,
        cache_key: str | None = None,
        key_prefix: str | None = None,
        key_params: Mapping[str, Any] | None = None,
        **params: Any,
    ) -> str:
        """Store ``data`` under the key its key parameters derive; return the key.

        Args:
            data: the value (anything a storage handler takes: arrays, frames, plain
                data, bytes, picklable objects).
            ttl_seconds: seconds until it expires; None uses ``default_ttl_seconds``.
            metadata: a JSON-able dict stored with it and queryable (``list_entries``).
            custom_metadata: a row of a custom metadata model (or a list of rows) with
                typed, indexed columns, written with the entry in one transaction
                (SQLite and PostgreSQL indexes; see :meth:`query_custom`). Replacing the
                entry replaces its rows; ``update_data`` keeps them.
            cache_key: store under this key instead of one derived from parameters (the
                parameters given are then only recorded, for listing and queries).
            key_prefix: a namespace mixed into the derived key and recorded.
            key_params: key parameters as a mapping (for clashing names).
            **params: key parameters. The JSON-able ones are stored with the entry.

        Raises:
            UnsupportedKeyValueError: a parameter cannot be hashed (a ``TypeError``).
            PayloadTooLargeError: the value alone is larger than ``max_cache_size_mb``.
            ValueError: bad ``ttl_seconds``.
            InvalidEntryError: ``metadata`` is not a dict of JSON-able values, or uses the
                reserved key ``"_cacheness"`` (both are also ``ValueError``).
            SerializationError: no handler can store ``data``.
            StorageFullError: the disk is full (a cache with size or count limits first
                evicts a tenth of its entries and retries once); nothing was stored.
                Deleting entries works on a full disk.
            ConfigError: ``custom_metadata`` with a metadata backend other than sqlite or
                postgresql.
            CustomSchemaError: a custom model's table exists with other columns.
            StorageError: the backend failed; nothing was stored.

        Example:
            >>> import tempfile
            >>> cache = cacheness(cache_dir=tempfile.mkdtemp())
            >>> key = cache.put("report", ttl_seconds=60, metadata={"owner": "ana"}, day=3)
            >>> cache.get_metadata(cache_key=key).metadata
            {'owner': 'ana'}
        """
        self._check_open()
        key, merged = self._resolve(cache_key, key_prefix, key_params, params, "put")
        args = (data, key, merged, ttl_seconds, metadata, custom_metadata, key_prefix)
        if not (self.verbose or activity_log.isEnabledFor(logging.INFO)):
            return self._put(*args)
        started = time.perf_counter()
        self._put(*args)
        self._report("put", "put", key, started)
        return key

    def _put(
        self,
        data: Any,
        key: str,
        merged: dict[str, Any],
        ttl_seconds: float | timedelta | None,
        metadata: Mapping[str, Any] | None,
        custom_metadata: CustomMetadataBase | Iterable[CustomMetadataBase] | None,
        key_prefix: str | None,
    ) -> str:
        ttl = self._ttl(ttl_seconds)
        facts = self._facts(self._clock(), ttl, merged, key_prefix)
        stored = self._with_facts(metadata, facts)
        put = functools.partial(
            self._store.put_entry,
            data,
            key,
            stored,
            max_size=self._max_item_bytes,
            custom_metadata=custom_metadata,
        )
        try:
            try:
                entry = put()
            except StorageFullError:
                # A cache with limits lets entries go when room is needed: evict, retry once.
                evicted = self._evictor.make_room(keep=key)
                if not evicted:
                    raise
                self._stats.add(evictions=evicted)
                self._forget(None)
                log.warning(
                    "the disk is full (%s): evicted %d entries to store %s%s",
                    self._where,
                    evicted,
                    key,
                    _prefixed(key_prefix),
                )
                entry = put()
        except PayloadTooLargeError as exc:
            raise PayloadTooLargeError(
                f"the value takes more than the whole cache limit (max_cache_size_mb="
                f"{self.config.max_cache_size_mb}); it was not stored, nothing was evicted"
            ) from exc
        except SerializationError as exc:
            if "allow_cloudpickle=True" not in str(exc):
                raise
            raise SerializationError(
                f"{exc}. For this cache: cacheness(..., serialization={{'allow_cloudpickle': "
                "True}) or CacheConfig(serialization=SerializationConfig(allow_cloudpickle=True))"
            ) from exc
        self._stats.add(puts=1, bytes_written=entry.size, handler=entry.handler)
        self._forget([key])
        log.debug(
            "stored %s%s: %d bytes by handler %s in %s",
            key,
            _prefixed(key_prefix),
            entry.size,
            entry.handler,
            self._where,
        )
        evicted = self._evictor.after_put(key, entry.size)
        if evicted:
            self._stats.add(evictions=evicted)
            self._forget(None)
        return key

    @cache_operation("update_data")
    def update_data(
        self,
        data: Any,
        *,
        cache_key: str | None = None,
        key_prefix: str | None = None,
        key_params: Mapping[str, Any] | None = None,
        **params: Any,
    ) -> bool:
        """Replace the value of an existing entry; its TTL restarts. False if absent.

        The key, the user metadata and the TTL stay; the expiry moves to now + TTL.

        Example:
            >>> import tempfile
            >>> cache = cacheness(cache_dir=tempfile.mkdtemp())
            >>> _ = cache.put("v1", run=1)
            >>> cache.update_data("v2", run=1), cache.get(run=1)
            (True, 'v2')
            >>> cache.update_data("v3", run=2)
            False
        """
        self._check_open()
        key, _ = self._resolve(cache_key, key_prefix, key_params, params, "update_data")
        entry = self._store.get_metadata(key)
        if entry is None or self._expired(entry, self._clock()):
            return False
        facts = self._refreshed_facts(entry, self._clock(), ttl=None)
        changed = self._store.update_data(
            key, data, metadata={RESERVED_METADATA_KEY: facts}, max_size=self._max_item_bytes
        )
        self._forget([key])
        if changed:
            self._stats.add(puts=1)
        return changed

    @cache_operation("touch")
    def touch(
        self,
        *,
        ttl_seconds: float | timedelta | None = None,
        cache_key: str | None = None,
        key_prefix: str | None = None,
        key_params: Mapping[str, Any] | None = None,
        **params: Any,
    ) -> bool:
        """Restart an entry's TTL (optionally with a new TTL); False if absent or expired.

        Example:
            >>> import tempfile
            >>> from cacheness.ttl import hours
            >>> cache = cacheness(cache_dir=tempfile.mkdtemp())
            >>> _ = cache.put("x", ttl_seconds=60, job=7)
            >>> cache.touch(ttl_seconds=hours(48), job=7)
            True
            >>> cache.get_metadata(job=7).ttl_seconds
            172800.0
        """
        self._check_open()
        key, _ = self._resolve(cache_key, key_prefix, key_params, params, "touch")
        return self._touch_entries([key], ttl_seconds) == 1

    @cache_operation("touch_batch")
    def touch_batch(
        self,
        *,
        ttl_seconds: float | timedelta | None = None,
        filter: Filter | None = None,
        key_params: Mapping[str, Any] | None = None,
        **equals: Any,
    ) -> int:
        """Restart the TTL of every live entry matching; return how many.

        Args:
            ttl_seconds: a new TTL for all of them; None keeps each entry's own TTL.
            filter: a storage filter over entry fields (see ``list_entries``).
            key_params: key parameters the entries must have, as a mapping (any name).
            **equals: key parameters the entries must have (``project="ml"``).

        Raises:
            TypeError: no selector at all (no key parameters, no filter): pass one.
        """
        self._check_open()
        selector = self._params_filter(equals, key_params, filter, "touch_batch")
        if selector is None:
            raise TypeError(
                "touch_batch() needs key parameters or filter= to select the entries; "
                "it does not touch every entry of the cache by default"
            )
        keys = [entry.cache_key for entry in self.list_entries(filter=selector)]
        return self._touch_entries(keys, ttl_seconds)

    def _touch_entries(self, keys: list[str], ttl_seconds: float | timedelta | None) -> int:
        if not keys:
            return 0
        now = self._clock()
        ttl = None if ttl_seconds is None else validate_ttl(ttl_seconds)
        current = self._store.get_metadata_batch(keys)
        updates = {
            key: {RESERVED_METADATA_KEY: self._refreshed_facts(entry, now, ttl)}
            for key, entry in current.items()
            if not self._expired(entry, now)
        }
        self._forget(list(updates))
        return self._store.update_batch(updates) if updates else 0

    @cache_operation("update_batch")
    def update_batch(self, items: Iterable[tuple[Mapping[str, Any], Any]]) -> int:
        """Replace the values of several entries: ``[(key_params, data), ...]``; return how many.

        A ``key_params`` mapping may hold ``cache_key`` instead of parameters.
        """
        self._check_open()
        pairs = []
        for item in self._items(
            items, "update_batch", "(key parameters, data) pairs, e.g. [({'model': 'a'}, value)]"
        ):
            if not (isinstance(item, tuple | list) and len(item) == 2):
                raise TypeError(
                    f"update_batch() takes (key parameters, data) pairs such as "
                    f"({{'model': 'a'}}, value), got {type(item).__name__} {item!r}"
                )
            pairs.append((self._resolve_spec(item[0], "update_batch")[0], item[1]))
        return sum(self.update_data(data, cache_key=key) for key, data in pairs)

    @cache_operation("copy")
    def copy(
        self, source: Mapping[str, Any], dest: Mapping[str, Any], *, overwrite: bool = False
    ) -> str:
        """Copy an entry to the key of other key parameters; return the new key.

        ``source`` and ``dest`` are key parameter mappings (or ``{"cache_key": ...}``).
        The copy keeps the value, metadata and TTL and records ``dest`` as its parameters.

        Raises:
            EntryNotFoundError: the source does not exist.
            EntryExistsError: the destination exists and ``overwrite`` is False.

        Example:
            >>> import tempfile
            >>> cache = cacheness(cache_dir=tempfile.mkdtemp())
            >>> _ = cache.put("weights", experiment="exp_001")
            >>> _ = cache.copy({"experiment": "exp_001"}, {"experiment": "backup"})
            >>> cache.get(experiment="backup"), cache.get_metadata(experiment="backup").params
            ('weights', {'experiment': 'backup'})
        """
        return self._relocate(source, dest, overwrite, self._store.copy)

    @cache_operation("move")
    def move(
        self, source: Mapping[str, Any], dest: Mapping[str, Any], *, overwrite: bool = False
    ) -> str:
        """Move an entry to the key of other key parameters; return the new key (see ``copy``)."""
        return self._relocate(source, dest, overwrite, self._store.move)

    def _relocate(
        self,
        source: Mapping[str, Any],
        dest: Mapping[str, Any],
        overwrite: bool,
        operation: Callable[..., Entry],
    ) -> str:
        self._check_open()
        src = self._resolve_spec(source, operation.__name__)[0]
        dst, dst_params = self._resolve_spec(dest, operation.__name__)
        entry = operation(src, dst, overwrite=overwrite)
        self._forget([src, dst])
        facts = dict(cache_facts(entry))
        described = describe_params(dst_params) if dst_params else None
        if described is None:
            facts.pop("params", None)
        else:
            facts["params"] = described
        self._store.update_metadata(dst, {RESERVED_METADATA_KEY: facts})
        return dst

    # ------------------------------------------------------------------ reading

    def get(
        self,
        *,
        default: Any = None,
        max_age_seconds: float | timedelta | None = None,
        cache_key: str | None = None,
        key_prefix: str | None = None,
        key_params: Mapping[str, Any] | None = None,
        **params: Any,
    ) -> Any:
        """Return the cached value, or ``default`` on a miss (expired entries are misses).

        An entry that cannot be read back (missing or corrupt bytes, a decode failure
        after an upgrade) is a miss too: logged, counted as an error and removed, unless
        the cache is ``strict``, which raises instead.

        Args:
            default: returned on a miss (:data:`MISS` tells a miss from a stored None).
            max_age_seconds: a read-time freshness limit: a value stored (or last
                updated or touched) more than this many seconds ago is a miss for this
                call; the entry stays for readers without the limit.
            cache_key: which entry, by key (see ``put``).
            key_prefix: the namespace mixed into the derived key (see ``put``).
            key_params: key parameters as a mapping (see ``put``).
            **params: key parameters (see ``put``).

        Raises:
            IntegrityError, SerializationError: only with ``strict=True``.
            BackendUnavailableError: the storage cannot be reached (not a miss: the
                entries are kept).
            TypeError: an option name of another method given as a key parameter
                (``ttl_seconds=``...): pass it through ``key_params=``.

        Example:
            >>> import tempfile
            >>> from cacheness import MISS
            >>> cache = cacheness(cache_dir=tempfile.mkdtemp())
            >>> _ = cache.put(None, q="nothing")
            >>> cache.get(q="nothing", default=MISS) is None  # a stored None is a hit
            True
            >>> cache.get(q="other", default=MISS) is MISS
            True
        """
        self._check_open()
        which = (cache_key, key_prefix, key_params, params)
        if (tel := instrumentation()) is not None:
            with tel.operation(CACHE, "get", span_attributes(self, key_prefix)):
                return self._get(default, max_age_seconds, *which)
        return self._get(default, max_age_seconds, *which)

    def _get(
        self,
        default: Any,
        max_age_seconds: float | timedelta | None,
        cache_key: str | None,
        key_prefix: str | None,
        key_params: Mapping[str, Any] | None,
        params: Mapping[str, Any],
    ) -> Any:
        key = None
        if cache_key is None and key_params is None and params:  # a key derived before?
            key = remembered_key(params, key_prefix) if _CHECKED_NAMES.isdisjoint(params) else None
        if key is None:
            key, _ = self._resolve(cache_key, key_prefix, key_params, params, "get")
        if not (self.verbose or activity_log.isEnabledFor(logging.INFO)):
            value = (
                self._lookup(key)
                if max_age_seconds is None
                else self._get_value(key, max_age_seconds)
            )
        else:
            started = time.perf_counter()
            value = self._get_value(key, max_age_seconds)
            self._report("miss" if value is MISS else "hit", "get", key, started)
        return default if value is MISS else value

    def _get_value(self, key: str, max_age_seconds: float | timedelta | None) -> Any:
        if max_age_seconds is None:
            return self._lookup(key)
        entry = self._fresh_entry(key, max_age_seconds)
        found = None if entry is None else self._load(entry)
        return MISS if found is None else found.value

    @cache_operation("get_with_metadata")
    def get_with_metadata(
        self,
        *,
        max_age_seconds: float | timedelta | None = None,
        cache_key: str | None = None,
        key_prefix: str | None = None,
        key_params: Mapping[str, Any] | None = None,
        **params: Any,
    ) -> tuple[Any, CacheEntry] | None:
        """Return ``(value, CacheEntry)``, or None on a miss (``max_age_seconds`` as in ``get``)."""
        self._check_open()
        key, _ = self._resolve(cache_key, key_prefix, key_params, params, "get_with_metadata")
        entry = self._fresh_entry(key, max_age_seconds)
        if entry is None:
            return None
        found = self._load(entry)
        if found is None:
            return None
        return found.value, self._describe(cast(Entry, found.entry))

    @cache_operation("get_batch")
    def get_batch(self, items: Iterable[Mapping[str, Any]], default: Any = None) -> list[Any]:
        """Return the values for several key parameter mappings, in order (``default`` on misses).

        One index query fetches all entries. A mapping may hold ``cache_key``.

        Example:
            >>> import tempfile
            >>> cache = cacheness(cache_dir=tempfile.mkdtemp())
            >>> _ = cache.put("a", experiment="exp_001")
            >>> cache.get_batch([{"experiment": "exp_001"}, {"experiment": "exp_002"}])
            ['a', None]
        """
        self._check_open()
        specs = self._items(items, "get_batch")
        keys = [self._resolve_spec(item, "get_batch")[0] for item in specs]
        entries = self._store.get_metadata_batch(keys)
        results = []
        for key in keys:
            entry = entries.get(key)
            if entry is None:
                self._stats.record_miss()
                results.append(default)
                continue
            found = self._load(entry)
            results.append(default if found is None else found.value)
        return results

    @cache_operation("exists")
    def exists(
        self,
        *,
        check_expiration: bool = True,
        cache_key: str | None = None,
        key_prefix: str | None = None,
        key_params: Mapping[str, Any] | None = None,
        **params: Any,
    ) -> bool:
        """Return True when a live (not expired) entry exists; loads nothing.

        ``check_expiration=False`` also counts an expired entry that is still stored.

        Example:
            >>> import tempfile
            >>> from datetime import UTC, datetime, timedelta
            >>> now = [datetime(2026, 1, 1, tzinfo=UTC)]
            >>> cache = cacheness(cache_dir=tempfile.mkdtemp(), clock=lambda: now[0])
            >>> _ = cache.put(1, ttl_seconds=10, n=1)
            >>> now[0] += timedelta(seconds=11)
            >>> cache.exists(n=1), cache.exists(n=1, check_expiration=False)
            (False, True)
        """
        self._check_open()
        key, _ = self._resolve(cache_key, key_prefix, key_params, params, "exists")
        entry = self._store.get_metadata(key)
        if entry is None:
            return False
        return not (check_expiration and self._expired(entry, self._clock()))

    def get_metadata(
        self,
        *,
        check_expiration: bool = True,
        cache_key: str | None = None,
        key_prefix: str | None = None,
        key_params: Mapping[str, Any] | None = None,
        **params: Any,
    ) -> CacheEntry | None:
        """Return what the cache knows about an entry without loading it, or None.

        Expired entries give None unless ``check_expiration=False``.
        """
        self._check_open()
        key, _ = self._resolve(cache_key, key_prefix, key_params, params, "get_metadata")
        entry = self._store.get_metadata(key)
        if entry is None or (check_expiration and self._expired(entry, self._clock())):
            return None
        return self._describe(entry)

    def list_entries(
        self,
        *,
        filter: Filter | None = None,
        include_expired: bool = False,
        order_by: str = "created_at",
        descending: bool = False,
        limit: int | None = None,
        offset: int = 0,
    ) -> list[CacheEntry]:
        """Return the entries (no values loaded), oldest first by default.

        Args:
            filter: a storage filter over entry fields: ``{"size": {"$gt": 1000}}``,
                ``{"metadata.owner": "ana"}`` (user metadata), ``{"handler": "numpy"}``.
            include_expired: also list entries whose TTL has run out.
            order_by: an entry field to order by (``"created_at"``, ``"size"``...).
            descending: reverse the order.
            limit: at most this many entries.
            offset: skip this many first.
        """
        self._check_open()
        entries = self._store.iter_entries(
            filter=self._entries_filter(filter, include_expired),
            order_by=order_by,
            descending=descending,
            limit=limit,
            offset=offset,
            inline=False,  # fields only: never the payloads kept in the index
        )
        location = self._store.location
        # An inline entry (its bytes in the index) has no location: no call to ask.
        return [
            CacheEntry.from_entry(entry, location(entry) if entry.blob_ref else "")
            for entry in entries
        ]

    def count(self, *, filter: Filter | None = None, include_expired: bool = False) -> int:
        """Return how many entries match ``filter`` (live ones only, by default); one query.

        Example:
            >>> import tempfile
            >>> cache = cacheness(cache_dir=tempfile.mkdtemp())
            >>> _ = cache.put(1, metadata={"team": "a"}, n=1)
            >>> cache.count(), cache.count(filter={"metadata.team": "b"})
            (1, 0)
        """
        self._check_open()
        return self._store.count(filter=self._entries_filter(filter, include_expired))

    def query_meta(
        self,
        *,
        filter: Filter | None = None,
        key_params: Mapping[str, Any] | None = None,
        **equals: Any,
    ) -> list[CacheEntry]:
        """Return the live entries whose key parameters equal ``equals`` (and match ``filter``).

        Key parameters of any name can be given as a mapping in ``key_params`` (names
        of the cache's options, names with dots or quotes).

        Example:
            >>> import tempfile
            >>> cache = cacheness(cache_dir=tempfile.mkdtemp())
            >>> _ = cache.put(1, project="ml", run=1)
            >>> _ = cache.put(2, project="web", run=2)
            >>> tuple(e.params["run"] for e in cache.query_meta(project="ml"))
            (1,)
        """
        return self.list_entries(
            filter=self._params_filter(equals, key_params, filter, "query_meta")
        )

    @cache_operation("verify")
    def verify(
        self,
        *,
        deep: bool = False,
        cache_key: str | None = None,
        key_prefix: str | None = None,
        key_params: Mapping[str, Any] | None = None,
        **params: Any,
    ) -> bool:
        """Check an entry's stored bytes against what the index recorded; True when they match.

        Without ``deep`` nothing is downloaded: the blob must exist with the recorded size
        and, where the backend reports them (S3 ETag and stored XXH3 hash: one HEAD
        request; the filesystem's recorded hash), the same ETag and hash. ``deep=True``
        reads the bytes and hashes them. Mismatches are logged with the reason.

        Raises:
            EntryNotFoundError: there is no entry for the key.

        Example:
            >>> import tempfile
            >>> cache = cacheness(cache_dir=tempfile.mkdtemp())
            >>> _ = cache.put(b"x" * 100_000, run=1)
            >>> cache.verify(run=1), cache.verify(run=1, deep=True)
            (True, True)
        """
        self._check_open()
        key, _ = self._resolve(cache_key, key_prefix, key_params, params, "verify")
        if not self._store.exists(key):
            raise EntryNotFoundError(f"no cache entry with key {key!r}")
        issues = self._store.verify_integrity([key], deep=deep)
        for issue in issues:
            log.warning(
                "cache entry %s%s failed verification in %s: %s",
                key,
                _prefixed(key_prefix),
                self._where,
                issue.detail,
            )
        return not issues

    # ------------------------------------------------------------------ custom metadata

    def query_custom(self, model: type[M] | str, *where: Any) -> list[M]:
        """Return the rows of a custom metadata model matching SQLAlchemy conditions.

        Rows of expired entries are included until the entries are cleaned up; join back
        with :meth:`query_custom_entries` to get live entries only.

        Args:
            model: the model class (or the name it is registered under).
            *where: conditions on its columns (``Experiment.accuracy >= 0.9``).

        Returns:
            Detached model instances (usable after the query), ordered by key then id.

        Raises:
            ConfigError: the metadata backend is not sqlite or postgresql.

        Example:
            >>> import tempfile
            >>> from sqlalchemy import Column, Float, Integer, String
            >>> from cacheness import CustomMetadataBase, custom_metadata_model
            >>> @custom_metadata_model("doc_cache_runs")
            ... class CacheRun(CustomMetadataBase):
            ...     __tablename__ = "custom_doc_cache_runs"
            ...     accuracy = Column(Float)
            >>> cache = cacheness(cache_dir=tempfile.mkdtemp())
            >>> _ = cache.put("m1", custom_metadata=CacheRun(accuracy=0.8), run=1)
            >>> _ = cache.put("m2", custom_metadata=CacheRun(accuracy=0.95), run=2)
            >>> tuple(row.accuracy for row in cache.query_custom(CacheRun, CacheRun.accuracy > 0.9))
            (0.95,)
        """
        self._check_open()
        return self._store.query_custom(model, *where)

    @contextmanager
    def query_custom_session(self, model: type[M] | str) -> Iterator[Query[M]]:
        """Yield a SQLAlchemy ``Query`` of a custom model; its session is always closed.

        Example:
            >>> import tempfile
            >>> from sqlalchemy import Column, Float, Integer, String
            >>> from cacheness import CustomMetadataBase, custom_metadata_model
            >>> @custom_metadata_model("doc_cache_session")
            ... class Trained(CustomMetadataBase):
            ...     __tablename__ = "custom_doc_cache_session"
            ...     author = Column(String)
            >>> cache = cacheness(cache_dir=tempfile.mkdtemp())
            >>> _ = cache.put("m", custom_metadata=Trained(author="alice"), run=1)
            >>> with cache.query_custom_session("doc_cache_session") as query:
            ...     tuple(row.author for row in query.filter(Trained.author == "alice").all())
            ('alice',)
        """
        self._check_open()
        with self._store.query_custom_session(model) as query:
            yield query

    def get_custom_metadata(
        self,
        model: type[M] | str,
        *,
        cache_key: str | None = None,
        key_prefix: str | None = None,
        key_params: Mapping[str, Any] | None = None,
        **params: Any,
    ) -> list[M]:
        """Return the rows of ``model`` stored with one entry (a list: usually one row).

        The entry is named by key parameters or ``cache_key=``; a missing or expired
        entry gives ``[]``.

        Example:
            >>> import tempfile
            >>> from sqlalchemy import Column, Float, Integer, String
            >>> from cacheness import CustomMetadataBase, custom_metadata_model
            >>> @custom_metadata_model("doc_cache_get")
            ... class Epochs(CustomMetadataBase):
            ...     __tablename__ = "custom_doc_cache_get"
            ...     epochs = Column(Integer)
            >>> cache = cacheness(cache_dir=tempfile.mkdtemp())
            >>> _ = cache.put("m", custom_metadata=Epochs(epochs=30), run=7)
            >>> tuple(row.epochs for row in cache.get_custom_metadata(Epochs, run=7))
            (30,)
        """
        self._check_open()
        key, _ = self._resolve(cache_key, key_prefix, key_params, params, "get_custom_metadata")
        entry = self._store.get_metadata(key)
        if entry is None or self._expired(entry, self._clock()):
            return []
        return self._store.get_custom_metadata(model, key)

    def query_custom_entries(self, model: type[M] | str, *where: Any) -> list[CacheEntry]:
        """Return the live entries having a row of ``model`` that matches ``where``.

        The join from custom metadata back to the data: ``cache.get(cache_key=e.cache_key)``
        loads each. Entries come in key order, each once.

        Example:
            >>> import tempfile
            >>> from sqlalchemy import Column, Float, Integer, String
            >>> from cacheness import CustomMetadataBase, custom_metadata_model
            >>> @custom_metadata_model("doc_cache_entries")
            ... class Scored(CustomMetadataBase):
            ...     __tablename__ = "custom_doc_cache_entries"
            ...     score = Column(Integer)
            >>> cache = cacheness(cache_dir=tempfile.mkdtemp())
            >>> _ = cache.put("best", custom_metadata=Scored(score=9), run=1)
            >>> _ = cache.put("worst", custom_metadata=Scored(score=1), run=2)
            >>> found = cache.query_custom_entries(Scored, Scored.score > 5)
            >>> tuple(cache.get(cache_key=entry.cache_key) for entry in found)
            ('best',)
        """
        self._check_open()
        now = self._clock()
        entries = self._store.query_custom_entries(model, *where)
        return [self._describe(entry) for entry in entries if not self._expired(entry, now)]

    def migrate_custom_metadata_tables(
        self, *models: type[CustomMetadataBase] | str
    ) -> dict[str, list[str]]:
        """Create missing custom metadata tables and add missing nullable columns.

        Args:
            *models: models (classes or registered names); none means all registered.

        Returns:
            ``{table: [added columns]}`` for the tables that changed.

        Raises:
            CustomSchemaError: a change this cannot make (NOT NULL columns, dropped or
                retyped columns): migrate with Alembic (see the docs page).
        """
        self._check_open()
        return self._store.migrate_custom_metadata_tables(*models)

    # ------------------------------------------------------------------ deleting

    @cache_operation("invalidate")
    def invalidate(
        self,
        *,
        cache_key: str | None = None,
        key_prefix: str | None = None,
        key_params: Mapping[str, Any] | None = None,
        **params: Any,
    ) -> bool:
        """Delete one entry; return False if it did not exist."""
        self._check_open()
        key, _ = self._resolve(cache_key, key_prefix, key_params, params, "invalidate")
        self._forget([key])
        return self._store.delete(key)

    @cache_operation("delete_batch")
    def delete_batch(self, items: Iterable[Mapping[str, Any]]) -> int:
        """Delete the entries of several key parameter mappings; return how many existed."""
        self._check_open()
        keys = [
            self._resolve_spec(item, "delete_batch")[0]
            for item in self._items(items, "delete_batch")
        ]
        self._forget(keys)
        return self._store.delete_batch(keys)

    @cache_operation("delete_where")
    def delete_where(self, where: Filter | Predicate) -> int:
        """Delete the entries a storage filter (or a predicate on ``CacheEntry``) selects.

        Raises:
            TypeError: an empty filter (``{}``, None), which would delete every entry:
                call ``clear_all()`` for that.
            FilterError: an invalid filter.

        Example:
            >>> import tempfile
            >>> cache = cacheness(cache_dir=tempfile.mkdtemp())
            >>> _ = cache.put(1, metadata={"stage": "dev"}, run=1)
            >>> cache.delete_where({"metadata.stage": "dev"})
            1
        """
        self._check_open()
        self._forget(None)
        if callable(where):
            predicate = where
            return self._store.delete_where(lambda entry: predicate(self._describe(entry)))
        if where is None or (isinstance(where, Mapping) and not where):
            raise _empty_selector("delete_where", "a filter")
        return self._store.delete_where(where)

    @cache_operation("delete_matching")
    def delete_matching(self, *, key_params: Mapping[str, Any] | None = None, **equals: Any) -> int:
        """Delete the entries whose key parameters equal ``equals``; return how many.

        Raises:
            TypeError: no key parameters given (that would delete every entry: call
                ``clear_all()`` for that).

        Example:
            >>> import tempfile
            >>> cache = cacheness(cache_dir=tempfile.mkdtemp())
            >>> _ = cache.put(1, project="ml", run=1)
            >>> cache.delete_matching(project="ml"), cache.count()
            (1, 0)
        """
        self._check_open()
        selector = self._params_filter(equals, key_params, None, "delete_matching")
        if selector is None:
            raise _empty_selector("delete_matching", "key parameters")
        self._forget(None)
        return self._store.delete_where(selector)

    @cache_operation("delete_by_prefix")
    def delete_by_prefix(
        self, *, key_params: Mapping[str, Any] | None = None, **prefixes: Any
    ) -> int:
        """Delete the entries whose key parameters start with the given values.

        String values match as prefixes (``experiment="exp_"`` removes ``exp_001``,
        ``exp_002``...); other values must be equal. ``key_params`` takes parameters of
        any name as a mapping.

        Raises:
            TypeError: no prefix given (that would delete every entry: call
                ``clear_all()`` for that).
            FilterError: a value that is not recorded with entries (see ``put``).

        Example:
            >>> import tempfile
            >>> cache = cacheness(cache_dir=tempfile.mkdtemp())
            >>> _ = cache.put(1, experiment="exp_001")
            >>> _ = cache.put(2, experiment="exp_002")
            >>> _ = cache.put(3, experiment="baseline")
            >>> cache.delete_by_prefix(experiment="exp_")
            2
        """
        self._check_open()
        merged = self._selector_params(prefixes, key_params, "delete_by_prefix")
        if not merged:
            raise _empty_selector("delete_by_prefix", "key parameter prefixes")
        described = self._described(merged)
        clauses = {
            _param_field(name): {"$prefix": value} if isinstance(value, str) else value
            for name, value in described.items()
        }
        self._forget(None)
        return self._store.delete_where(clauses)

    @cache_operation("clear_all")
    def clear_all(self) -> int:
        """Delete every entry; return how many there were."""
        self._check_open()
        with self._access_lock:
            self._pending_access.clear()
        self._forget(None)
        return self._store.clear()

    def clear(self) -> int:
        """Delete every entry; return how many there were (as ``diskcache.Cache.clear``).

        The same as :meth:`clear_all`.
        """
        return self.clear_all()

    def __len__(self) -> int:
        """The number of live (not expired) entries: ``len(cache)``, one count query."""
        return self.count()

    def __contains__(self, item: object) -> bool:
        """``item in cache``: is there a live entry for it? Loads nothing.

        A str is a cache key (what ``put`` returned; a str that is not a valid key is
        never in the cache); a mapping holds key parameters, as ``cache.exists(**item)``.

        Example:
            >>> import tempfile
            >>> cache = cacheness(cache_dir=tempfile.mkdtemp())
            >>> key = cache.put("v", run=1)
            >>> key in cache, {"run": 1} in cache, {"run": 2} in cache, len(cache)
            (True, True, False, 1)
        """
        if isinstance(item, str):
            try:
                return self.exists(cache_key=item)
            except InvalidKeyError:
                return False
        if isinstance(item, Mapping):
            return self.exists(key_params=item)
        raise TypeError(
            f"'in cache' takes a cache key (str) or a mapping of key parameters, "
            f"not {type(item).__name__}"
        )

    # ------------------------------------------------------------------ decorators

    @overload
    def cached(self, func: Callable[P, R], /) -> CachedFunction[P, R]: ...

    @overload
    def cached(
        self, func: None = None, /, **options: Any
    ) -> Callable[[Callable[P, R]], CachedFunction[P, R]]: ...

    def cached(
        self, func: Callable[P, R] | None = None, /, **options: Any
    ) -> CachedFunction[P, R] | Callable[[Callable[P, R]], CachedFunction[P, R]]:
        """``@cache.cached`` / ``@cache.cached(ttl_seconds=...)``: cache a function here.

        The same as :func:`cacheness.cached` with ``cache_instance=`` this cache; the
        options are those of :func:`cacheness.cached`.

        Example:
            >>> import tempfile
            >>> cache = cacheness(cache_dir=tempfile.mkdtemp())
            >>> @cache.cached(ttl_seconds=60)
            ... def double(x):
            ...     return 2 * x
            >>> double(21), double(21), double.cache_info().hits
            (42, 42, 1)
        """
        from cacheness.decorators import cached

        if "cache_instance" in options:
            raise TypeError(
                "cache.cached() caches in this cache: leave out cache_instance= "
                "(or use cacheness.cached(cache_instance=...))"
            )
        decorate: Callable[[Callable[P, R]], CachedFunction[P, R]] = cached(
            cache_instance=self, **options
        )
        return decorate if func is None else decorate(func)

    @overload
    def memoize(self, func: Callable[P, R], /) -> CachedFunction[P, R]: ...

    @overload
    def memoize(
        self, func: None = None, /, **options: Any
    ) -> Callable[[Callable[P, R]], CachedFunction[P, R]]: ...

    def memoize(
        self, func: Callable[P, R] | None = None, /, **options: Any
    ) -> CachedFunction[P, R] | Callable[[Callable[P, R]], CachedFunction[P, R]]:
        """``@cache.memoize`` (as ``diskcache.Cache.memoize``): the same as :meth:`cached`.

        Example:
            >>> import tempfile
            >>> cache = cacheness(cache_dir=tempfile.mkdtemp())
            >>> @cache.memoize
            ... def square(x):
            ...     return x * x
            >>> square(3), square.cache_info().misses
            (9, 1)
        """
        if func is None:
            return self.cached(**options)
        if options:
            raise TypeError("memoize(func, **options): use @cache.memoize(**options) instead")
        return self.cached(func)

    # ------------------------------------------------------------------ maintenance

    def verify_integrity(self, *, deep: bool = True) -> list[IntegrityIssue]:
        """Check every entry's stored bytes; return the problems found (none: ``[]``).

        ``deep=False`` checks existence and size only (no download). See
        :meth:`cacheness.storage.BlobStore.verify_integrity`.
        """
        self._check_open()
        return self._store.verify_integrity(deep=deep)

    def repair(
        self, *, dry_run: bool = True, orphan_min_age_seconds: float = 3600.0
    ) -> RepairReport:
        """Find (and unless ``dry_run``, remove) damaged entries and orphaned blobs.

        See :meth:`cacheness.storage.BlobStore.repair`.

        Example:
            >>> import tempfile
            >>> cache = cacheness(cache_dir=tempfile.mkdtemp())
            >>> _ = cache.put("v", run=1)
            >>> cache.repair(dry_run=True).ok, cache.find_orphaned_blobs(), cache.verify_integrity()
            (True, [], [])
        """
        self._check_open()
        return self._store.repair(dry_run=dry_run, orphan_min_age_seconds=orphan_min_age_seconds)

    def find_orphaned_blobs(self, *, min_age_seconds: float = 3600.0) -> list[str]:
        """Return the references of blobs no entry points at (older than ``min_age_seconds``)."""
        self._check_open()
        return self._store.find_orphaned_blobs(min_age_seconds=min_age_seconds)

    @cache_operation("cleanup_expired")
    def cleanup_expired(self) -> int:
        """Delete every expired entry in one pushed-down delete; return how many.

        Example:
            >>> import tempfile
            >>> from datetime import UTC, datetime, timedelta
            >>> now = [datetime(2026, 1, 1, tzinfo=UTC)]
            >>> cache = cacheness(cache_dir=tempfile.mkdtemp(), clock=lambda: now[0])
            >>> _ = cache.put(1, ttl_seconds=10, n=1)
            >>> _ = cache.put(2, n=2)  # no expiry
            >>> now[0] += timedelta(seconds=11)
            >>> cache.cleanup_expired()
            1
        """
        self._check_open()
        removed = self._store.delete_where(self._expired_filter(self._clock().timestamp()))
        self._stats.add(expirations=removed)
        return removed

    # ------------------------------------------------------------------ locks & stats

    # ------------------------------------------------------------------ portability

    def export_to_file(
        self,
        path: str | os.PathLike[str] | BinaryIO,
        *,
        filter: Filter | Predicate | None = None,
        key_params: Mapping[str, Any] | None = None,
        include_expired: bool = False,
        compression: Literal["zstd", "gzip"] | _Miss | None = MISS,
        compress: bool = True,
        progress: Callable[[TransferProgress], None] | None = None,
    ) -> TransferReport:
        """Write the live entries (or those selected) to one archive file or stream.

        Every entry keeps its TTL, expiry time, key parameters, user metadata and
        statistics fields (created, updated, accessed, reads): importing the archive
        elsewhere gives the same cache. See ``BlobStore.export`` for the format.

        Args:
            path: a file path, or a binary stream open for writing.
            filter: a storage filter over entry fields (``{"metadata.owner": "ana"}``), or
                a function of a :class:`~cacheness.CacheEntry` returning a bool.
            key_params: export only entries stored under these key parameters.
            include_expired: also export entries whose TTL has run out.
            compression: ``"zstd"``, ``"gzip"`` or None; by default chosen by the file
                name (``.gz``/``.tgz``: gzip, ``.tar``: none, otherwise zstd).
            compress: False writes a plain tar whatever the name.
            progress: called with a ``TransferProgress`` as entries are written.

        Returns:
            A ``cacheness.storage.TransferReport``.

        Example:
            >>> import tempfile, os
            >>> folder = tempfile.mkdtemp()
            >>> cache = cacheness(cache_dir=os.path.join(folder, "a"))
            >>> _ = cache.put({"auc": 0.9}, model="resnet", epochs=10)
            >>> cache.export_to_file(os.path.join(folder, "backup.tar.gz")).entries
            1
            >>> other = cacheness(cache_dir=os.path.join(folder, "b"))
            >>> other.import_from_file(os.path.join(folder, "backup.tar.gz")).entries
            1
            >>> other.get(model="resnet", epochs=10)
            {'auc': 0.9}
        """
        self._check_open()
        self._flush_access()
        if isinstance(compression, _Miss):
            compression = _compression_for(path) if compress else None
        return self._store.export(
            path, self._selection(filter, key_params, include_expired), compression, progress
        )

    def export_to_dict(
        self,
        *,
        filter: Filter | Predicate | None = None,
        key_params: Mapping[str, Any] | None = None,
        include_expired: bool = False,
    ) -> dict[str, Any]:
        """Return the archive :meth:`export_to_file` writes as a dict (small caches, tests).

        Example:
            >>> import tempfile
            >>> cache = cacheness(cache_dir=tempfile.mkdtemp())
            >>> _ = cache.put([1, 2], n=1)
            >>> other = cacheness(cache_dir=tempfile.mkdtemp())
            >>> other.import_from_dict(cache.export_to_dict()).entries, other.get(n=1)
            (1, [1, 2])
        """
        self._check_open()
        self._flush_access()
        return self._store.export_to_dict(self._selection(filter, key_params, include_expired))

    def _selection(
        self,
        filter: Filter | Predicate | None,
        key_params: Mapping[str, Any] | None,
        include_expired: bool,
    ) -> Filter | Callable[[Entry], bool] | None:
        """The storage selection of the export wrappers (a predicate sees ``CacheEntry``)."""
        if callable(filter):
            predicate = filter
            selected = self._entries_filter(
                self._params_filter({}, key_params, None, "export_to_file"), include_expired
            )
            if selected is None:
                return lambda entry: bool(predicate(self._describe(entry)))
            return lambda entry: matches(entry, selected) and bool(predicate(self._describe(entry)))
        by_params = self._params_filter({}, key_params, filter, "export_to_file")
        return self._entries_filter(by_params, include_expired)

    def import_from_file(
        self,
        path: str | os.PathLike[str] | BinaryIO,
        *,
        on_conflict: Literal["skip", "overwrite", "error"] = "skip",
        filter: Filter | None = None,
        progress: Callable[[TransferProgress], None] | None = None,
        trust_pickles: bool = False,
    ) -> TransferReport:
        """Import an archive written by :meth:`export_to_file` (or ``BlobStore.export``).

        Each blob is checked against the archive's manifest (size, hash) before its
        entry is committed; damaged or unsafe members are reported and skipped, and an
        interrupted import resumes when run again. Pickled values (the ``objects``
        handler) are refused unless ``trust_pickles=True``: loading a pickle runs code.
        A cache with size or count limits evicts by its policy afterwards if the import
        took it over them. See ``BlobStore.import_`` for every argument.

        Returns:
            A ``cacheness.storage.TransferReport`` (``damaged`` lists what was refused).
        """
        self._check_open()
        report = self._store.import_(
            path, on_conflict, filter, progress, trust_pickles=trust_pickles
        )
        self._after_import(report)
        return report

    def import_from_dict(
        self,
        data: Mapping[str, Any],
        *,
        on_conflict: Literal["skip", "overwrite", "error"] = "skip",
        filter: Filter | None = None,
        trust_pickles: bool = False,
    ) -> TransferReport:
        """Import what :meth:`export_to_dict` returned, with the checks of
        :meth:`import_from_file`."""
        self._check_open()
        report = self._store.import_from_dict(
            data, on_conflict, filter, trust_pickles=trust_pickles
        )
        self._after_import(report)
        return report

    def _after_import(self, report: TransferReport) -> None:
        """Count what came in and keep the cache within its limits (eviction policy)."""
        if report.entries:
            self._stats.add(puts=report.entries, bytes_written=report.bytes)
            evicted = self._evictor.enforce()
            if evicted:
                self._stats.add(evictions=evicted)

    def compute_lock(
        self, cache_key: str, *, timeout: float | None = None
    ) -> AbstractContextManager[bool]:
        """A lock on computing the value of ``cache_key``, shared as far as the index is.

        Threads of one process (memory index), processes of one host (sqlite, json: file
        locks next to the index), or every host (postgresql: an advisory lock). Yields
        True when held, False when ``timeout`` ran out.
        """
        self._check_open()
        validate_key(cache_key)
        if timeout is not None and (
            isinstance(timeout, bool) or not isinstance(timeout, int | float) or not timeout >= 0
        ):
            raise TypeError(
                f"compute_lock(): timeout must be a number of seconds >= 0 or None (wait as "
                f"long as it takes), got {timeout!r}"
            )
        return self._store.named_lock(f"cacheness.compute:{cache_key}", timeout=timeout)

    def get_stats(self) -> dict[str, Any]:
        """Return counters of this cache object plus the index's entry count and size.

        Keys: hits, misses, puts, evictions, expirations, errors, invalid_signatures,
        bytes_read,
        bytes_written, hit_rate, entries, total_size, max_cache_size_mb, max_entries,
        eviction_policy, metadata_backend, blob_backend; with the memory layer on (and
        its ``stats`` setting), also memory_hits (hits it served, counted in hits too),
        memory_entries, memory_bytes and memory_evictions.
        """
        self._check_open()
        self._flush_access()
        stats = self._stats.snapshot()
        memory = self._memory
        if memory is not None and memory.report:
            stats.update(memory.stats())
        else:
            del stats["memory_hits"]
        stats.update(
            entries=self._store.count(),
            total_size=self._store.total_size(),
            max_cache_size_mb=self.config.max_cache_size_mb,
            max_entries=self.config.max_entries,
            eviction_policy=self.config.eviction_policy,
            metadata_backend=self._store.metadata_backend_name,
            blob_backend=self._store.blob_backend_name,
        )
        return stats

    def resign(self, *, batch_size: int = 1000) -> ResignReport:
        """Re-sign every entry with the current signing key; return the counts.

        After a key rotation (``SecurityConfig(signing_key=new, signing_keys=[old])``):
        entries signed with an older key get the current key's signature, so the old
        key can then be dropped. Entries whose signature fails are never re-signed.
        See :meth:`cacheness.storage.BlobStore.resign`.

        Raises:
            ConfigError: signing is off for this cache.

        Example:
            >>> import tempfile
            >>> cache = cacheness(cache_dir=tempfile.mkdtemp())
            >>> _ = cache.put([1, 2], name="x")
            >>> cache.resign().current  # already signed with the current key
            1
            >>> cache.close()
        """
        self._check_open()
        return self._store.resign(batch_size=batch_size)

    def reset_stats(self) -> None:
        """Set the counters of this cache object back to zero."""
        self._stats.reset()

    def backend_stats(self) -> dict[str, dict[str, int]]:
        """Return the storage backends' own counters: the cost and pool figures.

        ``{"metadata": {...}, "blob": {...}}``: on S3 the HTTP requests by kind
        (``put_requests``, ``get_requests``, ``head_requests``, ``list_requests``,
        ``delete_requests``, ``multipart_parts``...) and ``bytes_in``/``bytes_out``; on
        PostgreSQL the connection pool (``size``, ``checked_out``, ``overflow``,
        ``waits``, ``timeouts``). See :meth:`cacheness.storage.BlobStore.backend_stats`.

        Example:
            >>> import tempfile
            >>> cacheness(cache_dir=tempfile.mkdtemp()).backend_stats()
            {'metadata': {}, 'blob': {}}
        """
        self._check_open()
        return self._store.backend_stats()

    def health(self, *, timeout: float = 5.0) -> HealthReport:
        """Check that the cache's storage answers, within ``timeout`` seconds.

        Each backend (the index, the blob store) makes one cheap round trip, nothing
        written; the report says for each whether it is reachable, how long it took
        and, if not, why. An unreachable backend is reported, never raised: made for
        readiness probes (``report.healthy``) and dashboards (``report.to_dict()``).

        Raises:
            ValueError: ``timeout`` is not a positive number of seconds.

        Example:
            >>> import tempfile
            >>> report = cacheness(cache_dir=tempfile.mkdtemp()).health(timeout=2.0)
            >>> report.healthy, [(b.role, b.backend) for b in report.backends]
            (True, [('metadata', 'sqlite'), ('blob', 'filesystem')])
        """
        self._check_open()
        return self._store.health(timeout=timeout)

    # ------------------------------------------------------------------ lifecycle

    def close(self) -> None:
        """Record pending access statistics and close the storage. Idempotent."""
        if self._closed:
            return
        try:
            self._flush_access()
        finally:
            self._closed = True
            self._forget(None)
            self._store.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def __repr__(self) -> str:
        metadata = self._store.metadata_backend_name
        blobs = self._store.blob_backend_name
        if metadata in _LOCAL_BACKENDS or blobs in _LOCAL_BACKENDS:
            return (
                f"cacheness(cache_dir={self.config.cache_dir!r}, "
                f"metadata={metadata!r}, blobs={blobs!r})"
            )
        where = self._store.describe_backends()  # a team cache: its table, bucket, prefix
        return f"cacheness(metadata={where['metadata']}, blobs={where['blobs']})"

    if not TYPE_CHECKING:  # type checkers keep reporting unknown attributes themselves

        def __getattr__(self, name: str) -> Any:
            """Say what to call for Cacheness 0.4's methods and near misses."""
            if name.startswith("_"):
                raise AttributeError(name)
            replacement = RETIRED_METHODS.get(name)
            if replacement is not None:
                raise AttributeError(
                    f"cacheness has no method {name!r} (Cacheness 0.4); use cache.{replacement}"
                )
            public = [n for n in dir(type(self)) if not n.startswith("_")]
            raise AttributeError(
                f"'cacheness' object has no attribute {name!r}{did_you_mean(name, public)}"
            )

    # ------------------------------------------------------------------ activity

    def _report(self, event: str, method: str, key: str, started: float) -> None:
        """Log one activity line: what happened, to which function/method, how long."""
        took = (time.perf_counter() - started) * 1000
        name = _ACTIVITY_NAME.get() or f"cache.{method}"
        args = (event, name, key, took)
        if not self.verbose:  # the logger is at INFO: your logging configuration decides
            activity_log.info(_ACTIVITY_LINE, *args)
            return
        # verbose: logged whatever the logger's level, and printed (this cache's lines only)
        record = activity_log.makeRecord(
            activity_log.name, logging.INFO, __file__, 0, _ACTIVITY_LINE, args, None,
            extra={_VERBOSE_MARK: True},
        )  # fmt: skip
        activity_log.handle(record)

    # ------------------------------------------------------------------ internals

    def _check_open(self) -> None:
        if self._closed:
            raise StorageError("this cache is closed; create a new cacheness()")

    def _ttl(self, ttl_seconds: float | timedelta | None) -> float | None:
        if ttl_seconds is None:
            return validate_ttl(self.config.default_ttl_seconds, "default_ttl_seconds")
        return validate_ttl(ttl_seconds)

    @staticmethod
    def _facts(
        now: datetime, ttl: float | None, params: Mapping[str, Any], prefix: str | None
    ) -> dict[str, Any]:
        facts: dict[str, Any] = {"v": FORMAT_VERSION}
        if ttl is not None:
            facts["ttl"] = ttl
            facts["expires_at"] = expiry_time(now, ttl)
        described = describe_params(params) if params else None
        if described is not None:
            facts["params"] = described
        if prefix:
            facts["prefix"] = prefix
        return facts

    def _refreshed_facts(self, entry: Entry, now: datetime, ttl: float | None) -> dict[str, Any]:
        facts = dict(cache_facts(entry))
        facts["v"] = FORMAT_VERSION
        keep = ttl if ttl is not None else ttl_of(facts)
        if keep is None:
            facts.pop("ttl", None)
            facts.pop("expires_at", None)
        else:
            facts["ttl"] = keep
            facts["expires_at"] = expiry_time(now, keep)
        return facts

    @staticmethod
    def _with_facts(metadata: Mapping[str, Any] | None, facts: dict[str, Any]) -> dict[str, Any]:
        if metadata is not None and not isinstance(metadata, Mapping):
            raise InvalidEntryError(
                f"metadata must be a dict of JSON-able values, got {type(metadata).__name__}"
            )
        user = dict(metadata or {})
        if RESERVED_METADATA_KEY in user:
            raise InvalidEntryError(
                f"metadata key {RESERVED_METADATA_KEY!r} is reserved for the cache's own facts; "
                "rename it"
            )
        user[RESERVED_METADATA_KEY] = facts
        return user

    @staticmethod
    def _expired(entry: Entry, now: datetime) -> bool:
        expires = expiry_seconds(cache_facts(entry))
        return expires is not None and expires <= now.timestamp()

    def _fresh_entry(self, key: str, max_age_seconds: float | timedelta | None) -> Entry | None:
        """The entry of ``key`` unless absent or older than ``max_age_seconds`` (a miss)."""
        max_age = validate_ttl(max_age_seconds, "max_age_seconds")
        entry = self._store.get_metadata(key)
        if entry is None:
            self._stats.record_miss()
            return None
        if max_age is not None and (self._clock() - entry.updated_at).total_seconds() > max_age:
            self._stats.record_miss(reason="too_old")
            return None
        return entry

    def _entries_filter(self, filter: Filter | None, include_expired: bool) -> Filter | None:
        """``filter``, restricted to live entries unless ``include_expired``."""
        if include_expired:
            return combine_filters(filter)
        return combine_filters(filter, self._live_filter(self._clock().timestamp()))

    @staticmethod
    def _live_filter(now: float) -> Filter:
        """Entries with no expiry, or a numeric one after ``now`` (as ``_expired``)."""
        return {"$or": [{_EXPIRES: {"$exists": False}}, {_EXPIRES: {"$gt": now}}]}

    @classmethod
    def _expired_filter(cls, now: float) -> Filter:
        """The complement of :meth:`_live_filter`: expired, or an expiry that is no number."""
        return {"$not": cls._live_filter(now)}

    def _described(self, params: Mapping[str, Any]) -> dict[str, Any]:
        described = describe_params(params)
        missing = set(params) - set(described or {})
        if described is None or missing:
            raise FilterError(
                "only JSON-able key parameters an index can hold (no NUL, lone surrogates or "
                "integers beyond 64 bits) are recorded and can be queried; cannot query by "
                f"{', '.join(sorted(missing or params))}"
            )
        return described

    @staticmethod
    def _selector_params(
        equals: Mapping[str, Any], key_params: Mapping[str, Any] | None, method: str
    ) -> dict[str, Any]:
        """The key parameters a bulk call selects by: ``equals`` and ``key_params``."""
        if equals and not _CHECKED_NAMES.isdisjoint(equals):
            _refuse_options(method, equals)
        if key_params is None:
            return dict(equals)
        if not isinstance(key_params, Mapping):
            raise TypeError(
                f"{method}(): key_params must be a mapping of key parameters such as "
                f"{{'model': 'a'}}, got {type(key_params).__name__} {key_params!r}"
            )
        clash = key_params.keys() & equals.keys()
        if clash:
            raise TypeError(f"key parameter(s) given twice: {', '.join(sorted(clash))}")
        return {**key_params, **equals}

    def _params_filter(
        self,
        equals: Mapping[str, Any],
        key_params: Mapping[str, Any] | None,
        filter: Filter | None,
        method: str,
    ) -> Filter | None:
        selected = self._selector_params(equals, key_params, method)
        by_params = (
            {_param_field(k): v for k, v in self._described(selected).items()} if selected else None
        )
        return combine_filters(by_params, filter)

    @staticmethod
    def _items(
        items: Any,
        method: str,
        what: str = "key parameter mappings, e.g. [{'model': 'a'}, {'cache_key': key}]",
    ) -> list[Any]:
        """``items`` as a list, or ``TypeError`` when it is no collection of items."""
        if isinstance(items, str | bytes | Mapping) or not isinstance(items, Iterable):
            raise TypeError(
                f"{method}() takes a list of {what}; got {type(items).__name__} {items!r}"
            )
        return list(items)

    def _resolve_spec(self, spec: Any, method: str) -> tuple[str, dict[str, Any]]:
        """Resolve a mapping of key parameters (or ``cache_key``/``key_prefix``)."""
        if not isinstance(spec, Mapping):
            raise TypeError(
                f"{method}() takes key parameter mappings such as {{'model': 'a'}} or "
                f"{{'cache_key': key}}, got {type(spec).__name__} {spec!r}"
            )
        params = dict(spec)
        cache_key = params.pop("cache_key", None)
        key_prefix = params.pop("key_prefix", None)
        return self._resolve(cache_key, key_prefix, params, {}, method)

    def _describe(self, entry: Entry) -> CacheEntry:
        return CacheEntry.from_entry(entry, self._store.location(entry))

    def _lookup(self, key: str) -> Any:
        memory = self._memory
        if memory is None:
            found = self._fetch(key, None)
            return MISS if found is None else found.value
        token = self._store.change_token()  # before reading: a later commit moves it
        # the default clock read as a float: the same instant as utc_now().timestamp()
        now = None if self._clock is utc_now else self._clock()
        stamp = time.time() if now is None else now.timestamp()
        held = memory.find(key)
        if held is not None and memory.current(held, token, stamp):
            if held.expires is None or held.expires > stamp:
                value = memory.value(held)
                self._stats.record_memory_hit()
                if stamp - held.access_stamp < self._access_seconds and self._count_access(key):
                    return value  # written with the others' at the next recorded access
                now = datetime.fromtimestamp(stamp, UTC) if now is None else now
                if self._accessed(key, held.accessed_at, now):
                    held.accessed(now)
                return value
            held = None  # expired: the index path counts it and removes the entry
        found = self._fetch(key, None, held)
        if found is None:
            memory.discard(key)
            return MISS
        if held is not None and found.entry is held.payload:
            held.refresh(found.entry, token, stamp)  # checked with the index: still current
        else:
            memory.keep(key, found.entry, found.value, token, stamp)
        return found.value

    def _forget(self, keys: list[str] | None) -> None:
        """Drop what the memory layer holds for ``keys`` (every key: None) after a write."""
        memory = self._memory
        if memory is None:
            return
        if keys is None:
            memory.clear()
        else:
            for key in keys:
                memory.discard(key)

    def _load(self, entry: Entry | PayloadInfo) -> Lookup | None:
        """Read ``entry``'s value (or that of the entry that replaced it); None on a miss."""
        return self._fetch(entry.key, entry)

    def _fetch(
        self, key: str, entry: Entry | PayloadInfo | None, held: Held | None = None
    ) -> Lookup | None:
        """Read a value and turn it into a hit or a miss (expired, other format, deleted
        meanwhile, unreadable); return what was read, or None on a miss.

        Without ``entry``, the index is asked for only the columns a hit needs: where
        the bytes are, the facts, the access time. The store follows a key that a
        writer replaces or deletes during the read, so a race is never an error here:
        only an entry that is still current and cannot be read back counts as one
        (logged, counted, removed; raised when ``strict``).

        With ``held`` (the memory layer's value of ``key``), a current entry with the
        same bytes is not read: the held value is returned, with the entry as read now.
        """
        now = self._clock()
        checked: list[Entry | PayloadInfo] = []
        reuse: list[Entry | PayloadInfo] = []

        def usable(candidate: Entry | PayloadInfo) -> bool:
            checked.append(candidate)
            facts = cache_facts(candidate)
            if facts.get("v", FORMAT_VERSION) != FORMAT_VERSION:
                return False
            expires = expiry_seconds(facts)  # as _expired(), on the facts already at hand
            if expires is not None and expires <= now.timestamp():
                return False
            if held is not None and same_value(held.payload, candidate):
                reuse.append(candidate)
                return False  # the memory layer has this very value: no read
            return True

        try:
            if entry is None:
                found = self._store.lookup(key, with_metadata=True, accept=usable)
            else:
                found = self._store.read_current(entry, accept=usable)
        except SignatureError as exc:
            if self.config.strict:
                raise
            # Not removed here: the store deletes it with delete_invalid_signatures, and
            # otherwise it may be valid under a key this process lacks.
            log.warning("cache entry %s refused (signature): a miss (%s)", key, exc)
            self._stats.record_miss(signature=True)
            return None
        except (IntegrityError, SerializationError, InvalidBlobNameError) as exc:
            if self.config.strict or not checked:
                raise
            damaged = checked[-1]
            log.warning(
                "cache entry %s%s cannot be read back from %s: a miss (%s)",
                damaged.key,
                _prefixed(cache_facts(damaged).get("prefix")),
                self._where,
                exc,
            )
            self._stats.record_miss(error=True, integrity=isinstance(exc, IntegrityError))
            self._remove_if_unchanged(damaged, {"content_hash": damaged.content_hash})
            return None
        if found is None:  # absent, or deleted while being read
            self._stats.record_miss()
            return None
        read = found.entry
        if not found.loaded and reuse and reuse[-1] is read and held is not None:
            value = cast(MemoryLayer, self._memory).value(held)
            held.payload = read  # _lookup refreshes the rest
            self._stats.record_hit(memory=True)
            self._accessed(read.key, read.accessed_at, now)
            return Lookup(read, value, True)
        if not found.loaded:
            if cache_facts(read).get("v", FORMAT_VERSION) != FORMAT_VERSION:
                log.info(
                    "entry %s%s was written by another cache format version: a miss",
                    read.key,
                    _prefixed(cache_facts(read).get("prefix")),
                )
                self._stats.record_miss(reason="other_version")
            else:
                self._stats.record_miss(expired=True)
                self._remove_if_unchanged(read, {_EXPIRES: {"$lte": now.timestamp()}})
            return None
        self._stats.record_hit(bytes_read=read.size, handler=read.handler)
        self._accessed(read.key, read.accessed_at, now)
        return found

    def _remove_if_unchanged(self, entry: Entry | PayloadInfo, condition: Filter) -> None:
        """Delete ``entry`` unless someone rewrote its key meanwhile (a conditional delete)."""
        try:
            self._store.delete_where({"$and": [{"key": entry.key}, condition]})
        except StorageError:
            log.warning(
                "could not remove unusable cache entry %s from %s",
                entry.key,
                self._where,
                exc_info=True,
            )

    def _count_access(self, key: str) -> bool:
        """Count a hit within its key's access interval, as ``_accessed`` does, unless
        that needs the pending counts flushed (False: call ``_accessed`` instead)."""
        with self._access_lock:
            pending = self._pending_access
            count = pending.get(key)
            if count is None and len(pending) + 1 >= _MAX_PENDING_ACCESS:
                return False
            pending[key] = 1 if count is None else count + 1
            return True

    def _accessed(self, key: str, last: datetime | None, now: datetime) -> bool:
        """Record a hit: at most one index write per key per access interval.

        ``last`` is the access time the index holds; True when this hit was written.
        """
        with self._access_lock:
            pending = self._pending_access.pop(key, 0) + 1
            if last is not None and now - last < self._access_interval:
                self._pending_access[key] = pending
                if len(self._pending_access) < _MAX_PENDING_ACCESS:
                    return False
                flush, self._pending_access = self._pending_access, {}
            else:
                flush = {key: pending}
        self._record_access(flush, now)
        return key in flush

    def _flush_access(self) -> None:
        with self._access_lock:
            flush, self._pending_access = self._pending_access, {}
        if flush:
            self._record_access(flush, self._clock())

    def _record_access(self, counts: dict[str, int], now: datetime) -> None:
        try:
            self._store.record_access(counts, at=now)
        except StorageError:
            # Access times only steer eviction: losing some must not fail a read.
            log.warning(
                "could not record access times of %d entries in %s",
                len(counts),
                self._where,
                exc_info=True,
            )


def _prefixed(key_prefix: object) -> str:
    """`` (prefix 'name')`` for log messages, or nothing."""
    return f" (prefix {key_prefix!r})" if key_prefix else ""


def _empty_selector(method: str, what: str) -> TypeError:
    return TypeError(
        f"{method}() needs {what} to select the entries to delete; it never deletes "
        "everything by default: call clear_all() to delete every entry"
    )


UnifiedCache = cacheness
"""Alias of :class:`cacheness` under its earlier name."""


def migrate(
    source: cacheness | BlobStore,
    target: cacheness | BlobStore,
    *,
    filter: Filter | None = None,
    progress: Callable[[TransferProgress], None] | None = None,
    on_conflict: Literal["skip", "overwrite", "error"] = "skip",
) -> TransferReport:
    """Copy a cache's entries into another cache (e.g. SQLite + files -> PostgreSQL + S3).

    Entry by entry, each blob streamed from one backend to the other (server-side on
    one S3 endpoint); TTL, expiry, key parameters, metadata and statistics fields come
    along. The source is not changed; entries already in the target with the same bytes
    are skipped, so an interrupted migration resumes when run again.

    Args:
        source: the cache (or ``BlobStore``) to copy from.
        target: the cache (or ``BlobStore``) to copy into.
        filter: copy only entries matching this storage filter.
        progress: called with a ``TransferProgress`` after each entry.
        on_conflict: a key the target holds with other bytes: ``"skip"``,
            ``"overwrite"`` or ``"error"``.

    Returns:
        A ``cacheness.storage.TransferReport``.

    Example:
        >>> import tempfile, os
        >>> import cacheness as cn
        >>> folder = tempfile.mkdtemp()
        >>> laptop = cn.cacheness(cache_dir=os.path.join(folder, "laptop"))
        >>> _ = laptop.put([1, 2, 3], dataset="iris", ttl_seconds=3600)
        >>> team = cn.cacheness(cache_dir=os.path.join(folder, "team"))
        >>> cn.migrate(laptop, team).entries, team.get(dataset="iris")
        (1, [1, 2, 3])
    """
    from cacheness.storage import migrate as migrate_stores

    stores = []
    for side in (source, target):
        if isinstance(side, cacheness):
            side._check_open()
            side._flush_access()
            stores.append(side.store)
        elif isinstance(side, BlobStore):
            stores.append(side)
        else:
            raise ConfigError(
                "migrate() takes caches (cacheness objects) or BlobStores, got "
                f"{type(side).__name__}"
            )
    report = migrate_stores(stores[0], stores[1], filter, progress, on_conflict=on_conflict)
    if isinstance(target, cacheness):
        target._after_import(report)
    return report


def _compression_for(path: object) -> Literal["zstd", "gzip"] | None:
    """The archive compression a file name asks for (zstd for streams and other names)."""
    name = str(os.fspath(path)).lower() if isinstance(path, str | os.PathLike) else ""
    if name.endswith((".gz", ".tgz")):
        return "gzip"
    if name.endswith(".tar"):
        return None
    return "zstd"


_ACTIVITY_LINE: Final = "%s %s key=%s %.1f ms"
_VERBOSE_MARK: Final = "cacheness_verbose"

_LOCAL_BACKENDS: Final = frozenset({"sqlite", "json", "filesystem", "tiered"})


def _is_cache_dir(path: str | os.PathLike[str]) -> bool:
    """Is a positional path a cache directory (True) or a config file (False)?"""
    location = Path(path).expanduser()
    return location.is_dir() or location.suffix.lower() not in _CONFIG_SUFFIXES


class _ActivityPrinter(logging.StreamHandler):  # type: ignore[type-arg]
    """Prints activity lines on the current ``sys.stderr``, unless a handler of the logging
    configuration prints them on a console already (then they would show twice)."""

    def __init__(self) -> None:
        super().__init__()
        self.setFormatter(logging.Formatter("[cacheness] %(message)s"))

    @property
    def stream(self) -> Any:
        import sys

        return sys.stderr  # looked up at each line: redirections and captures see it

    @stream.setter
    def stream(self, value: Any) -> None:
        pass

    def filter(self, record: logging.LogRecord) -> bool:
        """Print the lines of verbose caches, unless the logging configuration prints them."""
        if not getattr(record, _VERBOSE_MARK, False) or _console_handles(record, skip=self):
            return False
        return bool(super().filter(record))


def _console_handles(record: logging.LogRecord, *, skip: logging.Handler) -> bool:
    """Does a configured handler already print ``record`` on stdout or stderr?"""
    import sys

    consoles = {id(sys.stderr), id(sys.stdout), id(sys.__stderr__), id(sys.__stdout__)}
    logger: logging.Logger | None = activity_log
    while logger is not None:
        for handler in logger.handlers:
            if (
                handler is not skip
                and isinstance(handler, logging.StreamHandler)
                and id(handler.stream) in consoles
                and record.levelno >= handler.level
            ):
                return True
        logger = logger.parent if logger.propagate else None
    return False


def _show_activity() -> None:
    """Make the lines of verbose caches visible: printed on stderr (the printer is added once)."""
    if not any(isinstance(handler, _ActivityPrinter) for handler in activity_log.handlers):
        activity_log.addHandler(_ActivityPrinter())


_CLOUD_MODULES: Final = {"postgresql": ("psycopg",), "s3": ("boto3",)}
"""What the team backends import (installed by ``cacheness[cloud]``)."""

_CLOUD_HINT: Final = 'pip install "cacheness[cloud]"'


def _installed(module: str) -> bool:
    """Is ``module`` importable? (Checked without importing it.)"""
    import importlib.util
    import sys

    if module in sys.modules:
        return sys.modules[module] is not None
    try:
        return importlib.util.find_spec(module) is not None
    except (ImportError, ValueError):
        return False


def _check_cloud_modules(options: Mapping[str, Any]) -> None:
    """Raise one ``MissingDependencyError`` naming every module the backends lack."""
    names = [options["metadata_backend"], options["blob_backend"]]
    names += [
        value.get("backend")
        for value in (options.get("blob_options") or {}).values()
        if isinstance(value, Mapping)
    ]
    needed = {
        module: name
        for name in names
        if isinstance(name, str)
        for module in _CLOUD_MODULES.get(name, ())
    }
    missing = [
        f"{module} (for the {name} backend)"
        for module, name in needed.items()
        if not _installed(module)
    ]
    if missing:
        raise MissingDependencyError(
            f"this cache needs {' and '.join(missing)}, not installed; install them all "
            f"with: {_CLOUD_HINT}"
        )
