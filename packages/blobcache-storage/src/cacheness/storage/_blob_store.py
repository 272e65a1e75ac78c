"""``BlobStore``: objects in, objects out, over one metadata and one blob backend.

The storage-only front door for artifact stores (no TTL, no eviction): ML model
versioning, pipeline artifacts, checkpoints. It composes

* a metadata backend (the queryable index: memory, json, sqlite, postgresql),
* a blob backend (where the bytes live: filesystem, memory, s3, tiered, failover),
* a handler registry (how objects become bytes: numpy, pandas, arrow, polars, plain
  data, raw bytes, pickle),

and keeps them consistent with one write protocol: write the blob under a fresh name,
commit the metadata entry, then delete the blob the entry used to point at. A crash can
leave an orphan blob (found and removed by :meth:`BlobStore.repair`), never an entry
whose blob is missing or partial. Payloads smaller than ``inline_threshold`` are kept in
the entry itself: no blob file or object per tiny value.

Example:
    >>> import tempfile
    >>> from cacheness.storage import BlobStore
    >>> with BlobStore(tempfile.mkdtemp()) as store:
    ...     store.put({"lr": 0.01, "layers": [64, 64]}, key="runs/1/config",
    ...               metadata={"project": "ml", "accuracy": 0.93})
    ...     store.get("runs/1/config")
    ...     [e.key for e in store.list_entries(metadata_filter={"accuracy": {"$gte": 0.9}})]
    'runs/1/config'
    {'lr': 0.01, 'layers': [64, 64]}
    ['runs/1/config']
"""

from __future__ import annotations

import builtins
import contextlib
import io
import logging
import os
import uuid
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from contextlib import AbstractContextManager
from datetime import datetime
from pathlib import Path
from types import TracebackType
from typing import TYPE_CHECKING, Any, BinaryIO, Literal, Self, TypeVar, cast

import msgspec

from cacheness.storage._blob._io import copy_stream
from cacheness.storage._blob._sharding import unsafe_ref
from cacheness.storage._blob.base import BlobBackend, BlobInfo, BlobWriter
from cacheness.storage._entry import Entry, utc_now, validate_key
from cacheness.storage._filters import Filter, combine_filters
from cacheness.storage._handlers.base import FormatInfo, SerializationOptions
from cacheness.storage._handlers.registry import HandlerRegistry, default_registry
from cacheness.storage._hashing import hash_bytes, hash_stream
from cacheness.storage._metadata._entries import normalize_entry
from cacheness.storage._metadata.base import MetadataBackend, PayloadInfo
from cacheness.storage._pairing import pairing_problem
from cacheness.storage._registry import blob_backends, metadata_backends
from cacheness.storage._signing import (
    DEFAULT_SIGNED_FIELDS,
    UNSIGNED_POLICIES,
    EntrySigner,
    KeyLike,
    UnsignedPolicy,
    as_key,
    load_or_create_user_key,
    missing_key_error,
    process_key,
    resolve_signing_key,
    user_key_path,
)
from cacheness.storage._streams import MemoryReader, read_upto
from cacheness.storage._telemetry import Instrumentation, child, instrumentation, traced
from cacheness.storage._validate import check_seconds, did_you_mean, is_int, suggest_keywords
from cacheness.storage.errors import (
    BackendUnavailableError,
    BlobNotFoundError,
    ConfigError,
    EntryExistsError,
    EntryNotFoundError,
    FilterError,
    IntegrityError,
    InvalidBlobNameError,
    InvalidEntryError,
    InvalidKeyError,
    MetadataError,
    PayloadTooLargeError,
    SignatureError,
    StaleEntryError,
    StorageError,
)

from ._payload import DAMAGED_HINT, PayloadSink, SpoolSink, VerifyingReader

if TYPE_CHECKING:
    from sqlalchemy.orm import Query

    from cacheness.storage._custom import CustomMetadataBase
    from cacheness.storage._health import HealthReport
    from cacheness.storage._reports import (
        IntegrityIssue,
        RepairReport,
        ResignReport,
        TransferProgress,
        TransferReport,
    )

    CustomRows = CustomMetadataBase | Iterable[CustomMetadataBase] | None
    """What ``custom_metadata=`` takes: one row of a custom model, several, or None."""

M = TypeVar("M", bound="CustomMetadataBase")

log = logging.getLogger(__name__)


_PATH_OPTIONS = {
    # backend name -> (option that takes a path, file or directory under the store's path)
    "sqlite": ("path", "index.sqlite"),
    "json": ("path", "index.json"),
    "filesystem": ("root", "blobs"),
}
_MAX_FOLLOW = 64
"""Successive new entries of one key a read follows before giving up (a writer outpacing it)."""
_WHOLE_READ_LIMIT = 64 << 20
"""A verified local blob up to this size is read into memory once, not twice (a larger
one is hashed in a first pass and streamed in a second, so its bytes are never all held)."""
_MAX_SAME_RETRIES = 3
"""Reads again of an unchanged entry whose blob was missing but exists again."""

DELETE_CHUNK = 1000
"""Entries deleted per statement when a deletion is decided in Python."""

_COPIED_FIELDS = (
    "blob_ref", "handler", "format", "format_info", "codec", "size", "raw_size",
    "content_hash", "etag", "version_id", "inline", "metadata",
)  # fmt: skip
"""The fields of a non-content-addressed copy taken from the source as its blob was copied."""

Predicate = Callable[[Entry], bool]


class Lookup(msgspec.Struct, frozen=True):
    """What :meth:`BlobStore.lookup` and :meth:`BlobStore.read_current` found.

    Attributes:
        entry: the entry the value was read from (an :class:`Entry` or a
            :class:`~cacheness.storage._metadata.base.PayloadInfo`, as asked). Under
            concurrent writers it may be a newer entry of the key than the one asked for.
        value: the stored object (None when not ``loaded``).
        loaded: False when the caller's ``accept`` turned the entry down before reading.

    Example:
        >>> Lookup(Entry.new("k"), 42, True).value
        42
    """

    entry: Entry | PayloadInfo
    value: Any
    loaded: bool


class _Stored:
    """One serialized object: where its bytes are, or (content-addressed) will be."""

    __slots__ = ("blob", "content_hash", "format", "inline", "size", "spool")

    def __init__(
        self,
        format: FormatInfo,
        size: int,
        content_hash: str,
        *,
        inline: bytes | None = None,
        blob: BlobInfo | None = None,
        spool: SpoolSink | None = None,
    ) -> None:
        self.format = format
        self.size = size
        self.content_hash = content_hash
        self.inline = inline
        self.blob = blob
        self.spool = spool  # content-addressed bytes not yet known to be in a blob

    def fields(self) -> dict[str, Any]:
        """The entry fields that describe these bytes: the format's, then where they are."""
        blob = self.blob
        return {
            **self.format.entry_fields(),
            "blob_ref": blob.ref if blob else "",
            "size": self.size,
            "content_hash": self.content_hash,
            "etag": blob.etag if blob else None,
            "version_id": blob.version_id if blob else None,
            "inline": self.inline,
        }

    def close(self) -> None:
        """Release the spool of a content-addressed payload."""
        if self.spool is not None:
            self.spool.close()
            self.spool = None


# the cache's hit and put path is left unwrapped (a misspelt keyword there: Python's error)
@suggest_keywords(
    skip=["lookup", "read", "read_current", "put_entry", "record_access", "change_token", "decoder"]
)
class BlobStore:
    """Store Python objects under keys, with queryable metadata.

    Args:
        path: a directory for the embedded backends: the sqlite (or json) index is
            ``path/index.sqlite`` (``index.json``) and filesystem blobs go under
            ``path/blobs``, unless the options name other places. Not needed when the
            backends are given as instances or configured with their own locations.
        metadata_backend: a registered name (``"sqlite"`` default, ``"json"``,
            ``"memory"``, ``"postgresql"``) or a ``MetadataBackend`` instance.
        metadata_options: options for a named metadata backend (e.g. ``{"url": ...}``
            for postgresql).
        blob_backend: a registered name (``"filesystem"`` default, ``"memory"``,
            ``"s3"``, ``"tiered"``, ``"failover"``) or a ``BlobBackend`` instance.
        blob_options: options for a named blob backend (e.g. ``{"bucket": ...}`` for s3).
        handlers: the handler registry; default: the process-wide one.
        serialization: serialization options (codecs, data frame format...) or a dict.
        content_addressable: name blobs by the hash of their bytes, so identical
            payloads are stored once; a blob is deleted when its last entry goes.
        inline_threshold: payloads smaller than this many bytes live in the entry
            itself (0 disables); default: the index's ``default_inline_threshold``
            (64 KiB, or 4 KiB for the JSON index, which rewrites its file per change).
        verify_reads: check size and XXH3 hash of the stored bytes on every read
            (cheap: hashed while reading); a mismatch raises ``IntegrityError``. Keep it
            on where someone who cannot write the index can write blobs (a bucket, a
            shared directory): with False, a blob replaced by a crafted pickle of the
            same size is unpickled, and so runs that person's code.
        allow_unsafe_pairing: skip the pairing check (see :mod:`cacheness.storage._pairing`).
        clock: returns the current UTC time for entry timestamps (tests inject one).
        signing: sign every entry and check the signature before any handler sees its
            bytes (see :mod:`cacheness.storage._signing`). None (default) is on for any
            store whose handlers can unpickle; False turns it off (then whoever can write
            the index can make a pickle run); an :class:`EntrySigner` is used as given.
        signing_key: the key, or ``[current, *older]`` to rotate (bytes, hex/base64 text
            or :class:`SigningKey`). Default: ``CACHENESS_SIGNING_KEY``, then
            ``signing_key_file``/``CACHENESS_SIGNING_KEY_FILE``, then for an embedded store
            the per-user key file (created on first use; a memory-only store uses a key
            of this process). A shared store (PostgreSQL, S3) without a key is a
            ``ConfigError``.
        signing_key_file: a key file (refused when group or others can read it).
        signed_fields: what is signed beyond the always-signed payload fields
            (``"metadata"`` or ``"metadata.<name>"``); see :class:`EntrySigner`.
        unsigned_paths: paths under ``metadata`` left unsigned (``"metadata.tags"``).
        unsigned: reading an entry without a signature (written before signing):
            ``"reject"``, ``"accept_data_only"`` (default: never an executable format
            such as pickle) or ``"accept"`` (everything: for a migration only, run
            :meth:`resign` and go back).
        delete_invalid_signatures: delete an entry whose signature fails (or an unsigned
            entry the policy refuses) when it is read; otherwise it stays (it may be valid
            under a key this process lacks).
        cache_dir: the seeds' name of ``path`` (Cacheness 0.4), accepted as an alias.
        backend: the seeds' name of ``metadata_backend``, accepted as an alias.
        compression: the seeds' codec shortcut: a codec (``"zstd"``, ``"gzip"``,
            ``"blosc2"``, ``"none"``, ``"auto"``) or a Blosc2 inner codec (``"lz4"``...),
            the same as ``serialization={"codec": ...}``.

    Raises:
        ConfigError: unknown backend names, bad options, a refused pairing, or a path
            needed but not given.
        MissingDependencyError: a backend's optional dependency is not installed.

    Example:
        >>> store = BlobStore(metadata_backend="memory", blob_backend="memory")
        >>> store.put(b"\\x00" * 10_000, key="zeros")
        'zeros'
        >>> entry = store.get_metadata("zeros")
        >>> entry.size < 10_000, entry.handler  # compressed, stored by the raw handler
        (True, 'raw')
        >>> store.close()
    """

    def __init__(
        self,
        path: str | os.PathLike[str] | None = None,
        *,
        metadata_backend: str | MetadataBackend = "sqlite",
        metadata_options: Mapping[str, Any] | None = None,
        blob_backend: str | BlobBackend = "filesystem",
        blob_options: Mapping[str, Any] | None = None,
        handlers: HandlerRegistry | None = None,
        serialization: SerializationOptions | Mapping[str, Any] | None = None,
        content_addressable: bool = False,
        inline_threshold: int | None = None,
        verify_reads: bool = True,
        allow_unsafe_pairing: bool = False,
        clock: Callable[[], datetime] | None = None,
        signing: bool | EntrySigner | None = None,
        signing_key: KeyLike | Sequence[KeyLike] | None = None,
        signing_key_file: str | os.PathLike[str] | None = None,
        signed_fields: Iterable[str] = DEFAULT_SIGNED_FIELDS,
        unsigned_paths: Iterable[str] = (),
        unsigned: UnsignedPolicy = "accept_data_only",
        delete_invalid_signatures: bool = False,
        cache_dir: str | os.PathLike[str] | None = None,
        backend: str | MetadataBackend | None = None,
        compression: str | None = None,
    ) -> None:
        if cache_dir is not None:
            path = _legacy_alias("cache_dir", cache_dir, "path", path, None)
        if backend is not None:
            metadata_backend = _legacy_alias(
                "backend", backend, "metadata_backend", metadata_backend, "sqlite"
            )
        if compression is not None:
            if serialization is not None:
                raise TypeError(
                    "BlobStore(compression=...) and serialization=... both given: "
                    "put the codec in serialization={'codec': ...}"
                )
            serialization = _compression_options(compression)
        if unsigned not in UNSIGNED_POLICIES:
            raise ConfigError(
                f"unsigned must be one of {', '.join(map(repr, UNSIGNED_POLICIES))}, got "
                f"{unsigned!r}"
            )
        if signing is not None and not isinstance(signing, bool | EntrySigner):
            raise ConfigError(f"signing must be None, a bool or an EntrySigner, got {signing!r}")
        self.unsigned: UnsignedPolicy = unsigned
        self.delete_invalid_signatures = bool(delete_invalid_signatures)
        if inline_threshold is not None and (not is_int(inline_threshold) or inline_threshold < 0):
            raise ConfigError(
                f"inline_threshold must be an int >= 0 (0 disables), got {inline_threshold!r}"
            )
        if path is not None and (not isinstance(path, str | os.PathLike) or not os.fspath(path)):
            raise ConfigError(
                "path must be a directory path (a non-empty str or os.PathLike; '.' is the "
                f"current directory), got {type(path).__name__} {path!r}"
            )
        self.path = Path(path).expanduser() if path is not None else None
        self.content_addressable = bool(content_addressable)
        self.verify_reads = bool(verify_reads)
        self.handlers = handlers if handlers is not None else default_registry()
        if serialization is None:
            self.serialization = SerializationOptions()
        elif isinstance(serialization, SerializationOptions):
            self.serialization = serialization
        elif isinstance(serialization, Mapping):
            self.serialization = SerializationOptions.from_mapping(serialization)
        else:
            raise ConfigError(
                "serialization must be a SerializationOptions or a dict of its fields, got "
                f"{type(serialization).__name__}"
            )
        if clock is not None and not callable(clock):
            raise ConfigError(
                f"clock must be a function returning the current UTC datetime, got {clock!r}"
            )
        self._clock = clock or utc_now
        self._closed = False

        self._owns_metadata = isinstance(metadata_backend, str)
        self._owns_blobs = isinstance(blob_backend, str)
        self.metadata: MetadataBackend = self._open_metadata(metadata_backend, metadata_options)
        self.inline_threshold: int = (
            self.metadata.default_inline_threshold if inline_threshold is None else inline_threshold
        )
        try:
            self.blobs: BlobBackend = self._open_blobs(blob_backend, blob_options)
        except BaseException:
            if self._owns_metadata:
                self.metadata.close()
            raise
        problem = pairing_problem(
            self.metadata.name, self.metadata.scope, self.blobs.name, self.blobs.scope
        )
        if problem and not allow_unsafe_pairing:
            self._close_backends()
            raise ConfigError(problem)
        if problem:
            log.warning("unsafe pairing allowed by the caller: %s", problem)
        try:
            self.signer: EntrySigner | None = self._open_signer(
                signing, signing_key, signing_key_file, signed_fields, unsigned_paths
            )
        except BaseException:
            self._close_backends()
            raise
        self._payload_metadata = self.signer is not None and self.signer.needs_metadata
        self._telemetry_attributes = {
            "cacheness.metadata_backend": self.metadata.name,
            "cacheness.blob_backend": self.blobs.name,
        }
        self._metadata_attributes = {"cacheness.backend": self.metadata.name}
        log.info(
            "opened a BlobStore over %s metadata and %s blobs", self.metadata.name, self.blobs.name
        )

    def _open_signer(
        self,
        signing: bool | EntrySigner | None,
        key: KeyLike | Sequence[KeyLike] | None,
        key_file: str | os.PathLike[str] | None,
        fields: Iterable[str],
        exclude: Iterable[str],
    ) -> EntrySigner | None:
        """The signer: explicit key > env > key file > (embedded only) the user's key."""
        if isinstance(signing, EntrySigner):
            return signing
        if signing is False:
            return None
        if isinstance(key, Sequence) and not isinstance(key, str | bytes | bytearray):
            return EntrySigner([as_key(k) for k in key], signed_fields=fields, exclude=exclude)
        found = resolve_signing_key(key, key_file=key_file)
        if found is None:
            shared = "shared" in (self.metadata.scope, self.blobs.scope)
            if signing is None and not self.handlers.can_execute_code():
                return None  # nothing stored here can run code when loaded
            if shared:
                raise missing_key_error(
                    f"this store ({self.metadata.name} index, {self.blobs.name} blobs)"
                )
            if self.metadata.scope == "process" and self.blobs.scope == "process":
                found = process_key()  # nothing outlives the process: neither may the key
            else:
                found = load_or_create_user_key(user_key_path())
                self._check_key_outside(user_key_path())
        return EntrySigner(found, signed_fields=fields, exclude=exclude)

    def _check_key_outside(self, key_path: Path) -> None:
        """Refuse a per-user key file that sits inside this store's directory."""
        if self.path is None:
            return
        try:
            inside = key_path.resolve().is_relative_to(self.path.resolve())
        except OSError:
            return
        if inside:
            raise ConfigError(
                f"the per-user signing key {key_path} is inside the store directory "
                f"{self.path}: whoever can write the entries could read it. Set "
                "XDG_CONFIG_HOME elsewhere or configure a key (CACHENESS_SIGNING_KEY)"
            )

    # ------------------------------------------------------------------ construction

    def _options_with_path(
        self, name: str, options: Mapping[str, Any] | None, kind: str
    ) -> dict[str, Any]:
        resolved = dict(options or {})
        if name in _PATH_OPTIONS:
            option, default = _PATH_OPTIONS[name]
            if option not in resolved:
                if self.path is None:
                    raise ConfigError(
                        f"the {name} {kind} backend needs a location: pass BlobStore(path) "
                        f"or {kind}_options={{{option!r}: ...}}"
                    )
                resolved[option] = self.path / default
        return resolved

    def _open_metadata(
        self, backend: str | MetadataBackend, options: Mapping[str, Any] | None
    ) -> MetadataBackend:
        if isinstance(backend, MetadataBackend):
            if options:
                raise ConfigError("metadata_options apply to a backend name, not an instance")
            return backend
        if not isinstance(backend, str):
            raise ConfigError(
                f"metadata_backend must be a name or a MetadataBackend, got {backend!r}"
            )
        return metadata_backends.create(
            backend, **self._options_with_path(backend, options, "metadata")
        )

    def _open_blobs(
        self, backend: str | BlobBackend, options: Mapping[str, Any] | None
    ) -> BlobBackend:
        if isinstance(backend, BlobBackend):
            if options:
                raise ConfigError("blob_options apply to a backend name, not an instance")
            return backend
        if not isinstance(backend, str):
            raise ConfigError(f"blob_backend must be a name or a BlobBackend, got {backend!r}")
        return blob_backends.create(backend, **self._options_with_path(backend, options, "blob"))

    # ------------------------------------------------------------------ writing

    @traced("put")
    def put_entry(
        self,
        data: Any,
        key: str | None = None,
        metadata: Mapping[str, Any] | None = None,
        *,
        handler: str | None = None,
        overwrite: bool = True,
        max_size: int | None = None,
        custom_metadata: CustomRows = None,
    ) -> Entry:
        """Store ``data`` under ``key`` and return the committed entry (see :meth:`put`).

        Example:
            >>> store = BlobStore(metadata_backend="memory", blob_backend="memory")
            >>> entry = store.put_entry("hello", key="greeting")
            >>> entry.key, entry.handler, entry.is_inline
            ('greeting', 'raw', True)
        """
        self._check_open()
        if key is not None:
            validate_key(key)
        rows = self._custom_rows(custom_metadata)
        with child("cacheness.storage.serialize", self.blobs.name):
            stored = self._serialize(data, handler, max_size)
        with self._committing([stored]):
            now = self._now()
            entry = Entry(
                key=key if key is not None else stored.content_hash,
                created_at=now,
                updated_at=now,
                accessed_at=now,
                metadata=_user_metadata(metadata),
                **stored.fields(),
            )
            self._sign(entry)
            with child("cacheness.metadata.put", self.metadata.name):
                if rows:  # the entry and its rows commit together, or neither does
                    replaced = self.metadata.put_custom(entry, rows, overwrite=overwrite)
                else:
                    replaced = self.metadata.put(entry, overwrite=overwrite)
        self._release([replaced] if replaced is not None else [], keep=stored.blob)
        return entry

    def put(
        self,
        data: Any,
        key: str | None = None,
        metadata: Mapping[str, Any] | None = None,
        *,
        handler: str | None = None,
        overwrite: bool = True,
        max_size: int | None = None,
        custom_metadata: CustomRows = None,
    ) -> str:
        """Store ``data`` under ``key`` and return the key.

        Args:
            data: any object a registered handler can store.
            key: the key; None stores under the content hash of the stored bytes
                (32 hex characters), so identical data gets one key.
            metadata: a JSON-able dict stored with the entry and queryable.
            handler: force a handler by name (default: the first that can take ``data``).
            overwrite: when False and ``key`` exists, raise ``EntryExistsError``.
            max_size: refuse payloads whose stored size exceeds this many bytes
                (``PayloadTooLargeError``), before anything is committed.
            custom_metadata: a row of a custom metadata model (or a list of rows),
                written with the entry in one transaction (SQL metadata backends only;
                see :meth:`query_custom`). Replacing a key replaces its rows.

        Raises:
            InvalidKeyError: the key is not a valid key.
            PayloadTooLargeError: the stored bytes exceed ``max_size``.
            InvalidEntryError: ``metadata`` is not a JSON-able dict.
            SerializationError: no handler can store ``data``.
            EntryExistsError: ``overwrite`` is False and the key exists.
            ConfigError: ``custom_metadata`` on a metadata backend without SQL tables.
            CustomSchemaError: a custom model's table exists with other columns.
            StorageError: a backend failed; nothing was changed.

        Example:
            >>> store = BlobStore(metadata_backend="memory", blob_backend="memory")
            >>> key = store.put([1, 2, 3])
            >>> len(key), store.get(key)
            (32, [1, 2, 3])
        """
        return self.put_entry(
            data,
            key,
            metadata,
            handler=handler,
            overwrite=overwrite,
            max_size=max_size,
            custom_metadata=custom_metadata,
        ).key

    @traced("put_batch")
    def put_batch(
        self,
        items: Mapping[str, Any] | Iterable[tuple[str, Any]],
        *,
        metadata: Mapping[str, Mapping[str, Any]] | None = None,
    ) -> list[str]:
        """Store several objects; the entries are committed together in one batch.

        Args:
            items: ``{key: data}`` or ``(key, data)`` pairs.
            metadata: optional ``{key: metadata dict}``.

        Returns:
            The keys, in order.

        Raises:
            CacheError: the errors of :meth:`put`; on failure no entry of the batch is
                written by this call and the blobs it wrote are deleted.

        Example:
            >>> store = BlobStore(metadata_backend="memory", blob_backend="memory")
            >>> store.put_batch({"a": 1, "b": 2})
            ['a', 'b']
            >>> store.get_batch(["a", "b", "c"])
            {'a': 1, 'b': 2, 'c': None}
        """
        self._check_open()
        pairs = _pairs(items)
        if metadata is not None and not isinstance(metadata, Mapping):
            raise InvalidEntryError(
                "put_batch(metadata=...) takes {key: metadata dict}, got "
                f"{type(metadata).__name__}"
            )
        extra = metadata or {}
        for key, _ in pairs:
            validate_key(key)
        stored_all: list[_Stored] = []
        try:
            for _, data in pairs:
                stored_all.append(self._serialize(data, None, None))
        except BaseException:
            for stored in stored_all:
                self._discard(stored)
                stored.close()
            raise
        with self._committing(stored_all):
            now = self._now()
            entries = [
                Entry(
                    key=key,
                    created_at=now,
                    updated_at=now,
                    accessed_at=now,
                    metadata=_user_metadata(extra.get(key)),
                    **stored.fields(),
                )
                for (key, _), stored in zip(pairs, stored_all, strict=True)
            ]
            for entry in entries:
                self._sign(entry)
            with child("cacheness.metadata.put_many", self.metadata.name):
                replaced = self.metadata.put_many(entries)
        kept = {s.blob.ref for s in stored_all if s.blob is not None}
        self._release(replaced, keep_refs=kept)
        return [key for key, _ in pairs]

    @traced("update_data")
    def update_data(
        self,
        key: str,
        data: Any,
        *,
        handler: str | None = None,
        metadata: Mapping[str, Any] | None = None,
        max_size: int | None = None,
    ) -> bool:
        """Replace the data stored under an existing key; return False if it is absent.

        The key and ``created_at`` stay; ``size``, ``content_hash``, handler and format
        fields and ``updated_at`` are refreshed. The user metadata stays too, with the
        top-level keys of ``metadata`` (if given) merged in, in the same update.

        Raises:
            The errors of :meth:`put` (except ``EntryExistsError``).

        Example:
            >>> store = BlobStore(metadata_backend="memory", blob_backend="memory")
            >>> _ = store.put("v1", key="model", metadata={"stage": "dev"})
            >>> store.update_data("model", "version two", metadata={"rev": 2})
            True
            >>> store.get("model"), store.get_metadata("model").metadata
            ('version two', {'stage': 'dev', 'rev': 2})
            >>> store.update_data("missing", 1)
            False
        """
        self._check_open()
        old = self.metadata.get(key)
        if old is None:
            return False
        with child("cacheness.storage.serialize", self.blobs.name):
            stored = self._serialize(data, handler, max_size)
        with self._committing([stored]):
            now = self._now()
            changes = stored.fields()
            if metadata:
                changes["metadata"] = {**old.metadata, **metadata}
            # A put, not an update: it returns the entry it really replaced, which is not
            # ``old`` when another writer committed meanwhile; releasing ``old`` instead
            # would leave that writer's blob behind as an orphan.
            # keep_rows: the data changes, its custom metadata rows stay
            replaced = self.metadata.put_custom(
                self._sign(old.replace(updated_at=now, **changes)), [], keep_rows=True
            )
            if replaced is None:  # deleted meanwhile by someone else: do not resurrect it
                mine = [{"key": key}, {"updated_at": now}, {"blob_ref": changes["blob_ref"]}]
                self.metadata.delete_where({"$and": mine})
                self._discard(stored)
                return False
        self._release([replaced], keep=stored.blob)
        return True

    def update_metadata(self, key: str, metadata: Mapping[str, Any], *, merge: bool = True) -> bool:
        """Change the user metadata of an entry; return False if the key is absent.

        Args:
            key: the entry.
            metadata: the new metadata (JSON-able dict).
            merge: True updates the top-level keys given and keeps the others; False
                replaces the whole dict.

        Raises:
            InvalidEntryError: ``metadata`` is not a JSON-able dict.

        Example:
            >>> store = BlobStore(metadata_backend="memory", blob_backend="memory")
            >>> _ = store.put(1, key="k", metadata={"a": 1})
            >>> store.update_metadata("k", {"b": 2})
            True
            >>> store.get_metadata("k").metadata
            {'a': 1, 'b': 2}
        """
        validate_key(key)
        return self.update_batch({key: metadata}, merge=merge) == 1

    @traced("update_batch")
    def update_batch(self, updates: Mapping[str, Mapping[str, Any]], *, merge: bool = True) -> int:
        """Change the user metadata of several entries in one batch; return how many exist.

        Args:
            updates: ``{key: metadata}``.
            merge: as in :meth:`update_metadata`.

        Example:
            >>> store = BlobStore(metadata_backend="memory", blob_backend="memory")
            >>> _ = store.put_batch({"a": 1, "b": 2})
            >>> store.update_batch({"a": {"x": 1}, "b": {"x": 2}, "zz": {"x": 3}})
            2
        """
        self._check_open()
        if not isinstance(updates, Mapping):
            raise InvalidEntryError(
                f"update_batch() takes {{key: metadata dict}}, got {type(updates).__name__}"
            )
        if not updates:
            return 0
        now = self._now()
        if not (merge or self._payload_metadata):
            replaced = {
                key: {"metadata": _user_metadata(value), "updated_at": now}
                for key, value in updates.items()
            }
            return len(self.metadata.update_many(replaced))
        # The new metadata (and signature) is computed from the entry as read: it is
        # written only onto that entry (compare-and-set on the fields it was computed
        # from); an entry rewritten meanwhile is read again and the change made anew.
        pending = {key: _user_metadata(value) for key, value in updates.items()}
        updated = 0
        for _ in range(_MAX_FOLLOW):
            current = self.metadata.get_many(pending)
            changes: dict[str, dict[str, Any]] = {}
            expect: dict[str, dict[str, Any]] = {}
            for key, given in pending.items():
                if key not in current:
                    continue
                entry = current[key]
                new = {**entry.metadata, **given} if merge else given
                changes[key] = {"metadata": new, "updated_at": now}
                self._resign_change(entry, changes[key])
                expect[key] = _unchanged(entry)
            done = self.metadata.update_many_if(changes, expect)
            updated += len(done)
            pending = {key: pending[key] for key in changes if key not in done}
            if not pending:
                return updated
        raise MetadataError(
            f"update_metadata: the entries {sorted(pending)[:3]} were rewritten by other "
            f"writers {_MAX_FOLLOW} times while being updated; try again"
        )

    def record_access(
        self, accesses: Mapping[str, int] | Iterable[str], *, at: datetime | None = None
    ) -> int:
        """Record reads: set ``accessed_at`` and add to ``access_count``; return how many exist.

        Storage does not record reads by itself (a write per read is costly); callers
        that need access statistics (the cache layer's LRU/LFU eviction) batch them here.

        Args:
            accesses: ``{key: reads}`` or keys (one read each).
            at: the access time (default: now).

        Example:
            >>> store = BlobStore(metadata_backend="memory", blob_backend="memory")
            >>> _ = store.put(1, key="k")
            >>> store.record_access({"k": 3})
            1
            >>> store.get_metadata("k").access_count
            3
        """
        self._check_open()
        if isinstance(accesses, Mapping):
            counts = dict(accesses)
            bad = [n for n in counts.values() if not is_int(n)]
            if bad:
                raise InvalidEntryError(f"record_access() counts reads with ints, got {bad[0]!r}")
        else:
            counts = dict.fromkeys(_key_list(accesses, "record_access"), 1)
        if at is not None and (not isinstance(at, datetime) or at.utcoffset() is None):
            raise InvalidEntryError(
                f"record_access(at=...) takes a timezone-aware datetime, got {at!r}"
            )
        if not counts:
            return 0
        when = at or self._now()
        current = self.metadata.get_many(counts)
        changes = {
            key: {"accessed_at": when, "access_count": entry.access_count + counts[key]}
            for key, entry in current.items()
        }
        return len(self.metadata.update_many(changes))

    @traced("copy")
    def copy(self, src: str, dst: str, *, overwrite: bool = False) -> Entry:
        """Copy an entry and its data to a new key; return the new entry.

        The bytes are copied inside the blob backend (server-side on S3); in a
        content-addressed store the copy shares the blob. Custom metadata rows are
        copied too (a replaced destination's rows go).

        Raises:
            EntryNotFoundError: ``src`` does not exist.
            EntryExistsError: ``dst`` exists and ``overwrite`` is False.

        Example:
            >>> store = BlobStore(metadata_backend="memory", blob_backend="memory")
            >>> _ = store.put("weights", key="model/v1")
            >>> store.copy("model/v1", "model/best").key
            'model/best'
            >>> store.get("model/best")
            'weights'
        """
        self._check_open()
        validate_key(dst)
        source = self.metadata.get(src)
        if source is None:
            raise EntryNotFoundError(f"cannot copy {src!r}: no entry with that key")
        if not overwrite and src != dst and self.metadata.exists(dst):
            raise self._exists(dst)
        changes: dict[str, Any] = {}
        new_blob: BlobInfo | None = None
        verdict = self._check_source(source, "copy")
        if source.blob_ref and not self.content_addressable:
            source, new_blob = self._copy_blob(source)
            verdict = self._check_source(source, "copy")
            # The new entry describes exactly the bytes copied, even if ``src`` was
            # rewritten since: the copy is of the source as it was when copied.
            changes = {name: getattr(source, name) for name in _COPIED_FIELDS}
            if new_blob is not None:
                changes.update(
                    blob_ref=new_blob.ref, etag=new_blob.etag, version_id=new_blob.version_id
                )
        elif self.signer is not None:  # sign exactly the fields the copy gets
            changes = {name: getattr(source, name) for name in _COPIED_FIELDS}
        if self.signer is not None:
            copied = source.replace(key=dst, **changes)
            changes["signature"] = self.signer.sign(copied) if verdict == "valid" else None
        try:
            entry, replaced = self.metadata.copy(src, dst, overwrite=overwrite, **changes)
        except BaseException:
            if new_blob is not None:
                self._delete_blobs([new_blob.ref])
            raise
        self._release([replaced] if replaced is not None else [], keep=new_blob)
        return entry

    def _copy_blob(self, source: Entry) -> tuple[Entry, BlobInfo | None]:
        """Copy ``source``'s blob under a fresh name, following a source rewritten meanwhile.

        Returns the source entry whose bytes were copied and the copy (None when the
        source became an inline entry). A source deleted meanwhile raises
        ``EntryNotFoundError``; a blob missing under an unchanged entry is damage.
        """
        retries = 0
        for _ in range(_MAX_FOLLOW):
            if not source.blob_ref:
                return source, None
            try:
                return source, self.blobs.copy(source.blob_ref, self._fresh_name())
            except Exception as exc:
                current = self.metadata.get(source.key)
                if current is None:
                    raise EntryNotFoundError(
                        f"cannot copy {source.key!r}: it was deleted while being copied"
                    ) from exc
                if _same_payload(current, source):
                    self._judge_current(source, exc, retries)
                    retries += 1
                else:
                    source, retries = current, 0
        raise StorageError(
            f"entry {source.key!r} was rewritten {_MAX_FOLLOW} times while being copied; "
            "nothing is damaged, try again"
        )

    @traced("move")
    def move(self, src: str, dst: str, *, overwrite: bool = False) -> Entry:
        """Rename an entry (atomically on SQL backends); return the moved entry.

        The bytes do not move: blob names are independent of keys. Custom metadata rows
        follow the entry (a replaced destination's rows go).

        Raises:
            EntryNotFoundError: ``src`` does not exist.
            EntryExistsError: ``dst`` exists and ``overwrite`` is False.

        Example:
            >>> store = BlobStore(metadata_backend="memory", blob_backend="memory")
            >>> _ = store.put(1, key="tmp/result")
            >>> store.move("tmp/result", "final/result").key
            'final/result'
            >>> store.exists("tmp/result")
            False
        """
        self._check_open()
        validate_key(dst)
        if self.signer is not None:
            source = self.metadata.get(src)
            if source is not None:
                self._check_source(source, "move")
        entry, replaced = self.metadata.move(src, dst, overwrite=overwrite)
        # The key is signed: the moved entry gets a signature for its new key if the one
        # it had under the old key was valid (never one vouching for a forgery).
        if (
            self.signer is not None
            and src != dst
            and self.signer.check(entry.replace(key=src)) == "valid"
        ):
            signature = self.signer.sign(entry)
            # onto the moved entry only: a writer that replaced dst meanwhile signed its own
            self.metadata.update_many_if({dst: {"signature": signature}}, {dst: _unchanged(entry)})
            entry = entry.replace(signature=signature)
        if replaced is not None and replaced.blob_ref != entry.blob_ref:
            self._release([replaced])
        return entry

    # ------------------------------------------------------------------ custom metadata

    def _custom_rows(self, custom_metadata: CustomRows) -> builtins.list[CustomMetadataBase]:
        """The rows of ``custom_metadata=``, checked before anything is written."""
        if custom_metadata is None:
            return []
        self.metadata.check_custom_metadata()
        from cacheness.storage._custom import rows_of

        rows = rows_of(custom_metadata)
        # tables created (or found not to match) before any byte is written
        self.metadata.link_custom_models(dict.fromkeys(type(row) for row in rows))
        return rows

    def query_custom(self, model: type[M] | str, *where: Any) -> builtins.list[M]:
        """Return the rows of a custom metadata model matching SQLAlchemy conditions.

        Args:
            model: the model class (or the name it is registered under).
            *where: SQLAlchemy conditions on its columns (``Model.accuracy >= 0.9``);
                none returns every row.

        Returns:
            Model instances, detached from any session (their columns are loaded, so
            they stay usable), ordered by key then row id.

        Raises:
            ConfigError: the metadata backend has no SQL tables, or ``model`` is not a
                custom metadata model (or registered name).
            CustomSchemaError: the model's table exists with other columns.

        Example:
            >>> import tempfile
            >>> from sqlalchemy import Column, Float, Integer, String
            >>> from cacheness.storage import CustomMetadataBase, custom_metadata_model
            >>> @custom_metadata_model("doc_store_runs")
            ... class DocRun(CustomMetadataBase):
            ...     __tablename__ = "custom_doc_store_runs"
            ...     accuracy = Column(Float)
            >>> with BlobStore(tempfile.mkdtemp()) as store:
            ...     _ = store.put(b"m1", key="m1", custom_metadata=DocRun(accuracy=0.8))
            ...     _ = store.put(b"m2", key="m2", custom_metadata=DocRun(accuracy=0.95))
            ...     rows = store.query_custom(DocRun, DocRun.accuracy > 0.9)
            ...     tuple(row.cache_key for row in rows)
            ('m2',)
        """
        self._check_open()
        return cast("builtins.list[M]", self.metadata.query_custom(model, *where))

    @contextlib.contextmanager
    def query_custom_session(self, model: type[M] | str) -> Iterator[Query[M]]:
        """Yield a SQLAlchemy ``Query`` of a custom model, on a session always closed after.

        The full ORM is there: ``.filter``, ``.join`` (to other custom tables),
        ``.order_by``, aggregates (``q.with_entities(func.avg(Model.accuracy))``),
        ``q.session`` for anything else. Objects read stay usable after the block
        (their loaded columns).

        Raises:
            ConfigError: the metadata backend has no SQL tables.

        Example:
            >>> import tempfile
            >>> from sqlalchemy import Column, Float, Integer, String
            >>> from cacheness.storage import CustomMetadataBase, custom_metadata_model
            >>> @custom_metadata_model("doc_session_runs")
            ... class SessionRun(CustomMetadataBase):
            ...     __tablename__ = "custom_doc_session_runs"
            ...     epochs = Column(Integer)
            >>> with BlobStore(tempfile.mkdtemp()) as store:
            ...     _ = store.put(1, key="a", custom_metadata=SessionRun(epochs=10))
            ...     with store.query_custom_session(SessionRun) as q:
            ...         q.filter(SessionRun.epochs >= 5).count()
            1
        """
        self._check_open()
        with self.metadata.custom_session(model) as session:
            from cacheness.storage._custom import resolve_model

            yield cast("Query[M]", session.query(resolve_model(model)))

    def get_custom_metadata(self, model: type[M] | str, key: str) -> builtins.list[M]:
        """Return the rows of a custom model stored with entry ``key`` (oldest first).

        An entry has as many rows of a model as were given at its ``put`` (one, usually);
        a missing entry has none.

        Example:
            >>> import tempfile
            >>> from sqlalchemy import Column, Float, Integer, String
            >>> from cacheness.storage import CustomMetadataBase, custom_metadata_model
            >>> @custom_metadata_model("doc_get_runs")
            ... class GetRun(CustomMetadataBase):
            ...     __tablename__ = "custom_doc_get_runs"
            ...     author = Column(String)
            >>> with BlobStore(tempfile.mkdtemp()) as store:
            ...     _ = store.put(1, key="a", custom_metadata=GetRun(author="ana"))
            ...     tuple(row.author for row in store.get_custom_metadata(GetRun, "a"))
            ('ana',)
        """
        self._check_open()
        validate_key(key)
        from cacheness.storage._custom import resolve_model

        resolved = resolve_model(model)
        return cast(
            "builtins.list[M]", self.metadata.query_custom(resolved, resolved.cache_key == key)
        )

    def query_custom_entries(self, model: type[M] | str, *where: Any) -> builtins.list[Entry]:
        """Return the entries having a row of a custom model that matches ``where``.

        The join back to the data: load each with :meth:`read` or :meth:`get`. Entries
        come in key order, each once however many of its rows match.

        Example:
            >>> import tempfile
            >>> from sqlalchemy import Column, Float, Integer, String
            >>> from cacheness.storage import CustomMetadataBase, custom_metadata_model
            >>> @custom_metadata_model("doc_entry_runs")
            ... class EntryRun(CustomMetadataBase):
            ...     __tablename__ = "custom_doc_entry_runs"
            ...     score = Column(Integer)
            >>> with BlobStore(tempfile.mkdtemp()) as store:
            ...     _ = store.put("best", key="a", custom_metadata=EntryRun(score=9))
            ...     _ = store.put("worst", key="b", custom_metadata=EntryRun(score=1))
            ...     found = store.query_custom_entries(EntryRun, EntryRun.score > 5)
            ...     tuple(store.read(entry) for entry in found)
            ('best',)
        """
        self._check_open()
        keys = self.metadata.custom_keys(model, *where)
        found = self.metadata.get_many(keys)
        return [found[key] for key in keys if key in found]

    def migrate_custom_metadata_tables(
        self, *models: type[CustomMetadataBase] | str
    ) -> dict[str, builtins.list[str]]:
        """Bring custom metadata tables up to their models: create missing tables, add
        missing nullable columns (and their indexes).

        Args:
            *models: the models (classes or registered names); none means every
                registered model.

        Returns:
            ``{table: [added columns]}`` for the tables that changed.

        Raises:
            ConfigError: the metadata backend has no SQL tables.
            CustomSchemaError: a difference that needs a migration of your own (a NOT
                NULL column, a column dropped or retyped): see the docs' Alembic recipe.
        """
        self._check_open()
        self.metadata.check_custom_metadata()
        from cacheness.storage._custom import list_custom_models

        chosen = models or tuple(list_custom_models().values())
        return self.metadata.migrate_custom_tables(chosen)

    # ------------------------------------------------------------------ deleting

    @traced("delete")
    def delete(self, key: str) -> bool:
        """Delete an entry and its data; return False if the key was absent.

        Example:
            >>> store = BlobStore(metadata_backend="memory", blob_backend="memory")
            >>> _ = store.put(1, key="k")
            >>> store.delete("k"), store.delete("k")
            (True, False)
        """
        self._check_open()
        with child("cacheness.metadata.delete", self.metadata.name):
            entry = self.metadata.delete(key)
        if entry is None:
            return False
        self._release([entry])
        return True

    @traced("delete_batch")
    def delete_batch(self, keys: Iterable[str]) -> int:
        """Delete several entries and their data; return how many existed."""
        self._check_open()
        deleted = self.metadata.delete_many(_key_list(keys, "delete_batch"))
        self._release(deleted)
        return len(deleted)

    @traced("delete_by_prefix")
    def delete_by_prefix(self, prefix: str) -> int:
        """Delete every entry whose key starts with ``prefix``; return how many.

        Raises:
            InvalidKeyError: ``prefix`` is empty or not a str (an empty prefix would delete
                everything: use :meth:`clear`); also a ``ValueError``.

        Example:
            >>> store = BlobStore(metadata_backend="memory", blob_backend="memory")
            >>> _ = store.put_batch({"old/a": 1, "old/b": 2, "new/a": 3})
            >>> store.delete_by_prefix("old/")
            2
        """
        self._check_open()
        if not isinstance(prefix, str) or not prefix:
            raise InvalidKeyError(
                f"delete_by_prefix needs a non-empty prefix, got {prefix!r}; "
                "call clear() to delete every entry"
            )
        deleted = self.metadata.delete_prefix(prefix)
        self._release(deleted)
        return len(deleted)

    @traced("delete_where")
    def delete_where(self, where: Filter | Predicate) -> int:
        """Delete the entries a filter (or a predicate on ``Entry``) selects; return how many.

        A filter dict is evaluated by the metadata backend (one statement on SQL); a
        callable is applied to every entry in Python.

        Raises:
            FilterError: the filter is invalid.
            ValueError: the filter is empty (``{}`` or None would select every entry: a
                deletion never selects everything by default; call :meth:`clear`).

        Example:
            >>> store = BlobStore(metadata_backend="memory", blob_backend="memory")
            >>> _ = store.put(1, key="a", metadata={"stage": "dev"})
            >>> _ = store.put(2, key="b", metadata={"stage": "prod"})
            >>> store.delete_where({"metadata.stage": "dev"})
            1
            >>> store.delete_where(lambda entry: entry.key == "b")
            1
        """
        self._check_open()
        if not where:  # {} or None: the same rule as delete_by_prefix("")
            raise ValueError(
                f"delete_where needs a filter or a predicate, got {where!r}; a deletion never "
                "selects every entry by default: call clear() to delete every entry"
            )
        if callable(where):
            doomed = [entry.key for entry in self.metadata.query() if where(entry)]  # whole entries
            deleted: list[Entry] = []
            for start in range(0, len(doomed), DELETE_CHUNK):
                deleted += self.metadata.delete_many(doomed[start : start + DELETE_CHUNK])
        else:
            deleted = self.metadata.delete_where(where)
        self._release(deleted)
        return len(deleted)

    @traced("clear")
    def clear(self) -> int:
        """Delete every entry and its data; return how many entries there were."""
        self._check_open()
        deleted = self.metadata.delete_prefix("")
        self._release(deleted)
        return len(deleted)

    # ------------------------------------------------------------------ reading
    #
    # Readers never see false damage. A reader takes an entry from the index, then
    # opens its blob; a writer may commit a new entry for the key (or delete it) and
    # release the old blob in between. A blob found missing is therefore damage only
    # if the index still holds the very entry that was read: the failed read re-reads
    # the index and follows the key to its current entry (the new value), reports a
    # miss (deleted), or - the entry unchanged - reports the damage. The re-read
    # happens only after a read failed, so the hot path costs nothing more.

    def get(self, key: str, default: Any = None) -> Any:
        """Return the object stored under ``key``, or ``default`` when there is none.

        A writer replacing or deleting ``key`` meanwhile is no error: the value is the
        old one, the new one, or ``default`` (deleted).

        Raises:
            IntegrityError: the stored bytes are missing or do not match the entry.
            SerializationError: the bytes cannot be decoded (e.g. a handler is missing).
            StorageError: a backend failed.

        Example:
            >>> store = BlobStore(metadata_backend="memory", blob_backend="memory")
            >>> store.get("nothing", default="fallback")
            'fallback'
        """
        self._check_open()
        if (tel := instrumentation()) is not None:
            found = self._traced_lookup(tel, "get", key, False, None)
            return default if found is None else found.value
        # only what reading needs (fewer columns), with the metadata if it is signed
        payload = self.metadata.get_payload(key, with_metadata=self._payload_metadata)
        if payload is None:
            return default
        if payload.inline is not None:  # the small-object hot path: nothing can go stale
            return self._load_inline(payload, self._admit(payload))
        found = self._follow(payload, None)
        return default if found is None else found.value

    @traced("get_with_metadata")
    def get_with_metadata(self, key: str) -> tuple[Any, Entry] | None:
        """Return ``(object, entry)`` for ``key``, or None when there is none.

        The entry is the one the object was read from, also under concurrent writers.

        Example:
            >>> store = BlobStore(metadata_backend="memory", blob_backend="memory")
            >>> _ = store.put("x", key="k", metadata={"v": 1})
            >>> value, entry = store.get_with_metadata("k")
            >>> value, entry.metadata
            ('x', {'v': 1})
        """
        self._check_open()
        entry = self.metadata.get(key)
        if entry is None:
            return None
        found = self._follow(entry, None)
        if found is None:
            return None
        return found.value, cast(Entry, found.entry)

    def get_metadata(self, key: str) -> Entry | None:
        """Return the entry of ``key`` without loading its data, or None."""
        self._check_open()
        return self.metadata.get(key)

    def get_metadata_batch(self, keys: Iterable[str]) -> dict[str, Entry]:
        """Return ``{key: entry}`` for the keys that exist (one metadata query).

        Example:
            >>> store = BlobStore(metadata_backend="memory", blob_backend="memory")
            >>> _ = store.put(1, key="a")
            >>> list(store.get_metadata_batch(["a", "zz"]))
            ['a']
        """
        self._check_open()
        return self.metadata.get_many(_key_list(keys, "get_metadata_batch"))

    @traced("get_batch")
    def get_batch(self, keys: Iterable[str], default: Any = None) -> dict[str, Any]:
        """Return ``{key: object}`` for ``keys`` (one metadata query), ``default`` for misses.

        Example:
            >>> store = BlobStore(metadata_backend="memory", blob_backend="memory")
            >>> _ = store.put_batch({"a": 1, "b": 2})
            >>> store.get_batch(["a", "zz"], default=0)
            {'a': 1, 'zz': 0}
        """
        self._check_open()
        wanted = _key_list(keys, "get_batch")
        with child("cacheness.metadata.get_many", self.metadata.name):
            entries = self.metadata.get_many(wanted)
        values: dict[str, Any] = {}
        for key in wanted:
            entry = entries.get(key)
            found = None if entry is None else self._follow(entry, None)
            values[key] = default if found is None else found.value
        return values

    def lookup(
        self,
        key: str,
        *,
        with_metadata: bool = False,
        accept: Callable[[Entry | PayloadInfo], bool] | None = None,
    ) -> Lookup | None:
        """Return the entry of ``key`` with its value, read consistently; None if absent.

        What a cache needs for a hit, in one call: the index record (only the payload
        fields, plus the user metadata and ``accessed_at`` with ``with_metadata``) and
        the value read from it. A writer that replaces or deletes the key meanwhile
        makes this follow the key to its new entry or return None; it never reports
        damage that is not there.

        Args:
            key: the key.
            with_metadata: also fetch the user metadata and ``accessed_at``.
            accept: called with each entry before its value is read (the first one, and
                any entry that replaced it meanwhile); returning False skips the read
                and returns a :class:`Lookup` with ``loaded=False`` (e.g. an expired
                cache entry).

        Raises:
            The errors of :meth:`get`.

        Example:
            >>> store = BlobStore(metadata_backend="memory", blob_backend="memory")
            >>> _ = store.put([1, 2], key="k", metadata={"stage": "dev"})
            >>> found = store.lookup("k", with_metadata=True)
            >>> found.value, found.entry.metadata, found.loaded
            ([1, 2], {'stage': 'dev'}, True)
            >>> store.lookup("k", accept=lambda entry: False).loaded
            False
            >>> store.lookup("missing") is None
            True
        """
        self._check_open()
        _check_accept(accept)
        if (tel := instrumentation()) is not None:
            return self._traced_lookup(tel, "lookup", key, with_metadata, accept)
        payload = self.metadata.get_payload(
            key, with_metadata=with_metadata or self._payload_metadata
        )
        if payload is None:
            return None
        return self._read_current(payload, accept)

    def _traced_lookup(
        self,
        tel: Instrumentation,
        operation: str,
        key: str,
        with_metadata: bool,
        accept: Callable[[Entry | PayloadInfo], bool] | None,
    ) -> Lookup | None:
        """:meth:`lookup` inside the span of ``operation``, its backend calls as children."""
        with tel.operation("cacheness.storage", operation, self._telemetry_attributes) as op:
            with tel.span("cacheness.metadata.get_payload", self._metadata_attributes):
                payload = self.metadata.get_payload(
                    key, with_metadata=with_metadata or self._payload_metadata
                )
            found = None if payload is None else self._read_current(payload, accept)
            op.set("cacheness.found", found is not None and found.loaded)
            if found is not None and found.loaded:
                op.describe(found)
            return found

    @traced("read_current")
    def read_current(
        self,
        entry: Entry | PayloadInfo,
        *,
        accept: Callable[[Entry | PayloadInfo], bool] | None = None,
    ) -> Lookup | None:
        """Load ``entry``'s value, or that of the entry that replaced it under its key.

        Unlike :meth:`read`, an entry that was replaced meanwhile is followed to the
        current entry of its key (returned in :attr:`Lookup.entry`, of the same kind as
        ``entry``), and one that was deleted gives None.

        Args:
            entry: an :class:`Entry` or a :class:`PayloadInfo`.
            accept: as in :meth:`lookup`.

        Raises:
            The errors of :meth:`get`.

        Example:
            >>> store = BlobStore(metadata_backend="memory", blob_backend="memory",
            ...                   inline_threshold=0)
            >>> _ = store.put("old", key="k")
            >>> old = store.get_metadata("k")
            >>> _ = store.put("new", key="k")  # the old blob is released
            >>> store.read_current(old).value
            'new'
        """
        self._check_open()
        _check_entry_argument(entry, "read_current")
        _check_accept(accept)
        return self._read_current(entry, accept)

    @traced("read")
    def read(self, entry: Entry | PayloadInfo) -> Any:
        """Load the object an entry (from :meth:`get_metadata`, :meth:`list_entries`...) describes.

        Also takes the :class:`~cacheness.storage._metadata.base.PayloadInfo` of
        ``MetadataBackend.get_payload``. The entry is read as given: one that another
        writer replaced or deleted since it was fetched still loads while its bytes
        exist, and raises :class:`StaleEntryError` once they are gone (never
        ``IntegrityError``). :meth:`read_current` follows the key instead.

        Raises:
            StaleEntryError: the entry was replaced or deleted and its bytes are gone
                (an ``EntryNotFoundError``, also a ``KeyError``).
            IntegrityError: the entry is current and its bytes are missing, truncated
                or fail their hash.
            InvalidBlobNameError: the entry's blob reference is unsafe (an edited index).
            SerializationError: the bytes cannot be decoded.
            InvalidEntryError: ``entry`` is not an entry (e.g. None from ``get_metadata``).

        Example:
            >>> store = BlobStore(metadata_backend="memory", blob_backend="memory",
            ...                   inline_threshold=0)
            >>> _ = store.put("old", key="k")
            >>> old = store.get_metadata("k")
            >>> _ = store.put("new", key="k")
            >>> store.read(old)  # doctest: +ELLIPSIS
            Traceback (most recent call last):
            ...
            cacheness.storage.errors.StaleEntryError: entry 'k' was replaced ...
        """
        self._check_open()
        _check_entry_argument(entry, "read")
        verify = self._admit(entry)
        if entry.inline is not None:
            return self._load_inline(entry, verify)
        retries = 0
        while True:
            try:
                return self._load_blob(entry, verify)
            except Exception as exc:
                current = self._reread(entry)
                if current is None or not _same_payload(current, entry):
                    raise StaleEntryError(
                        f"entry {entry.key!r} was replaced or deleted after it was read, and "
                        f"the bytes it describes cannot be read any more "
                        f"({type(exc).__name__}); read the current one with get() or "
                        "read_current()"
                    ) from exc
                self._judge_current(entry, exc, retries)
                retries += 1

    # -- reading internals

    def _reread(self, entry: Entry | PayloadInfo) -> Entry | PayloadInfo | None:
        """The index's current record of ``entry``'s key, of the same kind as ``entry``."""
        if isinstance(entry, Entry):
            return self.metadata.get(entry.key)
        with_metadata = entry.metadata is not None or self._payload_metadata
        return self.metadata.get_payload(entry.key, with_metadata=with_metadata)

    def _read_current(
        self,
        entry: Entry | PayloadInfo,
        accept: Callable[[Entry | PayloadInfo], bool] | None,
    ) -> Lookup | None:
        if accept is not None and not accept(entry):
            return Lookup(entry, None, False)
        if entry.inline is not None:
            return Lookup(entry, self._load_inline(entry, self._admit(entry)), True)
        return self._follow(entry, accept)

    def _follow(
        self,
        entry: Entry | PayloadInfo,
        accept: Callable[[Entry | PayloadInfo], bool] | None,
    ) -> Lookup | None:
        """Read ``entry``'s value; after a failure, decide with the index what it meant.

        The key deleted meanwhile: None (a miss). Replaced: the new entry is read
        instead (``accept`` is asked first). Unchanged: the failure is real and
        raised, a missing blob as ``IntegrityError``.
        """
        retries = 0
        for _ in range(_MAX_FOLLOW):
            verify = self._admit(entry)  # a bad signature is raised, never judged a race
            if entry.inline is not None:
                return Lookup(entry, self._load_inline(entry, verify), True)
            try:
                return Lookup(entry, self._load_blob(entry, verify), True)
            except Exception as exc:  # noqa: BLE001 - judged against the index below
                current = self._reread(entry)
                if current is None:
                    log.debug("entry %r was deleted while being read: a miss", entry.key)
                    return None
                if _same_payload(current, entry):
                    self._judge_current(entry, exc, retries)
                    retries += 1
                    continue
                log.debug("entry %r was replaced while being read; reading the new one", entry.key)
                retries = 0
                entry = current
                if accept is not None and not accept(entry):
                    return Lookup(entry, None, False)
        raise StorageError(
            f"entry {entry.key!r} was rewritten {_MAX_FOLLOW} times while being read; "
            "nothing is damaged, try again"
        )

    def _judge_current(self, entry: Entry | PayloadInfo, exc: Exception, retries: int) -> None:
        """A read of ``entry``, still the current one, failed with ``exc``: raise the truth.

        Returns (the caller reads again) only when the blob was missing but exists now:
        a content-addressed blob released by another entry's delete and written again by
        a new put of the same bytes, or a tiered local copy evicted during the read.
        """
        if not _blob_lost(exc):
            raise exc
        if retries < _MAX_SAME_RETRIES and self.blobs.exists(entry.blob_ref):
            return
        raise IntegrityError(
            f"entry {entry.key!r}: its blob {entry.blob_ref!r} is missing; run "
            "BlobStore.repair() (dry_run=False removes the entry: the data is lost, store "
            "it again)"
        ) from exc

    def _admit(self, entry: Entry | PayloadInfo) -> bool:
        """Check ``entry``'s signature before any handler sees its bytes; return whether
        the bytes must be checked against the (signed) hash while they are read.

        Raises:
            SignatureError: the signature fails, or the entry is unsigned and the
                ``unsigned`` policy refuses it (the entry is deleted first with
                ``delete_invalid_signatures``).
        """
        signer = self.signer
        if signer is None:
            return self.verify_reads
        if entry.metadata is None and signer.needs_metadata:  # a PayloadInfo without it
            entry = self._with_metadata(entry)
        verdict = signer.check(entry)
        if verdict == "valid":
            # the signature vouches for the hash: the bytes of a format that can run
            # code are checked against it even with verify_reads off
            return self.verify_reads or self._executable(entry)
        if verdict == "unsigned":
            if self.unsigned == "accept":
                return True
            if self.unsigned == "accept_data_only" and not self._executable(entry):
                return self.verify_reads
            problem = (
                "it is unsigned and its format can run code when loaded"
                if self.unsigned == "accept_data_only"
                else "it is unsigned (unsigned='reject')"
            )
        else:
            problem = "its signature does not match it or was made with an unknown key"
        raise self._refuse(entry, problem)

    def _with_metadata(self, entry: Entry | PayloadInfo) -> Entry | PayloadInfo:
        """``entry`` with its user metadata, read from the index if it is unchanged."""
        current = self.metadata.get_payload(entry.key, with_metadata=True)
        if current is None or not _same_payload(current, entry):
            return entry
        return current if current.signature == entry.signature else entry

    def _executable(self, entry: Entry | PayloadInfo) -> bool:
        """True when loading ``entry`` may run code (an unknown handler counts as such)."""
        handler = entry.handler
        return handler not in self.handlers or self.handlers.get(handler).executes_code

    def _refuse(self, entry: Entry | PayloadInfo, problem: str) -> SignatureError:
        """The error for an entry whose signature fails; deletes it when configured."""
        action = "it was not decoded"
        if self.delete_invalid_signatures and self._delete_refused(entry):
            action += " and was deleted (delete_invalid_signatures=True)"
        return SignatureError(
            f"entry {entry.key!r}: {problem}; {action}. Someone without the signing key "
            "wrote it, or it was signed with a key this store lacks: configure the same key "
            "on every machine (older keys go after the current one in signing_key=[...]) "
            "and run BlobStore.resign() after a rotation"
        )

    def _delete_refused(self, entry: Entry | PayloadInfo) -> bool:
        """Delete ``entry`` unless it changed meanwhile; blobs other entries use stay."""
        same: list[Filter] = [
            {"key": entry.key},
            {"blob_ref": entry.blob_ref},
            {"content_hash": entry.content_hash},
        ]
        try:
            deleted = self.metadata.delete_where({"$and": same})
            self._release(deleted, unless_referenced=True)
        except StorageError:
            log.warning("could not delete entry %r (invalid signature)", entry.key, exc_info=True)
            return False
        return bool(deleted)

    def _check_source(self, source: Entry, what: str) -> str:
        """The verdict on a copy or move source; an invalid signature is refused."""
        if self.signer is None:
            return "valid"
        verdict = self.signer.check(source)
        if verdict == "invalid":
            raise self._refuse(
                source, f"cannot {what} it: its signature does not match it or its key is unknown"
            )
        return verdict

    def _sign(self, entry: Entry) -> Entry:
        """Set ``entry``'s signature (in place) when signing is on; return it."""
        if self.signer is not None:
            entry.signature = self._signature_of(self.signer, entry)
        return entry

    @staticmethod
    def _signature_of(signer: EntrySigner, entry: Entry) -> str:
        """``entry``'s signature; an entry no index can hold fails as the index would."""
        try:
            return signer.sign(entry)
        except InvalidEntryError:
            normalize_entry(entry)  # raises the index's own message for what is wrong
            raise

    def _resign_change(self, current: Entry, change: dict[str, Any]) -> None:
        """Add to ``change`` (fields of ``current`` to update) the signature of the result.

        Only an entry whose signature was valid gets a new one: an unsigned entry stays
        unsigned, and an invalid one keeps the signature that fails.
        """
        signer = self.signer
        if signer is None or not current.signature or signer.check(current) != "valid":
            return
        change["signature"] = self._signature_of(signer, current.replace(**change))

    def _load_inline(self, entry: Entry | PayloadInfo, verify: bool) -> Any:
        inline = cast(bytes, entry.inline)
        if verify and hash_bytes(inline) != entry.content_hash:
            raise IntegrityError(
                f"entry {entry.key!r}: inline bytes do not match their recorded hash; "
                f"{DAMAGED_HINT}"
            )
        info = FormatInfo.from_entry(entry)
        return self.handlers.load(io.BytesIO(inline), info, self.serialization)

    def _load_blob(self, entry: Entry | PayloadInfo, verify: bool) -> Any:
        """Load from the entry's blob; a missing blob raises ``BlobNotFoundError``."""
        with child("cacheness.blob.read", self.blobs.name):
            return self._read_blob(entry, verify)

    def _read_blob(self, entry: Entry | PayloadInfo, verify: bool) -> Any:
        info = FormatInfo.from_entry(entry)
        what = f"entry {entry.key!r}"
        ref = entry.blob_ref
        try:
            local_path = self.blobs.local_path(ref) if self.blobs.supports_local_path else None
            source = self.blobs.open_read(ref)
        except InvalidBlobNameError as exc:
            if unsafe_ref(ref):  # the index itself was edited or damaged
                raise InvalidBlobNameError(
                    f"{what} points at blob reference {ref!r}, which no blob can have "
                    f"({exc}): the index was edited or damaged. The data is lost: "
                    "BlobStore.repair(dry_run=False) removes the entry"
                ) from exc
            raise  # e.g. a symlinked directory in the blob root: refused, not followed
        with source:
            if not verify:
                return self.handlers.load(source, info, self.serialization, local_path=local_path)
            if local_path is not None:
                # Check the file first: the handler may memory-map it instead of reading.
                # A blob of moderate size is read once, hashed and decoded from memory;
                # a larger one is hashed in a first pass and streamed in a second.
                whole = entry.size <= _WHOLE_READ_LIMIT
                data = read_upto(source, entry.size + 1) if whole else b""
                actual = hash_bytes(data) if whole else hash_stream(source)
                if actual != entry.content_hash:
                    raise IntegrityError(
                        f"{what}: blob {ref!r} does not match its recorded hash "
                        f"{entry.content_hash} (got {actual}), corrupt; {DAMAGED_HINT}"
                    )
                if whole:
                    stored = cast(BinaryIO, MemoryReader(data))
                else:
                    source.seek(0)
                    stored = source
                return self.handlers.load(stored, info, self.serialization, local_path=local_path)
            reader = VerifyingReader(source, entry.size, entry.content_hash, what)
            # a binary stream that only reads, as handlers expect of a source
            value = self.handlers.load(cast(BinaryIO, reader), info, self.serialization)
            reader.verify()
            return value

    def exists(self, key: str) -> bool:
        """Return True when ``key`` has an entry."""
        self._check_open()
        return self.metadata.exists(key)

    def list(
        self,
        prefix: str | None = None,
        metadata_filter: Mapping[str, Any] | None = None,
        *,
        filter: Filter | None = None,
        order_by: str = "key",
        descending: bool = False,
        limit: int | None = None,
        offset: int = 0,
    ) -> builtins.list[str]:
        """Return the keys that match, in key order (the arguments of :meth:`list_entries`).

        The keys only: :meth:`list_entries` / :meth:`iter_entries` give the entries
        (size, handler, metadata...) without loading data.

        Raises:
            FilterError: an invalid filter or order.

        Example:
            >>> store = BlobStore(metadata_backend="memory", blob_backend="memory")
            >>> for name in ("models/a", "models/b", "data/c"):
            ...     _ = store.put(name, key=name)
            >>> store.list(prefix="models/")
            ['models/a', 'models/b']
            >>> store.close()
        """
        entries = self.iter_entries(
            prefix,
            metadata_filter,
            filter=filter,
            order_by=order_by,
            descending=descending,
            limit=limit,
            offset=offset,
            inline=False,
        )
        return [entry.key for entry in entries]

    def list_entries(
        self,
        prefix: str | None = None,
        metadata_filter: Mapping[str, Any] | None = None,
        *,
        filter: Filter | None = None,
        order_by: str = "key",
        descending: bool = False,
        limit: int | None = None,
        offset: int = 0,
        inline: bool = True,
    ) -> builtins.list[Entry]:
        """Return the entries that match, without loading data (:meth:`list` gives keys).

        Args:
            prefix: keys starting with this.
            metadata_filter: conditions on the user metadata, written relative to it:
                ``{"accuracy": {"$gte": 0.9}, "project": "ml"}``.
            filter: a full filter over entry fields (``{"size": {"$gt": 1000}}``); see
                :mod:`cacheness.storage._filters`.
            order_by: an entry field (``"key"``, ``"created_at"``, ``"size"``...).
            descending: reverse the order.
            limit: at most this many entries.
            offset: skip this many first.
            inline: False leaves the payloads kept in the index out of the entries
                (``entry.inline`` is None; ``blob_ref`` is empty for them as always): a
                listing of many entries then reads their fields, never their data.

        Raises:
            FilterError: an invalid filter or order.

        Example:
            >>> store = BlobStore(metadata_backend="memory", blob_backend="memory")
            >>> _ = store.put(b"abc", key="small")
            >>> (entry,) = store.list_entries(inline=False)
            >>> entry.key, entry.size, entry.blob_ref  # inline: in the index, not a blob
            ('small', 3, '')
        """
        return builtins.list(
            self.iter_entries(
                prefix,
                metadata_filter,
                filter=filter,
                order_by=order_by,
                descending=descending,
                limit=limit,
                offset=offset,
                inline=inline,
            )
        )

    def iter_entries(
        self,
        prefix: str | None = None,
        metadata_filter: Mapping[str, Any] | None = None,
        *,
        filter: Filter | None = None,
        order_by: str = "key",
        descending: bool = False,
        limit: int | None = None,
        offset: int = 0,
        inline: bool = True,
    ) -> Iterator[Entry]:
        """Like :meth:`list_entries`, lazily."""
        self._check_open()
        query = self.metadata.query if inline else self.metadata.query_without_payload
        return query(
            self._combined_filter(prefix, metadata_filter, filter),
            order_by=order_by,
            descending=descending,
            limit=limit,
            offset=offset,
        )

    def count(
        self,
        prefix: str | None = None,
        metadata_filter: Mapping[str, Any] | None = None,
        *,
        filter: Filter | None = None,
    ) -> int:
        """Return how many entries match (same arguments as :meth:`list_entries`)."""
        self._check_open()
        return self.metadata.count(self._combined_filter(prefix, metadata_filter, filter))

    def total_size(
        self,
        prefix: str | None = None,
        metadata_filter: Mapping[str, Any] | None = None,
        *,
        filter: Filter | None = None,
    ) -> int:
        """Return the stored bytes of the matching entries (arguments of :meth:`list_entries`)."""
        self._check_open()
        return self.metadata.total_size(self._combined_filter(prefix, metadata_filter, filter))

    @staticmethod
    def _combined_filter(
        prefix: str | None, metadata_filter: Mapping[str, Any] | None, filter: Filter | None
    ) -> Filter | None:
        if metadata_filter is not None and not isinstance(metadata_filter, Mapping):
            raise FilterError(
                "metadata_filter must be a mapping such as {'project': 'ml'}, got "
                f"{type(metadata_filter).__name__}"
            )
        return combine_filters(
            {"key": {"$prefix": prefix}} if prefix else None,
            {f"metadata.{name}": value for name, value in (metadata_filter or {}).items()},
            filter,
        )

    # ------------------------------------------------------------------ what a cache layer needs

    @property
    def metadata_backend_name(self) -> str:
        """The registered name of the metadata backend (``"sqlite"``, ``"postgresql"``...).

        Example:
            >>> BlobStore(metadata_backend="memory", blob_backend="memory").metadata_backend_name
            'memory'
        """
        return self.metadata.name

    @property
    def blob_backend_name(self) -> str:
        """The registered name of the blob backend (``"filesystem"``, ``"s3"``...).

        Example:
            >>> BlobStore(metadata_backend="memory", blob_backend="memory").blob_backend_name
            'memory'
        """
        return self.blobs.name

    def change_token(self) -> int | None:
        """Return a number that moves whenever anything is committed to the index, or None.

        What an in-process layer in front of the store needs to stay coherent: while
        two calls return the same number, nobody (this store, another thread, another
        process) changed any entry in between, so what was read before the first call
        is still current. Compare for equality only. None: the index cannot tell
        cheaply (PostgreSQL, JSON); ask it (:meth:`lookup`) instead.

        Cost: SQLite, one ``PRAGMA data_version`` on this thread's connection (about a
        microsecond); the memory index, a counter; the others, nothing (None).

        Example:
            >>> store = BlobStore(metadata_backend="memory", blob_backend="memory")
            >>> token = store.change_token()
            >>> store.change_token() == token
            True
            >>> _ = store.put(1, key="k")
            >>> store.change_token() == token
            False
        """
        self._check_open()
        return self.metadata.change_token()

    def decoder(self, entry: Entry | PayloadInfo) -> Callable[[], Any]:
        """Return a function that decodes an inline entry's bytes afresh at each call.

        For an in-process layer that keeps small values as their stored bytes, so that
        every caller gets an object of its own: the bytes are checked against their
        hash once, here; each call then only decodes (no index, no I/O).

        Raises:
            InvalidEntryError: ``entry`` has no inline bytes (its value is in a blob).
            SignatureError: signing is on and ``entry``'s signature fails (or the
                ``unsigned`` policy refuses it), checked before anything is decoded.
            IntegrityError: the bytes do not match their recorded hash.
            SerializationError: no registered handler has ``entry``'s handler name.

        Example:
            >>> store = BlobStore(metadata_backend="memory", blob_backend="memory")
            >>> _ = store.put({"rows": [1]}, key="k")
            >>> decode = store.decoder(store.get_metadata("k"))
            >>> first = decode()
            >>> first["rows"].append(2)
            >>> decode()
            {'rows': [1]}
        """
        self._check_open()
        _check_entry_argument(entry, "decoder")
        inline = entry.inline
        if inline is None:
            raise InvalidEntryError(
                f"entry {entry.key!r} keeps its bytes in a blob, not inline: read it with "
                "read() or read_current()"
            )
        self._admit(entry)  # the signature first, as on every other decoding path
        if hash_bytes(inline) != entry.content_hash:
            raise IntegrityError(
                f"entry {entry.key!r}: inline bytes do not match their recorded hash; "
                f"{DAMAGED_HINT}"
            )
        info = FormatInfo.from_entry(entry)
        handler = self.handlers.get(info.handler)
        options = self.serialization

        def decode() -> Any:
            return handler.load(io.BytesIO(inline), info, options)

        return decode

    def location(self, entry: Entry | PayloadInfo) -> str:
        """Return where ``entry``'s bytes live as a URI (``file://...``, ``s3://...``).

        An inline entry (bytes kept in the index) has no location: ``""``.

        Example:
            >>> store = BlobStore(metadata_backend="memory", blob_backend="memory")
            >>> import os
            >>> big = store.put_entry(os.urandom(100_000), key="big")
            >>> store.location(big)  # doctest: +ELLIPSIS
            'memory://...'
            >>> store.location(store.put_entry(b"small", key="small"))  # kept in the index
            ''
        """
        _check_entry_argument(entry, "location")
        return self.blobs.location(entry.blob_ref) if entry.blob_ref else ""

    def named_lock(
        self, name: str, *, timeout: float | None = None
    ) -> AbstractContextManager[bool]:
        """A lock named ``name``, as wide as the index is shared (its ``scope``).

        Threads of one process (memory index), the processes of one host (sqlite, json:
        a file lock beside the index), or every host (postgresql: an advisory lock). The
        context manager yields True when the lock is held, False when ``timeout``
        seconds ran out first (None waits as long as it takes). What a cache uses to let
        one caller compute a missing value while the others wait.

        Raises:
            ConfigError: ``timeout`` is not None or a number of seconds >= 0.

        Example:
            >>> store = BlobStore(metadata_backend="memory", blob_backend="memory")
            >>> with store.named_lock("report:2024", timeout=1) as held:
            ...     held
            True
        """
        self._check_open()
        if not isinstance(name, str) or not name:
            raise ConfigError(f"named_lock() takes a non-empty str name, got {name!r}")
        if timeout is not None:
            check_seconds(timeout, "timeout")
        return self.metadata.named_lock(name, timeout=timeout)

    # ------------------------------------------------------------------ maintenance

    @traced("verify_integrity")
    def verify_integrity(
        self, keys: Iterable[str] | None = None, *, deep: bool = True
    ) -> builtins.list[IntegrityIssue]:
        """Check that every entry's bytes exist and match it; return the problems found.

        Args:
            keys: check only these entries (default: all).
            deep: read and hash every blob; False checks existence and size from the
                backend's ``stat`` (one HEAD request on S3), without downloading.

        Example:
            >>> store = BlobStore(metadata_backend="memory", blob_backend="memory")
            >>> import random
            >>> _ = store.put(random.Random(0).randbytes(100_000), key="big")  # not inline
            >>> store.verify_integrity()
            []
            >>> store.blobs.delete(store.get_metadata("big").blob_ref)
            True
            >>> {issue.problem for issue in store.verify_integrity()}
            {'missing_blob'}
        """
        from cacheness.storage import _maintenance  # maintenance code loads when used

        self._check_open()
        if keys is None:
            return _maintenance.verify(self, self.metadata.query(), deep)
        found = self.metadata.get_many(_key_list(keys, "verify_integrity"))
        return _maintenance.verify(self, found.values(), deep)

    @traced("find_orphaned_blobs")
    def find_orphaned_blobs(self, *, min_age_seconds: float = 3600.0) -> builtins.list[str]:
        """Return references of blobs no entry points at.

        Blobs younger than ``min_age_seconds`` are left out: a write in progress has
        its blob written before its entry is committed.

        Example:
            >>> store = BlobStore(metadata_backend="memory", blob_backend="memory")
            >>> ref = store.blobs.write_bytes("stray", b"left by a crash").ref
            >>> store.find_orphaned_blobs(min_age_seconds=0) == [ref]
            True
        """
        from cacheness.storage import _maintenance

        self._check_open()
        check_seconds(min_age_seconds, "min_age_seconds")
        return _maintenance.find_orphans(self, min_age_seconds)

    @traced("repair")
    def repair(
        self, *, dry_run: bool = True, orphan_min_age_seconds: float = 3600.0
    ) -> RepairReport:
        """Find (and unless ``dry_run``, fix) what interrupted writes and damage left.

        Removes entries whose bytes are missing or corrupt (their data is lost; keeping
        them would make every read fail), blobs no entry points at that are older than
        ``orphan_min_age_seconds``, and the blob backend's temporary-file debris.
        Entries whose bytes could not be read (``unreadable``: an outage, a refused
        permission) are reported but kept, and an entry rewritten by another writer
        since it was checked is kept too.

        Example:
            >>> store = BlobStore(metadata_backend="memory", blob_backend="memory")
            >>> _ = store.blobs.write_bytes("stray", b"orphan")
            >>> report = store.repair(dry_run=False, orphan_min_age_seconds=0)
            >>> len(report.orphans_removed), store.find_orphaned_blobs(min_age_seconds=0)
            (1, [])
        """
        from cacheness.storage import _maintenance

        self._check_open()
        check_seconds(orphan_min_age_seconds, "orphan_min_age_seconds")
        return _maintenance.repair(self, dry_run, orphan_min_age_seconds)

    @traced("collect_garbage")
    def collect_garbage(
        self, *, dry_run: bool = False, min_age_seconds: float = 3600.0
    ) -> RepairReport:
        """Remove blobs no entry points at and the debris of interrupted writes.

        The cheap part of :meth:`repair`: no entry is checked. Orphaned blobs and
        temporary files (on S3: abandoned multipart uploads) younger than
        ``min_age_seconds`` are left alone (a write may be in progress).

        Returns:
            A :class:`RepairReport` with ``orphans_removed`` and ``temp_files_removed``
            (what would be removed, with ``dry_run``).

        Example:
            >>> store = BlobStore(metadata_backend="memory", blob_backend="memory")
            >>> _ = store.blobs.write_bytes("stray", b"orphan")
            >>> len(store.collect_garbage(min_age_seconds=0).orphans_removed)
            1
        """
        from cacheness.storage import _maintenance

        self._check_open()
        check_seconds(min_age_seconds, "min_age_seconds")
        return _maintenance.collect_garbage(self, dry_run, min_age_seconds)

    # ------------------------------------------------------------------ portability

    @traced("export")
    def export(
        self,
        path_or_stream: str | os.PathLike[str] | BinaryIO,
        filter: Filter | Predicate | None = None,
        compression: Literal["zstd", "gzip"] | None = "zstd",
        progress: Callable[[TransferProgress], None] | None = None,
    ) -> TransferReport:
        """Write the entries (all, or those matching ``filter``) and their bytes to one archive.

        The archive is a tar stream (compressed as a whole with zstd or gzip, or plain):
        a manifest first (format version, package versions, every field of every entry,
        signatures and user metadata included), then one member per blob. Blobs stream
        through in chunks: memory stays flat for multi-GB blobs. Written to a path, the
        archive appears under its name only when complete.

        Args:
            path_or_stream: a file path, or a binary stream open for writing (not closed).
            filter: export only the entries matching it (``{"key": {"$prefix": "runs/"}}``,
                ``{"metadata.project": "ml"}``; see :mod:`cacheness.storage._filters`), or
                for which this function of an :class:`Entry` returns True.
            compression: ``"zstd"`` (default), ``"gzip"`` or None.
            progress: called with a :class:`TransferProgress` as entries are written.

        Returns:
            A :class:`TransferReport`: entries and bytes written; in ``damaged``, entries
            whose blob was missing or no longer matched (an importer refuses those).

        Raises:
            ConfigError: invalid arguments; FilterError: an invalid filter.

        Example:
            >>> import io
            >>> store = BlobStore(metadata_backend="memory", blob_backend="memory")
            >>> _ = store.put({"lr": 0.1}, key="runs/1", metadata={"project": "ml"})
            >>> archive = io.BytesIO()
            >>> store.export(archive).entries
            1
            >>> copy = BlobStore(metadata_backend="memory", blob_backend="memory")
            >>> copy.import_(io.BytesIO(archive.getvalue())).entries, copy.get("runs/1")
            (1, {'lr': 0.1})
        """
        from cacheness.storage._portability import transfer

        self._check_open()
        return transfer.export(self, path_or_stream, filter, compression, progress)

    @traced("import")
    def import_(
        self,
        path_or_stream: str | os.PathLike[str] | BinaryIO,
        on_conflict: Literal["skip", "overwrite", "error"] = "skip",
        filter: Filter | Predicate | None = None,
        progress: Callable[[TransferProgress], None] | None = None,
        *,
        trust_pickles: bool = False,
    ) -> TransferReport:
        """Import an archive written by :meth:`export`; return what was imported and refused.

        Archives are never trusted. Each blob streams into this store's blob backend and
        its size and hash are checked against the manifest **before** its entry is
        committed; a damaged, swapped, oversized or unsafely named member is reported in
        ``damaged`` and nothing of it is kept. Each entry is committed on its own: an
        interrupted import leaves only complete entries, and running it again resumes
        (entries present with the same bytes are ``skipped``). Entries keep every field
        (timestamps, access counts, metadata, signature).

        Args:
            path_or_stream: a file path, or a binary stream open for reading (zstd, gzip
                or plain: recognised by its first bytes).
            on_conflict: a key present here with other bytes: ``"skip"`` it (reported),
                ``"overwrite"`` it, or ``"error"``: raise ``EntryExistsError`` before
                anything is imported.
            filter: import only the manifest's entries matching it (a filter mapping, or a
                function of an :class:`Entry` returning a bool).
            progress: called with a :class:`TransferProgress` as entries are handled.
            trust_pickles: import pickled payloads (the ``objects`` handler). Loading a
                pickle runs code its bytes name and an archive's entries carry no
                signature this store can check yet, so they are refused (``refused`` in
                ``damaged``) unless you trust whoever wrote the archive.

        Raises:
            IntegrityError: the source is not a cacheness archive (or its manifest is
                damaged): nothing imported.
            FormatVersionError: the archive was written by a newer format version.
            EntryExistsError: ``on_conflict="error"`` and a key conflicts.
            ConfigError: invalid arguments.

        Example:
            >>> import io
            >>> store = BlobStore(metadata_backend="memory", blob_backend="memory")
            >>> _ = store.put(b"weights" * 1000, key="model")
            >>> archive = io.BytesIO()
            >>> _ = store.export(archive)
            >>> again = store.import_(io.BytesIO(archive.getvalue()))
            >>> again.entries, [issue.problem for issue in again.skipped]
            (0, ['present'])
        """
        from cacheness.storage._portability import transfer

        self._check_open()
        return transfer.import_(self, path_or_stream, on_conflict, filter, progress, trust_pickles)

    def export_to_dict(self, filter: Filter | Predicate | None = None) -> dict[str, Any]:
        """Return the archive :meth:`export` writes as a dict (for small stores and tests).

        The manifest's fields (``format``, ``format_version``, ``entries``...) with
        ``datetime`` and ``bytes`` values, plus ``blobs``: member name -> stored bytes.

        Example:
            >>> store = BlobStore(metadata_backend="memory", blob_backend="memory")
            >>> _ = store.put([1, 2], key="k")
            >>> data = store.export_to_dict()
            >>> (entry,) = (item.get("entry") for item in data["entries"])
            >>> data["format_version"], entry.get("key")
            (2, 'k')
        """
        from cacheness.storage._portability import transfer

        self._check_open()
        return transfer.export_to_dict(self, filter)

    def import_from_dict(
        self,
        data: Mapping[str, Any],
        on_conflict: Literal["skip", "overwrite", "error"] = "skip",
        filter: Filter | Predicate | None = None,
        *,
        trust_pickles: bool = False,
    ) -> TransferReport:
        """Import what :meth:`export_to_dict` returned, with the checks of :meth:`import_`.

        Example:
            >>> source = BlobStore(metadata_backend="memory", blob_backend="memory")
            >>> _ = source.put([1, 2], key="k")
            >>> target = BlobStore(metadata_backend="memory", blob_backend="memory")
            >>> target.import_from_dict(source.export_to_dict()).entries, target.get("k")
            (1, [1, 2])
        """
        from cacheness.storage._portability import transfer

        self._check_open()
        return transfer.import_from_dict(self, data, on_conflict, filter, trust_pickles)

    # ------------------------------------------------------------------ observability

    def health(self, *, timeout: float = 5.0) -> HealthReport:
        """Check that both backends answer, within ``timeout`` seconds; nothing is written.

        Each backend makes its cheapest round trip (``ping()``: a read of a probe key in
        the index, a ``HeadBucket`` on S3, a stat of a file), both in parallel; one that
        has not answered when ``timeout`` is up is reported unreachable then (its
        retries go on in the background). Never raises for an unreachable backend: the
        report says which one and why, for a readiness probe or a dashboard.

        Raises:
            ValueError: ``timeout`` is not a positive number of seconds.

        Example:
            >>> store = BlobStore(metadata_backend="memory", blob_backend="memory")
            >>> report = store.health(timeout=1.0)
            >>> report.healthy, report.backends[0].backend, report.backends[1].reachable
            (True, 'memory', True)
        """
        from cacheness.storage._health import check_health

        self._check_open()
        check_seconds(timeout, "timeout")
        if not timeout > 0:
            raise ValueError(f"timeout must be more than 0 seconds, got {timeout!r}")
        return check_health(
            [
                ("metadata", self.metadata.name, self.metadata.ping),
                ("blob", self.blobs.name, self.blobs.ping),
            ],
            float(timeout),
        )

    def backend_stats(self) -> dict[str, dict[str, int]]:
        """Return the backends' own counters: ``{"metadata": {...}, "blob": {...}}``.

        What each backend counts: S3 its HTTP requests by kind and bytes in and out
        (the cost figures), PostgreSQL its connection pool (size, checked out,
        overflow, waits, timeouts), tiered and failover backends their hits, fills and
        fallbacks; others nothing (``{}``).

        Example:
            >>> store = BlobStore(metadata_backend="memory", blob_backend="memory")
            >>> store.backend_stats()
            {'metadata': {}, 'blob': {}}
        """
        self._check_open()
        return {"metadata": self.metadata.stats(), "blob": self.blobs.stats()}

    def resign(self, *, batch_size: int = 1000) -> ResignReport:
        """Sign every entry with the current key; return counts of what was done.

        After a rotation (``signing_key=[new, *old]``) entries signed with an older key
        get a signature of the current one; unsigned entries the ``unsigned`` policy
        admits are signed too (data formats under ``accept_data_only``, every one under
        ``accept``). Entries whose signature fails are never re-signed (that would
        vouch for what an attacker wrote): they are counted, and deleted with
        ``delete_invalid_signatures=True``. Entries go ``batch_size`` at a time, one
        update per batch; run it again if writers were busy (a re-signed entry that
        changed meanwhile reads as invalid only until it is written again).

        Raises:
            ConfigError: signing is off, or ``batch_size`` is not an int >= 1.

        Example:
            >>> old = BlobStore(metadata_backend="memory", blob_backend="memory",
            ...                 signing_key=b"o" * 32)
            >>> _ = old.put([1, 2], key="k")
            >>> rotated = BlobStore(metadata_backend=old.metadata, blob_backend=old.blobs,
            ...                     signing_key=[b"n" * 32, b"o" * 32])
            >>> report = rotated.resign()
            >>> report.checked, report.resigned, rotated.get("k")
            (1, 1, [1, 2])
            >>> BlobStore(metadata_backend=old.metadata, blob_backend=old.blobs,
            ...           signing_key=b"n" * 32).get("k")  # the old key is not needed any more
            [1, 2]
        """
        from cacheness.storage._reports import ResignReport

        self._check_open()
        signer = self.signer
        if signer is None:
            raise ConfigError("resign() needs signing on: this store was opened with signing=False")
        if not is_int(batch_size) or batch_size < 1:
            raise ConfigError(f"batch_size must be an int >= 1, got {batch_size!r}")
        report = ResignReport(keys=signer.key.key_id)
        offset = 0
        while True:
            page = builtins.list(
                self.metadata.query(order_by="key", limit=batch_size, offset=offset)
            )
            if not page:
                return report
            offset += len(page)
            changes: dict[str, dict[str, Any]] = {}
            expect: dict[str, dict[str, Any]] = {}
            doomed: builtins.list[Entry] = []
            for entry in page:
                report.checked += 1
                verdict = signer.check(entry)
                if verdict == "valid" and signer.is_current(entry):
                    report.current += 1
                    continue
                admitted = verdict == "valid" or (
                    verdict == "unsigned"
                    and (
                        self.unsigned == "accept"
                        or (self.unsigned == "accept_data_only" and not self._executable(entry))
                    )
                )
                if admitted:
                    changes[entry.key] = {"signature": signer.sign(entry)}
                    expect[entry.key] = _unchanged(entry)
                    report.resigned += 1
                    continue
                if verdict == "unsigned":
                    report.unsigned += 1
                else:
                    report.invalid += 1
                if self.delete_invalid_signatures:
                    doomed.append(entry)
            if changes:  # an entry rewritten meanwhile was signed by its writer: left alone
                self.metadata.update_many_if(changes, expect)
            for entry in doomed:
                if self._delete_refused(entry):
                    report.deleted += 1
                    offset -= 1  # the next page starts one entry earlier

    # ------------------------------------------------------------------ lifecycle

    def close(self) -> None:
        """Close the backends this store opened (instances passed in stay open)."""
        if self._closed:
            return
        self._closed = True
        self._close_backends()

    def _close_backends(self) -> None:
        if self._owns_blobs and hasattr(self, "blobs"):
            self.blobs.close()
        if self._owns_metadata:
            self.metadata.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def describe_backends(self) -> dict[str, str]:
        """Return where the index and the blobs live: the backends' own descriptions.

        A sqlite index names its file and table, postgresql its URL (password hidden)
        and table, S3 its bucket, prefix and endpoint, the filesystem its directory.

        Example:
            >>> store = BlobStore(metadata_backend="memory", blob_backend="memory")
            >>> sorted(store.describe_backends())
            ['blobs', 'metadata']
            >>> store.close()
        """
        return {"metadata": repr(self.metadata), "blobs": repr(self.blobs)}

    def __repr__(self) -> str:
        return (
            f"BlobStore(metadata={self.metadata.name!r}, blobs={self.blobs.name!r}, "
            f"content_addressable={self.content_addressable})"
        )

    # ------------------------------------------------------------------ internals

    def _check_open(self) -> None:
        if self._closed:
            raise StorageError("this BlobStore is closed; open a new one")

    def _now(self) -> datetime:
        """The injected clock's time, checked: entries hold timezone-aware UTC times."""
        now = self._clock()
        if not isinstance(now, datetime) or now.utcoffset() is None:
            raise ConfigError(
                f"the clock given to BlobStore returned {now!r}; it must return a timezone-"
                "aware datetime, e.g. datetime.now(timezone.utc)"
            )
        return now

    @staticmethod
    def _fresh_name() -> str:
        return uuid.uuid4().hex

    @staticmethod
    def _exists(key: str) -> EntryExistsError:
        return EntryExistsError(
            f"an entry with key {key!r} exists; pass overwrite=True to replace it"
        )

    def _dump(self, data: Any, sink: Any, handler: str | None) -> FormatInfo:
        if handler is None:
            return self.handlers.dump(data, sink, self.serialization)
        chosen = self.handlers.get(handler)
        return chosen.dump(data, sink, self.serialization)

    def _serialize(self, data: Any, handler: str | None, max_size: int | None) -> _Stored:
        """Turn ``data`` into stored bytes: inline, in a new blob, or (content-addressed)
        in a spool until :meth:`_committing` puts it in its blob."""
        if handler is not None and not isinstance(handler, str):
            raise ConfigError(
                f"handler must be the name of a registered handler (a str), got {handler!r}"
            )
        if max_size is not None and (not is_int(max_size) or max_size < 0):
            raise ConfigError(f"max_size must be None or an int >= 0 (bytes), got {max_size!r}")
        if self.content_addressable:
            stored = self._serialize_addressed(data, handler)
        else:
            # The blob's name is drawn only when the payload turns out not to be inline.
            sink = PayloadSink(
                self.inline_threshold, lambda: self.blobs.open_write(self._fresh_name())
            )
            try:
                info = self._dump(data, sink, handler)
                inline = sink.finish()
                if inline is not None:
                    stored = _Stored(info, len(inline), hash_bytes(inline), inline=inline)
                else:
                    writer = cast(BlobWriter, sink.writer)
                    if max_size is not None and writer.tell() > max_size:
                        raise self._too_large(writer.tell(), max_size)
                    with child("cacheness.blob.write", self.blobs.name):
                        blob = writer.commit()
                    stored = _Stored(info, blob.size, blob.content_hash, blob=blob)
            except BaseException:
                if sink.writer is not None:
                    cast(BlobWriter, sink.writer).abort()
                raise
        if max_size is not None and stored.size > max_size:
            self._discard(stored)
            stored.close()
            raise self._too_large(stored.size, max_size)
        return stored

    @staticmethod
    def _too_large(size: int, max_size: int) -> PayloadTooLargeError:
        return PayloadTooLargeError(
            f"the stored payload is {size} bytes, more than the limit of {max_size}; "
            "nothing was stored"
        )

    def _serialize_addressed(self, data: Any, handler: str | None) -> _Stored:
        spool = SpoolSink()
        try:
            info = self._dump(data, spool, handler)
            content_hash = spool.content_hash()
            if spool.written < self.inline_threshold:
                inline = spool.reader().read()
                spool.close()
                return _Stored(info, len(inline), content_hash, inline=inline)
        except BaseException:
            spool.close()
            raise
        return _Stored(info, spool.written, content_hash, spool=spool)

    @contextlib.contextmanager
    def _committing(self, stored: builtins.list[_Stored]) -> Iterator[None]:
        """Hold what committing entries for ``stored`` needs; undo their blobs on failure.

        Content-addressed payloads are shared between entries: their blobs are written
        (if missing) and their entries committed while holding a lock on the content,
        the same lock :meth:`_release` takes before deleting an unreferenced blob, so a
        blob is never deleted under a concurrent commit that refers to it.
        """
        pending = [item for item in stored if item.spool is not None]
        # Only content-addressed spools need locks and closing; a plain put skips the
        # ExitStack (about 1 us of the ~50 us CPU a small put takes on SQLite).
        with self._addressed(pending) if pending else contextlib.nullcontext():
            try:
                yield
            except BackendUnavailableError:
                # The connection died, maybe after the index saved the entries: their
                # blobs stay (at worst orphans, which repair() removes), never an entry
                # pointing at a deleted blob.
                log.warning(
                    "the index became unreachable while committing %d entr%s; their blobs "
                    "are kept (BlobStore.repair() removes them if nothing was saved)",
                    len(stored),
                    "y" if len(stored) == 1 else "ies",
                )
                raise
            except BaseException:
                for item in stored:
                    self._discard(item)
                raise

    @contextlib.contextmanager
    def _addressed(self, pending: builtins.list[_Stored]) -> Iterator[None]:
        """Hold the content locks of ``pending`` spools with their blobs in place."""
        with contextlib.ExitStack() as stack:
            for item in pending:
                stack.callback(item.close)
            for ref in sorted({self.blobs.ref_for(item.content_hash) for item in pending}):
                stack.enter_context(self._content_lock(ref))
            for item in pending:
                self._ensure_addressed(item)
            yield

    def _content_lock(self, ref: str) -> AbstractContextManager[bool]:
        return self.metadata.named_lock(f"cacheness.blobstore.content:{ref}")

    def _ensure_addressed(self, item: _Stored) -> None:
        """Make sure the blob named by ``item``'s hash holds its bytes (lock held)."""
        spool = cast(SpoolSink, item.spool)
        ref = self.blobs.ref_for(item.content_hash)
        try:
            existing: BlobInfo | None = self.blobs.stat(ref)
        except BlobNotFoundError:
            existing = None
        if (
            existing is not None
            and existing.size == item.size
            and existing.content_hash in ("", item.content_hash)
        ):
            item.blob = existing
            return
        if existing is not None:
            log.warning("content-addressed blob %r does not match its name; rewriting it", ref)
        with (
            child("cacheness.blob.write", self.blobs.name),
            self.blobs.open_write(item.content_hash) as writer,
        ):
            copy_stream(spool.reader(), writer)
        item.blob = writer.info

    def _discard(self, stored: _Stored) -> None:
        """Delete the blob a failed write left behind.

        A content-addressed blob is shared: it goes only if no entry refers to it. Its
        content lock is held here (blobs are set inside :meth:`_committing`), so no
        other writer can be committing an entry that refers to it meanwhile.
        """
        blob = stored.blob
        if blob is None:
            return
        if self.content_addressable and self.metadata.count({"blob_ref": blob.ref}):
            return
        self._delete_blobs([blob.ref])

    def _release(
        self,
        entries: Iterable[Entry],
        *,
        keep: BlobInfo | None = None,
        keep_refs: set[str] | None = None,
        unless_referenced: bool = False,
    ) -> None:
        """Delete the blobs of entries that are gone (after their metadata commit).

        ``unless_referenced`` keeps blobs another entry still points at (always done in a
        content-addressed store). A reference no blob can have (an edited index) is
        never passed to the backend.
        """
        kept = set(keep_refs or ())
        if keep is not None:
            kept.add(keep.ref)
        refs = {e.blob_ref for e in entries if e.blob_ref and e.blob_ref not in kept}
        refs = {ref for ref in refs if not unsafe_ref(ref)}
        if not refs:
            return
        if unless_referenced and not self.content_addressable:
            listed = sorted(refs)
            for start in range(0, len(listed), DELETE_CHUNK):
                chunk = listed[start : start + DELETE_CHUNK]
                still = self.metadata.query({"blob_ref": {"$in": chunk}})
                refs -= {entry.blob_ref for entry in still}
            if not refs:
                return
        if self.content_addressable:
            for ref in sorted(refs):
                with self._content_lock(ref):
                    if not self.metadata.count({"blob_ref": ref}):
                        self._delete_blobs([ref])
        else:
            self._delete_blobs(sorted(refs))

    def _delete_blobs(self, refs: builtins.list[str]) -> None:
        """Delete blobs after a committed metadata change; failures leave orphans, logged."""
        try:
            with child("cacheness.blob.delete_many", self.blobs.name):
                self.blobs.delete_many(refs)
        except (StorageError, OSError):
            log.warning(
                "could not delete %d superseded blob(s) (first: %r); they are orphans now "
                "and BlobStore.repair() removes them",
                len(refs),
                refs[0] if refs else None,
                exc_info=True,
            )


def _check_entry_argument(entry: object, method: str) -> None:
    if not isinstance(entry, Entry | PayloadInfo):
        hint = " (get_metadata returns None for a missing key)" if entry is None else ""
        raise InvalidEntryError(
            f"{method}() takes an Entry (from get_metadata, list...) or a PayloadInfo, got "
            f"{type(entry).__name__}{hint}; to load by key, call get(key)"
        )


def _key_list(keys: Iterable[str], method: str) -> list[str]:
    """``keys`` as a list; a lone string (an iterable of characters) is refused.

    Raises:
        InvalidKeyError: ``keys`` is a string or not iterable.
    """
    if isinstance(keys, str | bytes):
        raise InvalidKeyError(
            f"{method}() takes an iterable of keys, got the single key {keys!r}; pass [{keys!r}]"
        )
    try:
        return list(keys)
    except TypeError as exc:
        raise InvalidKeyError(
            f"{method}() takes an iterable of keys (a list, a tuple...), got {type(keys).__name__}"
        ) from exc


def _pairs(items: object) -> list[tuple[str, Any]]:
    """``put_batch`` items as ``(key, data)`` pairs.

    Raises:
        InvalidKeyError: ``items`` is neither a mapping nor an iterable of pairs.
    """
    if isinstance(items, Mapping):
        return list(items.items())
    problem = f"got {type(items).__name__}"
    if not isinstance(items, str | bytes):
        try:
            pairs = [tuple(pair) for pair in cast(Iterable[Any], items)]
        except TypeError:
            pairs = None
        if pairs is not None:
            odd = [pair for pair in pairs if len(pair) != 2]
            if not odd:
                return cast(list[tuple[str, Any]], pairs)
            problem = f"got an item of {len(odd[0])} value(s)"
    raise InvalidKeyError(f"put_batch() takes {{key: data}} or (key, data) pairs; {problem}")


def _check_accept(accept: object) -> None:
    if accept is not None and not callable(accept):
        raise ConfigError(
            f"accept must be None or a function of an entry returning a bool, got {accept!r}"
        )


def _same_payload(current: Entry | PayloadInfo, read: Entry | PayloadInfo) -> bool:
    """True when ``current`` describes the same stored bytes as ``read``."""
    return (
        current.blob_ref == read.blob_ref
        and current.content_hash == read.content_hash
        and current.size == read.size
        and (current.inline is None) == (read.inline is None)
    )


def _blob_lost(exc: BaseException) -> bool:
    """True when ``exc`` (or what caused it) says the blob was not there.

    ``BlobNotFoundError`` comes from the backends (S3's NoSuchKey in the middle of a
    stream too); ``FileNotFoundError`` from a handler opening a local path itself (a
    memory map) after the file went away; handlers may wrap either.
    """
    seen: BaseException | None = exc
    for _ in range(8):
        if seen is None:
            return False
        if isinstance(seen, BlobNotFoundError | FileNotFoundError):
            return True
        seen = seen.__cause__ or seen.__context__
    return False


def _unchanged(entry: Entry) -> dict[str, Any]:
    """The fields that identify ``entry``'s signed state, for a compare-and-set: any
    rewrite of the key (a put, ``update_data``, another metadata update) changes its
    ``updated_at`` or its signature."""
    return {"signature": entry.signature, "updated_at": entry.updated_at}


def _user_metadata(metadata: Mapping[str, Any] | None) -> dict[str, Any]:
    """A copy of the user's metadata; its values are checked by the metadata backend."""
    if metadata is None:
        return {}
    if not isinstance(metadata, Mapping):
        raise InvalidEntryError(
            f"metadata must be a dict of JSON-able values, got {type(metadata).__name__}"
        )
    return dict(metadata)


def _legacy_alias(old: str, value: Any, new: str, current: Any, default: Any) -> Any:
    """Return ``value`` for argument ``new`` given under its seeds' name ``old``.

    Raises ``TypeError`` when ``new`` is given too (with another value).
    """
    if current is not default and current != value:
        raise TypeError(
            f"BlobStore({old}=...) is the older name of {new}=...; pass only {new}={value!r}"
        )
    return value


def _compression_options(compression: object) -> SerializationOptions:
    """Return the serialization options of the seeds' ``compression=`` shortcut."""
    from cacheness.storage._compression import BLOSC2_CODECS, CODECS

    if compression in BLOSC2_CODECS and compression not in CODECS:
        return SerializationOptions(codec="blosc2", blosc2_codec=str(compression))
    if isinstance(compression, str) and (compression in CODECS or compression == "auto"):
        return SerializationOptions(codec=compression)
    known = [*CODECS, "auto", *BLOSC2_CODECS]
    raise ConfigError(
        f"unknown compression {compression!r}{did_you_mean(compression, known)}; "
        f"pass one of {', '.join(dict.fromkeys(known))} (or serialization={{'codec': ...}})"
    )
