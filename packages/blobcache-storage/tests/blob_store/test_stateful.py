"""A hypothesis state machine: BlobStore against a dict model.

Rules cover put (with and without a key, overwrite on and off), update_data,
update_metadata, update_batch, copy, move, put_batch, get_batch, delete, delete_batch,
delete_by_prefix, delete_where (filter and predicate) and clear, on memory + memory and
sqlite + filesystem, with content addressing on and off. After every step every entry's
value and metadata equal the model's, and the blobs are exactly those the entries use:
no orphan, nothing dangling (content-addressed blobs are named by their content).
"""

from __future__ import annotations

import random
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    Bundle,
    RuleBasedStateMachine,
    consumes,
    invariant,
    precondition,
    rule,
    run_state_machine_as_test,
)

from cacheness.storage import BlobStore
from cacheness.storage.errors import EntryExistsError, EntryNotFoundError

KEYS = st.sampled_from(["a", "b", "c", "d/1", "d/2"])
PREFIXES = st.sampled_from(["d/", "a", "x"])
# A few large payloads drawn again and again, so content-addressed stores see duplicates.
BIG = [random.Random(seed).randbytes(70_000 + 1000 * seed) for seed in range(3)]


@dataclass(frozen=True)
class Big:
    """Stands for ``BIG[index]`` in drawn values, so failing examples print short."""

    index: int

    def __repr__(self) -> str:
        return f"BIG[{self.index}]"


def real(value: Any) -> Any:
    """The value to store: ``BIG[i]`` for a :class:`Big`, else the value itself."""
    return BIG[value.index] if isinstance(value, Big) else value


VALUES = st.one_of(
    st.builds(Big, st.integers(0, len(BIG) - 1)),
    st.integers(),
    st.text(max_size=10),
    st.lists(st.integers(0, 9), max_size=4),
    st.tuples(st.booleans(), st.none()),
)
METADATA = st.dictionaries(st.sampled_from(["stage", "rev"]), st.integers(0, 2), max_size=2)

Record = tuple[Any, dict[str, Any]]  # (value, user metadata)


def has_entries(machine: BlobStoreMachine) -> bool:
    """Precondition of the rules that change or read existing entries: keep the store busy."""
    return bool(machine.model)


class BlobStoreMachine(RuleBasedStateMachine):
    """Subclassed per configuration: ``backends`` and ``content_addressable``."""

    backends: tuple[str, str] = ("memory", "memory")
    content_addressable = False

    unkeyed = Bundle("unkeyed")

    def __init__(self) -> None:
        super().__init__()
        self.folder = Path(tempfile.mkdtemp(prefix="blobstore-machine-"))
        metadata, blobs = self.backends
        self.store = BlobStore(
            self.folder,
            metadata_backend=metadata,
            blob_backend=blobs,
            content_addressable=self.content_addressable,
        )
        self.model: dict[str, Record] = {}

    def teardown(self) -> None:
        self.store.close()
        shutil.rmtree(self.folder, ignore_errors=True)

    # ------------------------------------------------------------------ writes

    @rule(key=KEYS, value=VALUES, metadata=METADATA)
    def put(self, key: str, value: Any, metadata: dict[str, Any]) -> None:
        value = real(value)
        assert self.store.put(value, key=key, metadata=metadata) == key
        self.model[key] = (value, metadata)

    @rule(target=unkeyed, value=VALUES)
    def put_without_key(self, value: Any) -> str:
        value = real(value)
        key = self.store.put(value)
        assert len(key) == 32
        self.model[key] = (value, {})
        return key

    @rule(key=KEYS, value=VALUES)
    def put_no_overwrite(self, key: str, value: Any) -> None:
        value = real(value)
        if key in self.model:
            with pytest.raises(EntryExistsError):
                self.store.put(value, key=key, overwrite=False)
        else:
            self.store.put(value, key=key, overwrite=False)
            self.model[key] = (value, {})

    @rule(key=st.one_of(KEYS, unkeyed), value=VALUES, metadata=METADATA)
    @precondition(has_entries)
    def update_data(self, key: str, value: Any, metadata: dict[str, Any]) -> None:
        value = real(value)
        done = self.store.update_data(key, value, metadata=metadata or None)
        assert done == (key in self.model)
        if done:
            self.model[key] = (value, {**self.model[key][1], **metadata})

    @rule(key=KEYS, metadata=METADATA, merge=st.booleans())
    @precondition(has_entries)
    def update_metadata(self, key: str, metadata: dict[str, Any], merge: bool) -> None:
        done = self.store.update_metadata(key, metadata, merge=merge)
        assert done == (key in self.model)
        if done:
            value, old = self.model[key]
            self.model[key] = (value, {**old, **metadata} if merge else metadata)

    @rule(updates=st.dictionaries(KEYS, METADATA, max_size=3))
    @precondition(has_entries)
    def update_batch(self, updates: dict[str, dict[str, Any]]) -> None:
        assert self.store.update_batch(updates) == len(updates.keys() & self.model.keys())
        for key, metadata in updates.items():
            if key in self.model:
                value, old = self.model[key]
                self.model[key] = (value, {**old, **metadata})

    @rule(items=st.dictionaries(KEYS, VALUES, max_size=4))
    def put_batch(self, items: dict[str, Any]) -> None:
        items = {key: real(value) for key, value in items.items()}
        assert self.store.put_batch(items) == list(items)
        for key, value in items.items():
            self.model[key] = (value, {})

    def _transfer(self, op: str, src: str, dst: str, overwrite: bool) -> None:
        call = getattr(self.store, op)
        if src not in self.model:
            with pytest.raises(EntryNotFoundError):
                call(src, dst, overwrite=overwrite)
        elif dst in self.model and not overwrite:
            with pytest.raises(EntryExistsError):
                call(src, dst, overwrite=overwrite)
        else:
            assert call(src, dst, overwrite=overwrite).key == dst
            record = self.model[src]
            if op == "move":
                del self.model[src]
            self.model[dst] = record

    @rule(src=st.one_of(KEYS, unkeyed), dst=KEYS, overwrite=st.booleans())
    @precondition(has_entries)
    def copy(self, src: str, dst: str, overwrite: bool) -> None:
        self._transfer("copy", src, dst, overwrite)

    @rule(src=KEYS, dst=KEYS, overwrite=st.booleans())
    @precondition(has_entries)
    def move(self, src: str, dst: str, overwrite: bool) -> None:
        self._transfer("move", src, dst, overwrite)

    # ------------------------------------------------------------------ deletes

    @rule(key=st.one_of(KEYS, consumes(unkeyed)))
    @precondition(has_entries)
    def delete(self, key: str) -> None:
        assert self.store.delete(key) == (key in self.model)
        self.model.pop(key, None)

    @rule(keys=st.lists(KEYS, max_size=3, unique=True))
    @precondition(has_entries)
    def delete_batch(self, keys: list[str]) -> None:
        assert self.store.delete_batch(keys) == len(set(keys) & self.model.keys())
        for key in keys:
            self.model.pop(key, None)

    @rule(prefix=PREFIXES)
    @precondition(has_entries)
    def delete_by_prefix(self, prefix: str) -> None:
        doomed = [key for key in self.model if key.startswith(prefix)]
        assert self.store.delete_by_prefix(prefix) == len(doomed)
        for key in doomed:
            del self.model[key]

    @rule(stage=st.integers(0, 2), as_callable=st.booleans())
    @precondition(has_entries)
    def delete_where(self, stage: int, as_callable: bool) -> None:
        doomed = [key for key, (_, md) in self.model.items() if md.get("stage") == stage]
        if as_callable:
            deleted = self.store.delete_where(lambda entry: entry.metadata.get("stage") == stage)
        else:
            deleted = self.store.delete_where({"metadata.stage": stage})
        assert deleted == len(doomed)
        for key in doomed:
            del self.model[key]

    @rule()
    def clear(self) -> None:
        if len(self.model) > 4:  # now and then, not every time the rule is drawn
            assert self.store.clear() == len(self.model)
            self.model.clear()

    # ------------------------------------------------------------------ reads

    @rule(keys=st.lists(st.one_of(KEYS, unkeyed), max_size=4))
    @precondition(has_entries)
    def get_batch(self, keys: list[str]) -> None:
        missing = object()
        expected = {key: self.model[key][0] if key in self.model else missing for key in keys}
        assert self.store.get_batch(keys, default=missing) == expected

    # ------------------------------------------------------------------ invariants

    @invariant()
    def entries_equal_the_model(self) -> None:
        entries = {entry.key: entry for entry in self.store.list_entries()}
        assert entries.keys() == self.model.keys()
        for key, (value, metadata) in self.model.items():
            loaded = self.store.get(key)
            assert loaded == value
            assert type(loaded) is type(value)
            assert entries[key].metadata == metadata

    @invariant()
    def blobs_are_exactly_those_in_use(self) -> None:
        used = {entry.blob_ref for entry in self.store.list_entries() if entry.blob_ref}
        assert set(self.store.blobs.iter_refs()) == used
        assert self.store.find_orphaned_blobs(min_age_seconds=0) == []
        if self.content_addressable:
            for entry in self.store.list_entries(filter={"blob_ref": {"$ne": ""}}):
                assert entry.blob_ref == self.store.blobs.ref_for(entry.content_hash)
        if self.store.blobs.name == "filesystem":  # ground truth: the files on disk
            root = self.folder / "blobs"
            files = {p.relative_to(root).as_posix() for p in root.rglob("*") if p.is_file()}
            assert files == used


CONFIGS = [
    pytest.param(("memory", "memory"), False, id="memory-memory"),
    pytest.param(("memory", "memory"), True, id="memory-memory-content-addressed"),
    pytest.param(("sqlite", "filesystem"), False, id="sqlite-filesystem"),
    pytest.param(("sqlite", "filesystem"), True, id="sqlite-filesystem-content-addressed"),
]


@pytest.mark.parametrize(("backends", "content_addressable"), CONFIGS)
def test_blob_store_behaves_like_a_dict(backends, content_addressable):
    machine = type(
        "Machine",
        (BlobStoreMachine,),
        {"backends": backends, "content_addressable": content_addressable},
    )
    run_state_machine_as_test(machine, settings=settings(max_examples=40, stateful_step_count=30))
