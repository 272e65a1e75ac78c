"""The error hierarchy speaks both our language and the built-ins'.

Each case makes a real operation fail and checks what a caller can catch it as: the
precise error, ``CacheError`` (one ``except`` for everything storage raises), and the
built-in exception that names the situation.
"""

from __future__ import annotations

import socket
import warnings
from collections.abc import Callable
from typing import Any

import pytest

from cacheness.storage import (
    BlobStore,
    Entry,
    MemoryBlobBackend,
    MemoryMetadataBackend,
    S3BlobBackend,
    errors,
    import_optional,
    matches,
    validate_key,
)
from cacheness.storage.errors import (
    BackendUnavailableError,
    BlobExistsError,
    BlobNotFoundError,
    CacheError,
    ConfigError,
    EntryNotFoundError,
    FilterError,
    InvalidKeyError,
    KeyImmutableError,
    MissingDependencyError,
    NotFoundError,
    StorageError,
)


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def copy_a_missing_entry() -> None:
    BlobStore(metadata_backend="memory", blob_backend="memory").copy("missing", "copy")


def read_a_missing_blob() -> None:
    MemoryBlobBackend().read_bytes("ab/missing")


def write_an_existing_blob_exclusively() -> None:
    blobs = MemoryBlobBackend()
    blobs.write_bytes("once", b"1")
    blobs.write_bytes("once", b"2", exclusive=True)


def import_a_missing_extra() -> None:
    import_optional("no_such_module_xyz", extra="s3")


def ask_an_unreachable_s3_server() -> None:
    blobs = S3BlobBackend(
        "bucket",
        endpoint_url=f"http://127.0.0.1:{free_port()}",
        aws_access_key_id="k",
        aws_secret_access_key="s",
        max_attempts=1,
        connect_timeout=1,
        breaker_threshold=100,
    )
    blobs.exists("ab/anything")


def open_a_store_with_a_bad_option() -> None:
    BlobStore(metadata_backend="memory", blob_backend="memory", inline_threshold=-1)


def filter_with_an_unknown_operator() -> None:
    matches(Entry.new("k"), {"size": {"$regex": "1"}})


def use_an_empty_key() -> None:
    validate_key("")


def change_a_key_by_update() -> None:
    index = MemoryMetadataBackend()
    index.put(Entry.new("k"))
    index.update("k", key="other")


CASES: list[tuple[Callable[[], Any], type[CacheError], type[BaseException]]] = [
    (copy_a_missing_entry, EntryNotFoundError, KeyError),
    (read_a_missing_blob, BlobNotFoundError, KeyError),
    (write_an_existing_blob_exclusively, BlobExistsError, FileExistsError),
    (import_a_missing_extra, MissingDependencyError, ImportError),
    (ask_an_unreachable_s3_server, BackendUnavailableError, ConnectionError),
    (open_a_store_with_a_bad_option, ConfigError, ValueError),
    (filter_with_an_unknown_operator, FilterError, ValueError),
    (use_an_empty_key, InvalidKeyError, ValueError),
    (change_a_key_by_update, KeyImmutableError, ValueError),
]


@pytest.mark.parametrize(("fail", "error", "builtin"), CASES, ids=[c[0].__name__ for c in CASES])
def test_a_failure_is_caught_as_ours_and_as_the_builtin(fail, error, builtin):
    with pytest.raises(error) as caught:
        fail()
    assert isinstance(caught.value, CacheError)  # one except clause for everything
    assert isinstance(caught.value, builtin)  # and the built-in that names the situation


def test_missing_things_are_also_storage_errors_where_storage_failed():
    with pytest.raises(StorageError):
        read_a_missing_blob()
    with pytest.raises(StorageError):
        ask_an_unreachable_s3_server()


def test_not_found_message_is_not_quoted_like_a_key_error():
    with pytest.raises(KeyError) as caught:
        copy_a_missing_entry()
    assert str(caught.value) == "cannot copy 'missing': no entry with that key"  # unquoted
    assert str(KeyError("x")) == "'x'"  # the quirk we undo
    assert str(NotFoundError()) == ""


def test_every_error_the_module_exports_is_a_cache_error_or_our_warning():
    exported = [getattr(errors, name) for name in errors.__all__]
    strays = [
        cls.__name__
        for cls in exported
        if not issubclass(cls, CacheError | errors.CachenessWarning)
    ]
    assert strays == []


def test_our_warnings_are_user_warnings_with_one_base():
    with pytest.warns(errors.CachenessWarning):  # how a caller filters all of them
        warnings.warn("a network filesystem", errors.NetworkFilesystemWarning, stacklevel=1)
    assert issubclass(errors.CachenessWarning, UserWarning)
