"""The error hierarchy shared by ``cacheness.storage`` and ``cacheness``.

Every error raised on purpose by either package derives from :class:`CacheError`.
Where a built-in exception already names the situation, the error derives from it
too, so callers can catch what they already know:

* :class:`NotFoundError` is also a :class:`KeyError`,
* :class:`MissingDependencyError` is also an :class:`ImportError`,
* :class:`BackendUnavailableError` is also a :class:`ConnectionError`,
* bad input (:class:`InvalidKeyError`, :class:`FilterError`, :class:`ConfigError`,
  :class:`KeyImmutableError`, :class:`InvalidEntryError`, :class:`InvalidBlobNameError`)
  is also a :class:`ValueError`.

Messages say what happened and what to do about it.

Example:
    >>> from cacheness.storage.errors import CacheError, EntryNotFoundError
    >>> try:
    ...     raise EntryNotFoundError("no entry with key 'model-v3'")
    ... except KeyError as exc:
    ...     print(type(exc).__name__, "-", exc)
    EntryNotFoundError - no entry with key 'model-v3'
"""

from __future__ import annotations

__all__ = [
    "BackendUnavailableError",
    "BlobExistsError",
    "BlobNotFoundError",
    "CacheError",
    "CachenessWarning",
    "CompressionError",
    "ConfigError",
    "CustomSchemaError",
    "EntryExistsError",
    "EntryNotFoundError",
    "FilterError",
    "FormatVersionError",
    "IntegrityError",
    "InvalidBlobNameError",
    "InvalidEntryError",
    "InvalidKeyError",
    "KeyImmutableError",
    "MetadataError",
    "MissingDependencyError",
    "NetworkFilesystemWarning",
    "NotFoundError",
    "ObjectDeclinedError",
    "PayloadTooLargeError",
    "SerializationError",
    "SignatureError",
    "StaleEntryError",
    "StorageError",
    "StorageFullError",
]


class CacheError(Exception):
    """Root of every error raised on purpose by cacheness and cacheness.storage."""


class StorageError(CacheError):
    """A storage backend failed to read, write or delete."""


class BackendUnavailableError(StorageError, ConnectionError):
    """A backend cannot be reached (server down, circuit breaker open, database gone).

    Retrying later may succeed; the data already stored is not affected.
    """


class MetadataError(StorageError):
    """A metadata backend rejected or failed an operation."""


class FormatVersionError(MetadataError):
    """A store records a format version newer than this release reads.

    Raised when a persistent metadata backend opens a store written by a newer
    blobcache-storage (the SQL table's ``schema_version``, the JSON file's ``version``).
    Nothing in the store is changed: upgrade blobcache-storage to open it. It is a
    :class:`MetadataError`, so code catching that keeps working.

    Attributes:
        found: the version recorded in the store (None when unknown).
        supported: the newest version this release reads (None when unknown).

    Example:
        >>> error = FormatVersionError("index.json is newer", found=2, supported=1)
        >>> (error.found, error.supported, isinstance(error, MetadataError))
        (2, 1, True)
    """

    def __init__(
        self, message: str = "", *, found: int | None = None, supported: int | None = None
    ) -> None:
        super().__init__(message)
        self.found = found
        self.supported = supported


class CustomSchemaError(MetadataError):
    """A custom metadata model does not match the table of its name in the database.

    The message names the columns that differ and what to do:
    ``migrate_custom_metadata_tables()`` adds missing nullable columns; anything else is a
    migration the user runs (e.g. with Alembic).
    """


class StorageFullError(StorageError):
    """The disk (or quota) holding the index or the blobs is full; nothing was stored.

    Deletions still work on a full disk (the file-based indexes keep a small reserve
    beside them for that): delete entries to make room. Raised by the index it is
    also a :class:`MetadataError`.

    Example:
        >>> error = StorageFullError("the disk is full: delete entries to make room")
        >>> isinstance(error, StorageError), isinstance(error, MetadataError)
        (True, False)
    """


class SerializationError(CacheError):
    """An object could not be turned into bytes, or bytes back into an object."""


class ObjectDeclinedError(SerializationError):
    """Raised by ``Handler.dump`` before writing anything: "not me, try the next handler".

    ``HandlerRegistry.dump`` catches it and asks the next handler that can take the
    object. Called directly, a handler's decline surfaces as this ``SerializationError``.
    """


class PayloadTooLargeError(CacheError, ValueError):
    """A payload is larger than the limit it is checked against; nothing was stored."""


class CompressionError(CacheError):
    """Compressing or decompressing failed."""


class IntegrityError(CacheError):
    """Stored bytes do not match their recorded hash, size or signature."""


class SignatureError(IntegrityError):
    """An entry's signature is missing, invalid or made with an unknown key; its bytes
    were not decoded (someone without the signing key wrote it, or the key changed)."""


class ConfigError(CacheError, ValueError):
    """A configuration value is missing, out of range or inconsistent."""


class MissingDependencyError(CacheError, ImportError):
    """An optional dependency is not installed.

    The message names the extra to install, e.g. ``pip install "blobcache-storage[s3]"``.
    """


class NotFoundError(CacheError, KeyError):
    """Something looked up by key or reference does not exist."""

    def __str__(self) -> str:
        # KeyError quotes its argument; show the message as written instead.
        return str(self.args[0]) if self.args else ""


class EntryNotFoundError(NotFoundError, MetadataError):
    """No metadata entry exists for the key."""


class StaleEntryError(EntryNotFoundError):
    """An entry read earlier was replaced or deleted, and the bytes it described are gone.

    Raised by ``BlobStore.read(entry)`` for an entry that no longer is the one under its
    key: nothing is damaged, the caller held an old copy. Get the current one with
    ``get`` / ``get_metadata`` (``BlobStore.read_current`` follows the key by itself).
    Also an :class:`EntryNotFoundError`, hence a ``KeyError``.
    """


class BlobNotFoundError(NotFoundError, StorageError):
    """No blob exists for the reference."""


class BlobExistsError(StorageError, FileExistsError):
    """An exclusive (create-only) blob write found the name already taken."""


class EntryExistsError(MetadataError):
    """The destination key already exists (pass ``overwrite=True`` to replace it)."""


class KeyImmutableError(MetadataError, ValueError):
    """An update tried to change an entry's ``key``; use ``move`` to rename instead."""


class InvalidEntryError(MetadataError, ValueError):
    """An entry or an update names an unknown field or holds a wrongly typed value."""


class InvalidKeyError(CacheError, ValueError):
    """A key is not a non-empty string of bounded length without NUL characters."""


class InvalidBlobNameError(StorageError, ValueError):
    """A blob name or reference is unsafe (absolute, ``..``, NUL, escapes the root...)."""


class FilterError(CacheError, ValueError):
    """A metadata filter uses an unknown field or operator, or a wrongly typed operand."""


class CachenessWarning(UserWarning):
    """Base class of warnings issued by cacheness and cacheness.storage."""


class NetworkFilesystemWarning(CachenessWarning):
    """A local-only feature (SQLite WAL, file locks) is used on a network filesystem."""
