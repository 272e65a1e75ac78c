"""The archive format of ``BlobStore.export``: a streamed tar with a manifest first (private).

Layout (tar, plain or compressed as a whole with zstd or gzip)::

    manifest.json        msgspec JSON: format, format_version, packages, entries
    blobs/00000000       the stored bytes of the first blob entry
    blobs/00000001       ...

The manifest holds every field of every entry (timestamps, access counts, user metadata
with the cache's TTL, expiry and key parameters, signature, inline payloads under
:data:`EMBED_LIMIT`) and for the other entries the member that holds their bytes: a
blob's, or (format 2) an inline payload of :data:`EMBED_LIMIT` bytes or more, which
stays inline in the importing index. Members are written and read strictly in sequence
(tar stream mode): memory stays flat whatever the sizes and the number of entries.

Nothing read from an archive is trusted: member names must be exactly the ones the
manifest names (``blobs/`` and eight digits, regular files, no links), sizes are capped
by the manifest and hashes are checked before an entry is committed.

Example:
    >>> import io
    >>> sink = io.BytesIO()
    >>> with ArchiveWriter(sink, compression=None) as archive:
    ...     archive.add_manifest(Manifest(entries=[]))
    >>> reader = ArchiveReader(io.BytesIO(sink.getvalue()))
    >>> reader.manifest().format_version
    2
"""

from __future__ import annotations

import contextlib
import io
import os
import re
import sys
import tarfile
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path
from types import TracebackType
from typing import IO, Any, BinaryIO, Literal, Self, cast

import msgspec

from cacheness.storage._entry import Entry, utc_now
from cacheness.storage.errors import ConfigError, FormatVersionError, IntegrityError

FORMAT = "cacheness-archive"
"""The ``format`` marker of a manifest."""
FORMAT_VERSION = 2
"""The archive format version written (and the newest read) by this release.

1: inline payloads always in the manifest; 2: those of :data:`EMBED_LIMIT` bytes or
more in members (``ManifestEntry.inline``), so a manifest stays small when the index
holds payloads of up to 64 KiB.
"""
EMBED_LIMIT = 4096
"""Inline payloads smaller than this travel in the manifest; larger ones in members."""
MANIFEST_NAME = "manifest.json"
"""The first member of every archive."""
MAX_MANIFEST_BYTES = 1 << 31
"""A manifest larger than this (2 GiB) is refused as not an archive of ours."""
COMPRESSIONS = ("zstd", "gzip", None)
"""Whole-archive compressions ``export`` writes; ``import_`` recognises them by their magic."""

_MEMBER = re.compile(r"blobs/[0-9]{8}")
_ZSTD_MAGIC = b"\x28\xb5\x2f\xfd"
_GZIP_MAGIC = b"\x1f\x8b"

Compression = Literal["zstd", "gzip"] | None


class ManifestEntry(msgspec.Struct, kw_only=True):
    """One entry of the manifest and the member holding its bytes (None: in the entry)."""

    entry: Entry
    member: str | None = None
    inline: bool = False
    """True: ``member`` holds the entry's inline payload (format 2), not a blob's bytes."""
    custom: dict[str, list[dict[str, Any]]] = msgspec.field(default_factory=dict)
    """Custom metadata rows: model name -> the rows' values by attribute."""


class Manifest(msgspec.Struct, kw_only=True):
    """The first member of an archive."""

    format: str = FORMAT
    format_version: int = FORMAT_VERSION
    created_at: datetime = msgspec.field(default_factory=utc_now)
    packages: dict[str, str] = msgspec.field(default_factory=dict)
    source: dict[str, str] = msgspec.field(default_factory=dict)
    entries: list[Any] = msgspec.field(default_factory=list)
    """``ManifestEntry`` when written; raw items when read (decoded one by one)."""


class _Head(msgspec.Struct):
    format: str = ""
    format_version: int = 0


def member_name(index: int) -> str:
    """The name of the ``index``-th blob member."""
    return f"blobs/{index:08d}"


def safe_member_name(name: str) -> bool:
    """True for a name the exporter writes (``blobs/`` and eight digits)."""
    return _MEMBER.fullmatch(name) is not None


def check_head(head: _Head, where: str) -> None:
    """Refuse what is not an archive of ours, or one of a newer format version."""
    if head.format != FORMAT:
        raise IntegrityError(
            f"{where} is not a cacheness archive (its manifest's format is {head.format!r}); "
            "export one with BlobStore.export or `blobcache export`"
        )
    if head.format_version > FORMAT_VERSION:
        raise FormatVersionError(
            f"{where} was written in archive format {head.format_version}, newer than the "
            f"{FORMAT_VERSION} this release reads; upgrade blobcache-storage to import it",
            found=head.format_version,
            supported=FORMAT_VERSION,
        )
    if head.format_version < 1:
        raise IntegrityError(f"{where} has an invalid format version {head.format_version!r}")


def parse_manifest(data: bytes | Any, where: str) -> Manifest:
    """Decode a manifest (JSON bytes, or the dict ``export_to_dict`` made).

    Entries stay undecoded (``msgspec.Raw`` or dicts): :func:`decode_entry` takes them one
    by one, so a bad entry is reported instead of refusing the archive.

    Raises:
        IntegrityError: not a manifest of ours.
        FormatVersionError: written by a newer format version.
    """
    try:
        if isinstance(data, bytes | bytearray | memoryview):
            head = msgspec.json.decode(data, type=_Head)
            check_head(head, where)
            raw = msgspec.json.decode(data, type=_RawManifest)
            return Manifest(**{f: getattr(raw, f) for f in raw.__struct_fields__})
        head = msgspec.convert(data, _Head, strict=False)
        check_head(head, where)
        manifest = msgspec.convert(data, _DictManifest, strict=False)
        return Manifest(**{f: getattr(manifest, f) for f in manifest.__struct_fields__})
    except (msgspec.DecodeError, msgspec.ValidationError) as exc:
        raise IntegrityError(f"{where}: the manifest is not valid ({exc})") from None


class _RawManifest(Manifest, kw_only=True):
    entries: list[msgspec.Raw] = msgspec.field(default_factory=list)


class _DictManifest(Manifest, kw_only=True):
    entries: list[dict[str, Any]] = msgspec.field(default_factory=list)


def decode_entry(item: Any) -> ManifestEntry:
    """Decode one manifest item; raise ``ValueError`` saying what is wrong with it."""
    try:
        if isinstance(item, msgspec.Raw):
            return msgspec.json.decode(item, type=ManifestEntry)
        return msgspec.convert(item, ManifestEntry, strict=False)
    except (msgspec.DecodeError, msgspec.ValidationError) as exc:
        raise ValueError(str(exc)) from None


def raw_key(item: Any) -> str:
    """The key an undecodable manifest item claims, for the report (best effort)."""
    with contextlib.suppress(Exception):
        data = msgspec.json.decode(item) if isinstance(item, msgspec.Raw) else item
        key = data["entry"]["key"]
        if isinstance(key, str):
            return key[:200]
    return ""


# ------------------------------------------------------------------------------ writing


class _Sink:
    """Where archive bytes go: a path (written beside it, renamed on success) or a stream."""

    def __init__(self, target: str | os.PathLike[str] | BinaryIO) -> None:
        self.path: Path | None = None
        self.temp: Path | None = None
        if isinstance(target, str | os.PathLike):
            self.path = Path(target).expanduser()
            if self.path.is_dir():
                raise ConfigError(f"cannot export to {str(self.path)!r}: it is a directory")
            self.temp = self.path.with_name(f".{self.path.name}.{os.urandom(4).hex()}.part")
            self.stream: IO[bytes] = open(self.temp, "xb")  # noqa: SIM115 - closed in finish()
        elif callable(getattr(target, "write", None)):
            self.stream = target
        else:
            raise ConfigError(
                f"export() takes a file path or a binary stream open for writing, got {target!r}"
            )

    def finish(self, ok: bool) -> None:
        if self.path is None or self.temp is None:
            return
        try:
            if ok:
                self.stream.flush()
                os.fsync(self.stream.fileno())
            self.stream.close()
            if ok:
                os.replace(self.temp, self.path)
        finally:
            if not ok or self.temp.exists():
                self.temp.unlink(missing_ok=True)


def _compressing(stream: IO[bytes], compression: Compression) -> tuple[IO[bytes], Any]:
    """Return the stream tar writes to and the object to close to finish compression."""
    if compression == "zstd":
        import zstandard

        writer = zstandard.ZstdCompressor(level=3).stream_writer(stream, closefd=False)
        return writer, writer
    if compression == "gzip":
        import gzip

        gz = gzip.GzipFile(fileobj=stream, mode="wb", compresslevel=6, mtime=0)
        return cast(IO[bytes], gz), gz
    return stream, None


class ArchiveWriter:
    """Write an archive: :meth:`add_manifest` first, then :meth:`add_member` per blob."""

    def __init__(
        self, target: str | os.PathLike[str] | BinaryIO, *, compression: Compression = "zstd"
    ) -> None:
        if compression not in COMPRESSIONS:
            raise ConfigError(f"compression must be 'zstd', 'gzip' or None, got {compression!r}")
        self._sink = _Sink(target)
        try:
            stream, self._compressor = _compressing(self._sink.stream, compression)
            self._tar = tarfile.open(  # noqa: SIM115 - closed in close()
                fileobj=stream, mode="w|", format=tarfile.PAX_FORMAT
            )
        except BaseException:
            self._sink.finish(False)
            raise

    def add_manifest(self, manifest: Manifest) -> None:
        """Write the manifest member."""
        data = msgspec.json.encode(manifest)
        self._add(MANIFEST_NAME, len(data), io.BytesIO(data), manifest.created_at)

    def add_member(self, name: str, size: int, source: IO[bytes], mtime: datetime) -> None:
        """Write ``size`` bytes read from ``source`` as the member ``name``."""
        self._add(name, size, source, mtime)

    def _add(self, name: str, size: int, source: IO[bytes], mtime: datetime) -> None:
        info = tarfile.TarInfo(name)
        info.size = size
        info.mtime = int(mtime.timestamp())
        info.mode = 0o644
        self._tar.addfile(info, source)

    def close(self, ok: bool = True) -> None:
        """Finish the archive (and on a path, put it in place); ``ok=False`` discards it."""
        try:
            if ok:
                self._tar.close()
                if self._compressor is not None:
                    self._compressor.close()
        finally:
            self._sink.finish(ok)

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close(exc_type is None)


# ------------------------------------------------------------------------------ reading


class Member(msgspec.Struct):
    """One member after the manifest: its name, declared size, whether it is a plain file."""

    name: str
    size: int
    regular: bool
    stream: IO[bytes] | None


def _open_source(source: str | os.PathLike[str] | BinaryIO) -> tuple[IO[bytes], bool]:
    if isinstance(source, str | os.PathLike):
        path = Path(source).expanduser()
        try:
            return open(path, "rb"), True
        except FileNotFoundError:
            raise ConfigError(f"no archive at {str(path)!r}") from None
        except IsADirectoryError:
            raise ConfigError(f"{str(path)!r} is a directory, not an archive") from None
    if callable(getattr(source, "read", None)):
        return source, False
    raise ConfigError(
        f"import_() takes a file path or a binary stream open for reading, got {source!r}"
    )


def _peekable(stream: IO[bytes]) -> IO[bytes]:
    if callable(getattr(stream, "peek", None)):
        return stream
    return cast(IO[bytes], io.BufferedReader(cast(io.RawIOBase, stream)))


def _decompressing(stream: IO[bytes]) -> IO[bytes]:
    """Recognise the whole-archive compression by its magic bytes."""
    stream = _peekable(stream)
    magic = cast(io.BufferedReader, stream).peek(4)[:4]  # _peekable made sure it has peek
    if magic.startswith(_ZSTD_MAGIC):
        import zstandard

        return cast(IO[bytes], zstandard.ZstdDecompressor().stream_reader(stream, closefd=False))
    if magic.startswith(_GZIP_MAGIC):
        import gzip

        return gzip.GzipFile(fileobj=stream, mode="rb")  # type: ignore[return-value]
    return stream


def _read_errors() -> tuple[type[BaseException], ...]:
    """What reading a damaged archive raises: tar's, the decompressors', the file's."""
    errors: tuple[type[BaseException], ...] = (tarfile.TarError, OSError, EOFError, ValueError)
    zstandard = sys.modules.get("zstandard")
    return (*errors, zstandard.ZstdError) if zstandard is not None else errors


class _Guarded(io.RawIOBase):
    """A member's bytes; a damaged or truncated archive under them is an IntegrityError."""

    def __init__(self, source: IO[bytes], where: str) -> None:
        super().__init__()
        self._source = source
        self._where = where

    def readable(self) -> bool:
        return True

    def read(self, size: int | None = -1) -> bytes:
        try:
            return self._source.read(-1 if size is None else size)
        except _read_errors() as exc:
            raise IntegrityError(
                f"{self._where} is truncated or damaged inside a member ({exc})"
            ) from None

    def readinto(self, buffer: Any) -> int:
        data = self.read(len(buffer))
        buffer[: len(data)] = data
        return len(data)


class ArchiveReader:
    """Read an archive in one pass: :meth:`manifest`, then :meth:`members`."""

    def __init__(self, source: str | os.PathLike[str] | BinaryIO, *, where: str = "") -> None:
        self.where = where or (
            os.fspath(source) if isinstance(source, str | os.PathLike) else "the archive"
        )
        self._raw, self._owned = _open_source(source)
        try:
            self._tar = tarfile.open(  # noqa: SIM115 - closed in close()
                fileobj=_decompressing(self._raw), mode="r|"
            )
        except _read_errors() as exc:
            self.close()
            raise IntegrityError(f"{self.where} is not a readable archive ({exc})") from None
        except BaseException:
            self.close()
            raise

    def manifest(self) -> Manifest:
        """Read and decode the first member, which must be the manifest."""
        try:
            first = self._tar.next()
        except _read_errors() as exc:
            raise IntegrityError(f"{self.where} is not a readable archive ({exc})") from None
        if first is None or first.name != MANIFEST_NAME or not first.isreg():
            raise IntegrityError(
                f"{self.where} is not a cacheness archive: its first member is not {MANIFEST_NAME}"
            )
        if first.size > MAX_MANIFEST_BYTES:
            raise IntegrityError(f"{self.where}: the manifest is {first.size} bytes, too large")
        stream = self._tar.extractfile(first)
        assert stream is not None
        try:
            data = stream.read()
        except _read_errors() as exc:
            raise IntegrityError(f"{self.where}: the manifest is truncated ({exc})") from None
        return parse_manifest(data, self.where)

    def members(self) -> Iterator[Member]:
        """The members after the manifest, in order (each readable until the next)."""
        while True:
            try:
                info = self._tar.next()
            except _read_errors() as exc:
                raise IntegrityError(
                    f"{self.where} ends in the middle of a member, truncated or damaged ({exc}); "
                    "the entries read before it are imported"
                ) from None
            if info is None:
                return
            stream = self._tar.extractfile(info) if info.isreg() else None
            guarded = cast(IO[bytes], _Guarded(stream, self.where)) if stream else None
            yield Member(info.name, info.size, stream is not None, guarded)

    def close(self) -> None:
        """Close the archive (and the file, when opened from a path)."""
        tar = getattr(self, "_tar", None)
        if tar is not None:
            tar.close()
        if self._owned:
            self._raw.close()
