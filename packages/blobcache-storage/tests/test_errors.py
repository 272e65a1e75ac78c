"""The error hierarchy speaks both our language and the built-ins'."""

from __future__ import annotations

import pytest

from cacheness.storage import errors
from cacheness.storage.errors import (
    BackendUnavailableError,
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


def test_every_exported_error_is_a_cache_error():
    exported = [getattr(errors, name) for name in errors.__all__]
    exceptions = [cls for cls in exported if not issubclass(cls, Warning)]
    assert len(exceptions) >= 17
    for cls in exceptions:
        assert issubclass(cls, CacheError), cls


@pytest.mark.parametrize(
    ("error", "builtin"),
    [
        (EntryNotFoundError, KeyError),
        (BlobNotFoundError, KeyError),
        (errors.BlobExistsError, FileExistsError),
        (MissingDependencyError, ImportError),
        (BackendUnavailableError, ConnectionError),
        (ConfigError, ValueError),
        (FilterError, ValueError),
        (InvalidKeyError, ValueError),
        (KeyImmutableError, ValueError),
    ],
)
def test_errors_are_also_the_builtin_they_resemble(error, builtin):
    with pytest.raises(builtin):
        raise error("boom")


def test_not_found_message_is_not_quoted_like_a_key_error():
    assert str(EntryNotFoundError("no entry with key 'a'")) == "no entry with key 'a'"
    assert str(KeyError("x")) == "'x'"  # the quirk we undo
    assert str(NotFoundError()) == ""


def test_warnings_share_one_base():
    assert issubclass(errors.NetworkFilesystemWarning, errors.CachenessWarning)
    assert issubclass(errors.CachenessWarning, UserWarning)


def test_backend_unavailable_is_a_storage_error():
    assert issubclass(BackendUnavailableError, StorageError)
    assert issubclass(BlobNotFoundError, StorageError)
