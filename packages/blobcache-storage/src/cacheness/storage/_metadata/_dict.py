"""A metadata backend over a ``dict`` of entries: the shared core of memory and JSON (private).

Every operation, batch ones included, runs under one lock and is validated before the
dict changes, so a failing call changes nothing. Subclasses hook in where the dict is
read (:meth:`DictMetadataBackend._refresh`) and written (:meth:`_exclusive`,
:meth:`_persist`, :meth:`_discard`); the JSON backend uses these to keep the dict and
its file in step.
"""

from __future__ import annotations

import heapq
import threading
from collections.abc import Callable, Iterable, Iterator, Mapping
from contextlib import AbstractContextManager, contextmanager, nullcontext
from typing import Any

from cacheness.storage._entry import Entry, utc_now, validate_key
from cacheness.storage._filters import Filter, compile_predicate, sort_key
from cacheness.storage._metadata._entries import (
    checked_changes,
    clone,
    copied_entry,
    exists_error,
    moved_entry,
    normalize_entry,
    not_found_error,
    query_args,
    unique_keys,
    updated_entries,
    updated_entry,
    validate_changes,
)
from cacheness.storage._metadata.base import MetadataBackend
from cacheness.storage.errors import MetadataError


class _Changes:
    """The dict being written, with a note of whether anything changed."""

    __slots__ = ("dirty", "entries")

    def __init__(self, entries: dict[str, Entry]) -> None:
        self.entries = entries
        self.dirty = False

    def set(self, entry: Entry) -> None:
        self.entries[entry.key] = entry
        self.dirty = True

    def pop(self, key: str) -> Entry | None:
        entry = self.entries.pop(key, None)
        if entry is not None:
            self.dirty = True
        return entry


def _yield_clones(entries: list[Entry]) -> Iterator[Entry]:
    for entry in entries:
        yield clone(entry)


class DictMetadataBackend(MetadataBackend):
    """Entries in a ``dict`` guarded by a lock; subclasses add persistence."""

    def __init__(self) -> None:
        self._entries: dict[str, Entry] = {}
        self._lock = threading.RLock()
        self._closed = False
        self._writes = 0  # committed changes: the memory backend's change token

    # ----------------------------------------------------------------- hooks

    def _refresh(self) -> None:
        """Bring ``self._entries`` up to date before a read (no-op in memory)."""

    def _exclusive(self) -> AbstractContextManager[None]:
        """Hold whatever excludes other writers (and refresh) during a write."""
        return nullcontext()

    def _persist(self) -> None:
        """Make a changed ``self._entries`` durable (no-op in memory)."""

    def _discard(self) -> None:
        """Forget in-memory changes that could not be made durable."""

    # ----------------------------------------------------------------- plumbing

    def _check_open(self) -> None:
        if self._closed:
            raise MetadataError(f"{type(self).__name__} is closed; open a new one")

    @contextmanager
    def _reading(self) -> Iterator[dict[str, Entry]]:
        with self._lock:
            self._check_open()
            self._refresh()
            yield self._entries

    @contextmanager
    def _writing(self) -> Iterator[_Changes]:
        with self._lock:
            self._check_open()
            with self._exclusive():
                changes = _Changes(self._entries)
                try:
                    yield changes
                    if changes.dirty:
                        self._persist()
                        self._writes += 1
                except BaseException:
                    if changes.dirty:
                        self._discard()
                    raise

    # ----------------------------------------------------------------- primitives

    def get(self, key: str) -> Entry | None:
        """Return the entry stored under ``key``, or None."""
        validate_key(key)
        with self._reading() as entries:
            entry = entries.get(key)
            return None if entry is None else clone(entry)

    def put(self, entry: Entry, *, overwrite: bool = True) -> Entry | None:
        """Store ``entry``; return the entry it replaced (see ``MetadataBackend.put``)."""
        stored = normalize_entry(entry)
        with self._writing() as changes:
            old = changes.entries.get(stored.key)
            if old is not None and not overwrite:
                raise exists_error(stored.key)
            changes.set(stored)
            return old

    def delete(self, key: str) -> Entry | None:
        """Remove ``key``; return the removed entry or None."""
        validate_key(key)
        with self._writing() as changes:
            return changes.pop(key)

    def update(self, key: str, /, **changes: Any) -> Entry | None:
        """Change fields of ``key``; return the updated entry or None when absent."""
        validate_key(key)
        fields = validate_changes(changes)
        with self._writing() as writing:
            old = writing.entries.get(key)
            if old is None:
                return None
            new = updated_entry(old, fields)
            writing.set(new)
            return clone(new)

    def query(
        self,
        filter: Filter | None = None,
        *,
        order_by: str = "key",
        descending: bool = False,
        limit: int | None = None,
        offset: int = 0,
    ) -> Iterator[Entry]:
        """Yield matching entries in order (selected now, copied as they are yielded)."""
        predicate = compile_predicate(filter)
        spec, limit, offset = query_args(order_by, descending, limit, offset)
        key = sort_key(spec)
        with self._reading() as entries:
            matching = [entry for entry in entries.values() if predicate(entry)]
        if limit is None:
            ordered = sorted(matching, key=key, reverse=descending)[offset:]
        else:
            pick = heapq.nlargest if descending else heapq.nsmallest
            ordered = pick(offset + limit, matching, key=key)[offset:]
        return _yield_clones(ordered)

    def close(self) -> None:
        """Drop the entries held in memory; later calls raise ``MetadataError``."""
        with self._lock:
            self._closed = True
            self._entries = {}

    # ----------------------------------------------------------------- batches in one step

    def get_many(self, keys: Iterable[str]) -> dict[str, Entry]:
        """Return ``{key: entry}`` for the keys that exist."""
        wanted = unique_keys(keys)
        with self._reading() as entries:
            return {key: clone(entries[key]) for key in wanted if key in entries}

    def put_many(self, entries: Iterable[Entry]) -> list[Entry]:
        """Store every entry in one step; return the replaced entries, in order."""
        batch = [normalize_entry(entry) for entry in entries]
        with self._writing() as changes:
            staged: dict[str, Entry] = {}
            replaced = []
            for entry in batch:
                old = staged[entry.key] if entry.key in staged else changes.entries.get(entry.key)
                if old is not None:
                    replaced.append(old)
                staged[entry.key] = entry
            for entry in staged.values():
                changes.set(entry)
            return replaced

    def update_many(self, changes: Mapping[str, Mapping[str, Any]]) -> dict[str, Entry]:
        """Apply ``{key: {field: value}}`` in one step; return the updated entries."""
        return self.update_many_if(changes, {})

    def update_many_if(
        self,
        changes: Mapping[str, Mapping[str, Any]],
        expect: Mapping[str, Mapping[str, Any]],
    ) -> dict[str, Entry]:
        """:meth:`update_many` for the entries that still hold ``expect``, under the lock."""
        checked = checked_changes(changes)
        with self._writing() as writing:
            updated = updated_entries(writing.entries, checked, expect)
            for entry in updated.values():
                writing.set(entry)
            return {key: clone(entry) for key, entry in updated.items()}

    def delete_many(self, keys: Iterable[str]) -> list[Entry]:
        """Remove the keys in one step; return the removed entries."""
        doomed = unique_keys(keys)
        with self._writing() as changes:
            return self._pop_all(changes, doomed)

    def delete_where(self, filter: Filter) -> list[Entry]:
        """Remove every entry matching ``filter`` in one step; return them."""
        return self._delete_matching(compile_predicate(filter))

    def _delete_matching(self, predicate: Callable[[Entry], bool]) -> list[Entry]:
        with self._writing() as changes:
            doomed = [key for key, entry in changes.entries.items() if predicate(entry)]
            return self._pop_all(changes, doomed)

    @staticmethod
    def _pop_all(changes: _Changes, keys: list[str]) -> list[Entry]:
        removed = (changes.pop(key) for key in keys)
        return [entry for entry in removed if entry is not None]

    def count(self, filter: Filter | None = None) -> int:
        """Return how many entries match ``filter``."""
        predicate = compile_predicate(filter)
        with self._reading() as entries:
            if filter is None or not filter:
                return len(entries)
            return sum(1 for entry in entries.values() if predicate(entry))

    def total_size(self, filter: Filter | None = None) -> int:
        """Return the summed ``size`` of the entries matching ``filter``."""
        predicate = compile_predicate(filter)
        with self._reading() as entries:
            return sum(entry.size for entry in entries.values() if predicate(entry))

    def exists(self, key: str) -> bool:
        """Return True when ``key`` has an entry."""
        validate_key(key)
        with self._reading() as entries:
            return key in entries

    def copy(
        self, src: str, dst: str, *, overwrite: bool = False, **changes: Any
    ) -> tuple[Entry, Entry | None]:
        """Copy ``src`` to ``dst`` in one step (see ``MetadataBackend.copy``)."""
        validate_key(src)
        validate_changes(changes)
        with self._writing() as writing:
            source = writing.entries.get(src)
            if source is None:
                raise not_found_error(src)
            copy = copied_entry(source, dst, changes, utc_now())
            old = writing.entries.get(dst)
            if old is not None and not overwrite:
                raise exists_error(dst)
            writing.set(copy)
            return clone(copy), old

    def move(self, src: str, dst: str, *, overwrite: bool = False) -> tuple[Entry, Entry | None]:
        """Rename ``src`` to ``dst`` atomically (see ``MetadataBackend.move``)."""
        validate_key(src)
        validate_key(dst)
        with self._writing() as writing:
            source = writing.entries.get(src)
            if source is None:
                raise not_found_error(src)
            old = writing.entries.get(dst)
            if old is not None and not overwrite:
                raise exists_error(dst)
            moved = moved_entry(source, dst, utc_now())
            if src == dst:
                old = None
            else:
                writing.pop(src)
            writing.set(moved)
            return clone(moved), old
