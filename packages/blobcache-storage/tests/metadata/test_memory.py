"""The memory backend passes the conformance suite and the dict-model state machine."""

from __future__ import annotations

import pytest
from hypothesis import settings

from cacheness.storage import Entry, MemoryMetadataBackend
from cacheness.storage.testing.metadata import (
    MetadataBackendConformance,
    metadata_state_machine,
)


class TestMemoryConformance(MetadataBackendConformance):
    @pytest.fixture
    def backend(self):
        with MemoryMetadataBackend() as index:
            yield index


TestMemoryStateMachine = metadata_state_machine(MemoryMetadataBackend).TestCase
TestMemoryStateMachine.settings = settings(max_examples=60, stateful_step_count=30)


def test_each_instance_owns_its_entries():
    first, second = MemoryMetadataBackend(), MemoryMetadataBackend()
    first.put(Entry.new("k"))
    assert second.get("k") is None
    assert repr(first) == "<MemoryMetadataBackend 1 entries>"
