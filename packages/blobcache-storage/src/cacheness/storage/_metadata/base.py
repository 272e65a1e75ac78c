"""``MetadataBackend``: the abstract index of stored entries.

A metadata backend keeps one :class:`~cacheness.storage._entry.Entry` per key and answers
queries over them with the :mod:`~cacheness.storage._filters` language. Six primitives
are abstract (:meth:`~MetadataBackend.get`, :meth:`~MetadataBackend.put`,
:meth:`~MetadataBackend.delete`, :meth:`~MetadataBackend.update`,
:meth:`~MetadataBackend.query`, :meth:`~MetadataBackend.close`); the bulk and batch
methods have working defaults built on them, which backends override when they can do
the same in one statement or one transaction (the SQL backends do).

Deleting and replacing methods return the entries they removed: the caller deletes
the blobs those entries point at *after* the metadata change is committed.

Example:
    >>> from cacheness.storage import Entry
    >>> from cacheness.storage import MemoryMetadataBackend
    >>> with MemoryMetadataBackend() as index:
    ...     index.put(Entry.new("runs/1", size=10, metadata={"project": "ml"}))
    ...     index.put(Entry.new("runs/2", size=30, metadata={"project": "ml"}))
    ...     index.total_size({"metadata.project": "ml"})
    ...     [entry.key for entry in index.delete_prefix("runs/")]
    40
    ['runs/1', 'runs/2']
"""

from __future__ import annotations

import threading
from abc import ABC, abstractmethod
from collections.abc import Iterable, Iterator, Mapping
from contextlib import AbstractContextManager
from datetime import datetime
from types import TracebackType
from typing import TYPE_CHECKING, Any, ClassVar, Self

import msgspec

from cacheness.storage._entry import Entry, utc_now, validate_key
from cacheness.storage._filters import Filter, parse_filter
from cacheness.storage._locks import FileLocks, ThreadLocks
from cacheness.storage._metadata._entries import (
    checked_changes,
    checked_values,
    copied_entry,
    exists_error,
    holds,
    moved_entry,
    normalize_entry,
    not_found_error,
    unique_keys,
    validate_changes,
)
from cacheness.storage._pairing import Scope
from cacheness.storage.errors import ConfigError

if TYPE_CHECKING:
    from sqlalchemy.orm import Session

    from cacheness.storage._custom import CustomMetadataBase

CUSTOM_METADATA_BACKENDS: tuple[str, ...] = ("sqlite", "postgresql")
"""The metadata backends that hold custom metadata tables."""

_LOCKS_GUARD = threading.Lock()
HEALTH_PROBE_KEY = "cacheness-health-probe"
"""The key :meth:`MetadataBackend.ping` reads (never written)."""


class PayloadInfo(msgspec.Struct, frozen=True, kw_only=True):
    """What reading an entry's data takes: where the bytes are and how to decode them.

    The fields are those of :class:`~cacheness.storage._entry.Entry` with the same
    names and meaning; :meth:`MetadataBackend.get_payload` returns them without the rest
    of the entry (timestamps, user metadata), which is what a plain read needs. With
    ``with_metadata=True`` it also fills ``metadata`` and ``accessed_at`` (what a cache
    needs to decide a hit: its expiry lives in the metadata); otherwise they are None.

    Example:
        >>> entry = Entry.new("k", handler="raw", format="bytes", size=3, inline=b"abc")
        >>> info = PayloadInfo.of(entry)
        >>> info.key, info.handler, info.inline
        ('k', 'raw', b'abc')
    """

    key: str
    blob_ref: str = ""
    handler: str = ""
    format: str = ""
    format_info: dict[str, Any] = msgspec.field(default_factory=dict)
    codec: str = "none"
    size: int = 0
    raw_size: int = 0
    content_hash: str = ""
    signature: str | None = None
    inline: bytes | None = None
    metadata: dict[str, Any] | None = None
    accessed_at: datetime | None = None

    @classmethod
    def of(cls, entry: Entry, *, with_metadata: bool = False) -> PayloadInfo:
        """Return the payload fields of ``entry`` (and its metadata and access time)."""
        fields = PAYLOAD_FIELDS + PAYLOAD_STATE_FIELDS if with_metadata else PAYLOAD_FIELDS
        return cls(**{name: getattr(entry, name) for name in fields})


PAYLOAD_FIELDS: tuple[str, ...] = PayloadInfo.__struct_fields__[:-2]
"""The entry fields a :class:`PayloadInfo` always holds, in order."""

PAYLOAD_STATE_FIELDS: tuple[str, ...] = PayloadInfo.__struct_fields__[-2:]
"""The fields ``get_payload(with_metadata=True)`` adds: ``metadata``, ``accessed_at``."""


DEFAULT_INLINE_THRESHOLD = 64 * 1024
"""Payloads smaller than this many bytes are kept in the index entry itself by default.

Below it a database row costs less than a file or an object: no file creation, no
fsync of a second file, no HTTP request (SQLite's own measurements put the crossover
near 100 KB); a JSON index uses 4 KiB (see ``default_inline_threshold``).
"""


class MetadataBackend(ABC):
    """The abstract index of stored entries.

    Class attributes:
        name: the name the backend is registered under (``"sqlite"``...).
        scope: ``"process"`` (memory), ``"host"`` (json, sqlite: processes of one
            machine) or ``"shared"`` (postgresql: many machines).

    Implementations must be safe to use from several threads at once.

    Example:
        >>> class Incomplete(MetadataBackend):
        ...     def get(self, key): ...
        >>> Incomplete()  # doctest: +ELLIPSIS
        Traceback (most recent call last):
        ...
        TypeError: Can't instantiate abstract class Incomplete...
    """

    name: ClassVar[str]
    scope: ClassVar[Scope]
    supports_custom_metadata: ClassVar[bool] = False
    """True when the backend holds custom metadata tables (the SQL backends)."""
    default_inline_threshold: ClassVar[int] = DEFAULT_INLINE_THRESHOLD
    """A store's ``inline_threshold`` when none is given: payloads smaller than this
    many bytes live in this index's entries rather than in blobs (64 KiB; the JSON
    index, which rewrites its whole file on every change, keeps 4 KiB)."""

    # ----------------------------------------------------------------- primitives

    @abstractmethod
    def get(self, key: str) -> Entry | None:
        """Return the entry stored under ``key``, or None.

        Raises:
            InvalidKeyError: ``key`` is not a valid key.
        """

    @abstractmethod
    def put(self, entry: Entry, *, overwrite: bool = True) -> Entry | None:
        """Store ``entry`` under ``entry.key`` and return the entry it replaced.

        The old entry is read and replaced atomically, so the caller can delete the
        blob it pointed at once this returns.

        Args:
            entry: the entry to store (validated; a normalized copy is stored).
            overwrite: when False and the key exists, nothing is written and
                :class:`~cacheness.storage.errors.EntryExistsError` is raised (an
                atomic insert-if-absent).

        Returns:
            The replaced entry, or None when the key was new.

        Raises:
            EntryExistsError: ``overwrite`` is False and the key exists.
            InvalidEntryError: a field has the wrong type or an unstorable value.
        """

    @abstractmethod
    def delete(self, key: str) -> Entry | None:
        """Remove ``key`` and return the removed entry (None when absent)."""

    @abstractmethod
    def update(self, key: str, /, **changes: Any) -> Entry | None:
        """Change some fields of an entry and return it as stored (None when absent).

        Exactly the given fields change; nothing is stamped implicitly (pass
        ``updated_at=...`` to record the change time).

        Raises:
            KeyImmutableError: ``key`` is among the changes (rename with :meth:`move`).
            InvalidEntryError: an unknown field or a wrongly typed value.
        """

    @abstractmethod
    def query(
        self,
        filter: Filter | None = None,
        *,
        order_by: str = "key",
        descending: bool = False,
        limit: int | None = None,
        offset: int = 0,
    ) -> Iterator[Entry]:
        """Yield the entries matching ``filter``, lazily, in ``order_by`` order.

        Ties are broken by key, so paging with ``limit``/``offset`` is stable. Entries
        changed while the iterator is consumed may or may not be seen, but none is
        yielded twice.

        Args:
            filter: a :mod:`~cacheness.storage._filters` mapping; None matches all.
            order_by: an entry field (see :data:`~cacheness.storage._filters.ORDER_FIELDS`)
                or ``metadata.<path>``.
            descending: reverse the order.
            limit: yield at most this many entries.
            offset: skip this many entries first.

        Raises:
            FilterError: invalid filter, ``order_by``, ``limit`` or ``offset`` (raised
                by the call itself, before iteration starts).
        """

    def query_without_payload(
        self,
        filter: Filter | None = None,
        *,
        order_by: str = "key",
        descending: bool = False,
        limit: int | None = None,
        offset: int = 0,
    ) -> Iterator[Entry]:
        """Like :meth:`query`, for listings: payloads kept in the index may stay there.

        An entry whose payload lives in the index may come with ``inline=None`` (its
        ``blob_ref`` is empty either way), so a listing of many entries reads their
        fields, not their data. This default is :meth:`query` itself; the SQL backends
        never read the payload column.

        Example:
            >>> from cacheness.storage import MemoryMetadataBackend
            >>> index = MemoryMetadataBackend()
            >>> _ = index.put(Entry.new("a", size=3, inline=b"abc"))
            >>> (entry,) = index.query_without_payload()
            >>> entry.key, entry.size
            ('a', 3)
        """
        return self.query(
            filter, order_by=order_by, descending=descending, limit=limit, offset=offset
        )

    @abstractmethod
    def close(self) -> None:
        """Release connections and files. Idempotent; later calls raise ``MetadataError``."""

    # ----------------------------------------------------------------- change tracking

    def change_token(self) -> int | None:
        """Return a number that moves whenever anything is committed to this index, or None.

        Two calls returning the same number mean that nobody, in this process or any
        other, committed a change in between: what was read from the index before the
        first call is still what it holds. The number means nothing else (compare it for
        equality only; it may move without a change). None means this backend cannot
        tell cheaply (the default: PostgreSQL, JSON): ask the index itself instead.

        SQLite answers from ``PRAGMA data_version`` on this thread's connection (about a
        microsecond, no I/O) plus its own commits; the memory backend counts its writes.

        Example:
            >>> from cacheness.storage import MemoryMetadataBackend
            >>> index = MemoryMetadataBackend()
            >>> before = index.change_token()
            >>> _ = index.put(Entry.new("k", size=1))
            >>> index.change_token() != before
            True
        """
        return None

    # ----------------------------------------------------------------- reads

    def get_payload(self, key: str, *, with_metadata: bool = False) -> PayloadInfo | None:
        """Return where ``key``'s data is and how to decode it, or None.

        :meth:`get` without the timestamps and user metadata: the SQL backends select
        only these columns, which makes the most frequent read (``BlobStore.get``)
        cheaper. ``with_metadata=True`` adds the user metadata and ``accessed_at``. The
        default builds the result from :meth:`get`.

        Raises:
            InvalidKeyError: ``key`` is not a valid key.

        Example:
            >>> from cacheness.storage import MemoryMetadataBackend
            >>> index = MemoryMetadataBackend()
            >>> _ = index.put(Entry.new("k", blob_ref="ab/abc", size=10))
            >>> index.get_payload("k").blob_ref, index.get_payload("missing")
            ('ab/abc', None)
        """
        entry = self.get(key)
        return None if entry is None else PayloadInfo.of(entry, with_metadata=with_metadata)

    def stats(self) -> dict[str, int]:
        """Return the backend's counters (PostgreSQL: its connection pool); ``{}`` by default.

        Example:
            >>> from cacheness.storage import MemoryMetadataBackend
            >>> MemoryMetadataBackend().stats()
            {}
        """
        return {}

    def ping(self) -> None:
        """Check that the index answers, without writing; raise if it does not.

        Used by ``BlobStore.health()``: the default reads a probe key that is never
        written (one indexed query on SQL backends).

        Example:
            >>> from cacheness.storage import MemoryMetadataBackend
            >>> MemoryMetadataBackend().ping()
        """
        self.get_payload(HEALTH_PROBE_KEY)

    # ----------------------------------------------------------------- batch defaults

    def get_many(self, keys: Iterable[str]) -> dict[str, Entry]:
        """Return ``{key: entry}`` for the keys that exist (misses are absent).

        Example:
            >>> from cacheness.storage import MemoryMetadataBackend
            >>> index = MemoryMetadataBackend()
            >>> _ = index.put(Entry.new("a"))
            >>> list(index.get_many(["a", "missing"]))
            ['a']
        """
        found = {}
        for key in unique_keys(keys):
            entry = self.get(key)
            if entry is not None:
                found[key] = entry
        return found

    def put_many(self, entries: Iterable[Entry]) -> list[Entry]:
        """Store every entry (upsert) and return the entries they replaced.

        Entries are applied in order: when a key appears twice, the second replaces the
        first and the first is among the returned entries. Every entry is validated
        before anything is written.
        """
        batch = [normalize_entry(entry) for entry in entries]
        replaced = []
        for entry in batch:
            old = self.put(entry)
            if old is not None:
                replaced.append(old)
        return replaced

    def update_many(self, changes: Mapping[str, Mapping[str, Any]]) -> dict[str, Entry]:
        """Apply ``{key: {field: value}}`` updates; return ``{key: updated entry}``.

        Missing keys are absent from the result. Every change set is validated before
        anything is written.
        """
        checked = checked_changes(changes)
        for fields in checked.values():
            checked_values(fields)  # wrongly typed values fail before anything changes
        updated = {}
        for key, fields in checked.items():
            entry = self.update(key, **fields)
            if entry is not None:
                updated[key] = entry
        return updated

    def update_many_if(
        self,
        changes: Mapping[str, Mapping[str, Any]],
        expect: Mapping[str, Mapping[str, Any]],
    ) -> dict[str, Entry]:
        """:meth:`update_many` as a compare-and-set: a key's change applies only while its
        entry still holds the ``expect[key]`` field values; return the updated entries.

        A key whose entry changed since it was read (rewritten by another writer) is
        left untouched and out of the result: the caller reads it again and retries.
        What a change computed from an entry's fields (a signature) needs, so that it
        never lands on a newer entry. This default reads, then updates; the built-in
        backends do both in one step (one transaction, or under their lock).

        Example:
            >>> from cacheness.storage import MemoryMetadataBackend
            >>> index = MemoryMetadataBackend()
            >>> _ = index.put(Entry.new("k", size=1, metadata={"v": 1}))
            >>> sorted(index.update_many_if({"k": {"metadata": {"v": 2}}}, {"k": {"size": 9}}))
            []
            >>> sorted(index.update_many_if({"k": {"metadata": {"v": 2}}}, {"k": {"size": 1}}))
            ['k']
        """
        current = self.get_many(changes)
        wanted = {
            key: fields
            for key, fields in changes.items()
            if key in current and holds(current[key], expect.get(key, {}))
        }
        return self.update_many(wanted) if wanted else {}

    def delete_many(self, keys: Iterable[str]) -> list[Entry]:
        """Remove the given keys; return the removed entries (misses are skipped)."""
        removed = []
        for key in unique_keys(keys):
            entry = self.delete(key)
            if entry is not None:
                removed.append(entry)
        return removed

    def delete_where(self, filter: Filter) -> list[Entry]:
        """Remove every entry matching ``filter``; return the removed entries.

        The entries come in no particular order. ``{}`` matches (and removes) everything.
        """
        parse_filter(filter)  # invalid filters fail before anything is read
        return self.delete_many([entry.key for entry in self.query(filter)])

    def delete_prefix(self, prefix: str) -> list[Entry]:
        """Remove every entry whose key starts with ``prefix``; return them.

        ``""`` is a prefix of every key.
        """
        return self.delete_where({"key": {"$prefix": prefix}})

    def count(self, filter: Filter | None = None) -> int:
        """Return how many entries match ``filter`` (all entries when None)."""
        return sum(1 for _ in self.query(filter))

    def total_size(self, filter: Filter | None = None) -> int:
        """Return the sum of ``Entry.size`` over the entries matching ``filter``."""
        return sum(entry.size for entry in self.query(filter))

    def exists(self, key: str) -> bool:
        """Return True when ``key`` has an entry."""
        return self.get(key) is not None

    def copy(
        self, src: str, dst: str, *, overwrite: bool = False, **changes: Any
    ) -> tuple[Entry, Entry | None]:
        """Copy the entry of ``src`` to ``dst``; return ``(new entry, replaced entry)``.

        The copy gets ``created_at = updated_at = accessed_at = now`` and
        ``access_count = 0``; ``changes`` are applied on top (the caller passes the
        copied blob's ``blob_ref`` there).

        Raises:
            EntryNotFoundError: ``src`` does not exist.
            EntryExistsError: ``dst`` exists and ``overwrite`` is False.
            KeyImmutableError: ``key`` is among ``changes``.

        Example:
            >>> from cacheness.storage import MemoryMetadataBackend
            >>> index = MemoryMetadataBackend()
            >>> _ = index.put(Entry.new("a", blob_ref="r1"))
            >>> new, replaced = index.copy("a", "b", blob_ref="r2")
            >>> new.key, new.blob_ref, replaced
            ('b', 'r2', None)
        """
        validate_changes(changes)
        source = self.get(src)
        if source is None:
            raise not_found_error(src)
        copy = copied_entry(source, dst, changes, utc_now())
        return copy, self.put(copy, overwrite=overwrite)

    def move(self, src: str, dst: str, *, overwrite: bool = False) -> tuple[Entry, Entry | None]:
        """Rename ``src`` to ``dst``; return ``(moved entry, replaced entry)``.

        The moved entry keeps its fields and gets ``updated_at = now``. SQL backends do
        this atomically; this default is a put followed by a delete. Moving a key onto
        itself with ``overwrite=True`` only stamps ``updated_at`` and replaces nothing.

        Raises:
            EntryNotFoundError: ``src`` does not exist.
            EntryExistsError: ``dst`` exists and ``overwrite`` is False.
        """
        validate_key(dst)
        source = self.get(src)
        if source is None:
            raise not_found_error(src)
        now = utc_now()
        if src == dst:
            if not overwrite:
                raise exists_error(dst)
            stamped = self.update(src, updated_at=now)
            if stamped is None:
                raise not_found_error(src)
            return stamped, None
        moved = moved_entry(source, dst, now)
        replaced = self.put(moved, overwrite=overwrite)
        self.delete(src)
        return moved, replaced

    # ----------------------------------------------------------------- custom metadata

    def check_custom_metadata(self) -> None:
        """Raise ``ConfigError`` unless this backend holds custom metadata tables.

        Example:
            >>> from cacheness.storage import MemoryMetadataBackend
            >>> MemoryMetadataBackend().check_custom_metadata()  # doctest: +ELLIPSIS
            Traceback (most recent call last):
            ...
            cacheness.storage.errors.ConfigError: the memory metadata backend cannot hold \
custom metadata tables...
        """
        if not self.supports_custom_metadata:
            raise ConfigError(
                f"the {self.name} metadata backend cannot hold custom metadata tables (typed "
                f"SQL columns need a SQL database); use metadata_backend="
                f"{' or '.join(map(repr, CUSTOM_METADATA_BACKENDS))}, or store the values "
                "as JSON metadata and filter on them"
            )

    def link_custom_models(self, models: Iterable[type[CustomMetadataBase] | str]) -> None:
        """Create (or check against their models) the tables of ``models`` now.

        ``BlobStore.put`` calls it before writing any bytes, so a model that cannot be
        stored fails before anything is written. Done once per model and process.

        Raises:
            ConfigError: this backend has no custom metadata tables.
            CustomSchemaError: a model's table exists with other columns.
        """
        self.check_custom_metadata()
        raise NotImplementedError  # pragma: no cover - the SQL backends override it

    def put_custom(
        self,
        entry: Entry,
        rows: list[CustomMetadataBase],
        *,
        overwrite: bool = True,
        keep_rows: bool = False,
    ) -> Entry | None:
        """Store ``entry`` and its custom metadata ``rows`` in one transaction.

        A replaced entry's rows are replaced by ``rows`` (removed when there are none),
        unless ``keep_rows`` (the data of an entry changes, its description stays).
        Backends without custom metadata store the entry when there are no rows.

        Returns:
            The replaced entry, or None when the key was new.

        Raises:
            ConfigError: ``rows`` given to a backend without custom metadata tables.
            CustomSchemaError: a model's table exists with other columns.
            EntryExistsError: ``overwrite`` is False and the key exists.
        """
        if rows:
            self.check_custom_metadata()
        return self.put(entry, overwrite=overwrite)

    def custom_session(
        self, model: type[CustomMetadataBase] | str
    ) -> AbstractContextManager[Session]:
        """A SQLAlchemy ORM session on the index's database, ``model``'s table created.

        The session is closed when the block ends (see ``BlobStore.query_custom_session``).

        Raises:
            ConfigError: this backend has no custom metadata tables.
        """
        self.check_custom_metadata()
        raise NotImplementedError  # pragma: no cover - the SQL backends override it

    def query_custom(
        self, model: type[CustomMetadataBase] | str, *where: Any
    ) -> list[CustomMetadataBase]:
        """Return ``model``'s rows matching the SQLAlchemy conditions ``where``, detached.

        Raises:
            ConfigError: this backend has no custom metadata tables.
        """
        self.check_custom_metadata()
        raise NotImplementedError  # pragma: no cover - the SQL backends override it

    def custom_keys(self, model: type[CustomMetadataBase] | str, *where: Any) -> list[str]:
        """Return the keys of the entries with a row of ``model`` matching ``where``, sorted.

        Raises:
            ConfigError: this backend has no custom metadata tables.
        """
        self.check_custom_metadata()
        raise NotImplementedError  # pragma: no cover - the SQL backends override it

    def migrate_custom_tables(
        self, models: Iterable[type[CustomMetadataBase] | str]
    ) -> dict[str, list[str]]:
        """Create the tables of ``models`` and add their missing nullable columns.

        Returns:
            ``{table: [added columns]}`` for the tables that changed.

        Raises:
            ConfigError: this backend has no custom metadata tables.
            CustomSchemaError: a difference only a hand-written migration can fix.
        """
        self.check_custom_metadata()
        raise NotImplementedError  # pragma: no cover - the SQL backends override it

    # ----------------------------------------------------------------- named locks

    def named_lock(
        self, name: str, *, timeout: float | None = None
    ) -> AbstractContextManager[bool]:
        """Hold a lock named ``name`` that every user of this index respects.

        The lock reaches as far as the index does (:attr:`scope`): the threads of one
        process (memory), the processes of one host (json, sqlite: OS file locks next to
        the index file), every host (postgresql: advisory locks). Callers use it to make
        a check-then-act sequence exclusive, e.g. computing a missing value once.

        Args:
            name: any string; different names never block each other.
            timeout: seconds to wait at most; None waits as long as it takes.

        Returns:
            A context manager yielding True when the lock is held, False when
            ``timeout`` ran out first (the block then runs without the lock).

        Example:
            >>> from cacheness.storage import MemoryMetadataBackend
            >>> index = MemoryMetadataBackend()
            >>> with index.named_lock("compute:report", timeout=5) as held:
            ...     held
            True
        """
        locks = self.__dict__.get("_named_locks")
        if locks is None:
            with _LOCKS_GUARD:
                locks = self.__dict__.get("_named_locks") or self._make_locks()
                self.__dict__["_named_locks"] = locks
        return locks.hold(name, timeout)

    def _make_locks(self) -> ThreadLocks | FileLocks:
        """The lock family :meth:`named_lock` uses: thread locks unless a backend says more."""
        return ThreadLocks()

    # ----------------------------------------------------------------- context manager

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.close()
