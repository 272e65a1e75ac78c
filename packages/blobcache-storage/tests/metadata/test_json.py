"""The JSON backend: conformance, state machine, and the file it keeps."""

from __future__ import annotations

import json
import os

import pytest
from hypothesis import settings

from cacheness.storage import Entry, JsonMetadataBackend
from cacheness.storage.errors import ConfigError, MetadataError
from cacheness.storage.testing.metadata import (
    MetadataBackendConformance,
    metadata_state_machine,
)


class TestJsonConformance(MetadataBackendConformance):
    large_metadata_keys = 5_000

    @pytest.fixture
    def backend(self, tmp_path):
        with JsonMetadataBackend(tmp_path / "index.json", fsync=False) as index:
            yield index

    @pytest.fixture
    def ground_truth(self, tmp_path, json_reader):
        return lambda: json_reader(tmp_path / "index.json")

    @pytest.fixture
    def reopen(self, tmp_path):
        return lambda: JsonMetadataBackend(tmp_path / "index.json", fsync=False)


def test_state_machine(tmp_path):
    counter = iter(range(10**6))

    def factory():
        return JsonMetadataBackend(tmp_path / f"sm-{next(counter)}.json", fsync=False)

    machine = metadata_state_machine(factory)
    machine.TestCase.settings = settings(max_examples=25, stateful_step_count=20)
    machine.TestCase("runTest").runTest()


def test_file_is_written_atomically_and_readable(tmp_path):
    path = tmp_path / "sub" / "index.json"
    with JsonMetadataBackend(path) as index:
        index.put(Entry.new("a", inline=b"\x00\xff", metadata={"é": 1}))
        document = json.loads(path.read_text(encoding="utf-8"))
        assert [item["key"] for item in document["entries"]] == ["a"]
        assert document["entries"][0]["inline"] == "AP8="
        assert document["entries"][0]["created_at"].endswith("Z")
    names = sorted(p.name for p in path.parent.iterdir())
    # no temporary file left; the reserve for deletions on a full disk beside the index
    assert names == ["index.json", "index.json.lock", "index.json.reserve"]


def test_nothing_is_written_for_a_change_that_changes_nothing(tmp_path):
    path = tmp_path / "index.json"
    with JsonMetadataBackend(path) as index:
        index.put(Entry.new("a"))
        before = os.stat(path)
        assert index.delete("missing") is None
        assert index.delete_where({"key": "missing"}) == []
        assert os.stat(path).st_ino == before.st_ino


def test_corrupt_file_is_refused_and_left_alone(tmp_path):
    path = tmp_path / "index.json"
    path.write_text('{"format": "cacheness.storage.metadata", "version": 1, "entries": [{"key"')
    with pytest.raises(MetadataError, match="not a valid cacheness metadata file"):
        JsonMetadataBackend(path)
    assert path.read_text().endswith('[{"key"')


def test_newer_file_version_is_refused(tmp_path):
    path = tmp_path / "index.json"
    path.write_text('{"format": "cacheness.storage.metadata", "version": 2, "entries": {}}')
    with pytest.raises(MetadataError, match="newer blobcache-storage"):
        JsonMetadataBackend(path)


def test_another_writer_is_seen_and_not_overwritten(tmp_path):
    path = tmp_path / "index.json"
    first = JsonMetadataBackend(path)
    second = JsonMetadataBackend(path)
    first.put(Entry.new("from-first"))
    second.put(Entry.new("from-second"))  # reloads under the lock before writing
    first.put(Entry.new("again-first"))
    assert sorted(e.key for e in JsonMetadataBackend(path).query()) == [
        "again-first",
        "from-first",
        "from-second",
    ]


def test_a_failed_write_changes_nothing(tmp_path, monkeypatch):
    path = tmp_path / "index.json"
    index = JsonMetadataBackend(path)
    index.put(Entry.new("kept"))

    def disk_full(*args, **kwargs):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr("cacheness.storage._metadata.json.atomic_write", disk_full)
    with pytest.raises(MetadataError, match="No space left"):
        index.put(Entry.new("lost"))
    monkeypatch.undo()
    assert [e.key for e in index.query()] == ["kept"]
    assert index.get("lost") is None


def test_directory_path_is_refused(tmp_path):
    with pytest.raises(ConfigError, match="directory"):
        JsonMetadataBackend(tmp_path)


def test_rewrites_keep_the_file_permissions(tmp_path):
    path = tmp_path / "index.json"
    with JsonMetadataBackend(path) as index:
        index.put(Entry.new("a"))
        os.chmod(path, 0o640)
        index.put(Entry.new("b"))
    assert os.stat(path).st_mode & 0o777 == 0o640


def test_unwritable_location_is_a_metadata_error(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("")
    with pytest.raises(MetadataError, match="cannot create the directory"):
        JsonMetadataBackend(blocker / "sub" / "index.json")
