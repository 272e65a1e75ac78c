"""Blob names, references and git-style sharding (private).

A blob *name* is what the caller chooses (``"3f2a9c..."``, ``"models/resnet50"``); its
*reference* is where a backend keeps it. With ``shard_chars=2`` the last segment of a
name gets a directory of its first two characters, as git does with objects:
``"abcdef"`` → ``"ab/abcdef"``, ``"runs/abcdef"`` → ``"runs/ab/abcdef"``. A last segment
shorter than ``shard_chars`` characters is stored unsharded, so a shard directory
(exactly ``shard_chars`` characters) never has the name of a blob in the same directory.

Example:
    >>> from cacheness.storage._blob._sharding import shard, unshard
    >>> shard("abcdef", 2), unshard("ab/abcdef", 2)
    ('ab/abcdef', 'abcdef')
    >>> validate_name("../etc/passwd")  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    cacheness.storage.errors.InvalidBlobNameError: blob name '../etc/passwd': segment '..' ...
"""

from __future__ import annotations

from cacheness.storage._validate import is_int
from cacheness.storage.errors import ConfigError, InvalidBlobNameError

MAX_NAME_LENGTH = 1024
"""Longest blob name or reference, in UTF-8 bytes (the S3 key limit)."""

MAX_SEGMENT_BYTES = 255
"""Longest segment between slashes, in UTF-8 bytes (the usual file name limit)."""

RESERVED_PREFIX = ".cacheness-"
"""Segments starting with this are reserved for temporary and index files."""

MAX_SHARD_CHARS = 4


def validate_shard_chars(shard_chars: object) -> int:
    """Return ``shard_chars`` if it is 0 (no sharding) or 1-4, else raise ``ConfigError``.

    Example:
        >>> validate_shard_chars(2)
        2
        >>> validate_shard_chars(7)
        Traceback (most recent call last):
        ...
        cacheness.storage.errors.ConfigError: shard_chars must be 0 (no sharding) or 1-4, got 7
    """
    if not is_int(shard_chars) or not 0 <= shard_chars <= MAX_SHARD_CHARS:
        raise ConfigError(
            f"shard_chars must be 0 (no sharding) or 1-{MAX_SHARD_CHARS}, got {shard_chars!r}"
        )
    return shard_chars


def validate_name(name: object, what: str = "blob name") -> str:
    """Return ``name`` if it is a safe relative blob name or reference.

    A name is a non-empty ``str`` of ``/``-separated segments. No segment may be empty
    (which also rules out absolute paths and trailing slashes), ``.`` or ``..``, contain
    a backslash, a NUL or another control character, start with ``.cacheness-``
    (reserved), or exceed 255 UTF-8 bytes; the whole name is at most 1024 UTF-8 bytes.

    Raises:
        InvalidBlobNameError: the name breaks one of the rules; the message says which.

    Example:
        >>> validate_name("runs/2024/abc")
        'runs/2024/abc'
        >>> validate_name("/abs")  # doctest: +ELLIPSIS
        Traceback (most recent call last):
        ...
        cacheness.storage.errors.InvalidBlobNameError: blob name '/abs': absolute names are ...
    """
    if not isinstance(name, str):
        raise InvalidBlobNameError(f"a {what} must be a str, got {type(name).__name__}")
    if not name:
        raise InvalidBlobNameError(f"a {what} must not be empty")
    try:
        encoded = name.encode("utf-8")
    except UnicodeEncodeError as exc:
        raise InvalidBlobNameError(f"{what} {name!r} is not valid UTF-8 text: {exc}") from exc
    if len(encoded) > MAX_NAME_LENGTH:
        raise InvalidBlobNameError(
            f"{what} is {len(encoded)} bytes long; the limit is {MAX_NAME_LENGTH}"
        )
    if name.startswith("/"):
        raise InvalidBlobNameError(f"{what} {name!r}: absolute names are not allowed")
    for segment in name.split("/"):
        problem = segment_problem(segment)
        if problem:
            raise InvalidBlobNameError(f"{what} {name!r}: {problem}")
    return name


def segment_problem(segment: str) -> str | None:
    """Return why ``segment`` cannot be part of a blob name, or None if it can."""
    if not segment:
        return "empty segment (double or trailing slash)"
    if segment in (".", ".."):
        return f"segment {segment!r} is not allowed"
    if "\\" in segment:
        return "backslashes are not allowed (use '/' between segments)"
    if any(ord(char) < 32 or ord(char) == 127 for char in segment):
        return "NUL and other control characters are not allowed"
    if segment.startswith(RESERVED_PREFIX):
        return f"segments starting with {RESERVED_PREFIX!r} are reserved"
    if len(segment.encode("utf-8")) > MAX_SEGMENT_BYTES:
        return f"a segment is longer than {MAX_SEGMENT_BYTES} bytes"
    return None


def shard(name: str, shard_chars: int) -> str:
    """Return the reference of an already validated ``name`` under ``shard_chars``.

    Example:
        >>> shard("runs/abcdef", 2), shard("x", 2), shard("abcdef", 0), shard("..x", 2)
        ('runs/ab/abcdef', 'x', 'abcdef', '..x')
    """
    if not shard_chars:
        return name
    head, _, last = name.rpartition("/")
    if not _shardable(last, shard_chars):
        return name
    sharded = f"{last[:shard_chars]}/{last}"
    return f"{head}/{sharded}" if head else sharded


def _shardable(last: str, shard_chars: int) -> bool:
    """True when ``last`` gets a shard directory: long enough, and the directory name
    (its first ``shard_chars`` characters) is a valid segment (not ``.`` or ``..``)."""
    return len(last) >= shard_chars and last[:shard_chars].strip(".") != ""


def unshard(ref: str, shard_chars: int) -> str:
    """Return the name whose reference is ``ref`` (the inverse of :func:`shard`).

    Raises:
        InvalidBlobNameError: ``ref`` is not a reference this sharding produces.

    Example:
        >>> unshard("runs/ab/abcdef", 2)
        'runs/abcdef'
        >>> unshard("zz/abcdef", 2)
        Traceback (most recent call last):
        ...
        cacheness.storage.errors.InvalidBlobNameError: reference 'zz/abcdef' is not sharded ...
    """
    if not shard_chars:
        return ref
    segments = ref.split("/")
    last = segments[-1]
    if not _shardable(last, shard_chars):
        return ref
    if len(segments) < 2 or segments[-2] != last[:shard_chars]:
        raise InvalidBlobNameError(
            f"reference {ref!r} is not sharded with shard_chars={shard_chars} "
            f"(expected '{last[:shard_chars]}/{last}' at its end)"
        )
    return "/".join([*segments[:-2], last])


def unsafe_ref(ref: str) -> bool:
    """True when no blob can have the reference ``ref`` (``..``, absolute, NUL...).

    Example:
        >>> unsafe_ref("ab/abcdef"), unsafe_ref("../etc/passwd")
        (False, True)
    """
    try:
        validate_name(ref, "blob reference")
    except InvalidBlobNameError:
        return True
    return False
