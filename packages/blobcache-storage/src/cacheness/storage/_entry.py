"""``Entry``: the metadata record of one stored object.

A metadata backend keeps one ``Entry`` per key. It says where the bytes are
(``blob_ref`` in the blob backend, or ``inline`` for small payloads), how to turn them
back into an object (``handler``, ``format``, ``format_info``, ``codec``), how to check
them (``size``, ``content_hash``, ``etag``, ``version_id``, ``signature``) and when they
were written and read (``created_at``, ``updated_at``, ``accessed_at``, ``access_count``).
``metadata`` is the user's JSON-able dict, queryable with :mod:`cacheness.storage._filters`.

Timestamps are timezone-aware UTC ``datetime`` objects at the API. Storage records them
and never interprets them (no expiry here: that is the cache layer's business).

Example:
    >>> from cacheness.storage import Entry
    >>> entry = Entry.new("models/resnet50", blob_ref="ab/abcd12", size=10, metadata={"acc": 0.9})
    >>> entry.key, entry.size, entry.created_at.tzinfo is not None
    ('models/resnet50', 10, True)
    >>> Entry.from_dict(entry.to_dict()) == entry
    True
    >>> Entry.new("")
    Traceback (most recent call last):
    ...
    cacheness.storage.errors.InvalidKeyError: a key must be a non-empty string, got ''
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

import msgspec

from cacheness.storage.errors import InvalidKeyError

MAX_KEY_LENGTH = 1024
"""Longest key accepted, in characters (keys are indexed; keep them short)."""


def utc_now() -> datetime:
    """Return the current time as a timezone-aware UTC datetime."""
    return datetime.now(UTC)


def validate_key(key: object) -> str:
    """Return ``key`` if it is a valid entry key, else raise :class:`InvalidKeyError`.

    A key is a non-empty ``str`` of at most :data:`MAX_KEY_LENGTH` characters without
    NUL characters or lone surrogates (it must encode as UTF-8).

    Example:
        >>> validate_key("exp_001/run-3")
        'exp_001/run-3'
        >>> validate_key("a\\x00b")
        Traceback (most recent call last):
        ...
        cacheness.storage.errors.InvalidKeyError: a key must not contain NUL characters: 'a\\x00b'
    """
    if not isinstance(key, str):
        raise InvalidKeyError(f"a key must be a str, got {type(key).__name__}: {key!r}")
    if not key:
        raise InvalidKeyError(f"a key must be a non-empty string, got {key!r}")
    if len(key) > MAX_KEY_LENGTH:
        raise InvalidKeyError(
            f"a key must be at most {MAX_KEY_LENGTH} characters, got {len(key)}; "
            "hash long identifiers and keep the original in metadata"
        )
    if "\x00" in key:
        raise InvalidKeyError(f"a key must not contain NUL characters: {key!r}")
    try:
        key.encode("utf-8")
    except UnicodeEncodeError as exc:
        raise InvalidKeyError(f"a key must be valid Unicode text: {key!r} ({exc})") from None
    return key


def _as_utc(value: datetime) -> datetime:
    if value.tzinfo is None:
        raise ValueError(f"timestamps must be timezone-aware (UTC), got naive {value!r}")
    return value.astimezone(UTC)


class Entry(msgspec.Struct, kw_only=True, omit_defaults=False):
    """The metadata record of one stored object.

    Attributes:
        key: identity of the entry; immutable (rename with ``move``).
        blob_ref: opaque location inside the blob backend; ``""`` when ``inline`` holds
            the payload.
        handler: name of the handler that serialized the object (``"numpy"``...).
        format: the handler's format tag (``"arrow-ipc"``, ``"msgpack"``...).
        format_info: small JSON-able dict the handler needs to load (dtype, shape...).
        codec: compression codec of the stored bytes (``"zstd"``, ``"none"``...).
        size: stored bytes (after compression).
        raw_size: bytes before compression.
        content_hash: XXH3-128 hex of the stored bytes.
        etag: ETag reported by a remote blob backend (S3), if any.
        version_id: object version reported by a versioned bucket, if any.
        created_at: when the key was first written (UTC).
        updated_at: when the data or metadata last changed (UTC).
        accessed_at: when the entry was last read (UTC), as recorded by the caller.
        access_count: reads recorded by the caller.
        metadata: the user's JSON-able dict.
        signature: optional signature of the stored bytes and key facts.
        inline: the stored bytes themselves for small payloads (``blob_ref`` is then ``""``).
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
    etag: str | None = None
    version_id: str | None = None
    created_at: datetime
    updated_at: datetime
    accessed_at: datetime
    access_count: int = 0
    metadata: dict[str, Any] = msgspec.field(default_factory=dict)
    signature: str | None = None
    inline: bytes | None = None

    def __post_init__(self) -> None:
        validate_key(self.key)
        self.created_at = _as_utc(self.created_at)
        self.updated_at = _as_utc(self.updated_at)
        self.accessed_at = _as_utc(self.accessed_at)

    @classmethod
    def new(cls, key: str, *, now: datetime | None = None, **fields: Any) -> Entry:
        """Create an entry whose three timestamps are ``now`` (default: the current time).

        Example:
            >>> Entry.new("k", size=3).access_count
            0
        """
        stamp = now or utc_now()
        fields.setdefault("created_at", stamp)
        fields.setdefault("updated_at", stamp)
        fields.setdefault("accessed_at", stamp)
        return cls(key=key, **fields)

    @property
    def is_inline(self) -> bool:
        """True when the payload is stored in the entry instead of a blob."""
        return self.inline is not None

    def to_dict(self) -> dict[str, Any]:
        """Return the entry as a plain dict (datetimes stay ``datetime``, bytes stay bytes).

        Example:
            >>> tuple(sorted(Entry.new("k").to_dict())[:4])
            ('access_count', 'accessed_at', 'blob_ref', 'codec')
        """
        return {name: getattr(self, name) for name in self.__struct_fields__}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Entry:
        """Build an entry from a dict such as :meth:`to_dict` returns.

        ISO-8601 strings are accepted for the timestamps; missing timestamps default to
        now. Unknown fields raise ``ValueError`` naming them.

        Example:
            >>> Entry.from_dict({"key": "k", "created_at": "2026-01-02T03:04:05Z"}).created_at.year
            2026
        """
        unknown = set(data) - set(cls.__struct_fields__)
        if unknown:
            raise ValueError(f"unknown Entry fields: {', '.join(sorted(unknown))}")
        now = utc_now()
        values = {"created_at": now, "updated_at": now, "accessed_at": now, **data}
        try:
            return msgspec.convert(values, cls, strict=False)
        except msgspec.ValidationError as exc:
            raise ValueError(f"invalid Entry: {exc}") from exc

    def replace(self, **changes: Any) -> Entry:
        """Return a copy with ``changes`` applied (``key`` included; validation reruns)."""
        return msgspec.structs.replace(self, **changes)


MUTABLE_FIELDS: frozenset[str] = frozenset(Entry.__struct_fields__) - {"key"}
"""Fields ``MetadataBackend.update`` may change (all but ``key``)."""
