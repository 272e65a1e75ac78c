"""The ABC's default batch methods, run through the whole conformance suite.

``MinimalBackend`` implements only the six abstract primitives, so every bulk, batch,
copy and move call below goes through ``MetadataBackend``'s defaults.
"""

from __future__ import annotations

import threading

import pytest

from cacheness.storage import Entry, MetadataBackend, validate_key
from cacheness.storage._filters import compile_predicate, sort_key
from cacheness.storage._metadata._entries import (
    clone,
    exists_error,
    normalize_entry,
    query_args,
    updated_entry,
    validate_changes,
)
from cacheness.storage.errors import MetadataError
from cacheness.storage.testing.metadata import MetadataBackendConformance


class MinimalBackend(MetadataBackend):
    name = "minimal"
    scope = "process"

    def __init__(self):
        self.entries = {}
        self.lock = threading.Lock()
        self.closed = False
        self.calls = []

    def _open(self):
        if self.closed:
            raise MetadataError("MinimalBackend is closed")

    def get(self, key):
        validate_key(key)
        self._open()
        self.calls.append("get")
        with self.lock:
            entry = self.entries.get(key)
        return None if entry is None else clone(entry)

    def put(self, entry, *, overwrite=True):
        stored = normalize_entry(entry)
        self._open()
        with self.lock:
            old = self.entries.get(stored.key)
            if old is not None and not overwrite:
                raise exists_error(stored.key)
            self.entries[stored.key] = stored
        return old

    def delete(self, key):
        validate_key(key)
        self._open()
        with self.lock:
            return self.entries.pop(key, None)

    def update(self, key, /, **changes):
        validate_key(key)
        fields = validate_changes(changes)
        self._open()
        with self.lock:
            if key not in self.entries:
                return None
            self.entries[key] = updated_entry(self.entries[key], fields)
            return clone(self.entries[key])

    def query(self, filter=None, *, order_by="key", descending=False, limit=None, offset=0):
        predicate = compile_predicate(filter)
        spec, limit, offset = query_args(order_by, descending, limit, offset)
        self._open()
        with self.lock:
            found = [e for e in self.entries.values() if predicate(e)]
        found.sort(key=sort_key(spec), reverse=descending)
        end = None if limit is None else offset + limit
        return iter([clone(e) for e in found[offset:end]])

    def close(self):
        self.closed = True


class TestDefaultsConformance(MetadataBackendConformance):
    atomic_move = False  # the default move() is a put followed by a delete

    @pytest.fixture
    def backend(self):
        with MinimalBackend() as index:
            yield index


def test_an_incomplete_backend_cannot_be_instantiated():
    class NoQuery(MetadataBackend):
        name = "partial"
        scope = "process"

        def get(self, key): ...
        def put(self, entry, *, overwrite=True): ...
        def delete(self, key): ...
        def update(self, key, /, **changes): ...
        def close(self): ...

    with pytest.raises(TypeError, match="query"):
        NoQuery()


def test_defaults_are_built_on_the_primitives():
    backend = MinimalBackend()
    backend.put_many([Entry.new("a"), Entry.new("b")])
    backend.calls.clear()
    assert set(backend.get_many(["a", "b", "c"])) == {"a", "b"}
    assert backend.calls == ["get", "get", "get"]
    assert backend.exists("a")
